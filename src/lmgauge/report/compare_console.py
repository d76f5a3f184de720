"""`lmgauge compare` in the terminal: the comparison table, worst changes first."""

from __future__ import annotations

import math
import sys

from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from lmgauge.report.compare import Comparison, Row

# subjects of a large group beyond this many are left to --all, the JSON and the report
SHOW_SUBJECTS = 12


def _points(row: Row, v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    scale = 100 if (row.stats is not None and row.stats.method == "mcnemar") or abs(row.value_a or 0) <= 1 else 1
    return f"{v * scale:+.2f}"


def _value(v: float | None, row: Row) -> str:
    if v is None:
        return "-"
    if row.stats is not None and row.stats.method == "mcnemar" or 0 <= v <= 1:
        return f"{v * 100:.2f}"
    return f"{v:.4g}"


def print_comparison(cmp: Comparison, show_all: bool = False, console: Console | None = None) -> None:
    # piped output gets a wide table instead of rich's 80-column default
    console = console or Console(width=None if sys.stdout.isatty() else 180)
    for w in cmp.warnings:
        console.print(f"[bold red]WARNING[/] {escape(w)}", highlight=False)
    table = Table(title=escape(f"B - A (A = {cmp.run_a}, B = {cmp.run_b}); worst first"))
    columns: list[tuple[str, JustifyMethod]] = [
        ("level", "left"),
        ("name", "left"),
        ("metric", "left"),
        ("A", "right"),
        ("B", "right"),
        ("delta", "right"),
        ("95% interval", "right"),
        ("p", "right"),
        ("verdict", "left"),
        ("R->W", "right"),
        ("W->R", "right"),
        ("n", "right"),
    ]
    for col, justify in columns:
        table.add_column(col, justify=justify)
    rows = cmp.worst_first()
    subjects = [r for r in rows if r.level == "subject"]
    hidden = 0
    if not show_all and len(subjects) > SHOW_SUBJECTS:
        keep = set(map(id, subjects[:SHOW_SUBJECTS]))
        hidden = len(subjects) - SHOW_SUBJECTS
        rows = [r for r in rows if r.level != "subject" or id(r) in keep]
    for r in rows:
        s = r.stats
        verdict = s.verdict if s else "no paired interval"
        style = "red" if verdict == "worse" else "green" if verdict == "better" else None
        cells = [
            r.level,
            r.name,
            r.metric,
            _value(r.value_a, r),
            _value(r.value_b, r),
            _points(r, r.delta),
            f"[{_points(r, s.low)}, {_points(r, s.high)}]" if s else "-",
            f"{s.p_value:.3g}" if s and s.p_value is not None else "-",
            verdict,
            str(s.flips.right_to_wrong) if s and s.flips else "-",
            str(s.flips.wrong_to_right) if s and s.flips else "-",
            str(s.n) if s else str(r.n_a or "-"),
        ]
        table.add_row(*map(escape, cells), style=style)
    console.print(table)
    if hidden:
        console.print(f"{hidden} more subjects within the table's order: --all, --json or the report show them")
    timed = [t for t in cmp.timing if t.model_s_a or t.model_s_b]
    if timed:  # speed beside accuracy: the model's seconds per task in each run
        tt = Table(title="model time per task (s)")
        for col in ("task", "A", "B", "B/A", "A tokens/s", "B tokens/s"):
            tt.add_column(col, justify="left" if col == "task" else "right")
        for t in timed:
            ratio = t.model_s_b / t.model_s_a if t.model_s_a and t.model_s_b else None
            tt.add_row(
                escape(t.task),
                f"{t.model_s_a:.2f}" if t.model_s_a else "-",
                f"{t.model_s_b:.2f}" if t.model_s_b else "-",
                f"{ratio:.2f}x" if ratio else "-",
                f"{t.tokens_per_s_a:.0f}" if t.tokens_per_s_a else "-",
                f"{t.tokens_per_s_b:.0f}" if t.tokens_per_s_b else "-",
            )
        console.print(tt)
    r2w = sum(1 for f in cmp.flipped if f.direction == "right_to_wrong")
    console.print(
        f"flipped docs: {r2w} right->wrong, {len(cmp.flipped) - r2w} wrong->right "
        f"(binary: McNemar mid-p and Newcombe interval; others: paired bootstrap, "
        f"{cmp.n_resamples} resamples, seed {cmp.seed})",
        highlight=False,
    )
