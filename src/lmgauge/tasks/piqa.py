"""PIQA, lm-eval's prompt."""

from __future__ import annotations

from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.options import ChoiceOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


@register("piqa", ChoiceOptions, description="PIQA, 0-shot, acc/acc_norm")
def make_piqa(o: ChoiceOptions) -> ChoiceTask:
    split, path = o.split, o.path
    docs = DocSet(
        f"piqa {split}",
        lambda: disk_candidates(f"piqa/plain_text/{split}", ("baber/piqa", None, split), path),
        INSTALL_HINT,
        required=("goal", "sol1", "sol2", "label"),
    )
    return ChoiceTask(
        name="piqa",
        docs=docs,
        prompt=lambda d: f"Question: {d['goal']}\nAnswer:",
        choices=lambda d: [d["sol1"], d["sol2"]],
        gold=lambda d: int(d["label"]),
        num_fewshot=o.num_fewshot,
        shot_sampler="random",
        seed=o.seed,
        extra_settings={"split": split},
    )
