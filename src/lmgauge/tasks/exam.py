"""Four-option exam questions (MMLU, C-Eval, CMMLU) in both variants users compare:

ppl: the letter with the highest log-likelihood after the prompt (lm-eval's multiple_choice);
gen: the model writes its answer and the letter is read from it (scoring/extract.choice_letter).

Both share the prompt and the few-shot block, so the two numbers differ only by how the answer
is taken. A gen variant's task name ends in `_gen` and its group too (`ceval_gen`), so both variants
can sit in one run directory.
"""

from __future__ import annotations

from collections.abc import Callable

from lmgauge.scoring.extract import choice_letter
from lmgauge.tasks.base import ChoiceTask, Doc, DocSet, Task
from lmgauge.tasks.generation import GenerationTask
from lmgauge.tasks.options import GenerationOptions, Positive, Shots, TaskOptions

LETTERS = "ABCD"


class ExamOptions(TaskOptions):
    """The ppl variant: the first n dev questions as shots."""

    num_fewshot: Shots = 5
    path: str | None = None  # a folder in the benchmark's official layout, searched first
    seed: int = 1234


class ExamGenOptions(GenerationOptions):
    """The gen variant: the same prompt, and a letter is all the answer needs."""

    num_fewshot: Shots = 5
    path: str | None = None
    max_out_len: Positive | None = 32  # the benchmark's own budget: the model's max_out_len does not apply


def exam_prompt(question: str, options: list[str], answer_cue: str) -> str:
    return f"{question.strip()}\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\n{answer_cue}"


def letter_scorer(options: Callable[[Doc], list[str]], gold: Callable[[Doc], int]):
    def score(doc: Doc, output: str) -> dict:
        letter = choice_letter(output, LETTERS, options(doc))
        return {
            "extracted": {"letter": letter},
            "pred": letter,
            "metrics": {"acc": float(letter == LETTERS[gold(doc)])},
        }

    return score


def exam_task(
    o: ExamOptions | ExamGenOptions,
    *,
    name: str,
    group: str,
    docs: DocSet,
    shots: DocSet | None,
    header: str,
    prompt: Callable[[Doc], str],
    options: Callable[[Doc], list[str]],
    gold: Callable[[Doc], int],
    subject: str,
    category: str | None,
    gen_stop: tuple[str, ...] = ("\n",),
) -> Task:
    """The exam question as a generation task (ExamGenOptions) or a log-likelihood one."""
    if isinstance(o, ExamGenOptions):
        return GenerationTask(
            name=f"{name}_gen",
            docs=docs,
            shots=shots,
            header=header,
            prompt=prompt,
            target=lambda d: LETTERS[gold(d)],
            scorer=letter_scorer(options, gold),
            metrics=("acc",),
            num_fewshot=o.num_fewshot,
            stop=gen_stop,
            group=f"{group}_gen",
            subject=subject,
            category=category,
            **o.generation(),
        )
    return ChoiceTask(
        name=name,
        docs=docs,
        shots=shots,
        header=header,
        prompt=prompt,
        choices=lambda d: list(LETTERS),
        gold=gold,
        num_fewshot=o.num_fewshot,
        shot_sampler="first_n",
        seed=o.seed,
        acc_norm=False,
        group=group,
        subject=subject,
        category=category,
    )
