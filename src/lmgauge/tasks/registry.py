"""Task names -> factories and their option schemas, groups of tasks, and OpenCompass-style mode
suffixes (_ppl, _gen)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lmgauge.tasks.base import Task
from lmgauge.tasks.options import DEFAULT_MAX_OUT_LEN, GenerationOptions, TaskOptions, parse_options

# a factory receives its validated options (an instance of its schema) and nothing else
Factory = Callable[[Any], Task]


@dataclass(frozen=True)
class Variant:
    """One way to evaluate a task (ppl: by log-likelihood; gen: by generation)."""

    factory: Factory
    options: type[TaskOptions]


@dataclass
class TaskInfo:
    name: str
    family: str
    variants: dict[str, Variant]  # mode -> variant; the first is the default
    description: str = ""

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.variants)

    def variant(self, mode: str | None) -> Variant:
        if mode is None:
            return next(iter(self.variants.values()))
        if mode not in self.variants:
            raise UnknownTask(
                f"task {self.name!r} has no {mode!r} variant (it has: {', '.join(self.modes)}); "
                + ("generation variants come with the generation benchmarks" if mode == "gen" else "")
            )
        return self.variants[mode]


@dataclass
class Registry:
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def add(self, info: TaskInfo) -> None:
        if info.name in self.tasks:
            raise ValueError(f"task {info.name!r} registered twice")
        self.tasks[info.name] = info

    def add_group(self, name: str, members: list[str]) -> None:
        self.groups[name] = list(members)

    def names(self) -> list[str]:
        return sorted(self.tasks) + sorted(self.groups)


REGISTRY = Registry()


class UnknownTask(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is read by people
        return str(self.args[0])


def register(
    name: str,
    options: type[TaskOptions],
    family: str | None = None,
    mode: str = "ppl",
    description: str = "",
) -> Callable[[Factory], Factory]:
    """A task with one variant: `factory(options)` builds it."""

    def deco(factory: Factory) -> Factory:
        REGISTRY.add(TaskInfo(name, family or name, {mode: Variant(factory, options)}, description))
        return factory

    return deco


def register_variants(name: str, variants: dict[str, Variant], family: str, description: str = "") -> None:
    """A task evaluated either way (MMLU, C-Eval, CMMLU: ppl and gen), each with its own options."""
    REGISTRY.add(TaskInfo(name, family, dict(variants), description))


def split_mode(name: str) -> tuple[str, str | None]:
    for mode in ("ppl", "gen"):
        if name.endswith("_" + mode):
            return name[: -len(mode) - 1], mode
    return name, None


def load_builtin_tasks() -> None:
    """Register the built-in tasks (importing lmgauge.tasks does; registry is imported by them)."""
    import lmgauge.tasks  # noqa: F401 - imported for its side effect, the registrations


def expand(name: str) -> list[tuple[str, str | None]]:
    """A dataset name as users write it -> [(task name, mode)]; groups expand to members."""
    load_builtin_tasks()
    base, mode = split_mode(name)
    for candidate, m in ((name, None), (base, mode)):
        if candidate in REGISTRY.tasks:
            return [(candidate, m)]
        if candidate in REGISTRY.groups:
            return [(t, m) for t in REGISTRY.groups[candidate]]
    close = difflib.get_close_matches(name, REGISTRY.names(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `lmgauge list` shows all tasks"
    raise UnknownTask(f"unknown task {name!r}{hint}")


def options_schema(name: str, mode: str | None = None) -> type[TaskOptions]:
    """The options the task (in that mode) takes."""
    load_builtin_tasks()
    return REGISTRY.tasks[name].variant(mode).options


def parse_task_options(
    name: str, mode: str | None, options: Mapping[str, Any], owner: str | None = None
) -> TaskOptions:
    """The options validated against the task's schema; OptionError names `owner` (default: the
    task), the key and what the task takes, and the variant that takes a key this one does not."""
    load_builtin_tasks()
    info = REGISTRY.tasks[name]
    chosen = info.variant(mode)
    elsewhere: dict[str, str] = {}
    for other_mode, other in info.variants.items():
        if other is not chosen:
            for key in other.options.model_fields:
                elsewhere.setdefault(key, f"{split_mode(owner or name)[0]}_{other_mode}")
    return parse_options(owner or name, chosen.options, options, elsewhere)


def build(name: str, mode: str | None = None, *, model_max_out_len: int = DEFAULT_MAX_OUT_LEN, **options: Any) -> Task:
    """The task built from a dataset entry's options; a generation task with no budget of its own
    (neither the entry's `max_out_len` nor the benchmark's) generates `model_max_out_len` tokens."""
    parsed = parse_task_options(name, mode, options)
    if isinstance(parsed, GenerationOptions):
        parsed = parsed.with_budget(model_max_out_len)
    return REGISTRY.tasks[name].variant(mode).factory(parsed)
