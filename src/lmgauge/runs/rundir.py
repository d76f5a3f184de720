"""The run directory: the contract between the runner, reports and outside tools (docs/run-directory.md).

outputs/<run-id>/
  run.json                       manifest: config, task versions, package versions, git sha, timings
  samples/<model>/<task>.jsonl   one line per doc, appended as its answers arrive
  results/<model>/<task>.json    aggregated metrics (+ stderr, n), breakdowns for groups
  summary.{txt,csv,md}
  logs/
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str) -> str:
    """A model or task name usable as a file name on every system."""
    return SAFE.sub("_", name).strip("._") or "model"


def _json_default(o: Any):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_clean(obj), default=_json_default, ensure_ascii=False, indent=indent)


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, work_dir: str | Path, run_id: str | None = None) -> RunDir:
        work = Path(work_dir)
        try:
            work.mkdir(parents=True, exist_ok=True)
            probe = work / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise OSError(f"work directory {str(work)!r} is not writable: {e.strerror or e}") from e
        rid = run_id or time.strftime("%Y%m%d_%H%M%S")
        root = work / rid
        n = 1
        while run_id is None and root.exists():  # two runs in the same second
            n += 1
            root = work / f"{rid}_{n}"
        for sub in ("samples", "results", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root)

    def samples_path(self, model: str, task: str) -> Path:
        return self.root / "samples" / safe_name(model) / f"{safe_name(task)}.jsonl"

    def results_path(self, model: str, task: str) -> Path:
        return self.root / "results" / safe_name(model) / f"{safe_name(task)}.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    def write_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def read_manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_results(self, model: str, task: str, results: dict) -> None:
        write_json_atomic(self.results_path(model, task), results)

    def iter_results(self):
        """(model dir name, task name, results dict) for every results file, sorted."""
        base = self.root / "results"
        for model_dir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            for f in sorted(model_dir.glob("*.json")):
                yield model_dir.name, f.stem, json.loads(f.read_text(encoding="utf-8"))


class SampleWriter:
    """Appends one JSON line per finished doc and flushes it, so a crash loses nothing written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(dumps(record) + "\n")

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
