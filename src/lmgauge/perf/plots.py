"""PNG and SVG plots of what `lmgauge perf` measured; plain image files, they open without lmgauge.

matplotlib with the Agg backend (no display needed). Each figure is written as <name>.png and <name>.svg
under <run>/plots/.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=120)
    _pyplot().close(fig)
    return paths


def plot_inprocess(root: Path, results: Sequence[Any]) -> list[Path]:
    """First-token and non-first-token latency against input length, one line per (batch size, output length)."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[tuple[int, int], list[Any]] = {}
    for r in results:
        series.setdefault((r.case.batch_size, r.case.output_len), []).append(r)
    for (b, m), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r.case.input_len)
        xs = [r.case.input_len for r in rs]
        label = f"bs {b}, out {m}"
        ax1.errorbar(
            xs,
            [r.first_token_ms.median for r in rs],
            yerr=[
                [r.first_token_ms.median - r.first_token_ms.min for r in rs],
                [r.first_token_ms.max - r.first_token_ms.median for r in rs],
            ],
            marker="o",
            capsize=3,
            label=label,
        )
        nxt = [r for r in rs if r.next_token_ms]
        if nxt:
            ax2.errorbar(
                [r.case.input_len for r in nxt],
                [r.next_token_ms.median for r in nxt],
                yerr=[
                    [r.next_token_ms.median - r.next_token_ms.min for r in nxt],
                    [r.next_token_ms.max - r.next_token_ms.median for r in nxt],
                ],
                marker="o",
                capsize=3,
                label=label,
            )
    for ax, title in ((ax1, "first-token latency (prefill + 1st token)"), (ax2, "non-first-token latency")):
        ax.set_xlabel("input tokens")
        ax.set_ylabel("ms (median, bars min-max over repeats)")
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, root / "plots", "inprocess_latency_vs_input")
