"""From what the user asked (`lmgauge run` flags, a config file, `-r`) to a run: the policy that
turns a request into a validated config, a plan and a run directory, then runs it.

    prepared = prepare(RunRequest(...))      # LaunchError: a mistake of the user's, before any work
    prepared.plan_text()                     # --dry-run
    rundir = open_run_dir(prepared)          # the directory (new, or the run continued with -r)
    finished = execute_run(prepared, rundir, progress)
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lmgauge.config import ConfigError, RunConfig, read_config_file, validate
from lmgauge.runs.coordinator import RunOptions, execute
from lmgauge.runs.executors.base import available_devices, executor_class
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.plan import Shard, TaskSpec, plan_shards, plan_tasks
from lmgauge.runs.records import Mode
from lmgauge.runs.resume import config_of_run, find_run, previous_partition
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.runner import TaskOutcome
from lmgauge.runs.worker import Progress

MIN_FREE_BYTES = 64 * 2**20
JOURNAL_BYTES_PER_TOKEN = 8  # prompts are stored with their answers: about twice the text


class LaunchError(Exception):
    """What the user gave cannot run; the message says what and where. Nothing was started."""


@dataclass
class RunRequest:
    """The `lmgauge run` flags (None: not given)."""

    config: str | None = None
    hf_path: str | None = None
    abbr: str | None = None
    tokenizer_path: str | None = None
    datasets: list[str] | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    seed: int | None = None
    work_dir: str | None = None
    run_id: str | None = None
    data_dir: str | None = None
    batch_size: int | None = None
    token_budget: int | None = None
    max_seq_len: int | None = None
    dtype: str | None = None
    device: str | None = None
    bos: str | None = None
    trust_remote_code: bool = False
    debug: bool = False
    allow_weak_sandbox: bool = False
    no_report: bool = False
    models: list[str] | None = None  # OpenCompass model config names
    hf_type: str | None = None
    max_out_len: int | None = None
    oc_root: str | None = None
    api_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None
    api_type: str | None = None
    api_tokenizer: str | None = None
    api_chat: bool = False
    api_stream: bool = False
    api_topk: int | None = None
    concurrency: int | None = None
    timeout: float | None = None
    retries: int | None = None
    max_num_workers: int | None = None
    max_partition_size: int | None = None
    dry_run: bool = False
    reuse: str | None = None
    mode: Mode = "all"
    retry: int = 2
    slurm: bool = False
    executor: str | None = None
    partition: str | None = None
    qos: str | None = None
    slurm_time: int | None = None
    argv: list[str] | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunRequest:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @property
    def executor_name(self) -> str:
        if self.executor:
            return self.executor
        if self.slurm:
            return "slurm"
        return "inline" if self.debug or (self.max_num_workers or 1) <= 1 else "pool"


@dataclass
class PreparedRun:
    request: RunRequest
    cfg: RunConfig
    specs: list[TaskSpec]
    shards: list[Shard]
    opts: RunOptions
    continued: RunDir | None  # the run directory of -r

    def plan_text(self) -> str:
        from lmgauge.runs.display import format_plan

        o = self.opts
        return format_plan(self.cfg, self.shards, o.executor, o.workers, o.max_partition_size, available_devices())


@dataclass
class FinishedRun:
    status: str
    outcomes: list[TaskOutcome]
    interrupted: bool
    exit_code: int


def raw_config(req: RunRequest, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config the flags describe: the config file (or `base`, a continued run's config), models
    added by --hf-path / --api-url, model flags applied to every model, datasets and limits."""
    from lmgauge.defaults import DEFAULT_SUITE, default_model

    data = read_config_file(req.config, req.oc_root) if req.config else dict(base or {})
    models = list(data.get("models") or [])
    if req.hf_path:
        m = {"path": req.hf_path}
        if req.abbr:
            m["abbr"] = req.abbr
        models.append(m)
    if req.api_url:
        served = {
            "api_url": req.api_url,
            "api_model": req.api_model,
            "api_key_env": req.api_key_env,
            "api_type": req.api_type,
            "tokenizer_path": req.api_tokenizer,
            "api_chat": req.api_chat or None,
            "api_stream": req.api_stream or None,
            "api_topk": req.api_topk,
            "concurrency": req.concurrency,
            "timeout": req.timeout,
            "retries": req.retries,
            "abbr": None if req.hf_path else req.abbr,
        }
        models.append({k: v for k, v in served.items() if v is not None})
    overrides = {
        "tokenizer_path": req.tokenizer_path,
        "batch_size": req.batch_size,
        "token_budget": req.token_budget,
        "max_seq_len": req.max_seq_len,
        "dtype": req.dtype,
        "device": req.device,
        "bos": req.bos,
        "trust_remote_code": req.trust_remote_code or None,
    }
    if not models:
        models = [default_model()]
    models = [
        {**m, **{k: v for k, v in overrides.items() if v is not None}} if isinstance(m, dict) else m for m in models
    ]
    data["models"] = models
    if req.datasets:
        data["datasets"] = list(req.datasets)
    elif not data.get("datasets"):
        data["datasets"] = DEFAULT_SUITE
    for key in ("limit", "num_fewshot", "seed", "work_dir", "data_dir"):
        if getattr(req, key) is not None:
            data[key] = getattr(req, key)
    if req.allow_weak_sandbox:
        data["allow_weak_sandbox"] = True
    return data


