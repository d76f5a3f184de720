"""BoolQ (SuperGLUE), lm-eval's prompt; the answer is " no" or " yes"."""

from __future__ import annotations

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def boolq_gold(doc: dict) -> int:
    # super_glue/boolq has `label` (0/1); the google/boolq copy has `answer` (bool)
    return int(doc["label"]) if "label" in doc else int(bool(doc["answer"]))


def make_boolq(
    split: str = "validation", num_fewshot: int = 0, path: str | None = None, seed: int = 1234, **_
) -> ChoiceTask:
    docs = DocSet(
        f"boolq {split}",
        lambda: disk_candidates(f"boolq/none/{split}", ("super_glue", "boolq", split), path),
        INSTALL_HINT,
        required=("passage", "question"),
    )
    return ChoiceTask(
        name="boolq",
        docs=docs,
        prompt=lambda d: f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:",
        choices=lambda d: ["no", "yes"],
        gold=boolq_gold,
        num_fewshot=num_fewshot,
        shot_sampler="random",
        seed=seed,
        acc_norm=False,
        extra_settings={"split": split},
    )


register("boolq", description="BoolQ, 0-shot, acc")(make_boolq)
