"""The executor protocol: the three executors are registered by name, a new one is a class with
@register, and whatever runs the shards, run.json's model entry comes from the markers."""

from __future__ import annotations

import logging

import pytest

from lmgauge.cli import main
from lmgauge.runs.executors import EXECUTORS, ExecutionContext, Executor, Job, executor_class, register
from lmgauge.runs.reader import TaskResult, open_run
from lmgauge.runs.worker import run_job


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_inline_pool_and_slurm_are_registered():
    for name in ("inline", "pool", "slurm"):
        cls = executor_class(name)
        assert cls.name == name and issubclass(cls, Executor)
    assert executor_class("slurm").default_workers == 32 and not executor_class("slurm").local_devices
    with pytest.raises(ValueError, match="unknown executor 'ray'; there are .*inline, pool.*slurm"):
        executor_class("ray")


def test_only_executors_that_hand_out_gpus_look_them_up(tmp_path, monkeypatch):
    """Inline builds the model here on its config's device and Slurm's GPUs come from --gres: the
    coordinator asks torch for this machine's GPUs (an import of seconds) only for the pool."""
    from lmgauge.runs import coordinator
    from lmgauge.runs.launch import RunRequest, open_run_dir, prepare
    from lmgauge.runs.manifest import Manifest
    from lmgauge.runs.worker import Progress

    assert executor_class("pool").hands_out_devices
    assert not executor_class("inline").hands_out_devices and not executor_class("slurm").hands_out_devices

    def no_lookup() -> list[str]:
        raise AssertionError("available_devices() called for an inline run")

    monkeypatch.setattr(coordinator, "available_devices", no_lookup)
    prepared = prepare(RunRequest(hf_path=str(tmp_path), datasets=["piqa"], limit=1, work_dir=str(tmp_path / "w")))
    assert prepared.opts.executor == "inline"
    rundir = open_run_dir(prepared)
    manifest = Manifest.create(rundir, prepared.cfg.model_dump(mode="json"), None)
    coordinator.execute(prepared.cfg, prepared.specs, [], rundir, manifest, prepared.opts, Progress())


CALLS: list[str] = []


@register("recording")
class RecordingExecutor(Executor):
    """A new executor in a few lines: runs each job with the worker code, says what it was asked."""

    def __init__(self, ctx: ExecutionContext) -> None:
        super().__init__(ctx)
        self.jobs: list[Job] = []

    def submit(self, jobs: list[Job]) -> None:
        CALLS.append(f"submit {len(jobs)}")
        self.jobs += jobs

    def wait(self) -> None:
        CALLS.append("wait")
        models = {m.name: m for m in self.ctx.cfg.models}
        specs = {s.name: s for s in self.ctx.specs}
        for job in self.jobs:
            self.ctx.report(job, {"pid": 1, "attempt": job.attempt, "state": "RUNNING"})
            run_job(self.ctx.rundir, models[job.model], specs, job.shards, self.ctx.progress)
            self.ctx.report(job, {"pid": 1, "attempt": job.attempt, "state": "COMPLETED"})

    def cancel(self) -> None:
        CALLS.append("cancel")


@pytest.mark.slow  # a whole run (tiny model, real data): tens of seconds on a loaded machine
def test_a_new_executor_runs_a_run_and_run_json_comes_from_markers(tmp_path, tiny_llama_dir):
    CALLS.clear()
    args = ["run", "--hf-path", str(tiny_llama_dir), "--hf-abbr", "tiny", "--datasets", "piqa", "mmlu_astronomy"]
    args += ["--limit", "2", "--num-fewshot", "1", "--executor", "recording", "--max-num-workers", "2"]
    try:
        assert main([*args, "-w", str(tmp_path)]) == 0
    finally:
        EXECUTORS.pop("recording", None)
    assert CALLS == ["submit 2", "wait"]  # two lanes of one model
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    run = open_run(root)
    assert run.manifest.executor == "recording"
    info = run.manifest.models["tiny"]
    assert info.load_s is not None and info.eval_s is not None and info.peak_memory
    assert info.tokens is not None and info.tokens.forwarded > 0
    piqa = run.result("tiny", "piqa")
    assert piqa is not None and piqa.n == 2
    per_task = [run.result("tiny", t) for t in ("piqa", "mmlu_astronomy")]
    assert info.tokens.forwarded == sum(r.tokens.forwarded for r in per_task if isinstance(r, TaskResult))
    jobs = [j.state for s in run.manifest.shards.values() for j in s.jobs]
    assert jobs.count("COMPLETED") == 2 and "RUNNING" not in jobs


def test_an_unknown_executor_is_refused_before_work(tmp_path, capsys):
    assert main(["run", "--datasets", "piqa", "--executor", "ray", "-w", str(tmp_path)]) == 2
    assert "unknown executor 'ray'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
