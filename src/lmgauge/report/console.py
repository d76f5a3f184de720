"""What a person sees in the terminal: progress bars with ETA, the summary table, the task list."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lmgauge.report.summary import ROW_KEYS, _fmt
from lmgauge.runs.runner import Progress as ProgressBase

console = Console(stderr=True)


class RichProgress(ProgressBase):
    def __init__(self) -> None:
        self._p: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int) -> None:
        self.stop()
        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("docs"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._p is not None and self._task is not None:
            self._p.advance(self._task, n)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


FOLD_MEMBERS_OVER = 10


def print_summary(models: list[str], rows: list[dict], where: str | None = None) -> None:
    """The summary table; members of a large group (MMLU's 57 subjects) fold into the group's rows
    on the console, and the files keep every row."""
    sizes: dict[str, set[str]] = {}
    for r in rows:
        if r.get("_member_of"):
            sizes.setdefault(r["_member_of"], set()).add(r["dataset"])
    folded = {g for g, members in sizes.items() if len(members) > FOLD_MEMBERS_OVER}
    table = Table(title="lmgauge summary (accuracy in %)")
    for k in ROW_KEYS:
        table.add_column(k)
    for m in models:
        table.add_column(m, justify="right")
    for r in rows:
        if r.get("_member_of") not in folded:
            table.add_row(*[str(r[k]) for k in ROW_KEYS], *[_fmt(r[m]) for m in models])
    Console().print(table)
    if folded:
        detail = ", ".join(f"{len(sizes[g])} {g} members" for g in sorted(folded))
        Console().print(f"per-task rows of {detail} are in {where or 'summary.txt'}")


def print_task_list(pattern: str | None) -> None:
    """One row per task; families with many members (MMLU's 57 subjects) fold into one row
    unless a pattern asks for them."""
    from lmgauge.tasks.registry import REGISTRY, load_builtin_tasks

    load_builtin_tasks()
    table = Table(title="lmgauge tasks")
    for col in ("task", "modes", "data", "description"):
        table.add_column(col)
    families: dict[str, list[str]] = {}
    for name, info in sorted(REGISTRY.tasks.items()):
        if not pattern or pattern in name:
            families.setdefault(info.family, []).append(name)
    for family, names in sorted(families.items()):
        info = REGISTRY.tasks[names[0]]
        if len(names) > 5 and not pattern:
            found = sum(_data_status(n).startswith("found") for n in names)
            table.add_row(
                f"{family}_<subject> ({len(names)} tasks)",
                ",".join(info.modes),
                f"{found}/{len(names)} found",
                info.description,
            )
            continue
        for name in names:
            table.add_row(
                name, ",".join(REGISTRY.tasks[name].modes), _data_status(name), REGISTRY.tasks[name].description
            )
    Console().print(table)
    groups = [f"{g} ({len(m)})" for g, m in sorted(REGISTRY.groups.items()) if not pattern or pattern in g]
    if groups:
        Console().print("groups: " + ", ".join(groups))


def _short(where: str) -> str:
    """Paths inside site-packages shown from the package folder on."""
    marker = "site-packages/"
    return "pkg " + where.split(marker, 1)[1] if marker in where else where


def _data_status(name: str) -> str:
    from lmgauge.data.sources import HubSource
    from lmgauge.tasks.registry import build, options_schema

    tries: list[dict[str, Any]] = [{}]
    if "split" in options_schema(name).model_fields:
        tries.append({"split": "validation"})
    for options in tries:
        try:
            task = build(name, **options)
        except ValueError as e:  # an option without a default (ppl's path)
            return f"needs options: {e}"
        for src in task.docs.candidates():
            if isinstance(src, HubSource):
                continue  # asking the hub for every task would take minutes offline
            if src.exists():
                found = "found: " + _short(src.describe())
                return found if not options else f"split=validation {found}"
    return "missing"
