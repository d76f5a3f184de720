"""The report room's one view of a run directory: manifest, results and samples as plain dicts.

Everything the report, the comparison and the exports know about a run comes through `load_run`,
which reads with the public reader (`lmgauge.runs.reader.open_run`: every format, format-1 runs
included), so they work on runs made here, on a cluster or by an older lmgauge, never on live
objects. Records become the dicts they were written as (`to_json`: unknown keys kept), which is
what the page's JSON and the export formats are built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmgauge.runs.reader import Run, RunDirError, open_run

NotARunDir = RunDirError  # a path that is not a run directory, or a file in one that does not parse


@dataclass
class LoadedRun:
    run: Run
    manifest: dict[str, Any]
    # model -> task -> results dict, groups (is_group) included
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _samples: dict[tuple[str, str], list[tuple[dict[str, Any], bool]]] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.root.name)

    def models(self) -> list[str]:
        return self.run.models()

    def tasks(self, model: str) -> list[str]:
        """Tasks (not groups) of a model, in plan order, failed ones included."""
        return self.run.tasks(model)

    def groups(self, model: str) -> dict[str, dict[str, Any]]:
        return {t: r for t, r in self.results.get(model, {}).items() if r.get("is_group")}

    def result(self, model: str, task: str) -> dict[str, Any] | None:
        return self.results.get(model, {}).get(task)

    def task_status(self, model: str, task: str) -> dict[str, Any]:
        return dict(self.manifest.get("tasks", {}).get(model, {}).get(task, {}))

    def _read(self, model: str, task: str) -> list[tuple[dict[str, Any], bool]]:
        key = (model, task)
        if key not in self._samples:
            self._samples[key] = [(rec.to_json(), rec.is_answer) for rec in self.run.samples(model, task)]
        return self._samples[key]

    def samples(self, model: str, task: str) -> list[dict[str, Any]]:
        """One record per doc in doc_id order: the answer where there is one, else the error line."""
        return [s for s, _ in self._read(model, task)]

    def answered(self, model: str, task: str) -> list[dict[str, Any]]:
        """The docs the model answered (error lines left out)."""
        return [s for s, ok in self._read(model, task) if ok]


def load_run(path: str | Path) -> LoadedRun:
    """Read a run directory's manifest and results; samples are read when first asked for."""
    run = open_run(path)
    loaded = LoadedRun(run=run, manifest=run.manifest.to_json())
    for model in run.models():
        loaded.results[model] = {name: res.to_json() for name, res in run.results(model).items()}
    return loaded
