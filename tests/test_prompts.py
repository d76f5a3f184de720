"""Exact prompt strings: the context and continuations each task sends, written out by hand
from lm-evaluation-harness' task definitions."""

from __future__ import annotations

from lmgauge.requests import LoglikelihoodRequest
from lmgauge.tasks import build
from lmgauge.tasks.arc import arc_choices, arc_gold, arc_prompt
from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.hellaswag import hellaswag_doc, preprocess
from lmgauge.tasks.lambada import lambada_doc
from lmgauge.tasks.mmlu import MMLU_SUBJECTS, mmlu_choices, mmlu_gold, mmlu_prompt

MMLU_DOC = {"question": "  What is 2+2?  ", "choices": ["3", "4", "5", "22"], "answer": 1}
SHOT1 = {"question": "What is 1+1?", "choices": ["2", "3", "4", "5"], "answer": 0}
SHOT2 = {"question": "Which is prime?", "choices": ["4", "6", "7", "9"], "answer": 2}


def _loaded(task: ChoiceTask, docs, shots) -> ChoiceTask:
    task.docs = DocSet("docs", lambda: [])
    task._shot_docs = shots
    return task


def test_mmlu_prompt_zero_and_few_shot():
    assert mmlu_prompt(MMLU_DOC) == "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    task = build("mmlu_high_school_us_history", num_fewshot=2)
    _loaded(task, [MMLU_DOC], [SHOT1, SHOT2, MMLU_DOC])
    reqs = task.requests(MMLU_DOC, 0)
    expected_ctx = (
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
        "What is 1+1?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer: A\n\n"
        "Which is prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer: C\n\n"
        "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    )
    assert reqs == [LoglikelihoodRequest(expected_ctx, f" {x}") for x in "ABCD"]
    assert task.category == "humanities" and task.group == "mmlu"


def test_mmlu_first_n_shots_are_the_same_for_every_question():
    task = _loaded(build("mmlu_astronomy", num_fewshot=2), [], [SHOT1, SHOT2, MMLU_DOC])
    assert task.shots_for(0) == task.shots_for(7) == [SHOT1, SHOT2]


def test_mmlu_has_57_subjects_in_4_categories():
    assert len(MMLU_SUBJECTS) == 57
    assert set(MMLU_SUBJECTS.values()) == {"stem", "humanities", "social_sciences", "other"}
    assert mmlu_choices(MMLU_DOC) == ["A", "B", "C", "D"] and mmlu_gold(MMLU_DOC) == 1


def test_arc_prompt():
    doc = {
        "question": "Which gas do plants take in?",
        "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["1", "2", "3"]},
        "answerKey": "2",
    }
    assert arc_prompt(doc) == "Question: Which gas do plants take in?\nAnswer:"
    assert arc_choices(doc) == ["oxygen", "carbon dioxide", "helium"]
    assert arc_gold(doc) == 1
    task = build("arc_challenge")
    assert task.requests(doc, 0)[1] == LoglikelihoodRequest(
        "Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"
    )


def test_hellaswag_preprocessing():
    row = {
        "activity_label": "Making a cake",
        "ctx_a": "A woman stands in a kitchen. [title] She",
        "ctx_b": "mixes flour  [step] and eggs.",
        "endings": [" pours it [header] into a pan.", "eats the bowl."],
        "label": "0",
    }
    doc = hellaswag_doc(row)
    assert (
        doc["query"] == "Making a cake: A woman stands in a kitchen.. She Mixes flour  and eggs."
    )  # "  " -> " " once, as lm-eval
    assert doc["choices"] == ["pours it into a pan.", "eats the bowl."]
    assert doc["gold"] == 0
    assert preprocess("  a [title] b  ") == "a. b"


def test_piqa_boolq_prompts():
    piqa = build("piqa")
    doc = {"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Hit it.", "label": 0}
    assert piqa.requests(doc, 0) == [
        LoglikelihoodRequest("Question: Open a jar\nAnswer:", " Twist the lid."),
        LoglikelihoodRequest("Question: Open a jar\nAnswer:", " Hit it."),
    ]
    boolq = build("boolq")
    doc = {"passage": "Cats are mammals.", "question": "is a cat a mammal", "answer": True}
    assert boolq.requests(doc, 0) == [
        LoglikelihoodRequest("Cats are mammals.\nQuestion: is a cat a mammal?\nAnswer:", " no"),
        LoglikelihoodRequest("Cats are mammals.\nQuestion: is a cat a mammal?\nAnswer:", " yes"),
    ]
    assert boolq.gold(doc) == 1 and boolq.gold({"label": 0}) == 0
    assert boolq.metric_names() == ["acc"]


def test_winogrande_partial_scoring():
    task = build("winogrande")
    doc = {
        "sentence": "Sarah was a better surgeon than Maria so _ got the easier cases.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "2",
    }
    assert task.requests(doc, 0) == [
        LoglikelihoodRequest("Sarah was a better surgeon than Maria so Sarah", " got the easier cases."),
        LoglikelihoodRequest("Sarah was a better surgeon than Maria so Maria", " got the easier cases."),
    ]
    assert task.gold(doc) == 1 and task.metric_names() == ["acc"]


def test_lambada_split_at_last_space():
    task = build("lambada_openai")
    doc = lambada_doc({"query": "He looked at the", "answers_text": ["stars"]})
    assert doc == {"text": "He looked at the stars"}
    assert task.requests(doc, 0) == [LoglikelihoodRequest("He looked at the", " stars")]
    assert task.requests({"text": "a b  c"}, 0) == [LoglikelihoodRequest("a b ", " c")]


def test_versions_are_stable_and_change_with_prompt_settings():
    a, b = build("mmlu_astronomy"), build("mmlu_astronomy")
    assert a.version == b.version and len(a.version) == 8
    assert build("mmlu_astronomy", num_fewshot=0).version != a.version
    assert build("mmlu_anatomy").version != a.version  # the header names the subject
    assert build("arc_easy", split="validation").version != build("arc_easy").version
