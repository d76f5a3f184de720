"""What a person sees in the terminal: progress bars with ETA, the summary table, the task list."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lmgauge.report.summary import ROW_KEYS, _fmt
from lmgauge.runs.runner import Progress as ProgressBase

console = Console(stderr=True)


class RichProgress(ProgressBase):
    def __init__(self) -> None:
        self._p: Progress | None = None
        self._task = None

    def start(self, description: str, total: int) -> None:
        self.stop()
        self._p = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("docs"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def print_summary(models: list[str], rows: list[dict]) -> None:
    table = Table(title="lmgauge summary (accuracy in %)")
    for k in ROW_KEYS:
        table.add_column(k)
    for m in models:
        table.add_column(m, justify="right")
    for r in rows:
        table.add_row(*[str(r[k]) for k in ROW_KEYS], *[_fmt(r[m]) for m in models])
    Console().print(table)


def print_task_list(pattern: str | None) -> None:
    from lmgauge.data import DataNotFound
    from lmgauge.tasks.registry import REGISTRY
    import lmgauge.tasks  # noqa: F401

    table = Table(title="lmgauge tasks")
    for col in ("task", "family", "modes", "data", "description"):
        table.add_column(col)
    for name, info in sorted(REGISTRY.tasks.items()):
        if pattern and pattern not in name:
            continue
        try:
            task = info.factory()
            found = _data_status(task)
        except (ValueError, DataNotFound) as e:
            found = f"needs options ({str(e).splitlines()[0][:40]})"
        table.add_row(name, info.family, ",".join(info.modes), found, info.description)
    Console().print(table)
    groups = [f"{g} ({len(m)})" for g, m in sorted(REGISTRY.groups.items()) if not pattern or pattern in g]
    if groups:
        Console().print("groups: " + ", ".join(groups))


def _data_status(task) -> str:
    from lmgauge.data.sources import HubSource

    for src in task.docs.candidates():
        if isinstance(src, HubSource):
            continue  # asking the hub for every task would take minutes offline
        if src.exists():
            return "found: " + src.describe()
    return "missing"
