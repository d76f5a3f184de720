"""HellaSwag with lm-eval's text preprocessing (WikiHow [title]/[step] markers removed)."""

from __future__ import annotations

import re

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.options import ChoiceOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_doc(row: dict) -> dict:
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return {
        "query": preprocess(row["activity_label"] + ": " + ctx),
        "choices": [preprocess(e) for e in row["endings"]],
        "gold": int(row["label"]),
    }


@register("hellaswag", ChoiceOptions, description="HellaSwag, 0-shot, acc/acc_norm")
def make_hellaswag(o: ChoiceOptions) -> ChoiceTask:
    split, path = o.split, o.path
    docs = DocSet(
        f"hellaswag {split}",
        lambda: disk_candidates(f"hellaswag/none/{split}", ("Rowan/hellaswag", None, split), path),
        INSTALL_HINT,
        convert=hellaswag_doc,
    )
    return ChoiceTask(
        name="hellaswag",
        docs=docs,
        prompt=lambda d: d["query"],
        choices=lambda d: d["choices"],
        gold=lambda d: d["gold"],
        num_fewshot=o.num_fewshot,
        shot_sampler="random",
        seed=o.seed,
        extra_settings={"split": split, "preprocess": preprocess},
    )
