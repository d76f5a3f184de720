"""Paired statistics: hand-computed cases and published reference values.

Reference values for the Cavo et al. (2012) table come from Fagerland, Lydersen & Laake's own R package
(contingencytables, tests of chapter 8, "The Paired 2x2 Table"): McNemar exact conditional P = 0.052479,
mid-P = 0.034690, Newcombe square-and-add interval -0.1186 to -0.0046 for pi_1+ - pi_+1 = -0.0621.
scipy is not in the project venv; where it is importable the exact p-values are also checked with
scipy.stats.binomtest.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from lmgauge.scoring import paired
from lmgauge.scoring.paired import (
    FlipTable,
    compare_binary,
    compare_paired,
    flip_table,
    mcnemar,
    newcombe_paired_interval,
    paired_bootstrap,
    wilson_interval,
)

Z = NormalDist().inv_cdf(0.975)


def outcomes(table: FlipTable) -> tuple[list[int], list[int]]:
    """Per-document outcomes that produce the table (a = baseline, b = candidate)."""
    a = [1] * table.both_right + [1] * table.right_to_wrong + [0] * table.wrong_to_right + [0] * table.both_wrong
    b = [1] * table.both_right + [0] * table.right_to_wrong + [1] * table.wrong_to_right + [0] * table.both_wrong
    return a, b


# Cavo 2012: rows = first measurement (our a), columns = second (our b); [[59, 6], [16, 80]]
CAVO = FlipTable(both_right=59, right_to_wrong=6, wrong_to_right=16, both_wrong=80)


def test_flip_table_counts_each_cell():
    a = [1, 1, 0, 0, 1, True, False]
    b = [1, 0, 1, 0, 0, True, True]
    t = flip_table(a, b)
    assert (t.both_right, t.right_to_wrong, t.wrong_to_right, t.both_wrong) == (2, 2, 2, 1)
    assert t.n == 7 and t.flips == 4
    assert t.acc_a == pytest.approx(4 / 7) and t.acc_b == pytest.approx(4 / 7)


def test_cavo_reference_values():
    test = mcnemar(CAVO)
    assert test.p_exact == pytest.approx(0.052479, abs=5e-7)
    assert test.p_midp == pytest.approx(0.034690, abs=5e-7)
    low, high = newcombe_paired_interval(CAVO)
    # the reference reports a - b; ours is b - a, so the interval is negated and swapped
    assert low == pytest.approx(0.0046, abs=5e-5)
    assert high == pytest.approx(0.1186, abs=5e-5)
    r = compare_binary(*outcomes(CAVO))
    assert r.delta == pytest.approx(10 / 161)
    assert r.flips == CAVO
    assert r.p_value == test.p_midp and r.p_exact == test.p_exact
    assert r.verdict == "better"  # mid-p 0.0347 < 0.05 (the exact test alone would say noise)


def test_swapping_runs_negates_the_interval():
    a, b = outcomes(CAVO)
    ab, ba = compare_binary(a, b), compare_binary(b, a)
    assert ba.delta == pytest.approx(-ab.delta)
    assert (ba.low, ba.high) == pytest.approx((-ab.high, -ab.low))
    assert ba.p_value == pytest.approx(ab.p_value) and ba.verdict == "worse"


@pytest.mark.parametrize(
    ("r2w", "w2r", "p_exact", "p_midp"),
    [
        (0, 0, 1.0, 1.0),  # no disagreeing pairs
        (1, 0, 1.0, 0.5),  # P(X<=0)=1/2: exact 2*1/2, mid 1 - 1/2
        (3, 1, 10 / 16, 6 / 16),  # d=4: P(X<=1)=5/16, P(X=1)=4/16
        (5, 5, 1.0, 1.0),  # balanced: 2*638/1024 capped at 1; mid 1276/1024 - 252/1024 = 1
        (10, 0, 2 / 1024, 1 / 1024),  # all ten pairs disagree one way
        (0, 10, 2 / 1024, 1 / 1024),
    ],
)
def test_mcnemar_hand_computed(r2w, w2r, p_exact, p_midp):
    t = mcnemar(FlipTable(both_right=7, right_to_wrong=r2w, wrong_to_right=w2r, both_wrong=3))
    assert t.p_exact == pytest.approx(p_exact, rel=1e-12)
    assert t.p_midp == pytest.approx(p_midp, rel=1e-12)


def test_no_disagreeing_pairs():
    a = [1, 1, 0, 1, 0]
    r = compare_binary(a, list(a))
    assert r.delta == 0.0 and r.p_value == 1.0 and r.p_exact == 1.0
    assert r.verdict == "within noise" and r.within_noise
    # Newcombe's interval keeps a width when nothing flipped (the Wald one would be [0, 0]); symmetric
    assert r.low < 0 < r.high
    assert r.low == pytest.approx(-r.high)


def test_all_pairs_disagreeing():
    # a right on every doc, b wrong on every doc: delta = -1, p = 2/2^10 (exact), 1/2^10 (mid-p)
    r = compare_binary([1] * 10, [0] * 10)
    assert r.delta == -1.0
    assert r.p_exact == pytest.approx(2 / 1024) and r.p_value == pytest.approx(1 / 1024)
    assert r.verdict == "worse"
    # phi = 0 (a margin is empty); Wilson(10, 10) = [1/(1+z^2/10), 1], Wilson(0, 10) = [0, (z^2/10)/(1+z^2/10)]
    w = (Z * Z / 10) / (1 + Z * Z / 10)
    assert r.low == pytest.approx(-1.0)
    assert r.high == pytest.approx(-1.0 + math.sqrt(2) * w)
    assert wilson_interval(10, 10) == pytest.approx((1 / (1 + Z * Z / 10), 1.0))
    assert wilson_interval(0, 10) == pytest.approx((0.0, w))


def test_wilson_interval_textbook_value():
    # Wilson 95% interval of 81/263 (Newcombe 1998, independent proportions paper, example): 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)


def test_log_space_tail_equals_exact_tail(monkeypatch):
    exact = paired._binomial_half_lower_tail(9_950, 20_000)
    monkeypatch.setattr(paired, "_EXACT_BINOMIAL_MAX_N", 100)
    logspace = paired._binomial_half_lower_tail(9_950, 20_000)
    assert logspace[0] == pytest.approx(exact[0], rel=1e-9)
    assert logspace[1] == pytest.approx(exact[1], rel=1e-9)


def test_scipy_binomtest_agrees_when_importable():
    stats = pytest.importorskip("scipy.stats")
    for r2w, w2r in [(6, 16), (3, 1), (40, 61), (0, 7)]:
        t = mcnemar(FlipTable(0, r2w, w2r, 0))
        ref = stats.binomtest(r2w, r2w + w2r, 0.5).pvalue
        assert t.p_exact == pytest.approx(ref, rel=1e-9)


def test_bootstrap_two_docs_enumerated():
    # diffs [0, 1]: resampled means are 0, 1/2, 1 with probability 1/4, 1/2, 1/4 -> 95% interval [0, 1]
    r = paired_bootstrap([0.0, 0.0], [0.0, 1.0], n_resamples=4000, seed=3)
    assert r.delta == 0.5 and (r.low, r.high) == (0.0, 1.0)
    assert r.verdict == "within noise" and r.seed == 3 and r.n_resamples == 4000
    assert "seed 3" in r.interval


def test_bootstrap_constant_shift_and_no_change():
    a = [0.1, -2.0, 3.5, 0.0]
    shifted = paired_bootstrap(a, [x + 0.25 for x in a], n_resamples=500)
    assert shifted.low == pytest.approx(0.25) and shifted.high == pytest.approx(0.25)
    assert shifted.verdict == "better"
    same = paired_bootstrap(a, a, n_resamples=500)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0) and same.within_noise


def test_bootstrap_is_seeded_and_matches_normal_theory():
    rng = np.random.default_rng(11)
    a = rng.normal(size=400)
    b = a + rng.normal(loc=0.05, scale=1.0, size=400)
    r1 = paired_bootstrap(a.tolist(), b.tolist(), n_resamples=4000, seed=7)
    r2 = paired_bootstrap(a.tolist(), b.tolist(), n_resamples=4000, seed=7)
    r3 = paired_bootstrap(a.tolist(), b.tolist(), n_resamples=4000, seed=8)
    assert (r1.low, r1.high) == (r2.low, r2.high)
    assert (r1.low, r1.high) != (r3.low, r3.high)
    d = b - a
    half = Z * d.std(ddof=1) / math.sqrt(d.size)
    assert (r1.high - r1.low) / 2 == pytest.approx(half, rel=0.1)
    assert r1.delta == pytest.approx(d.mean())


def test_bootstrap_chunks_do_not_change_the_draws(monkeypatch):
    a, b = [0.0, 1.0, 2.0, 5.0], [1.0, 1.0, 0.0, 7.0]
    whole = paired_bootstrap(a, b, n_resamples=300, seed=5)
    monkeypatch.setattr(paired, "_BOOTSTRAP_CHUNK_ENTRIES", 4 * 7)  # 7 resamples per chunk
    chunked = paired_bootstrap(a, b, n_resamples=300, seed=5)
    # chunking draws the same stream of indices row by row, so the result is identical
    assert (whole.low, whole.high) == (chunked.low, chunked.high)


def test_compare_paired_dispatch():
    assert compare_paired([1, 0, 1], [1, 1, 1]).method == "mcnemar"
    assert compare_paired([0.5, 0.0], [1.0, 0.25], n_resamples=100).method == "bootstrap"
    assert compare_paired([1, 0, 1], [1, 1, 1], binary=False, n_resamples=100).method == "bootstrap"
    d = compare_paired([1, 0], [1, 1]).to_dict()
    assert d["flips"]["wrong_to_right"] == 1 and d["within_noise"] is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compare_binary([1, 0], [1]), "differ in length"),
        (lambda: compare_binary([], []), "empty"),
        (lambda: compare_binary([1, 0.5], [1, 1]), "position 1 of a is not 0 or 1"),
        (lambda: paired_bootstrap([1.0, float("nan")], [1.0, 2.0]), "position 1 of a is not finite"),
        (lambda: paired_bootstrap([1.0], [1.0], n_resamples=0), "n_resamples"),
        (lambda: compare_binary([1], [1], confidence=1.5), "confidence"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
