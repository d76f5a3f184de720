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
