"""The three request kinds a backend answers, and their results.

Plain dataclasses: tasks build them, backends answer them, the runner stores them. A result whose
`error` is set carries no answer: the runner records the error on the sample and leaves the sample
out of the metrics (never scored as wrong), and the summary counts such samples. A result from a
served backend also says how long its request took (`latency`); in-process backends leave it None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class RequestLatency:
    """How long a server took over one request: its HTTP call(s) (a rolling document has one per
    window), timed from the send of each call's answering try; earlier failed tries are left out of
    the times and counted in `tries`."""

    e2el_s: float  # send to last byte, summed over the calls
    ttft_s: float | None = None  # streams: send to the first server-sent event, of the first call
    calls: int = 1
    tries: int = 1  # over all calls: more than `calls` when some were retried


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float
    is_greedy: bool  # every continuation token is the argmax given its prefix
    n_tokens: int = 0  # continuation length in tokens
    truncated: int = 0  # context tokens dropped on the left to fit max_seq_len
    error: str | None = None  # the backend could not answer (e.g. a server kept failing): not a score
    latency: RequestLatency | None = None
    # served models: what the number was read from, "prompt_logprobs" (the continuation scored in
    # its own prompt) or "next_token_topk" (one request per question, models/served_choices.py)
    scored_from: str | None = None


@dataclass(frozen=True)
class RollingRequest:
    """Log-likelihood of every token of a whole text, scored in windows.

    style "rolling" (lm-eval): windows of `window` tokens (None: the model's length), each token
    predicted once with as much past as fits. style "disjoint" (GPTQ/llmc perplexity): the text,
    tokenized with the tokenizer's own special tokens, cut into non-overlapping windows of
    `window` tokens, the remainder dropped; a window's first token is not predicted. style "whole"
    (OpenCompass' PPL): the text with the tokenizer's special tokens as one window (its last
    `window` or max-length tokens), every token after the first predicted.
    """

    text: str
    window: int | None = None
    style: str = "rolling"
    rows_per_batch: int | None = None  # windows per forward for "disjoint" (llmc's bs)


@dataclass(frozen=True)
class RollingResult:
    logprob: float
    n_tokens: int  # tokens predicted (scored)
    n_windows: int = 0
    error: str | None = None
    latency: RequestLatency | None = None


@dataclass(frozen=True)
class GenerateRequest:
    """A continuation of a prompt, stopped at any of `stop` or after `max_new_tokens`.

    `messages` is the same prompt as chat turns ((role, content) pairs); a backend uses them with
    the model's chat template when `chat` is True, or when `chat` is None and the model is
    configured for chat. temperature 0 is greedy; above 0 samples, reproducibly from `seed`.
    """

    prompt: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # end-of-sequence is not accepted before this many tokens
    messages: tuple[tuple[str, str], ...] | None = None
    chat: bool | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerateResult:
    text: str
    n_tokens: int = 0
    truncated: int = 0
    finish_reason: str = "length"  # "stop" | "length" | "eos"
    error: str | None = None
    prompt: str | None = None  # the text the model saw, when it differs from the request's (chat template)
    latency: RequestLatency | None = None


@dataclass
class TokenStats:
    """What a run forwarded through the model; kept by the engine, reported in run.json."""

    forwarded: int = 0  # tokens actually run through the model
    computed: int = 0  # positions the model computed: forwarded plus the padding of padded batches
    naive: int = 0  # tokens a per-request run (lm-eval) would forward for the same requests
    scored: int = 0  # tokens whose logprob was read
    requests: int = 0

    def add(self, other: TokenStats) -> None:
        self.forwarded += other.forwarded
        self.computed += other.computed
        self.naive += other.naive
        self.scored += other.scored
        self.requests += other.requests


def all_answered(results: Sequence[R | None]) -> list[R]:
    """Results filled in by callbacks, once every request has one (a gap is a scheduler bug)."""
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"no result for request(s) {missing[:10]} of {len(results)}")
    return [r for r in results if r is not None]
