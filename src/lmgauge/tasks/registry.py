"""Task names -> factories, groups of tasks, and OpenCompass-style mode suffixes (_ppl, _gen)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from lmgauge.tasks.base import Task

Factory = Callable[..., Task]


@dataclass
class TaskInfo:
    name: str
    factory: Factory
    family: str
    modes: tuple[str, ...] = ("ppl",)  # ppl: by log-likelihood; gen: by generation
    description: str = ""


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


def register(name: str, family: str | None = None, modes: tuple[str, ...] = ("ppl",), description: str = ""):
    def deco(factory: Factory) -> Factory:
        REGISTRY.add(TaskInfo(name, factory, family or name, modes, description))
        return factory

    return deco


def split_mode(name: str) -> tuple[str, str | None]:
    for mode in ("ppl", "gen"):
        if name.endswith("_" + mode):
            return name[: -len(mode) - 1], mode
    return name, None


def expand(name: str) -> list[tuple[str, str | None]]:
    """A dataset name as users write it -> [(task name, mode)]; groups expand to members."""
    import lmgauge.tasks  # noqa: F401  (registers the built-in tasks)

    base, mode = split_mode(name)
    for candidate, m in ((name, None), (base, mode)):
        if candidate in REGISTRY.tasks:
            return [(candidate, m)]
        if candidate in REGISTRY.groups:
            return [(t, m) for t in REGISTRY.groups[candidate]]
    close = difflib.get_close_matches(name, REGISTRY.names(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `lmgauge list` shows all tasks"
    raise UnknownTask(f"unknown task {name!r}{hint}")


def build(name: str, mode: str | None = None, **options) -> Task:
    info = REGISTRY.tasks[name]
    if mode is not None and mode not in info.modes:
        raise UnknownTask(
            f"task {name!r} has no {mode!r} variant (it has: {', '.join(info.modes)}); "
            + ("generation variants come with the generation benchmarks" if mode == "gen" else "")
        )
    if len(info.modes) > 1:  # one factory builds every variant (ceval: ppl and gen)
        return info.factory(mode=mode or info.modes[0], **options)
    return info.factory(**options)
