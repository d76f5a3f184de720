"""Config -> tasks -> shards: one model, one task, a contiguous range of docs.

Ranges are contiguous so merging shards keeps doc order and gives what an unsharded run gives.
`--max-partition-size` cuts a task by estimated tokens (prompt characters / 4, continuations and
generation budgets included), not by rows: a 5-shot MMLU question costs far more than a PIQA one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lmgauge.config import RunConfig
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest
from lmgauge.runs.layout import safe_name
from lmgauge.runs.records import ShardRecord
from lmgauge.tasks.base import Task
from lmgauge.tasks.registry import build, expand, options_schema

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # a plan-time estimate: no tokenizer is loaded to plan


@dataclass
class TaskSpec:
    """One task to run, with the options it was built from (recorded in run.json)."""

    name: str
    mode: str | None
    options: dict
    limit: int | None
    build: Callable[[str], Task]  # model name -> the task as that model runs it (its max_out_len)


@dataclass
class Shard:
    model: str
    task: str
    start: int
    stop: int | None  # None: to the end of the task's docs (after --limit)
    whole: bool  # the only shard of its task: journals straight into samples/<model>/<task>.jsonl
    est_tokens: int | None = None
    n_docs: int | None = None

    @property
    def id(self) -> str:
        end = "end" if self.stop is None else str(self.stop)
        return f"{safe_name(self.model)}__{safe_name(self.task)}__{self.start}-{end}"

    def record(self) -> ShardRecord:
        return ShardRecord(id=self.id, **asdict(self))

    def to_json(self) -> dict:
        return self.record().to_json()

    @classmethod
    def from_json(cls, d: ShardRecord | dict) -> Shard:
        r = d if isinstance(d, ShardRecord) else ShardRecord.model_validate(d)
        return cls(r.model, r.task, r.start, r.stop, r.whole, r.est_tokens, r.n_docs)


def plan_tasks(cfg: RunConfig) -> list[TaskSpec]:
    """The run's tasks with their options: the entry's own, then the run's num_fewshot and seed for
    the tasks that take them. A run-level num_fewshot no task takes is an error; one some tasks do
    not take is said."""
    specs: list[TaskSpec] = []
    seen: set[str] = set()
    budgets = {m.name: m.max_out_len for m in cfg.models}
    seq_lens = {m.name: m.max_seq_len for m in cfg.models}
    no_shots: list[str] = []
    for ds in cfg.datasets:
        limit = ds.limit if ds.limit is not None else cfg.limit
        if ds.opencompass is not None:  # an OpenCompass dataset entry builds its own task
            from lmgauge.opencompass.config_reader import build_task as build_oc_task

            if ds.name in seen:
                raise ValueError(f"task {ds.name!r} is listed twice in datasets")
            seen.add(ds.name)

            def build_entry(_model: str, n: str = ds.name, entry: Any = ds.opencompass) -> Task:
                # its entry sets the budget; the model's max_seq_len is where in-context examples drop
                return build_oc_task(n, entry, max_seq_len=seq_lens.get(_model))

            specs.append(TaskSpec(ds.name, None, {}, limit, build_entry))
            continue
        for name, mode in expand(ds.name):
            if name in seen:
                raise ValueError(f"task {name!r} is listed twice in datasets")
            seen.add(name)
            takes = options_schema(name, mode).model_fields
            options = ds.options
            if cfg.num_fewshot is not None and "num_fewshot" not in options:
                if "num_fewshot" in takes:
                    options["num_fewshot"] = cfg.num_fewshot
                else:
                    no_shots.append(name)
            if "seed" in takes:
                options.setdefault("seed", cfg.seed)
            build(name, mode, **options)  # fail now, not an hour into the run

            def build_for(model: str, n: str = name, m: str | None = mode, o: dict = options) -> Task:
                return build(n, m, model_max_out_len=budgets[model], **o)

            specs.append(TaskSpec(name, mode, options, limit, build_for))
    if no_shots and len(no_shots) == len(specs):
        raise ValueError(f"num_fewshot {cfg.num_fewshot}: none of the tasks takes it ({', '.join(no_shots)})")
    if no_shots:
        log.warning("num_fewshot %s does not apply to %s (no few-shot examples)", cfg.num_fewshot, ", ".join(no_shots))
    return specs


def doc_cost(requests: list) -> int:
    """Estimated tokens to answer one doc's requests (a shared context counts once: the engine reuses it)."""
    chars = 0
    contexts_seen: set[str] = set()
    for r in requests:
        if isinstance(r, LoglikelihoodRequest):
            if r.context not in contexts_seen:
                contexts_seen.add(r.context)
                chars += len(r.context)
            chars += len(r.continuation)
        elif isinstance(r, RollingRequest):
            chars += len(r.text)
        elif isinstance(r, GenerateRequest):
            chars += len(r.prompt) + CHARS_PER_TOKEN * r.max_new_tokens
        else:
            chars += len(str(r))
    return max(1, chars // CHARS_PER_TOKEN)


def task_costs(spec: TaskSpec, model: str) -> list[int] | None:
    """Per-doc cost of a task's docs (after --limit) for a model; None when its data cannot be read
    (the worker reports that error in its place)."""
    try:
        task = spec.build(model)
        docs, _ = task.load()
        if spec.limit is not None:
            docs = docs[: spec.limit]
        return [doc_cost(task.requests(doc, i)) for i, doc in enumerate(docs)]
    except Exception as e:  # noqa: BLE001 - any failure here is the task's, reported when it runs
        log.debug("cannot estimate %s: %s", spec.name, e)
        return None


def split_by_cost(costs: list[int], max_size: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges, each at most max_size (a single doc over it stands alone)."""
    ranges, start, acc = [], 0, 0
    for i, c in enumerate(costs):
        if i > start and acc + c > max_size:
            ranges.append((start, i))
            start, acc = i, 0
        acc += c
    if start < len(costs):
        ranges.append((start, len(costs)))
    return ranges


def plan_shards(
    cfg: RunConfig, specs: list[TaskSpec], max_partition_size: int | None = None, estimate: bool = True
) -> list[Shard]:
    """Every (model, task) as one shard, or several when its estimated cost exceeds max_partition_size."""
    per_task: dict[tuple[str, str], list[int] | None] = {}  # (task, version): models with one budget share it
    shards: list[Shard] = []
    for m in cfg.models:
        for s in specs:
            costs = None
            if estimate or max_partition_size:
                key = (s.name, s.build(m.name).version)
                if key not in per_task:
                    per_task[key] = task_costs(s, m.name)
                costs = per_task[key]
            if costs is None:
                shards.append(Shard(m.name, s.name, 0, None, True))
                continue
            ranges = split_by_cost(costs, max_partition_size) if max_partition_size else [(0, len(costs))]
            for a, b in ranges:
                whole = len(ranges) == 1
                shards.append(Shard(m.name, s.name, a, None if whole else b, whole, sum(costs[a:b]), b - a))
    return shards
