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


def _x_of(results: Sequence[dict]) -> tuple[str, list[float]]:
    concs = [r.get("max_concurrency") for r in results]
    if len(set(concs)) > 1 and all(c is not None for c in concs):
        return "max concurrency", [float(c or 0) for c in concs]
    rates = [r["request_rate"] for r in results]
    return "request rate (req/s)", [float("inf") if x == "inf" else float(x) for x in rates]


def plot_serving(root: Path, results: Sequence[dict]) -> list[Path]:
    """Latency percentiles and throughput against the swept load; TTFT and TPOT distributions of each point."""
    import json

    plt = _pyplot()
    paths: list[Path] = []
    if len(results) > 1:
        xlabel, xs = _x_of(results)
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, metric in zip(axes[:2], ("ttft", "tpot")):
            for stat in ("median", "p90", "p99"):
                ys = [r.get(f"{stat}_{metric}_ms") for r in results]
                if all(y is not None for y in ys):
                    ax.plot(xs, ys, marker="o", label=stat)
            ax.set_title(f"{metric.upper()} (ms)")
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        axes[2].plot(xs, [r["output_throughput"] for r in results], marker="o", label="output tok/s")
        ax2 = axes[2].twinx()
        ax2.plot(xs, [r["request_throughput"] for r in results], marker="s", color="tab:orange", label="req/s")
        axes[2].set_title("throughput")
        axes[2].set_xlabel(xlabel)
        axes[2].set_ylabel("output tokens/s")
        ax2.set_ylabel("requests/s")
        axes[2].grid(True, alpha=0.3)
        paths += _save(fig, root / "plots", "serving_vs_load")
    for r in results:
        recs = root / "serving" / f"{r['label']}.requests.jsonl"
        rows = [json.loads(line) for line in recs.read_text(encoding="utf-8").splitlines()] if recs.is_file() else []
        ok = [x for x in rows if x["success"]]
        ttft = [x["ttft_s"] * 1000 for x in ok if x["ttft_s"] is not None]
        tpot = [
            (x["e2el_s"] - x["ttft_s"]) * 1000 / (x["output_tokens"] - 1)
            for x in ok
            if x["ttft_s"] is not None and x["output_tokens"] > 1
        ]
        if not ttft:
            continue
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        a.hist(ttft, bins=30)
        a.set_title(f"TTFT (ms), {r['label']}")
        if tpot:
            b.hist(tpot, bins=30)
        b.set_title(f"TPOT (ms), {r['label']}")
        for ax in (a, b):
            ax.set_ylabel("requests")
        paths += _save(fig, root / "plots", f"distributions_{r['label']}")
    return paths
