"""BoolQ (SuperGLUE), lm-eval's prompt; the answer is " no" or " yes"."""

from __future__ import annotations

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.options import ChoiceOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def boolq_gold(doc: dict) -> int:
    # super_glue/boolq has `label` (0/1); the google/boolq copy has `answer` (bool)
    return int(doc["label"]) if "label" in doc else int(bool(doc["answer"]))


@register("boolq", ChoiceOptions, description="BoolQ, 0-shot, acc")
def make_boolq(o: ChoiceOptions) -> ChoiceTask:
    split, path = o.split, o.path
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
        num_fewshot=o.num_fewshot,
        shot_sampler="random",
        seed=o.seed,
        acc_norm=False,
        extra_settings={"split": split},
    )
