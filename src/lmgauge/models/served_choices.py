"""One request per question: choices that are each one token after a shared context are read
from the next-token logprobs at the end of that context.

Per-choice requests (the continuation scored in its own prompt) make the server forward the whole
prompt once per choice, and vLLM computes prompt logprobs without its prefix cache. One completion
of the context with `max_tokens: 1, logprobs: k` returns the top-k log-probabilities of the next
token, the very numbers the per-choice requests read at that position, and the server's prefix
cache serves the shared few-shot prefix. The answer is exact when every choice's token is among
those returned: checked per question; a question whose choice is missing is answered by
per-choice requests instead.

A question is found from the prompts the per-choice path would send (ScoredPrompt: the hf path's
token ids, its boundary tokenization and truncation): the requests whose prompts are equal before
their scored tokens. It qualifies when each of them scores one token, so the context sent is
exactly what each choice is scored after. A question's choices take one path, all of them: their
numbers are compared with each other, and the two paths agree only to float rounding (~1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmgauge.models.served_prompts import ScoredPrompt
from lmgauge.requests import LoglikelihoodResult

TOPK = "next_token_topk"  # LoglikelihoodResult.scored_from of an answer read from a question's top-k
PROMPT = "prompt_logprobs"  # ... of one read from the continuation's own prompt


@dataclass(frozen=True)
class Question:
    """Requests (choices) that share a context and score one token each after it."""

    context: list[int]  # the prompt sent: every choice's prompt but its last token
    members: tuple[int, ...]  # the requests' indices
    tokens: tuple[int, ...]  # each choice's scored token
    truncated: int
    work: int  # tokens the server computes: those past the prefix an earlier question shares


def find_questions(prompts: Sequence[ScoredPrompt]) -> tuple[list[list[Question]], list[int]]:
    """The questions among the prompts, in rounds to send one after the other, and the indices of
    the requests that are not part of any (scored by per-choice requests).

    The first round holds each shared prefix's first question, the second the questions that
    reuse a prefix sent in the first: a prefix is computed once, before the questions that share
    it reach the server's prefix cache (requests computed at once would each compute it)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(tuple(p.ids[: p.first]), []).append(i)
    rest = []
    leaders: list[Question] = []
    followers: list[Question] = []
    previous: tuple[int, ...] = ()
    for context in sorted(groups):  # sorted: a context's longest shared prefix is with the one before it
        members = groups[context]
        # a lone continuation gains only the cache and risks a second request
        if len(members) < 2 or any(prompts[i].n_scored != 1 for i in members):
            rest.extend(members)
            continue
        shared = _common_prefix(previous, context)
        q = Question(
            list(context),
            tuple(members),
            tuple(prompts[i].ids[-1] for i in members),
            prompts[members[0]].truncated,
            len(context) - shared + 1,
        )
        (followers if 2 * shared >= len(context) else leaders).append(q)
        previous = context
    return [r for r in (leaders, followers) if r], sorted(rest)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def answer_question(q: Question, logprobs: dict[int, float]) -> list[LoglikelihoodResult] | None:
    """The choices' results from the next token's logprobs (the top-k and the greedy token, by
    id); None when a choice's token is not among them. is_greedy: the choice is the best of them,
    and the greedy token (temperature 0) is among them, so that is the argmax over the vocabulary."""
    if not logprobs or any(t not in logprobs for t in q.tokens):
        return None
    best = max(logprobs.values())
    return [LoglikelihoodResult(logprobs[t], logprobs[t] >= best, 1, q.truncated, scored_from=TOPK) for t in q.tokens]
