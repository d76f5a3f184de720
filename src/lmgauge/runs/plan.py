"""Config -> the list of tasks to run, each with its resolved options."""

from __future__ import annotations

from lmgauge.config import RunConfig
from lmgauge.runs.runner import TaskSpec
from lmgauge.tasks.registry import build, expand


def plan_tasks(cfg: RunConfig) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    seen: set[str] = set()
    for ds in cfg.datasets:
        options = ds.task_options()
        if cfg.num_fewshot is not None and ds.num_fewshot is None:
            options["num_fewshot"] = cfg.num_fewshot
        options.setdefault("seed", cfg.seed)
        limit = ds.limit if ds.limit is not None else cfg.limit
        for name, mode in expand(ds.name):
            if name in seen:
                raise ValueError(f"task {name!r} is listed twice in datasets")
            seen.add(name)
            build(name, mode, **options)  # fail now, not an hour into the run
            specs.append(TaskSpec(name, mode, options, limit, lambda n=name, m=mode, o=options: build(n, m, **o)))
    return specs
