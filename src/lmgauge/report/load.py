"""The report's one view of a run directory: manifest, results and per-doc samples as plain dicts.

Everything the report, the comparison and the exports know about a run comes through `load_run`, so
they work on any run directory (made here, on a cluster, or by an older lmgauge) and never on live
objects. It reads the files docs/run-directory.md describes; when `lmgauge.runs.reader` lands this is
the single place to switch to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmgauge.runs.journal import TaskJournal, is_answer
from lmgauge.runs.rundir import RunDir


class NotARunDir(ValueError):
    """The path is not a run directory (no run.json and no results/)."""


@dataclass
class LoadedRun:
    root: Path
    manifest: dict[str, Any]
    # model -> task -> results dict, groups (is_group) included
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _samples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.root.name)

    def models(self) -> list[str]:
        names = list(self.results)
        for m in self.manifest.get("tasks", {}):
            if m not in names:
                names.append(m)
        return names

    def tasks(self, model: str) -> list[str]:
        """Tasks (not groups) of a model that have results or a manifest entry, in results order."""
        names = [t for t, r in self.results.get(model, {}).items() if not r.get("is_group")]
        for t in self.manifest.get("tasks", {}).get(model, {}):
            if t not in names and t not in self.groups(model):
                names.append(t)
        return names

    def groups(self, model: str) -> dict[str, dict[str, Any]]:
        return {t: r for t, r in self.results.get(model, {}).items() if r.get("is_group")}

    def result(self, model: str, task: str) -> dict[str, Any] | None:
        return self.results.get(model, {}).get(task)

    def task_status(self, model: str, task: str) -> dict[str, Any]:
        return dict(self.manifest.get("tasks", {}).get(model, {}).get(task, {}))

    def samples(self, model: str, task: str) -> list[dict[str, Any]]:
        """One record per doc in doc_id order: the answer where there is one, else the error line."""
        return self._samples.setdefault((model, task), self._read_samples(model, task))

    def _read_samples(self, model: str, task: str) -> list[dict[str, Any]]:
        records = TaskJournal(RunDir(self.root), model, task).records()
        return [rec for _, (rec, _) in sorted(records.items())]

    def answered(self, model: str, task: str) -> list[dict[str, Any]]:
        return [r for r in self.samples(model, task) if is_answer(r)]


def load_run(path: str | Path) -> LoadedRun:
    """Read a run directory's manifest and results; samples are read when asked for."""
    root = Path(path)
    manifest_path, results_dir = root / "run.json", root / "results"
    if not root.is_dir() or not (manifest_path.is_file() or results_dir.is_dir()):
        raise NotARunDir(f"{root}: not a run directory (no run.json or results/ in it)")
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise NotARunDir(f"{manifest_path}: not valid JSON ({e})") from e
    run = LoadedRun(root=root, manifest=manifest)
    if results_dir.is_dir():
        for model_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()):
            for f in sorted(model_dir.glob("*.json")):
                try:
                    run.results.setdefault(model_dir.name, {})[f.stem] = json.loads(f.read_text(encoding="utf-8"))
                except json.JSONDecodeError as e:
                    raise NotARunDir(f"{f}: not valid JSON ({e})") from e
    return run
