"""Execution of a planned run: write the plan, keep what the journal already has, hand the rest
to the executor, then read the markers into run.json and merge shards into per-task results.

    plan.json            the config and the shards; what `lmgauge worker` reads
    shards/<id>.json     a shard's marker: done (with counts, timing, tokens) or failed (the task's error)

Planning is plan.py, continuing a run resume.py, the `--dry-run` table display.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lmgauge.config import RunConfig
from lmgauge.runs.executors.base import (
    ExecutionContext,
    ExecutorOptions,
    Job,
    available_devices,
    devices_per_worker,
    executor_class,
)
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.records import Mode, PlanRecord
from lmgauge.runs.resume import check_journal_keys, shards_to_run
from lmgauge.runs.rundir import RunDir, write_json_atomic
from lmgauge.runs.runner import TaskOutcome, finalize_model
from lmgauge.runs.worker import Progress, read_marker

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    executor: str = "inline"  # a name registered in runs/executors
    workers: int = 1
    max_partition_size: int | None = None
    mode: Mode = "all"
    retries: int = 2
    partition: str | None = None
    qos: str | None = None
    slurm_time_min: int | None = None

    def executor_options(self) -> ExecutorOptions:
        return ExecutorOptions(
            workers=self.workers,
            retries=self.retries,
            score=self.mode != "infer",
            partition=self.partition,
            qos=self.qos,
            time_limit_min=self.slurm_time_min,
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
    plan = PlanRecord(
        config=cfg.model_dump(mode="json"),
        mode=opts.mode,
        max_partition_size=opts.max_partition_size,
        shards=[s.record() for s in shards],
    )
    write_json_atomic(rundir.plan, plan.to_json())
    check_journal_keys(rundir, cfg, specs, opts.mode)
    todo = shards_to_run(rundir, cfg, specs, shards, opts.mode)
    if len(shards) - len(todo) and opts.mode != "eval":
        log.info("%d of %d shard(s) already complete in %s: kept", len(shards) - len(todo), len(shards), rundir.root)
    manifest.planned(plan.shards, opts.executor)

    cls = executor_class(opts.executor)
    devices = available_devices() if cls.hands_out_devices else []
    jobs: list[Job] = []
    for m in cfg.models:
        mine = [s for s in todo if s.model == m.name]
        if mine:
            jobs += cls.jobs_for(m.name, mine, devices_per_worker(m, devices, cls.local_devices), opts.workers)
    ctx = ExecutionContext(
        rundir,
        cfg,
        specs,
        opts.executor_options(),
        devices,
        progress,
        lambda job, e: manifest.job_event(job.shard_ids, e),
    )
    interrupted = False
    if jobs:
        executor = cls(ctx)
        try:
            executor.submit(jobs)
            executor.wait()
        except KeyboardInterrupt:
            interrupted = True
            executor.cancel()
            log.warning("interrupted: answers already written are kept; continue with -r %s", rundir.root.name)
        except (ValueError, RuntimeError, OSError) as e:  # no devices for a worker, sbatch refused: said once, clearly
            log.error("%s", e)
            manifest.executor_failed(str(e))
    markers = [m for m in (read_marker(rundir, s.id) for s in shards) if m is not None]
    manifest.models_from_markers(markers)
    outcomes = []
    for m in cfg.models:
        outcomes += finalize_model(rundir, m.name, specs, shards, manifest, opts.mode)
    return outcomes, interrupted
