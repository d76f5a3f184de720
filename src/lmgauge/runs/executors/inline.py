"""Inline: every shard in this process, one model loaded at a time, progress bars on the console.
`--debug` and single-worker runs use it. It runs shards exactly as a worker process does
(`run_job`), markers included."""

from __future__ import annotations

from lmgauge.runs.executors.base import ExecutionContext, Executor, Job, register
from lmgauge.runs.plan import Shard
from lmgauge.runs.worker import run_job


@register("inline")
class InlineExecutor(Executor):
    hands_out_devices = False  # the model is built here, on its config's device

    @classmethod
    def jobs_for(cls, model: str, shards: list[Shard], num_devices: int, workers: int) -> list[Job]:
        return [Job(model, shards, num_devices)]  # one process: the model loaded once

    def __init__(self, ctx: ExecutionContext) -> None:
        super().__init__(ctx)
        self.queue: list[Job] = []

    def submit(self, jobs: list[Job]) -> None:
        self.queue += jobs

    def wait(self) -> None:
        models = {m.name: m for m in self.ctx.cfg.models}
        specs = {s.name: s for s in self.ctx.specs}
        while self.queue:
            job = self.queue.pop(0)
            run_job(self.ctx.rundir, models[job.model], specs, job.shards, self.ctx.progress, self.ctx.options.score)

    def cancel(self) -> None:
        """Ctrl-C already stopped this process's shard; its journal was closed on the way out."""
        self.queue.clear()
