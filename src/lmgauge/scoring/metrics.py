"""Per-sample metrics and their aggregation, defined as lm-evaluation-harness defines them.

- acc: argmax of the choices' log-likelihoods is the gold index (first index wins ties).
- acc_norm: the same on log-likelihood divided by the choice's length in characters.
- stderr of a mean: sample standard deviation (n-1) / sqrt(n).
- perplexity of per-doc log-likelihoods: exp(-mean(logprob)) (LAMBADA).
- word/byte perplexity and bits per byte: from summed log-likelihoods and summed word/byte counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def acc_pred(logprobs: Sequence[float]) -> int:
    return argmax(logprobs)


def acc_norm_pred(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    return argmax([lp / len(c) if len(c) else lp for lp, c in zip(logprobs, choices)])


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def sample_stddev(xs: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return float("nan")
    mu = mean(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1))


def mean_stderr(xs: Sequence[float]) -> float:
    return sample_stddev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")


def perplexity(logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-likelihood of items (LAMBADA's perplexity)."""
    return math.exp(-mean(logprobs))


def weighted_perplexity(logprobs: Sequence[float], weights: Sequence[float]) -> float:
    """exp(-sum(logprob) / sum(weight)): token, word or byte perplexity of a corpus."""
    return math.exp(-sum(logprobs) / sum(weights))


def bits_per_byte(logprobs: Sequence[float], n_bytes: Sequence[int]) -> float:
    return -sum(logprobs) / sum(n_bytes) / math.log(2)
