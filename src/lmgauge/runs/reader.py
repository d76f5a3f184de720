"""The public reader of run directories: what reports, comparisons, exports and outside tools call.

    from lmgauge.runs.reader import open_run

    run = open_run("outputs/20260101_120000")
    run.manifest.status, run.format
    for model in run.models():
        for task in run.tasks(model):
            res = run.result(model, task)          # TaskResult | None
            for s in run.samples(model, task):     # SampleRecord, by doc_id
                ...
        run.results(model)                         # every task and group result of the model

It reads every format up to records.FORMAT (format-1 directories written before records existed
included) and never writes. It needs neither torch nor a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lmgauge.runs import journal
from lmgauge.runs.layout import RunLayout, safe_name
from lmgauge.runs.records import (
    FORMAT,
    GroupResult,
    PlanRecord,
    Result,
    RunManifest,
    SampleRecord,
    ShardMarker,
    TaskResult,
    parse_result,
    with_format,
)

__all__ = ["Run", "RunDirError", "open_run", "GroupResult", "SampleRecord", "TaskResult", "RunManifest"]

R = TypeVar("R", bound=BaseModel)


class RunDirError(ValueError):
    """A path that is not a run directory, or a file in one that does not hold its record."""


def _problem(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _read_versioned(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    raw = with_format(raw)
    if not isinstance(raw["format"], int) or raw["format"] > FORMAT:
        raise RunDirError(
            f"{path}: format {raw['format']!r} was written by a newer lmgauge; this one reads formats 1 to {FORMAT}"
        )
    return raw


def read_record(path: Path, model: type[R]) -> R:
    """A versioned JSON file as its record; RunDirError naming the file and the key otherwise."""
    raw = _read_versioned(path)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise RunDirError(f"{path}: {_problem(e)}") from e


class Run:
    """One run directory, read. Names are the run's own (`run.manifest`'s model and task names);
    a name given to a method may also be its file-system form."""

    def __init__(self, root: Path, manifest: RunManifest) -> None:
        self.root = root
        self.layout = RunLayout(root)
        self.manifest = manifest

    @property
    def format(self) -> int:
        return self.manifest.format

    def models(self) -> list[str]:
        """Models in the order run.json has them (load order), then any that only left files behind."""
        names: list[str] = []
        for name in [*self.manifest.models, *self.manifest.tasks]:
            if name not in names:
                names.append(name)
        known = {safe_name(n) for n in names}
        for base in (self.layout.results_root, self.layout.samples_root):
            for d in sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
                if d not in known:
                    names.append(d)
                    known.add(d)
        return names

    def _model_key(self, model: str) -> str:
        """The manifest's name for `model` (which may be given in its file-system form)."""
        for name in [*self.manifest.tasks, *self.manifest.models]:
            if name == model or safe_name(name) == model:
                return name
        return model

    def tasks(self, model: str) -> list[str]:
        """The tasks run for a model (groups are not tasks: see `groups`), in plan order: those
        run.json lists, failed ones included, then any with only a samples or results file."""
        names = list(self.manifest.tasks.get(self._model_key(model), {}))
        groups = set(self.groups(model))
        known = {safe_name(n) for n in names} | {safe_name(g) for g in groups}
        found: list[str] = []
        found += self.layout.tasks_with_journals(model)
        rdir = self.layout.results_dir(model)
        if rdir.is_dir():
            found += [p.stem for p in rdir.glob("*.json")]
        for name in sorted(set(found)):
            if name not in known:
                names.append(name)
                known.add(name)
        return names

    def groups(self, model: str) -> list[str]:
        """Groups (e.g. mmlu) with a results file for this model."""
        rdir = self.layout.results_dir(model)
        out = []
        for p in sorted(rdir.glob("*.json")) if rdir.is_dir() else []:
            if json.loads(p.read_text(encoding="utf-8")).get("is_group"):
                out.append(p.stem)
        return out

    def samples(self, model: str, task: str) -> Iterator[SampleRecord]:
        """One record per doc, by doc_id: the merged journal, or the union of a split task's shard
        journals while it is unfinished (an answer wins over an error line for the same doc)."""
        tj = journal.TaskJournal(self.layout, model, task)
        for doc_id, (raw, _) in sorted(tj.records().items()):
            try:
                yield SampleRecord.model_validate(raw)
            except ValidationError as e:
                where = tj.main if tj.main.exists() else tj.main.parent
                raise RunDirError(f"{where}: doc {doc_id}: {_problem(e)}") from e

    def result(self, model: str, task: str) -> Result | None:
        """A task's or a group's results; None where the task has none (failed, unfinished)."""
        path = self.layout.results(model, task)
        if not path.is_file():
            return None
        try:
            return parse_result(_read_versioned(path))
        except ValidationError as e:
            raise RunDirError(f"{path}: {_problem(e)}") from e

    def results(self, model: str) -> dict[str, Result]:
        """Every results file of a model: tasks in plan order, then groups."""
        out: dict[str, Result] = {}
        for name in [*self.tasks(model), *self.groups(model)]:
            res = self.result(model, name)
            if res is not None:
                out[name] = res
        return out

    def plan(self) -> PlanRecord | None:
        return read_record(self.layout.plan, PlanRecord) if self.layout.plan.is_file() else None

    def marker(self, shard_id: str) -> ShardMarker | None:
        path = self.layout.marker(shard_id)
        return read_record(path, ShardMarker) if path.is_file() else None


def open_run(path: str | Path) -> Run:
    """A run directory, read: RunDirError naming the path if it is not one."""
    root = Path(path)
    layout = RunLayout(root)
    if not root.is_dir():
        raise RunDirError(f"{root}: no such run directory")
    if not layout.manifest.is_file():
        raise RunDirError(f"{root}: not a run directory (no run.json)")
    return Run(root, read_record(layout.manifest, RunManifest))
