"""KL(P || Q) of two next-token distributions when only each side's top-k logprobs are known.

A server gives, per prompt position, its top-k log-probabilities and the actual next token's. From
that alone KL cannot be computed exactly (the tails are unknown), but it can be bounded below:

- S: tokens whose probability is known on both sides (always the actual token). For any partition
  of the vocabulary, the KL of the coarse-grained distributions is <= KL(P || Q) (the
  data-processing / log-sum inequality). Partition into S's tokens one by one and one "rest" bucket
  R (what is left of each side's mass, P(R) = 1 - P(S), Q(R) = 1 - Q(S)):

      LB_coarse = sum_{v in S} p(v) ln(p(v)/q(v)) + P(R) ln(P(R)/Q(R))

  and exactly (chain rule) KL = LB_coarse + P(R) * KL(P(.|R) || Q(.|R)): the gap is the reference's
  tail mass times the KL of the two conditional tails, >= 0 and with no finite upper bound from
  top-k alone (Q may give a tail token any tiny probability).
- Tighter: split R into B, tokens in P's top-k but not in Q's (P(B) known), and the rest R'. Q(B) is
  unknown, but each of B's tokens is outside Q's top-k, so Q(B) <= cap = min(|B| q_k, Q(R)) with q_k
  the smallest of Q's top-k probabilities. The coarse-grained KL over {S..., B, R'} is
  f(x) = P(B) ln(P(B)/x) + P(R') ln(P(R')/(Q(R) - x)) at x = Q(B); f is convex with its minimum
  at x* = Q(R) P(B) / P(R) (where f = the coarse bucket's term), so

      LB = sum_S ... + f(min(x*, cap))   (>= LB_coarse, and still <= KL for every Q(B) <= cap).

Rounding: the servers' logprobs are float32, so when the known tokens hold nearly all of Q's mass,
1 - Q(S) computed from them can be 0 or below while the true Q(R) is a few 1e-7, and P(R) ln(P(R)/Q(R))
would blow up. Q(R) is therefore taken as 1 - Q(S) + `slack` (1e-5 by default, well above float32's
~1e-7 relative error on a sum of probabilities): a larger Q(R) only lowers the term, so the bound stays
a bound, and it costs nothing unless Q(R) is that small. Everything else is float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

TINY = 1e-300
SLACK = 1e-5  # added to the candidate's rest mass: float32 logprobs (see the module docstring)


def _xlogy_ratio(p: float, q: float) -> float:
    """p ln(p/q), 0 for p = 0; q floored at TINY (flooring q only lowers the term: still a bound)."""
    if p <= 0.0:
        return 0.0
    return p * (math.log(p) - math.log(max(q, TINY)))


@dataclass(frozen=True)
class TopkKL:
    lower: float  # the bound with the B bucket (>= coarse)
    coarse: float  # S one by one + one rest bucket
    tail_ref: float  # P(R): the reference's mass outside the tokens known on both sides
    tail_cand: float  # Q(R)
    n_shared: int  # |S|


def topk_kl(ref: Mapping[int, float], cand: Mapping[int, float], k_cand: int, slack: float = SLACK) -> TopkKL:
    """Lower bounds of KL(ref || cand) from each side's known logprobs by token id (top-k plus the
    actual token). `k_cand` is the k the candidate's top-k was asked with (its k-th value caps the
    probability of any token it did not list)."""
    shared = ref.keys() & cand.keys()
    p_s = {v: math.exp(ref[v]) for v in shared}
    q_s = {v: math.exp(cand[v]) for v in shared}
    head = sum(_xlogy_ratio(p_s[v], q_s[v]) for v in shared)
    p_rest = max(1.0 - sum(p_s.values()), 0.0)
    q_rest = min(max(1.0 - sum(q_s.values()), 0.0) + slack, 1.0)
    coarse = head + _xlogy_ratio(p_rest, q_rest)
    only_ref = [v for v in ref if v not in shared]
    p_b = min(sum(math.exp(ref[v]) for v in only_ref), p_rest)
    lower = coarse
    if only_ref and p_rest > 0.0:
        cand_sorted = sorted(cand.values(), reverse=True)
        q_k = math.exp(cand_sorted[min(k_cand, len(cand_sorted)) - 1])
        cap = min(len(only_ref) * q_k, q_rest)
        x_star = q_rest * p_b / p_rest
        if x_star > cap:  # the minimum over the feasible Q(B) is at the cap
            p_r2 = max(p_rest - p_b, 0.0)
            lower = head + _xlogy_ratio(p_b, cap) + _xlogy_ratio(p_r2, q_rest - cap)
    return TopkKL(max(lower, coarse), coarse, p_rest, q_rest, len(shared))


def exact_kl(p_logits_row, q_logits_row) -> float:
    """KL of two full-vocabulary logit rows (numpy or torch 1-D), float64: what the bound is tested against."""
    import numpy as np

    a = np.asarray(p_logits_row, dtype=np.float64)
    b = np.asarray(q_logits_row, dtype=np.float64)
    lp = a - (a.max() + math.log(np.exp(a - a.max()).sum()))
    lq = b - (b.max() + math.log(np.exp(b - b.max()).sum()))
    return float((np.exp(lp) * (lp - lq)).sum())
