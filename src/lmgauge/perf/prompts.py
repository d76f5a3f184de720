"""Prompts of an exact token length, shared by the in-process and the serving benchmarks.

A random id sequence does not in general survive decode -> encode: byte-level BPE merges neighbours
differently, so 128 random ids can come back as 131. Random prompts here draw from the vocabulary's
word tokens (a space or word-start marker and letters) that encode back to themselves: the
pre-tokenizer splits a text made of them at the same places, so it re-encodes to the same ids. Every
prompt is then checked as vLLM's random dataset does (decode, re-encode, cut or pad, again); one that
does not settle is an error, never a silently shorter or longer prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TRIES = 30
MIN_WORD_POOL = 256  # fewer word tokens than this: draw from every non-special id instead
_WORD = re.compile(r"^[ \u2581]?[A-Za-z]{2,}$")  # " word" (byte-level BPE) or "\u2581word" (SentencePiece)


class PromptError(ValueError):
    """No prompt of the asked length could be made; the message says which length and why."""


@dataclass(frozen=True)
class Prompt:
    text: str
    ids: tuple[int, ...]  # encode(text), without the special tokens a server adds


def allowed_ids(tokenizer: Any) -> np.ndarray:
    """Every id of the base vocabulary that is not a special token."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab = int(tokenizer.vocab_size)
    return np.array([i for i in range(vocab) if i not in special], dtype=np.int64)


def word_ids(tokenizer: Any) -> np.ndarray:
    """Word tokens that decode to " letters" and encode back to themselves (falls back to allowed_ids)."""
    ids = allowed_ids(tokenizer)
    texts = tokenizer.batch_decode([[int(i)] for i in ids], skip_special_tokens=False)
    cand = [(int(i), t) for i, t in zip(ids, texts) if t.startswith((" ", "\u2581")) and _WORD.match(t)]
    if not cand:
        return ids
    enc = tokenizer([t for _, t in cand], add_special_tokens=False).input_ids
    pool = [i for (i, _), e in zip(cand, enc) if list(e) == [i]]
    return np.array(pool, dtype=np.int64) if len(pool) >= MIN_WORD_POOL else ids


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def settle(tokenizer: Any, ids: Sequence[int], n: int, rng: np.random.Generator, pool: np.ndarray) -> Prompt:
    """A text of exactly n tokens grown from `ids`: decode, re-encode, cut or pad, until it holds."""
    if n < 1:
        raise PromptError(f"a prompt needs at least 1 token, asked for {n}")
    seq = list(ids)
    for _ in range(MAX_TRIES):
        if len(seq) > n:
            seq = seq[:n]
        elif len(seq) < n:
            seq += rng.choice(pool, size=n - len(seq)).tolist()
        text = tokenizer.decode(seq, skip_special_tokens=False)
        again = _encode(tokenizer, text)
        if len(again) == n:
            return Prompt(text, tuple(again))
        seq = again
    return _grow(tokenizer, n, rng, pool)


def _grow(tokenizer: Any, n: int, rng: np.random.Generator, pool: np.ndarray) -> Prompt:
    """The slow sure way: add one token at a time, keeping it only when the text grows by exactly one token."""
    seq: list[int] = []
    misses = 0
    while len(seq) < n:
        cand = seq + [int(rng.choice(pool))]
        again = _encode(tokenizer, tokenizer.decode(cand, skip_special_tokens=False))
        if len(again) == len(cand):
            seq, misses = again, 0
        else:
            misses += 1
            if misses > 200:
                raise PromptError(f"no text of exactly {n} tokens: stuck at {len(seq)} tokens")
    text = tokenizer.decode(seq, skip_special_tokens=False)
    ids = _encode(tokenizer, text)
    if len(ids) != n:
        raise PromptError(f"no text of exactly {n} tokens: the grown text encodes to {len(ids)}")
    return Prompt(text, tuple(ids))


def random_prompts(tokenizer: Any, lengths: Sequence[int], seed: int, pool: np.ndarray | None = None) -> list[Prompt]:
    """One prompt per length, random non-special ids, exact length; the same seed gives the same prompts."""
    rng = np.random.default_rng(seed)
    pool = word_ids(tokenizer) if pool is None else pool
    return [settle(tokenizer, rng.choice(pool, size=n).tolist(), n, rng, pool) for n in lengths]


def text_prompts(tokenizer: Any, text: str, lengths: Sequence[int], seed: int) -> list[Prompt]:
    """Prompts cut from a real text: a window of n tokens at a seeded offset (the text repeats if short)."""
    base = _encode(tokenizer, text)
    if not base:
        raise PromptError("the prompt text is empty after tokenization")
    rng = np.random.default_rng(seed)
    pool = word_ids(tokenizer)
    out = []
    for n in lengths:
        reps = -(-(n + len(base)) // len(base))
        long = (base * reps)[: n + len(base)]
        start = int(rng.integers(0, len(base)))
        out.append(settle(tokenizer, long[start : start + n], n, rng, pool))
    return out


def sample_lengths(mean: int, range_ratio: float, count: int, rng: np.random.Generator) -> list[int]:
    """Integer-uniform lengths in [floor(L(1-r)), ceil(L(1+r))], at least 1: vLLM's random dataset convention."""
    if not 0.0 <= range_ratio < 1.0:
        raise PromptError(f"--range-ratio must lie in [0, 1), got {range_ratio}")
    low = max(1, int(np.floor(mean * (1 - range_ratio))))
    high = max(1, int(np.ceil(mean * (1 + range_ratio))))
    return [int(x) for x in rng.integers(low, high + 1, size=count)]
