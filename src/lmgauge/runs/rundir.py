"""Writing a run directory: creating it, and JSON written so that a reader never sees half a file.

Its paths are in layout.py, what its files hold in records.py, reading it in reader.py.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from lmgauge.runs.layout import RunLayout, safe_name
from lmgauge.runs.records import FORMAT, GroupResult, TaskResult, parse_result

__all__ = ["RunDir", "dumps", "safe_name", "write_json_atomic"]


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


class RunDir(RunLayout):
    """A run directory this process writes to."""

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
        self = cls(root)
        for sub in (self.samples_root, self.results_root, self.logs):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    def write_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.manifest, manifest)

    def read_manifest(self) -> dict:
        return json.loads(self.manifest.read_text(encoding="utf-8"))

    def write_results(self, model: str, task: str, result: TaskResult | GroupResult | dict) -> None:
        """A record, or a dict that must be one (checked here: the reader will read it back)."""
        record = parse_result({"format": FORMAT, **result}) if isinstance(result, dict) else result
        write_json_atomic(self.results(model, task), record.to_json())

    def iter_results(self):
        """(model dir name, task name, results dict) for every results file, sorted."""
        base = self.results_root
        for model_dir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            for f in sorted(model_dir.glob("*.json")):
                yield model_dir.name, f.stem, json.loads(f.read_text(encoding="utf-8"))
