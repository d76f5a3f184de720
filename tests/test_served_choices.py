"""Finding the questions that one next-token top-k request answers (models/served_choices.py)."""

from __future__ import annotations

from lmgauge.models.served_choices import TOPK, answer_question, find_questions
from lmgauge.models.served_prompts import ScoredPrompt

SHOTS = list(range(100, 180))  # a shared few-shot prefix of 80 tokens


def one_token(context: list[int], token: int) -> ScoredPrompt:
    return ScoredPrompt(context + [token], len(context))


def test_questions_by_shared_context_in_rounds_and_the_rest():
    q1, q2, q3 = SHOTS + [1, 2], SHOTS + [1, 3, 4], [7, 8, 9]  # q1, q2 share the shots; q3 another prefix
    prompts = [
        *(one_token(q2, t) for t in (30, 31, 32)),  # 0-2
        *(one_token(q1, t) for t in (30, 31)),  # 3-4
        *(one_token(q3, t) for t in (30, 31)),  # 5-6
        ScoredPrompt(q3 + [5, 6], len(q3)),  # 7: two tokens after q3: q3 goes per choice whole
        one_token([9, 9], 30),  # 8: alone
    ]
    rounds, rest = find_questions(prompts)
    assert rest == [5, 6, 7, 8]
    first, second = rounds
    # sorted: q1 before q2; q1 is the first with the shots, q2 reuses them in the second round
    assert [q.members for q in first] == [(3, 4)] and [q.members for q in second] == [(0, 1, 2)]
    (a,), (b,) = first, second
    assert (a.context, a.tokens, a.work) == (q1, (30, 31), len(q1) + 1)
    assert (b.context, b.tokens) == (q2, (30, 31, 32))
    assert b.work == len(q2) - (len(SHOTS) + 1) + 1  # only past the prefix q1 sent
    assert find_questions([one_token(q3, 1)]) == ([], [0])


def test_answer_question_exact_only_when_every_choice_is_returned():
    ((q,),), _ = find_questions([one_token([1, 2], t) for t in (30, 31)])
    top = {30: -0.5, 31: -1.5, 99: -0.2}  # 99: the greedy token, not a choice
    a, b = answer_question(q, top)
    assert (a.logprob, a.is_greedy, a.n_tokens, a.scored_from) == (-0.5, False, 1, TOPK)
    assert b.logprob == -1.5 and not b.is_greedy
    a, _ = answer_question(q, {30: -0.1, 31: -2.5})
    assert a.is_greedy
    assert answer_question(q, {30: -0.1, 99: -0.2}) is None  # 31 is not among them
