"""Inline: every shard in this process, one model loaded at a time, progress bars on the console.
`--debug` and single-worker runs use it."""

from __future__ import annotations

import logging
import time

from lmgauge.config import RunConfig
from lmgauge.models import ModelError, build_model
from lmgauge.runs.executors import Job
from lmgauge.runs.manifest import Manifest, peak_memory
from lmgauge.runs.plan import TaskSpec
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.worker import Progress, fail_shards, run_shard_safely

log = logging.getLogger(__name__)


class InlineExecutor:
    def __init__(
        self,
        rundir: RunDir,
        cfg: RunConfig,
        specs: list[TaskSpec],
        manifest: Manifest,
        progress: Progress,
        score: bool = True,
    ) -> None:
        self.rundir = rundir
        self.models = {m.name: m for m in cfg.models}
        self.specs = {s.name: s for s in specs}
        self.manifest = manifest
        self.progress = progress
        self.score = score

    def run(self, jobs: list[Job]) -> None:
        for job in jobs:
            mcfg = self.models[job.model]
            t0 = time.perf_counter()
            try:
                model = build_model(mcfg)
            except (ModelError, OSError, ValueError) as e:
                log.error("model %s: %s", mcfg.name, e)
                self.manifest.model_loaded(mcfg.name, {"status": "failed", "error": str(e)})
                fail_shards(self.rundir, job.shards, f"model {mcfg.name}: {e}")
                continue
            self.manifest.model_loaded(mcfg.name, {**model.describe(), "load_s": round(time.perf_counter() - t0, 3)})
            try:
                for shard in job.shards:
                    run_shard_safely(model, self.specs[shard.task], shard, self.rundir, self.progress, self.score)
            finally:
                self.progress.stop()
                info = self.manifest.data["models"][mcfg.name]
                info["tokens"] = {
                    "forwarded": model.stats.forwarded,
                    "per_request_baseline": model.stats.naive,
                    "scored": model.stats.scored,
                    "requests": model.stats.requests,
                }
                info["peak_memory"] = peak_memory()
                info["eval_s"] = round(time.perf_counter() - t0, 3)
                self.manifest.save()
                del model
