"""Paired statistics for comparing two runs on the same documents.

Two runs of a benchmark answer the same questions, so their scores are paired: the question is
whether the per-document differences are larger than chance, not whether two independent means
differ. Orientation throughout: ``a`` is the baseline, ``b`` the candidate, and a difference is
``b - a`` (positive means the candidate scores higher).

Binary metrics (acc, exact match, pass@1 with one sample):

- ``FlipTable``: the 2x2 table of (a, b) outcomes; the discordant cells are the flips
  (right->wrong: a right, b wrong; wrong->right: a wrong, b right).
- McNemar's exact conditional test: given the d = n10 + n01 discordant pairs, n10 ~ Binomial(d, 1/2)
  under the null; two-sided p = min(1, 2 * P(X <= min(n10, n01))). The mid-p version subtracts
  half the probability of the observed value from each tail: p_mid = 2 * P(X <= k) - P(X = k).
  Fagerland, Lydersen & Laake (2013), "The McNemar test for binary matched-pairs data: mid-p and
  asymptotic are better than exact conditional", BMC Med Res Methodol 13:91, recommend mid-p;
  it is what the "within noise" verdict uses.
- The interval for the difference of paired proportions is Newcombe's square-and-add interval
  (Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions
  based on paired data", Stat Med 17:2635-2650, method 10): Wilson score intervals for each
  marginal proportion combined with the correlation estimate phi (with Newcombe's correction:
  phi = max(ad - bc - n/2, 0) / sqrt(...) when ad > bc). Unlike the Wald interval on paired
  differences it does not collapse to zero width when there are no flips. Checked against
  Fagerland et al.'s reference implementation values (R package contingencytables, Cavo 2012 data).

Continuous metrics (per-document log-likelihood, F1, BLEU, ...): a seeded paired bootstrap of the
mean difference (resample documents with replacement, keep pairs together) with the percentile
interval; the seed and number of resamples are part of the result so it can be reproduced.

"Within noise" means the data do not show a difference at the 5% level: mid-p >= alpha for binary
metrics, the bootstrap interval containing 0 for continuous ones. The Newcombe interval and the
mid-p test are different procedures and can disagree at the margin (an interval that just excludes
0 with mid-p just above 0.05, or the reverse); the verdict names its basis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0

Verdict = Literal["within noise", "better", "worse"]

# Above this many discordant pairs the binomial tail is summed in log space instead of with exact
# integers (exact big-integer sums cost O(d^2) digits; log space is accurate to ~1e-12 here).
_EXACT_BINOMIAL_MAX_N = 20_000
# Bootstrap resamples are drawn in chunks so that one chunk's index matrix stays near 4M entries.
_BOOTSTRAP_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class FlipTable:
    """Outcomes of two runs on the same documents (a = baseline, b = candidate)."""

    both_right: int
    right_to_wrong: int  # a right, b wrong
    wrong_to_right: int  # a wrong, b right
    both_wrong: int

    @property
    def n(self) -> int:
        return self.both_right + self.right_to_wrong + self.wrong_to_right + self.both_wrong

    @property
    def flips(self) -> int:
        return self.right_to_wrong + self.wrong_to_right

    @property
    def acc_a(self) -> float:
        return (self.both_right + self.right_to_wrong) / self.n if self.n else math.nan

    @property
    def acc_b(self) -> float:
        return (self.both_right + self.wrong_to_right) / self.n if self.n else math.nan


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on the discordant pairs of a FlipTable (two-sided)."""

    right_to_wrong: int
    wrong_to_right: int
    p_exact: float
    p_midp: float


@dataclass(frozen=True)
class PairedResult:
    """The paired difference b - a of one metric over n documents, with its interval and verdict."""

    method: Literal["mcnemar", "bootstrap"]
    n: int
    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    confidence: float
    verdict: Verdict
    verdict_basis: str
    interval: str
    p_value: float | None = None  # mid-p for binary metrics; None for the bootstrap
    p_exact: float | None = None
    flips: FlipTable | None = None
    seed: int | None = None
    n_resamples: int | None = None

    @property
    def within_noise(self) -> bool:
        return self.verdict == "within noise"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["within_noise"] = self.within_noise
        return out


def _check_pair(a: Sequence[float], b: Sequence[float]) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: a has {len(a)} values, b has {len(b)}")
    if not a:
        raise ValueError("paired samples are empty: nothing to compare")


def _as_bool(values: Sequence[float | bool], side: str) -> list[bool]:
    out = []
    for i, v in enumerate(values):
        if v not in (0, 1):  # True/False compare equal to 1/0
            raise ValueError(f"binary metric: value {v!r} at position {i} of {side} is not 0 or 1")
        out.append(bool(v))
    return out


def is_binary(values: Sequence[float | bool]) -> bool:
    """True when every value is 0 or 1 (then the McNemar path applies)."""
    return all(v in (0, 1) for v in values)


def flip_table(a: Sequence[float | bool], b: Sequence[float | bool]) -> FlipTable:
    """The 2x2 table of paired binary outcomes (a = baseline, b = candidate)."""
    _check_pair(a, b)
    ra, rb = _as_bool(a, "a"), _as_bool(b, "b")
    counts = {(x, y): 0 for x in (True, False) for y in (True, False)}
    for x, y in zip(ra, rb):
        counts[(x, y)] += 1
    return FlipTable(
        both_right=counts[(True, True)],
        right_to_wrong=counts[(True, False)],
        wrong_to_right=counts[(False, True)],
        both_wrong=counts[(False, False)],
    )


