"""A local pool of worker processes (`python -m lmgauge worker`), as many at once as
`--max-num-workers` and the devices allow: a worker of a model with run_cfg.num_gpus = N holds N
devices (given through CUDA_VISIBLE_DEVICES) and waits while fewer are free. On a machine without
GPUs each worker gets an equal share of the CPU threads instead.

A worker that dies (killed, out of memory) leaves shards without a marker; they are run again by a
new worker, at most `retries` times.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from lmgauge.runs.executors.base import ExecutionContext, Executor, Job, register
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.worker import read_marker

log = logging.getLogger(__name__)


def worker_command(rundir: RunDir, shard_ids: list[str]) -> list[str]:
    return [sys.executable, "-m", "lmgauge", "worker", str(rundir.root), *shard_ids]


def unfinished(rundir: RunDir, job: Job) -> list:
    return [s for s in job.shards if read_marker(rundir, s.id) is None]


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    devices: list[str]
    started: float


@register("pool")
class LocalPool(Executor):
    poll_s = 0.2

    def __init__(self, ctx: ExecutionContext) -> None:
        super().__init__(ctx)
        self.rundir = ctx.rundir
        self.max_workers = max(1, ctx.options.workers)
        self.devices = ctx.devices
        self.retries = ctx.options.retries
        self.on_job = ctx.report
        self.threads = max(1, (os.cpu_count() or 1) // self.max_workers)
        self.queue: list[Job] = []
        self.running: list[_Running] = []

    def _start(self, job: Job, devices: list[str]) -> _Running:
        path = self.rundir.worker_log(job.log_name, job.attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        else:
            env["LMGAUGE_NUM_THREADS"] = str(self.threads)
            env["OMP_NUM_THREADS"] = str(self.threads)
        with path.open("w", encoding="utf-8") as out:
            proc = subprocess.Popen(
                worker_command(self.rundir, job.shard_ids), stdout=out, stderr=subprocess.STDOUT, env=env
            )
        log.info(
            "worker %d started: %s, %d shard(s), %s",
            proc.pid,
            job.model,
            len(job.shards),
            f"devices {','.join(devices)}" if self.devices else f"{self.threads} CPU thread(s)",
        )
        self.on_job(
            job,
            {
                "pid": proc.pid,
                "attempt": job.attempt,
                "devices": devices,
                "log": str(path.relative_to(self.rundir.root)),
                "state": "RUNNING",
                "started": time.time(),
            },
        )
        return _Running(job, proc, devices, time.perf_counter())

    def submit(self, jobs: list[Job]) -> None:
        too_big = [j for j in jobs if self.devices and j.num_devices > len(self.devices)]
        if too_big:
            raise ValueError(
                f"model {too_big[0].model} needs {too_big[0].num_devices} devices per worker; this machine has {len(self.devices)}"
            )
        self.queue += jobs

    def wait(self) -> None:
        queue, running = self.queue, self.running
        free = list(self.devices)
        while queue or running:
            # start what fits: a worker slot, and its devices (jobs beyond the free devices wait)
            for job in list(queue):
                if len(running) >= self.max_workers:
                    break
                need = job.num_devices if self.devices else 0
                if need > len(free):
                    continue
                mine, free = free[:need], free[need:]
                queue.remove(job)
                running.append(self._start(job, mine))
            time.sleep(self.poll_s)
            for r in list(running):
                code = r.proc.poll()
                if code is None:
                    continue
                running.remove(r)
                free.extend(r.devices)
                self._finished(r, code, queue)

    def cancel(self) -> None:
        self._stop_all(self.running)
        self.running.clear()

    def _finished(self, r: _Running, code: int, queue: list[Job]) -> None:
        left = unfinished(self.rundir, r.job)
        state = "COMPLETED" if code == 0 and not left else f"FAILED (exit {code})"
        self.on_job(
            r.job,
            {
                "pid": r.proc.pid,
                "attempt": r.job.attempt,
                "state": state,
                "ended": time.time(),
                "wall_s": round(time.perf_counter() - r.started, 2),
            },
        )
        if not left:
            return
        if r.job.attempt > self.retries:
            log.error(
                "worker for %s gave up after %d attempt(s): %d shard(s) unfinished, see logs/workers/",
                r.job.model,
                r.job.attempt,
                len(left),
            )
            return
        log.warning(
            "worker %d exited with %d leaving %d shard(s) unfinished: retry %d of %d",
            r.proc.pid,
            code,
            len(left),
            r.job.attempt,
            self.retries,
        )
        queue.insert(0, Job(r.job.model, left, r.job.num_devices, r.job.attempt + 1))

    def _stop_all(self, running: list[_Running]) -> None:
        """Ctrl-C: workers got SIGINT from the terminal too; give them a moment to close their
        journals, then end them."""
        for r in running:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)
        deadline = time.perf_counter() + 5
        for r in running:
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
            self.on_job(r.job, {"pid": r.proc.pid, "attempt": r.job.attempt, "state": "CANCELLED"})
