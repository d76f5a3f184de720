"""The A/B verdict: an equivalence test against a margin (issue 14), on hand-made intervals and on
synthetic pairs with a known difference."""

from __future__ import annotations

import numpy as np
import pytest

from lmgauge.perf.ab import direction, paired_verdict, parse_margin, verdict


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.5, 0.5, "within noise"),  # contains 0, inside +-1
        (0.2, 0.9, "within noise"),  # excludes 0 but smaller than the margin: equivalent
        (-1.0, 1.0, "within noise"),  # the edges count as inside
        (1.5, 3.0, "different"),  # wholly beyond +m
        (-3.0, -1.01, "different"),
        (0.5, 1.5, "inconclusive"),  # excludes 0, straddles +m: differs, not shown by more than m
        (-2.0, 2.0, "inconclusive"),  # too wide to tell
        (-0.5, 1.5, "inconclusive"),
    ],
)
def test_verdict_three_outcomes(low, high, expected):
    assert verdict(low, high, 1.0) == expected


def test_direction_only_when_the_interval_excludes_zero():
    assert direction(0.1, 2.0) == "B higher" and direction(-2.0, -0.1) == "B lower"
    assert direction(-0.1, 0.1) is None


def test_zero_margin_is_the_old_significance_test():
    assert verdict(0.0, 0.0, 0.0) == "within noise"
    assert verdict(0.01, 0.02, 0.0) == "different" and verdict(-0.01, 0.02, 0.0) == "inconclusive"


def test_margin_flag_takes_a_fraction_or_a_percentage():
    assert parse_margin("5%") == pytest.approx(0.05) == parse_margin("0.05")
    assert parse_margin(0) == 0.0
    for bad in ("5", "abc", "-1%", "100%"):
        with pytest.raises(ValueError, match="--ab-margin"):
            parse_margin(bad)


def _pairs(delta_rel: float, noise: float, n: int = 60, seed: int = 3):
    rng = np.random.default_rng(seed)
    a = 20.0 + rng.normal(0, noise, n)  # a TPOT near 20 ms
    b = a * (1 + delta_rel) + rng.normal(0, noise / 4, n)  # paired: most noise shared, as by the schedule
    return list(a), list(b)


def test_synthetic_pairs_with_known_differences():
    same = paired_verdict(*_pairs(0.0, 1.0))
    assert (same["verdict"], same["margin"]) == ("within noise", pytest.approx(0.05 * same["mean_a"]))
    slower = paired_verdict(*_pairs(0.20, 1.0))  # B 20% slower: 4 ms against a 1 ms margin
    assert (slower["verdict"], slower["direction"]) == ("different", "B higher")
    assert slower["ci95"][0] > slower["margin"]
    faster = paired_verdict(*_pairs(-0.20, 1.0))
    assert (faster["verdict"], faster["direction"]) == ("different", "B lower")
    near = paired_verdict(*_pairs(0.05, 1.0))  # exactly the margin's size: cannot be told either way
    assert near["verdict"] == "inconclusive" and near["direction"] == "B higher"
    assert paired_verdict(*_pairs(0.20, 1.0), margin=0.5)["verdict"] == "within noise"  # a wider margin
    assert paired_verdict([1.0], [2.0])["verdict"] == "too few pairs"


def test_cluster_interval_widens_for_load_shared_by_a_repeat():
    from lmgauge.perf.ab import cluster_interval
    from lmgauge.scoring.paired import paired_bootstrap

    rng = np.random.default_rng(5)
    runs = np.repeat([0, 1, 2], 30)
    noise = rng.normal(0, 0.3, runs.size)
    shared = np.array([1.0, 1.0, -0.5])[runs] + noise  # each repeat's requests share its machine state
    iid = paired_bootstrap([0.0] * runs.size, shared.tolist(), seed=0)
    low, high = cluster_interval(shared, runs)
    assert iid.low > 0  # requests taken as independent: "B higher", from three runs' luck
    assert low < 0 < high and high - low > 4 * (iid.high - iid.low)
    # no effect shared by a repeat: about the same interval as resampling requests
    low, high = cluster_interval(noise, runs)
    plain = paired_bootstrap([0.0] * runs.size, noise.tolist(), seed=0)
    assert (high - low) == pytest.approx(plain.high - plain.low, rel=0.3)
    assert low <= float(noise.mean()) <= high


def test_paired_verdict_uses_the_repeats_when_given():
    xs = [20.0] * 30
    ys = [20.0 + d for d in [4.0] * 10 + [4.0] * 10 + [-1.0] * 10]  # 3 repeats, one went the other way
    runs = [0] * 10 + [1] * 10 + [2] * 10
    plain, clustered = paired_verdict(xs, ys), paired_verdict(xs, ys, runs=runs)
    assert plain["verdict"] == "different" and clustered["verdict"] == "inconclusive"
    assert "repeats" in clustered["interval"]
