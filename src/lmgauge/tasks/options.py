"""The options a task takes from a dataset entry: one schema per task, checked before any work.

A schema is a pydantic model whose fields are the option names with their types and defaults; the
factory receives the validated instance and nothing else, so an option no task reads cannot slip
through. Values are strict (a string where an int is expected is an error, not a conversion):
configs are data, and "5" in YAML was quoted on purpose or by mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# the budget of a generation task whose dataset entry and benchmark set none: lm-eval's max_gen_toks
DEFAULT_MAX_OUT_LEN = 256
# keys of a dataset entry that belong to the run, not to the task (the planner reads them)
ENTRY_KEYS = ("limit",)

Shots = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]


class TaskOptions(BaseModel):
    """Base of every task's options: unknown keys and wrong types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def takes(cls) -> list[str]:
        """Every key a dataset entry of this task may set: the task's own options before those it
        shares with its kind (gsm8k's train_path before the generation options)."""
        order: list[str] = []
        for klass in cls.__mro__:
            for name in klass.__dict__.get("__annotations__", {}):
                if name in cls.model_fields and name not in order:
                    order.append(name)
        return [*ENTRY_KEYS, *order]


class ChoiceOptions(TaskOptions):
    """Multiple choice by log-likelihood with shots drawn from the evaluated split (seeded)."""

    num_fewshot: Shots = 0
    split: str = "validation"
    path: str | None = None  # a save_to_disk folder (or the layout the task documents) searched first
    seed: int = 1234


class GenerationOptions(TaskOptions):
    """What every generation task takes. `max_out_len` None: the model's `max_out_len`."""

    max_out_len: Positive | None = None
    min_out_len: Shots = 0
    chat: bool | None = None  # None: as the model is configured (its chat_template)
    fewshot_as_multiturn: bool = False
    n_samples: Positive = 1
    temperature: Annotated[float, Field(ge=0)] = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: int = 1234

    def with_budget(self, model_max_out_len: int) -> GenerationOptions:
        """These options with the model's budget where neither the entry nor the task set one."""
        if self.max_out_len is not None:
            return self
        return self.model_copy(update={"max_out_len": model_max_out_len})

    def generation(self) -> dict[str, Any]:
        """The GenerationTask fields these options set (call after with_budget)."""
        return {
            "max_new_tokens": self.max_out_len if self.max_out_len is not None else DEFAULT_MAX_OUT_LEN,
            "min_new_tokens": self.min_out_len,
            "chat": self.chat,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }


class PerplexityOptions(TaskOptions):
    style: Literal["windows", "rolling"] = "windows"
    seq_len: Annotated[int, Field(gt=1)] = 2048
    bs: Positive = 1  # windows per forward: speed and memory, never the result


class OptionError(ValueError):
    """Options a task does not take, or of the wrong type: (key, message) for each problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))


def parse_options(
    owner: str, schema: type[TaskOptions], raw: Mapping[str, Any], elsewhere: Mapping[str, str] | None = None
) -> TaskOptions:
    """raw -> schema, or OptionError naming `owner` (the entry as the user wrote it), each key, and
    the keys the task takes. `elsewhere`: key -> the variant that takes it (mmlu_gen takes max_out_len)."""
    try:
        return schema.model_validate(dict(raw))
    except ValidationError as err:
        raise OptionError([_problem(owner, schema, e, elsewhere or {}) for e in err.errors()]) from None


def _problem(owner: str, schema: type[TaskOptions], e: Any, elsewhere: Mapping[str, str]) -> tuple[str, str]:
    key = str(e["loc"][0]) if e["loc"] else ""
    takes = schema.takes()
    if e["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, takes, n=1)
        msg = f"{owner}: unknown option {key!r}" + (f" (did you mean {close[0]}?)" if close else "")
        msg += f"; it takes {', '.join(takes)}"
        if key in elsewhere:
            msg += f" ({elsewhere[key]} takes {key})"
        return key, msg
    if e["type"] == "missing":
        hint = schema.model_fields[key].description if key in schema.model_fields else None
        return key, f"{owner}: option {key!r} is required" + (f": {hint}" if hint else "")
    return key, f"{owner}: option {key!r}: {e['msg']} (got {e['input']!r})"