def _check_model_paths(cfg: RunConfig) -> None:
    from lmgauge.models.object_store import is_remote, preflight

    for m in cfg.models:
        for p in (m.path, m.tokenizer_path):
            if is_remote(p):  # object storage: its credentials now, the download when a worker loads it
                preflight(str(p), f"model {m.name}")
        if m.backend == "hf" and not is_remote(m.path) and not Path(m.path).expanduser().exists():
            raise FileNotFoundError(
                f"model {m.name}: path {m.path!r} does not exist (an HF model folder or a .gguf file)"
            )


# a room that reads other configs (OpenCompass') turns names in the raw config into entries, and may
# set run options (workers, partition, Slurm) on the request where the command line did not
RawConfigHook = Callable[[dict[str, Any], "RunRequest"], dict[str, Any]]


def prepare(req: RunRequest, hook: RawConfigHook | None = None) -> PreparedRun:
    """Config, tasks and shards, every mistake found before anything is loaded or written."""
    from lmgauge.data.sources import set_data_dir
    from lmgauge.scoring.sandbox import SandboxUnavailable
    from lmgauge.tasks.code import prepare_sandbox
    from lmgauge.tasks.registry import UnknownTask

    req = replace(req)  # the hook and -r may fill in options: the caller's request stays as given
    try:
        if req.mode == "eval" and not req.reuse:
            raise ValueError("--mode eval re-scores the answers of a previous run: give -r [RUN]")
        continued = find_run(req.work_dir or "outputs", req.reuse) if req.reuse else None
        base = None
        if continued is not None:
            if req.max_partition_size is None:  # the same shards as before, unless asked otherwise
                req.max_partition_size = previous_partition(continued)
            if not (req.config or req.hf_path or req.datasets):  # `-r` alone: the run's own config
                base = config_of_run(continued)
        raw = raw_config(req, base)
        if hook is not None:
            raw = hook(raw, req)
        partition = req.max_partition_size
        source = req.config or (f"run.json of {continued.root}" if continued is not None else "command line")
        cfg = validate(raw, source)
        set_data_dir(cfg.data_dir)
        specs = plan_tasks(cfg)
        # code tasks' programs run where shards are scored: here, or in Slurm jobs that check their node
        executor = req.executor_name
        here = req.mode == "eval" or (req.mode == "all" and executor_class(executor).on_this_machine)
        prepare_sandbox([s.build(cfg.models[0].name) for s in specs] if here else [], cfg.allow_weak_sandbox)
        if req.mode != "eval":
            _check_model_paths(cfg)
        workers = req.max_num_workers or executor_class(executor).default_workers
        opts = RunOptions(
            executor=executor,
            workers=workers,
            max_partition_size=partition,
            mode=req.mode,
            retries=req.retry,
            partition=req.partition,
            qos=req.qos,
            slurm_time_min=req.slurm_time,
        )
        estimate = req.dry_run or bool(partition) or executor != "inline"
        shards = plan_shards(cfg, specs, partition, estimate=estimate)
    except (ConfigError, UnknownTask, FileNotFoundError, ValueError, SandboxUnavailable) as e:
        raise LaunchError(str(e)) from e
    return PreparedRun(req, cfg, specs, shards, opts, continued)


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


def open_run_dir(prepared: PreparedRun) -> RunDir:
    """The continued run's directory, or a new one where there is room for the answers."""
    try:
        check_space(prepared.continued.root if prepared.continued else prepared.cfg.work_dir, prepared.shards)
        return prepared.continued or RunDir.create(prepared.cfg.work_dir, prepared.request.run_id)
    except OSError as e:
        raise LaunchError(str(e)) from e


def execute_run(prepared: PreparedRun, rundir: RunDir, progress: Progress) -> FinishedRun:
    """The run, start to run.json's final status; the exit code the command returns."""
    import logging

    log = logging.getLogger("lmgauge")
    req, cfg = prepared.request, prepared.cfg
    start = Manifest.resume if prepared.continued is not None else Manifest.create
    manifest = start(rundir, cfg.model_dump(mode="json"), req.argv)
    log.info(
        "run directory: %s (%d tasks x %d models, %d shard(s))%s",
        rundir.root,
        len(prepared.specs),
        len(cfg.models),
        len(prepared.shards),
        f"; continuing, mode {req.mode}" if prepared.continued is not None else "",
    )
    outcomes, interrupted = execute(cfg, prepared.specs, prepared.shards, rundir, manifest, prepared.opts, progress)
    failed = sum(1 for o in outcomes if not o.ok and o.complete)
    incomplete = sum(1 for o in outcomes if not o.complete)
    status = "interrupted" if interrupted else ("incomplete" if incomplete and req.mode != "infer" else "done")
    status = status if not failed else f"{status} ({failed} task(s) failed)"
    manifest.finish(status)
    if interrupted:
        code = 130
    else:
        code = 1 if failed or (incomplete and req.mode != "infer") else 0
    return FinishedRun(status, outcomes, interrupted, code)
