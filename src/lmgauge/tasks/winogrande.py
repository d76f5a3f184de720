"""Winogrande with partial scoring: the blank is filled with each option in the context, and the
model scores the rest of the sentence (lm-eval's formulation)."""

from __future__ import annotations

from lmgauge.tasks.base import ContextChoiceTask, DocSet
from lmgauge.tasks.options import ChoiceOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def winogrande_contexts(doc: dict) -> list[str]:
    idx = doc["sentence"].index("_")
    return [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]


def winogrande_continuation(doc: dict) -> str:
    idx = doc["sentence"].index("_") + 1
    return doc["sentence"][idx:].strip()


def winogrande_gold(doc: dict) -> int:
    return {"1": 0, "2": 1}[str(doc["answer"])]


@register("winogrande", ChoiceOptions, description="Winogrande (xl), partial scoring, acc")
def make_winogrande(o: ChoiceOptions) -> ContextChoiceTask:
    split, path = o.split, o.path
    docs = DocSet(
        f"winogrande {split}",
        lambda: disk_candidates(
            f"winogrande/winogrande_xl/{split}", ("allenai/winogrande", "winogrande_xl", split), path
        ),
        INSTALL_HINT,
        required=("sentence", "option1", "option2", "answer"),
    )
    return ContextChoiceTask(
        name="winogrande",
        docs=docs,
        prompt=lambda d: "",
        choices=winogrande_contexts,
        gold=winogrande_gold,
        contexts=winogrande_contexts,
        continuation=winogrande_continuation,
        num_fewshot=o.num_fewshot,
        shot_sampler="random",
        seed=o.seed,
        extra_settings={"split": split},
    )
