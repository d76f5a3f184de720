"""Where `lmgauge perf` writes: one directory per run, `<work-dir>/<run-id>/` (docs/perf.md).

  perf.json                                        what ran: argv, options, model/server, versions, host, status
  performance_test_<model>_<device>_bs<B>.csv      in-process, one row per case (the SDK's file)
  inprocess.json                                   in-process, every case with every repeat's token times
  serving/<label>.json                             against a server: one result per sweep point, vLLM's keys + ours
  serving/<label>.requests.jsonl                   every request: send time, TTFT, chunk times and tokens, usage, error
  serving/sweep.json                               the sweep's points side by side, saturation flag
  plots/*.png, plots/*.svg

Files are rewritten whole after each case or sweep point (atomically), so a crash keeps what finished.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from lmgauge.runs.manifest import git_sha, package_versions
from lmgauge.runs.rundir import safe_name, write_json_atomic


def create(work_dir: str | Path, run_id: str | None = None) -> Path:
    """A fresh run directory under work_dir (perf_<timestamp>[_N] unless run_id is given)."""
    work = Path(work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"work directory {str(work)!r} cannot be created: {e.strerror or e}") from e
    if not os.access(work, os.W_OK):
        raise OSError(f"work directory {str(work)!r} is not writable")
    rid = run_id or time.strftime("perf_%Y%m%d_%H%M%S")
    root = work / rid
    n = 1
    while run_id is None and root.exists():  # two runs in the same second
        n += 1
        root = work / f"{rid}_{n}"
    root.mkdir(parents=True, exist_ok=run_id is not None)
    return root


class PerfManifest:
    """perf.json, rewritten at each change."""

    def __init__(self, root: Path, kind: str, options: dict[str, Any]) -> None:
        self.path = root / "perf.json"
        self._t0 = time.perf_counter()
        self.data: dict[str, Any] = {
            "format": 1,
            "kind": kind,  # "inprocess" | "serving"
            "run_id": root.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": None,
            "status": "running",
            "argv": sys.argv[1:],
            "options": options,
            "versions": package_versions(),
            "git_sha": git_sha(),
            "host": {
                "node": platform.node(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            },
        }
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.data["total_s"] = round(time.perf_counter() - self._t0, 3)
        if hasattr(os, "getloadavg"):
            self.data["host"]["load_average_at_end"] = list(os.getloadavg())
        self.save()


def sdk_csv_name(model: str, device: str, batch_size: int) -> str:
    """performance_test_<model_name>_<device_type>_bs<batch_size>.csv, as the SDKs name it."""
    return f"performance_test_{safe_name(model)}_{safe_name(device)}_bs{batch_size}.csv"


def write_csv_atomic(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
