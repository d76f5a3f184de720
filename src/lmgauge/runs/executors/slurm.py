"""Slurm: one batch job per shard (`sbatch --wrap "python -m lmgauge worker RUN_DIR SHARD"`), at
most `max_jobs` queued or running at once, each with its own log under logs/slurm/.

Job state comes from `scontrol show job` while Slurm remembers the job, then from the job
completion file (JobCompType=jobcomp/filetxt): a cluster without accounting has no usable sacct.
A job that ends without its shard's marker (time limit, node failure, killed) is resubmitted, at
most `retries` times. Ctrl-C cancels every job of the run; answers already journaled stay.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from lmgauge.runs.executors.base import ExecutionContext, Executor, Job, register
from lmgauge.runs.executors.pool import unfinished, worker_command
from lmgauge.runs.plan import Shard

log = logging.getLogger(__name__)

ENDED = {
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
}
FIELD = re.compile(r"(\w+)=(\S*)")


class SlurmError(RuntimeError):
    pass


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as e:
        raise SlurmError(f"{cmd[0]} not found: is this a Slurm login node?") from e
    if out.returncode != 0:
        raise SlurmError(f"{shlex.join(cmd)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def job_completion_file() -> Path | None:
    """JobCompLoc when JobCompType is jobcomp/filetxt."""
    conf = {}
    for line in _run(["scontrol", "show", "config"]).splitlines():  # "JobCompType             = jobcomp/filetxt"
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip()
    if conf.get("JobCompType") == "jobcomp/filetxt" and conf.get("JobCompLoc"):
        return Path(conf["JobCompLoc"])
    return None


def job_states(job_ids: list[str], completion_file: Path | None) -> dict[str, str]:
    """JobState of each job: scontrol for the jobs it still knows, else the completion file."""
    states: dict[str, str] = {}
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        f = dict(FIELD.findall(line))
        if f.get("JobId") in job_ids:
            states[f["JobId"]] = f.get("JobState", "UNKNOWN")
    missing = [j for j in job_ids if j not in states]
    if missing and completion_file is not None and completion_file.exists():
        for line in completion_file.read_text(errors="replace").splitlines():
            f = dict(FIELD.findall(line))
            if f.get("JobId") in missing:
                states[f["JobId"]] = f.get("JobState", "UNKNOWN")
    return states


@register("slurm")
class SlurmExecutor(Executor):
    default_workers = 32  # jobs queued or running at once
    local_devices = False  # a job's GPUs come from --gres
    hands_out_devices = False
    on_this_machine = False  # a job checks its node's sandbox itself
    poll_s = 1.0

    def __init__(self, ctx: ExecutionContext) -> None:
        super().__init__(ctx)
        self.rundir = ctx.rundir
        self.partition = ctx.options.partition
        self.qos = ctx.options.qos
        self.max_jobs = max(1, ctx.options.workers)
        self.retries = ctx.options.retries
        self.time_limit_min = ctx.options.time_limit_min
        self.on_job = ctx.report
        self.queue: list[Job] = []
        self.active: dict[str, Job] = {}

    @classmethod
    def jobs_for(cls, model: str, shards: list[Shard], num_devices: int, workers: int) -> list[Job]:
        return [Job(model, [s], num_devices) for s in shards]  # one batch job per shard

    def sbatch_command(self, job: Job) -> list[str]:
        cmd = [
            "sbatch",
            "--parsable",
            "-J",
            f"lmgauge-{job.shards[0].task}"[:64],
            "-N",
            "1",
            "-n",
            "1",
            "-o",
            str(self.rundir.slurm_log(job.log_name, job.attempt)),
            "-D",
            os.getcwd(),
        ]
        if self.partition:
            cmd += ["-p", self.partition]
        if self.qos:
            cmd += ["-q", self.qos]
        if job.num_devices:
            cmd += [f"--gres=gpu:{job.num_devices}"]
        if self.time_limit_min:
            cmd += [f"--time={self.time_limit_min}"]
        return cmd + ["--wrap", shlex.join(worker_command(self.rundir, job.shard_ids))]

    def _submit(self, job: Job) -> str:
        self.rundir.slurm_log(job.log_name, job.attempt).parent.mkdir(parents=True, exist_ok=True)
        job_id = _run(self.sbatch_command(job)).strip().split(";")[0]
        log.info("slurm job %s: %s (attempt %d)", job_id, ", ".join(job.shard_ids), job.attempt)
        self.on_job(job, {"job_id": job_id, "attempt": job.attempt, "state": "PENDING", "submitted": time.time()})
        return job_id

    def submit(self, jobs: list[Job]) -> None:
        self.queue += jobs

    def wait(self) -> None:
        completion = job_completion_file()
        queue, active = self.queue, self.active
        unknown: dict[str, int] = {}
        while queue or active:
            while queue and len(active) < self.max_jobs:
                job = queue.pop(0)
                active[self._submit(job)] = job
            time.sleep(self.poll_s)
            states = job_states(list(active), completion)
            for job_id in active:
                if job_id not in states:  # forgotten by scontrol and not in a completion file
                    unknown[job_id] = unknown.get(job_id, 0) + 1
                    if unknown[job_id] * self.poll_s > 120:
                        states[job_id] = "UNKNOWN_ENDED"
            for job_id, state in states.items():
                if state.split()[0] not in ENDED and state != "UNKNOWN_ENDED":
                    continue
                self._ended(active.pop(job_id), job_id, state, queue)

    def cancel(self) -> None:
        if self.active:
            log.warning("cancelling slurm jobs %s", ", ".join(self.active))
            subprocess.run(["scancel", *self.active], capture_output=True, timeout=60)
            for job_id, job in self.active.items():
                self.on_job(job, {"job_id": job_id, "attempt": job.attempt, "state": "CANCELLED"})
            self.active.clear()

    def _ended(self, job: Job, job_id: str, state: str, queue: list[Job]) -> None:
        left = unfinished(self.rundir, job)
        self.on_job(job, {"job_id": job_id, "attempt": job.attempt, "state": state, "ended": time.time()})
        if not left:
            return
        if job.attempt > self.retries:
            log.error(
                "slurm job %s ended %s; gave up after %d attempt(s) on %s",
                job_id,
                state,
                job.attempt,
                ", ".join(s.id for s in left),
            )
            return
        log.warning(
            "slurm job %s ended %s with its shard unfinished: resubmitting (retry %d of %d)",
            job_id,
            state,
            job.attempt,
            self.retries,
        )
        queue.insert(0, Job(job.model, left, job.num_devices, job.attempt + 1))
