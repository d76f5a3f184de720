"""Continuing a run (`-r`): which run directory, with which partition, and which shards still
have work. A journal written for another prompt or model config is set aside first."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from lmgauge.config import ModelConfig, RunConfig
from lmgauge.runs.journal import TaskJournal
from lmgauge.runs.layout import is_run_dir
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.reader import RunDirError, read_record
from lmgauge.runs.records import PlanRecord, RunManifest
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.worker import read_marker, write_marker

log = logging.getLogger(__name__)

# what changes a model's answers is everything in its config but batching, placement and scheduling
NOT_IN_MODEL_KEY = (
    "summarizer_abbr",  # a column name of OpenCompass' summary
    "max_out_len",  # the budget a task generates with is in the task's version
    "run_cfg",
    "batch_size",
    "token_budget",
    "prefix_attention",  # both ways give the same logprobs (1e-5, float noise as batching gives)
    "decode_way",  # slots and batches decode the same tokens (float noise as batching gives)
    "device",
    "concurrency",
    "timeout",
    "retries",
    "api_stream",
    "api_topk",  # the top-k path reads the same logprobs as the per-choice one
    "api_key_env",
)


def find_run(work_dir: str | Path, reuse: str) -> RunDir:
    """-r RUN: that run directory (a path or a run id in the work directory); -r alone: the latest."""
    work = Path(work_dir)
    if reuse != "latest":
        for cand in (Path(reuse), work / reuse):
            if is_run_dir(cand):
                return RunDir(cand)
        raise FileNotFoundError(f"-r {reuse}: no run directory with a run.json at {reuse!r} or {str(work / reuse)!r}")
    runs = [RunDir(p) for p in work.iterdir() if is_run_dir(p)] if work.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"-r: no previous run in {str(work)!r} to continue")
    return max(runs, key=lambda r: (r.manifest.stat().st_mtime, r.root.name))


def config_of_run(rundir: RunDir) -> dict[str, Any]:
    """The config a run was made with, as `-r` alone continues it. Format-1 run.json files hold
    every dataset option a task could take, null where not given; options are now checked per
    task, so a null (not given) is dropped rather than read as an option the task does not take."""
    manifest = read_record(rundir.manifest, RunManifest)
    config = dict(manifest.config)
    if manifest.format == 1:
        config["datasets"] = [
            {k: v for k, v in ds.items() if v is not None} if isinstance(ds, dict) else ds
            for ds in config.get("datasets") or []
        ]
    return config


def previous_partition(rundir: RunDir) -> int | None:
    """The --max-partition-size a run was planned with, so `-r` finds its shards again."""
    try:
        return read_record(rundir.plan, PlanRecord).max_partition_size
    except (OSError, RunDirError):
        return None


def model_key(m: ModelConfig) -> str:
    """What in a model's config changes its answers (not batching, placement or scheduling)."""
    d = m.model_dump(mode="json")
    for k in NOT_IN_MODEL_KEY:
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def check_journal_keys(rundir: RunDir, cfg: RunConfig, specs: list[TaskSpec], mode: str) -> None:
    """Set aside journals whose prompt version or model config changed (saying why); with
    `--mode eval` only warn, since re-scoring reads the answers as they are."""
    for m in cfg.models:
        for spec in specs:
            journal = TaskJournal(rundir, m.name, spec.name)
            key = {"task_version": spec.build(m.name).version, "model": model_key(m)}
            if mode == "eval":
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
                    rundir.stale_root(m.name),
                )


def _is_complete(rundir: RunDir, shard: Shard, spec: TaskSpec, answered: set[int]) -> bool:
    m = read_marker(rundir, shard.id)
    if not m or m.status != "done" or m.limit != spec.limit or m.n_docs is None:
        return False
    stop = m.n_docs if shard.stop is None else min(shard.stop, m.n_docs)
    return all(d in answered for d in range(shard.start, stop))


def shards_to_run(rundir: RunDir, cfg: RunConfig, specs: list[TaskSpec], shards: list[Shard], mode: str) -> list[Shard]:
    """The shards with work left; a complete one keeps its marker, which now says that nothing
    was computed for it this time. `--mode eval` runs no shard."""
    if mode == "eval":
        return []
    by_name = {s.name: s for s in specs}
    answered = {(m.name, s.name): TaskJournal(rundir, m.name, s.name).answered() for m in cfg.models for s in specs}
    todo = []
    for s in shards:
        if not _is_complete(rundir, s, by_name[s.task], answered[(s.model, s.task)]):
            rundir.marker(s.id).unlink(missing_ok=True)
            todo.append(s)
            continue
        kept = read_marker(rundir, s.id)
        if kept is not None:
            kept.reused, kept.computed = kept.reused + kept.computed, 0
            write_marker(rundir, kept)
    return todo
