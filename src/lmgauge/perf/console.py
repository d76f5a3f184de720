"""The tables `lmgauge perf` prints."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

console = Console()


def print_inprocess(results: Sequence, model: str, device: str) -> None:
    table = Table(title=f"lmgauge perf: {model} on {device} (SDK columns from the median-E2E repeat)")
    for col in (
        "bs",
        "in",
        "out",
        "first token ms",
        "next token ms",
        "E2E s",
        "decode tok/s",
        "out tok/s",
        "E2E range s",
    ):
        table.add_column(col, justify="right")
    for r in results:
        c = r.case
        table.add_row(
            str(c.batch_size),
            str(c.input_len),
            str(c.output_len),
            f"{r.first_token_time_ms:.2f}",
            f"{r.next_token_time_ms:.2f}" if r.next_token_time_ms else "-",
            f"{r.response_time_s:.3f}",
            f"{r.decode_tokens_per_s:.1f}" if r.decode_tokens_per_s else "-",
            f"{r.output_tokens_per_s:.1f}",
            f"{r.e2e_s.min:.3f}-{r.e2e_s.max:.3f}",
        )
    console.print(table)


def _ms(v) -> str:
    return f"{v:.1f}" if v is not None else "-"


def print_serving(results: Sequence[dict]) -> None:
    table = Table(title="lmgauge perf: serving (ms; vLLM definitions, docs/perf.md)")
    cols = ("point", "ok", "fail", "req/s", "out tok/s", "TTFT mean", "TTFT p99", "TPOT mean", "ITL mean")
    for col in cols + ("E2EL mean", "queue mean", "tok/chunk", "client ok"):
        table.add_column(col, justify="right")
    for r in results:
        p99 = r.get("p99_ttft_ms")
        check = r["lmgauge_self_check"]
        table.add_row(
            r["label"],
            str(r["completed"]),
            str(r["failed"]),
            f"{r['request_throughput']:.2f}",
            f"{r['output_throughput']:.1f}",
            _ms(r["mean_ttft_ms"]),
            _ms(p99),
            _ms(r["mean_tpot_ms"]),
            _ms(r["mean_itl_ms"]),
            _ms(r["mean_e2el_ms"]),
            _ms(r.get("mean_client_queue_time_ms")),
            f"{r['lmgauge_tokens_per_chunk']['mean']:.2f}" if r["lmgauge_tokens_per_chunk"]["mean"] else "-",
            "no" if check.get("client_limited") else "yes",
        )
    console.print(table)


def print_ab(result: dict) -> None:
    margin = result.get("margin", 0.05)
    table = Table(title=f"A/B at {result['point']}: B - A, paired bootstrap 95% interval, margin {margin:.0%} of A")
    for col in ("metric", "pairs", "A", "B", "B - A", "95% interval", "±margin", "verdict"):
        table.add_column(col, justify="right")
    for group in ("per_request", "per_run"):
        for name, r in result[group].items():
            if "delta" not in r:
                table.add_row(name, str(r["n"]), "", "", "", "", "", r["verdict"])
                continue
            said = r["verdict"] + (f" ({r['direction']})" if r.get("direction") else "")
            table.add_row(
                name,
                str(r["n"]),
                f"{r['mean_a']:.3f}",
                f"{r['mean_b']:.3f}",
                f"{r['delta']:+.3f}",
                f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]",
                f"{r['margin']:.3f}",
                said,
            )
    console.print(table)
    console.print(f"failed requests: A {result['failed']['A']}, B {result['failed']['B']}")