def _binomial_half_lower_tail(k: int, n: int) -> tuple[float, float]:
    """P(X <= k) and P(X = k) for X ~ Binomial(n, 1/2)."""
    if n <= _EXACT_BINOMIAL_MAX_N:
        term = 1  # C(n, 0)
        total = 0
        for i in range(k + 1):
            total += term
            if i < k:
                term = term * (n - i) // (i + 1)
        denom = 1 << n
        return total / denom, term / denom
    log_half_n = -n * math.log(2.0)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n for i in range(k + 1)]
    top = max(logs)
    cdf = math.exp(top) * math.fsum(math.exp(x - top) for x in logs)
    return cdf, math.exp(logs[-1])


def mcnemar(table: FlipTable) -> McNemar:
    """McNemar's exact conditional and mid-p tests; p = 1 when no pair disagrees."""
    r2w, w2r = table.right_to_wrong, table.wrong_to_right
    d = r2w + w2r
    if d == 0:
        return McNemar(r2w, w2r, 1.0, 1.0)
    cdf, pmf = _binomial_half_lower_tail(min(r2w, w2r), d)
    return McNemar(r2w, w2r, min(1.0, 2.0 * cdf), min(1.0, 2.0 * cdf - pmf))


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n <= 0:
        raise ValueError(f"Wilson interval needs n > 0, got n={n}")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(table: FlipTable, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Newcombe's (1998, method 10) square-and-add interval for acc_b - acc_a on paired data."""
    n = table.n
    if n == 0:
        raise ValueError("Newcombe interval of an empty table")
    right_a = table.both_right + table.right_to_wrong
    right_b = table.both_right + table.wrong_to_right
    p_a, p_b = right_a / n, right_b / n
    l_a, u_a = wilson_interval(right_a, n, confidence)
    l_b, u_b = wilson_interval(right_b, n, confidence)
    # phi: correlation of the two outcomes, with Newcombe's correction towards 0 for ad > bc
    margins = right_a * (n - right_a) * right_b * (n - right_b)
    phi = 0.0
    if margins > 0:
        cross = table.both_right * table.both_wrong - table.right_to_wrong * table.wrong_to_right
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    delta = p_b - p_a
    # Lower limit: b could be as low as l_b while a is as high as u_a; upper limit the reverse.
    lower = delta - math.sqrt(max(0.0, (p_b - l_b) ** 2 + (u_a - p_a) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a)))
    upper = delta + math.sqrt(max(0.0, (u_b - p_b) ** 2 + (p_a - l_a) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a)))
    return max(-1.0, lower), min(1.0, upper)


def _verdict(significant: bool, delta: float) -> Verdict:
    if not significant:
        return "within noise"
    return "better" if delta > 0 else "worse"


def compare_binary(
    a: Sequence[float | bool],
    b: Sequence[float | bool],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedResult:
    """Paired comparison of a binary metric: flips, McNemar (exact and mid-p), Newcombe interval."""
    table = flip_table(a, b)
    test = mcnemar(table)
    low, high = newcombe_paired_interval(table, confidence)
    delta = (table.wrong_to_right - table.right_to_wrong) / table.n
    alpha = 1.0 - confidence
    return PairedResult(
        method="mcnemar",
        n=table.n,
        mean_a=table.acc_a,
        mean_b=table.acc_b,
        delta=delta,
        low=low,
        high=high,
        confidence=confidence,
        verdict=_verdict(test.p_midp < alpha, delta),
        verdict_basis=f"McNemar mid-p {'<' if test.p_midp < alpha else '>='} {alpha:g}",
        interval="Newcombe (1998) square-and-add, method 10",
        p_value=test.p_midp,
        p_exact=test.p_exact,
        flips=table,
    )


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedResult:
    """Seeded paired bootstrap of mean(b - a) with the percentile interval."""
    _check_pair(a, b)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    _z(confidence)  # validates confidence
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    for side, x in (("a", xa), ("b", xb)):
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise ValueError(f"paired bootstrap: value {x[bad[0]]!r} at position {int(bad[0])} of {side} is not finite")
    diffs = xb - xa
    n = diffs.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK_ENTRIES // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diffs[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(means, [tail, 1.0 - tail]))
    delta = float(diffs.mean())
    significant = not (low <= 0.0 <= high)
    return PairedResult(
        method="bootstrap",
        n=n,
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        delta=delta,
        low=low,
        high=high,
        confidence=confidence,
        verdict=_verdict(significant, delta),
        verdict_basis=f"bootstrap {confidence:.0%} interval {'excludes' if significant else 'contains'} 0",
        interval=f"paired bootstrap percentile ({n_resamples} resamples, seed {seed})",
        seed=seed,
        n_resamples=n_resamples,
    )


def compare_paired(
    a: Sequence[float | bool],
    b: Sequence[float | bool],
    *,
    binary: bool | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedResult:
    """McNemar for binary metrics, the paired bootstrap otherwise (binary=None: decided from the values)."""
    _check_pair(a, b)
    if binary is None:
        binary = is_binary(a) and is_binary(b)
    if binary:
        return compare_binary(a, b, confidence=confidence)
    return paired_bootstrap(
        [float(x) for x in a], [float(x) for x in b], n_resamples=n_resamples, seed=seed, confidence=confidence
    )
