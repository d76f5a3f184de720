"""One run from plan to results: write the plan, keep what the journal already has, hand the rest
to an executor, then merge shards into per-task results.

    plan.json            the config and the shards; what `lmgauge worker` reads
    shards/<id>.json     a shard's marker: done (with counts, timing, tokens) or failed (the task's error)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lmgauge.config import ModelConfig, RunConfig
from lmgauge.runs.executors import Job, lanes
from lmgauge.runs.journal import TaskJournal
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.records import FORMAT
from lmgauge.runs.rundir import RunDir, write_json_atomic
from lmgauge.runs.runner import TaskOutcome, finalize_model
from lmgauge.runs.worker import Progress, marker_path, read_marker

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 64 * 2**20
JOURNAL_BYTES_PER_TOKEN = 8  # prompts are stored with their answers: about twice the text


@dataclass
class RunOptions:
    max_num_workers: int | None = None  # None: inline; for Slurm, 32 jobs queued at once
    max_partition_size: int | None = None
    mode: str = "all"  # all | infer | eval
    retries: int = 2
    debug: bool = False
    slurm: bool = False
    partition: str | None = None
    qos: str | None = None
    slurm_time_min: int | None = None

    @property
    def executor(self) -> str:
        if self.slurm:
            return "slurm"
        return "inline" if self.debug or (self.max_num_workers or 1) <= 1 else "pool"

    @property
    def workers(self) -> int:
        return self.max_num_workers or (32 if self.slurm else 1)


def find_run(work_dir: str | Path, reuse: str) -> RunDir:
    """-r RUN: that run directory (a path or a run id in the work directory); -r alone: the latest."""
    work = Path(work_dir)
    if reuse != "latest":
        for cand in (Path(reuse), work / reuse):
            if (cand / "run.json").is_file():
                return RunDir(cand)
        raise FileNotFoundError(f"-r {reuse}: no run directory with a run.json at {reuse!r} or {str(work / reuse)!r}")
    runs = [p for p in work.iterdir() if (p / "run.json").is_file()] if work.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"-r: no previous run in {str(work)!r} to continue")
    return RunDir(max(runs, key=lambda p: ((p / "run.json").stat().st_mtime, p.name)))


def previous_partition(rundir: RunDir) -> int | None:
    """The --max-partition-size a run was planned with, so `-r` finds its shards again."""
    try:
        return json.loads((rundir.root / "plan.json").read_text(encoding="utf-8")).get("max_partition_size")
    except (OSError, ValueError):
        return None


def model_key(m: ModelConfig) -> str:
    """What in a model's config changes its answers (not batching, placement or scheduling; not
    max_out_len either: the budget a task generates with is in the task's version)."""
    d = m.model_dump(mode="json")
    for k in (
        "max_out_len",
        "run_cfg",
        "batch_size",
        "token_budget",
        "device",
        "concurrency",
        "timeout",
        "retries",
        "api_stream",
        "api_key_env",
    ):
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def available_devices() -> list[str]:
    """GPU ids this process may hand out: CUDA_VISIBLE_DEVICES when set, else every GPU torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA build, no driver: a CPU machine
        return []


def devices_per_worker(m: ModelConfig, devices: list[str], slurm: bool) -> int:
    n = m.run_cfg.get("num_gpus")
    if n is None:
        return 0 if slurm or not devices else 1
    return int(n)


def check_space(work_dir: str | Path, shards: list[Shard]) -> None:
    """Refuse to start where the answers could not be written: before any model is loaded."""
    work = Path(work_dir)
    probe_dir = work if work.exists() else next((p for p in work.parents if p.exists()), Path("."))
    need = max(MIN_FREE_BYTES, JOURNAL_BYTES_PER_TOKEN * sum(s.est_tokens or 0 for s in shards))
    free = shutil.disk_usage(probe_dir).free
    if free < need:
        raise OSError(
            f"work directory {str(work)!r}: {free / 2**20:.0f} MiB free, this run needs about {need / 2**20:.0f} MiB"
        )


def format_plan(cfg: RunConfig, shards: list[Shard], opts: RunOptions, devices: list[str]) -> str:
    lines = [
        f"plan: {len(shards)} shard(s), executor {opts.executor}"
        + (f", {opts.workers} worker(s)" if opts.executor != "inline" else "")
        + (f", max partition {opts.max_partition_size} tokens" if opts.max_partition_size else "")
    ]
    for m in cfg.models:
        n = devices_per_worker(m, devices, opts.slurm)
        lines.append(
            f"model {m.name}: {n} device(s) per worker"
            + (f"; {n * opts.workers} for {opts.workers} workers, {len(devices)} here" if n and not opts.slurm else "")
        )
    width = max((len(s.id) for s in shards), default=10)
    lines.append(f"  {'shard':<{width}}  {'docs':>6}  {'est. tokens':>11}")
    for s in shards:
        docs = "?" if s.n_docs is None else str(s.n_docs)
        cost = "?" if s.est_tokens is None else f"{s.est_tokens:,}"
        lines.append(f"  {s.id:<{width}}  {docs:>6}  {cost:>11}")
    total = sum(s.est_tokens or 0 for s in shards)
    lines.append(f"  {'total':<{width}}  {sum(s.n_docs or 0 for s in shards):>6}  {total:>11,}")
    return "\n".join(lines)


def _shard_is_complete(rundir: RunDir, shard: Shard, spec: TaskSpec, answered: set[int]) -> bool:
    m = read_marker(rundir, shard.id)
    if not m or m.get("status") != "done" or m.get("limit") != spec.limit:
        return False
    stop = m["n_docs"] if shard.stop is None else min(shard.stop, m["n_docs"])
    return all(d in answered for d in range(shard.start, stop))


def _check_journal_keys(rundir: RunDir, cfg: RunConfig, specs: list[TaskSpec], mode: str) -> None:
    for m in cfg.models:
        for spec in specs:
            journal = TaskJournal(rundir, m.name, spec.name)
            key = {"task_version": spec.build(m.name).version, "model": model_key(m)}
            if mode == "eval":  # re-scoring reads the answers as they are; say if they came from other prompts
                old = json.loads(journal.key_path().read_text()) if journal.key_path().exists() else key
                if old != key:
                    log.warning(
                        "%s | %s: answers were computed with %s, now %s; re-scoring them anyway",
                        m.name,
                        spec.name,
                        old,
                        key,
                    )
                continue
            reason = journal.check_key(key)
            if reason:
                log.warning(
                    "%s | %s: recomputed from scratch, the prompt or model config changed (%s); old answers moved to %s",
                    m.name,
                    spec.name,
                    reason,
                    journal.main.parent / ".stale",
                )


def execute(
    cfg: RunConfig,
    specs: list[TaskSpec],
    shards: list[Shard],
    rundir: RunDir,
    manifest: Manifest,
    opts: RunOptions,
    progress: Progress,
) -> tuple[list[TaskOutcome], bool]:
    """Runs what the journal lacks and finalizes every task; (outcomes, interrupted)."""
    plan = {
        "format": FORMAT,
        "config": cfg.model_dump(mode="json"),
        "mode": opts.mode,
        "max_partition_size": opts.max_partition_size,
        "shards": [s.to_json() for s in shards],
    }
    write_json_atomic(rundir.root / "plan.json", plan)
    _check_journal_keys(rundir, cfg, specs, opts.mode)
    by_name = {s.name: s for s in specs}
    answered = {(m.name, s.name): TaskJournal(rundir, m.name, s.name).answered() for m in cfg.models for s in specs}
    todo = []
    for s in shards:
        if opts.mode == "eval":
            pass
        elif not _shard_is_complete(rundir, s, by_name[s.task], answered[(s.model, s.task)]):
            marker_path(rundir, s.id).unlink(missing_ok=True)
            todo.append(s)
        else:  # kept whole: its counts now say that nothing was computed for it this time
            m = read_marker(rundir, s.id)
            m["reused"], m["computed"] = m.get("reused", 0) + m.get("computed", 0), 0
            write_json_atomic(marker_path(rundir, s.id), m)
        manifest.data.setdefault("shards", {}).setdefault(s.id, {}).update(
            {k: v for k, v in s.to_json().items() if k != "id"}
        )
    reused = len(shards) - len(todo)
    if reused:
        log.info("%d of %d shard(s) already complete in %s: kept", reused, len(shards), rundir.root)
    manifest.data["executor"] = opts.executor
    manifest.save()

    devices = available_devices()
    jobs = _jobs(cfg, todo, opts, devices)
    interrupted = False
    try:
        if jobs:
            _executor(cfg, specs, rundir, manifest, opts, progress, devices).run(jobs)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: answers already written are kept; continue with -r %s", rundir.root.name)
    except (ValueError, RuntimeError, OSError) as e:  # no devices for a worker, sbatch refused: said once, clearly
        log.error("%s", e)
        manifest.data["executor_error"] = str(e)
    if opts.executor != "inline":
        _models_from_markers(rundir, shards, manifest)
    outcomes = []
    for m in cfg.models:
        outcomes += finalize_model(rundir, m.name, specs, shards, manifest, opts.mode)
    return outcomes, interrupted


def _jobs(cfg: RunConfig, todo: list[Shard], opts: RunOptions, devices: list[str]) -> list[Job]:
    jobs = []
    for m in cfg.models:
        mine = [s for s in todo if s.model == m.name]
        if not mine:
            continue
        n = devices_per_worker(m, devices, opts.slurm)
        if opts.executor == "inline":
            jobs.append(Job(m.name, mine, n))
        elif opts.executor == "slurm":
            jobs += [Job(m.name, [s], n) for s in mine]
        else:
            jobs += [Job(m.name, lane, n) for lane in lanes(mine, opts.workers)]
    return jobs


def _executor(cfg, specs, rundir, manifest, opts, progress, devices):
    on_job = lambda job, record: manifest.job_event(job.shard_ids, record)  # noqa: E731
    if opts.executor == "slurm":
        from lmgauge.runs.executors.slurm import SlurmExecutor

        return SlurmExecutor(
            rundir,
            opts.partition,
            opts.qos,
            max_jobs=opts.workers,
            retries=opts.retries,
            time_limit_min=opts.slurm_time_min,
            on_job=on_job,
        )
    if opts.executor == "pool":
        from lmgauge.runs.executors.pool import LocalPool

        return LocalPool(rundir, opts.workers, devices, retries=opts.retries, on_job=on_job)
    from lmgauge.runs.executors.inline import InlineExecutor

    return InlineExecutor(rundir, cfg, specs, manifest, progress, score=opts.mode != "infer")


def _models_from_markers(rundir: RunDir, shards: list[Shard], manifest: Manifest) -> None:
    """run.json's model entries from what the workers reported: description and summed tokens."""
    tokens: dict[str, dict] = {}
    for s in shards:
        m = read_marker(rundir, s.id)
        if not m:
            continue
        entry = manifest.data["models"].setdefault(s.model, {})
        entry.update(m.get("model_info", {}))
        per_model = tokens.setdefault(s.model, {})
        for k, v in m.get("tokens", {}).items():
            per_model[k] = per_model.get(k, 0) + v
    for model, t in tokens.items():
        manifest.data["models"][model]["tokens"] = t
    manifest.save()
