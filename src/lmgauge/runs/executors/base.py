"""What an executor is: it is given jobs (the shards of one model that one worker runs), runs them
until each has ended, can be cancelled, and reports every attempt it makes.

Every executor ends a shard the same way: a worker (`run_job`, in this process or in
`python -m lmgauge worker RUN_DIR SHARD...`) writes the shard's marker. The coordinator reads
markers, never an executor's own bookkeeping, so run.json is written by one path whatever ran the
shards.

Adding an executor is one file in this package: a subclass of Executor decorated with
`@register("name")`; `--executor name` then selects it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.rundir import RunDir

if TYPE_CHECKING:
    from lmgauge.config import ModelConfig, RunConfig
    from lmgauge.runs.worker import Progress


@dataclass
class Job:
    model: str
    shards: list[Shard]
    num_devices: int = 0  # devices one worker of this model holds (its run_cfg.num_gpus)
    attempt: int = 1
    log_name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.log_name:
            self.log_name = (
                self.shards[0].id if len(self.shards) == 1 else f"{self.shards[0].id}+{len(self.shards) - 1}"
            )

    @property
    def shard_ids(self) -> list[str]:
        return [s.id for s in self.shards]


def lanes(shards: list[Shard], n: int) -> list[list[Shard]]:
    """Shards of one model dealt to n workers, largest first onto the least loaded one (LPT), each
    worker's list back in plan order."""
    n = max(1, min(n, len(shards)))
    load = [0] * n
    dealt: list[list[Shard]] = [[] for _ in range(n)]
    order = {s.id: i for i, s in enumerate(shards)}
    for s in sorted(shards, key=lambda s: -(s.est_tokens or 1)):
        i = load.index(min(load))
        dealt[i].append(s)
        load[i] += s.est_tokens or 1
    return [sorted(d, key=lambda s: order[s.id]) for d in dealt if d]


@dataclass
class ExecutorOptions:
    """What the command line says about execution; an executor reads the fields it needs."""

    workers: int = 1  # worker processes, or jobs queued at once
    retries: int = 2  # times a job whose process died is run again
    score: bool = True  # False for --mode infer
    partition: str | None = None  # Slurm
    qos: str | None = None
    time_limit_min: int | None = None


@dataclass
class ExecutionContext:
    """Everything an executor is built with (one signature for all)."""

    rundir: RunDir
    cfg: RunConfig
    specs: list[TaskSpec]
    options: ExecutorOptions
    devices: list[str]  # GPU ids this process may hand out
    progress: Progress
    report: Callable[[Job, dict[str, Any]], None] = lambda job, event: None  # an attempt started / ended


class Executor(ABC):
    name: ClassVar[str]
    default_workers: ClassVar[int] = 1  # when --max-num-workers is not given
    local_devices: ClassVar[bool] = True  # hands out this machine's GPUs (Slurm's come from --gres)
    on_this_machine: ClassVar[bool] = True  # workers run here: this machine's sandbox is theirs
    # reads this machine's GPU ids (ctx.devices, a job's num_devices) to hand them out; one that
    # builds the model in this process on its config's device does not, and the lookup imports torch
    hands_out_devices: ClassVar[bool] = True

    def __init__(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx

    @classmethod
    def jobs_for(cls, model: str, shards: list[Shard], num_devices: int, workers: int) -> list[Job]:
        """How a model's shards become jobs: by default dealt to `workers` lanes by cost."""
        return [Job(model, lane, num_devices) for lane in lanes(shards, workers)]

    @abstractmethod
    def submit(self, jobs: list[Job]) -> None:
        """Queue jobs; they may start now or in wait()."""

    @abstractmethod
    def wait(self) -> None:
        """Run until every job has ended, retrying those whose process died (a shard without a
        marker) at most `options.retries` times. KeyboardInterrupt passes through."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop what is still running (after Ctrl-C); answers already written stay."""


EXECUTORS: dict[str, type[Executor]] = {}


def register(name: str) -> Callable[[type[Executor]], type[Executor]]:
    def add(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        EXECUTORS[name] = cls
        return cls

    return add


def executor_class(name: str) -> type[Executor]:
    """The executor registered under `name`; every module of this package is imported first, so
    a new file registers itself."""
    import lmgauge.runs.executors as package

    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name != "base":
            importlib.import_module(f"{package.__name__}.{mod.name}")
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; there are {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name]


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


def devices_per_worker(m: ModelConfig, devices: list[str], local_devices: bool) -> int:
    n = m.run_cfg.get("num_gpus")
    if n is None:
        return 1 if local_devices and devices else 0
    return int(n)
