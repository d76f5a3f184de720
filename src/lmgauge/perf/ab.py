"""A/B of two endpoints: the same seeded prompts on the same schedule against both, repeated, and per
metric the paired difference B - A with a bootstrap 95% interval (lmgauge.scoring.paired).

Per-request metrics (TTFT, TPOT, E2EL, the request's mean ITL) are paired by (repeat, request index):
request k of repeat r carries the same prompt and is sent at the same point of the schedule on both
sides, so machine noise common to a moment cancels. Only pairs where both sides succeeded count
(failures are reported per side). Run-level throughputs are paired by repeat. With more than one
repeat the per-request interval resamples repeats, then requests within each (cluster_interval):
load that changes between A's run and B's is shared by all requests of the repeat, and resampling
requests alone would take it for independent noise; in the parallel order both sides of a pair ran
at the same moment, and requests are resampled alone. The order is
interleaved, counterbalanced (A B, B A, A B, ...: which side goes first alternates per repeat, so
an order effect such as a warmer machine for the second run cancels instead of showing as a
difference), sequential (all of A, then all of B), or parallel (each repeat sends to A and B at once,
request k to both at the same moment: noise of the client's machine and of the moment hits both
sides of a pair and cancels; for servers on separate hardware, since servers sharing a device or
cores slow each other).

The verdict is an equivalence test (TOST, read from the same 95% interval), against a margin m =
`--ab-margin` x |mean of A| (default 5%: a difference smaller than that is not worth telling apart):
- "within noise": the interval lies inside [-m, +m]: any difference is smaller than the margin;
- "different": the interval lies wholly beyond the margin (low > +m or high < -m), so it also excludes 0:
  B differs from A by more than the margin;
- "inconclusive": anything else: the interval reaches across a margin edge, so the difference may be
  smaller than m or larger (a wide interval from few pairs or much noise, or a difference near m).
Both claims are at the same level: "within noise" says |B - A| < m, "different" says |B - A| > m, each
with 95% confidence (the two one-sided tests of TOST at 2.5% each). An interval that excludes 0 but
overlaps the margin is "inconclusive": B differs, but not shown by more than the margin. `direction`
says which way whenever the interval excludes 0: "B higher" / "B lower" (for latencies lower is
faster; for throughputs higher is better); null when it contains 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmgauge.perf import metrics
from lmgauge.perf.load import LoadSpec, PointResult, run_point
from lmgauge.perf.stream_client import Endpoint, RequestRecord, RequestSpec, retokenize_missing
from lmgauge.scoring.paired import paired_bootstrap

PER_REQUEST: dict[str, Callable[[RequestRecord], float | None]] = {
    "ttft_ms": lambda r: r.ttft_s * 1000 if r.ttft_s is not None else None,
    "tpot_ms": lambda r: t * 1000 if (t := metrics.tpot_s(r)) is not None else None,
    "itl_ms": lambda r: sum(r.itl_s) / len(r.itl_s) * 1000 if r.itl_s else None,
    "e2el_ms": lambda r: r.e2el_s * 1000 if r.e2el_s is not None else None,
}
PER_RUN = ("request_throughput", "output_throughput")
DEFAULT_MARGIN = 0.05  # of A's mean
ORDERS = ("interleaved", "sequential", "parallel")


def parse_margin(text: str | float) -> float:
    """--ab-margin: a fraction of A's mean (0.05) or a percentage (5%)."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"--ab-margin {text!r}: give a fraction of A (0.05) or a percentage (5%)") from None
    if not 0 <= value < 1:  # 1 and above: a typo for a percentage, or a margin no verdict could miss
        raise ValueError(f"--ab-margin {text!r}: a fraction of A below 1 (0.05), or a percentage below 100% (5%)")
    return value


@dataclass
class Side:
    endpoint: Endpoint
    runs: list[PointResult]


def run_ab(
    a: Endpoint,
    b: Endpoint,
    specs: Sequence[RequestSpec],
    load: LoadSpec,
    repeats: int,
    order: str = "interleaved",
    tokenizer: Any = None,
    on_run: Callable[[str, int, PointResult], None] | None = None,
) -> tuple[Side, Side]:
    if order not in ORDERS:
        raise ValueError(f"--ab-order {order!r}: one of {', '.join(ORDERS)}")
    if repeats < 1:
        raise ValueError("--repeats must be at least 1")
    sides = {"A": Side(a, []), "B": Side(b, [])}

    def keep(name: str, r: int, res: PointResult) -> None:
        retokenize_missing(res.records, tokenizer)
        sides[name].runs.append(res)
        if on_run is not None:
            on_run(name, r, res)

    if order == "parallel":
        for r in range(repeats):
            res_a, res_b = asyncio.run(_both(a, b, specs, load))
            keep("A", r, res_a)
            keep("B", r, res_b)
        return sides["A"], sides["B"]
    plan = (
        [(s, r) for r in range(repeats) for s in ("AB" if r % 2 == 0 else "BA")]
        if order == "interleaved"
        else [(s, r) for s in "AB" for r in range(repeats)]
    )
    for name, r in plan:
        keep(name, r, asyncio.run(run_point(sides[name].endpoint, specs, load)))
    return sides["A"], sides["B"]


async def _both(a: Endpoint, b: Endpoint, specs: Sequence[RequestSpec], load: LoadSpec) -> tuple[PointResult, ...]:
    # one event loop: each side's self-check sees the client's CPU and lag of both
    return tuple(await asyncio.gather(run_point(a, specs, load), run_point(b, specs, load)))


def verdict(low: float, high: float, margin: float) -> str:
    """The three outcomes of the module docstring, for the interval [low, high] and margin m >= 0."""
    if -margin <= low and high <= margin:
        return "within noise"
    if low > margin or high < -margin:
        return "different"
    return "inconclusive"


def direction(low: float, high: float) -> str | None:
    if low > 0:
        return "B higher"
    if high < 0:
        return "B lower"
    return None


def compare(
    a: Side,
    b: Side,
    percentiles: Sequence[float] = (99.0,),
    seed: int = 0,
    margin: float = DEFAULT_MARGIN,
    by_repeat: bool = True,
) -> dict[str, Any]:
    """Per metric: mean A, mean B, delta B - A, its 95% bootstrap interval, n pairs, the margin
    (absolute, in the metric's unit), verdict and direction. `by_repeat`: per-request intervals
    resample repeats, then requests (cluster_interval): right when A's and B's runs of a repeat
    ran at different moments (interleaved, sequential); with both at once (parallel) a moment's
    load is common to both sides of a pair and cancels, and requests are resampled alone."""
    out: dict[str, Any] = {"margin": margin, "per_request": {}, "per_run": {}, "failed": {}}
    for name, side in (("A", a), ("B", b)):
        out["failed"][name] = sum(1 for run in side.runs for r in run.records if not r.success)
    for metric, fn in PER_REQUEST.items():
        xs, ys, runs = [], [], []
        for k, (ra, rb) in enumerate(zip(a.runs, b.runs)):
            by_index = {r.index: r for r in rb.records}
            for r in ra.records:
                other = by_index.get(r.index)
                if other is None or not (r.success and other.success):
                    continue
                va, vb = fn(r), fn(other)
                if va is not None and vb is not None:
                    xs.append(va)
                    ys.append(vb)
                    runs.append(k)
        out["per_request"][metric] = paired_verdict(xs, ys, margin, seed, runs if by_repeat else None)
    for metric in PER_RUN:
        xs = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in a.runs]
        ys = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in b.runs]
        out["per_run"][metric] = paired_verdict(xs, ys, margin, seed)
    return out


def paired_verdict(
    xs: list[float], ys: list[float], margin: float = DEFAULT_MARGIN, seed: int = 0, runs: list[int] | None = None
) -> dict[str, Any]:
    """B - A over pairs (xs[i], ys[i]) with its interval, judged against margin x |mean A|. With
    `runs` (the repeat of each pair) and more than one repeat, the interval resamples repeats and
    then pairs within them (cluster_interval); else pairs alone (paired_bootstrap)."""
    if len(xs) < 2:
        return {"n": len(xs), "verdict": "too few pairs", "direction": None}
    res = paired_bootstrap(xs, ys, seed=seed)
    low, high, how = res.low, res.high, res.interval
    if runs is not None and len(set(runs)) > 1:
        low, high = cluster_interval(np.asarray(ys) - np.asarray(xs), np.asarray(runs), seed=seed)
        how = f"bootstrap over repeats, then requests within each ({CLUSTER_RESAMPLES} resamples, seed {seed})"
    m = margin * abs(res.mean_a)
    return {
        "n": res.n,
        "mean_a": res.mean_a,
        "mean_b": res.mean_b,
        "delta": res.delta,
        "ci95": [low, high],
        "margin": m,
        "verdict": verdict(low, high, m),
        "direction": direction(low, high),
        "interval": how,
    }


CLUSTER_RESAMPLES = 10_000


def cluster_interval(
    diffs: np.ndarray, runs: np.ndarray, seed: int = 0, n_resamples: int = CLUSTER_RESAMPLES, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the pooled mean of `diffs` by a two-stage bootstrap: draw the repeats
    with replacement, then each drawn repeat's pairs with replacement. Load that changes between one
    side's run and the other's is shared by every request of a repeat: resampling requests alone
    takes it for independent noise and gives too narrow an interval."""
    groups = [diffs[runs == r] for r in np.unique(runs)]
    sizes = np.array([g.size for g in groups], dtype=float)
    rng = np.random.default_rng(seed)
    n_runs = len(groups)
    means = np.empty(n_resamples)
    chunk = max(1, 200_000 // max(1, int(sizes.max()) * n_runs))
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        picks = rng.integers(0, n_runs, size=(m, n_runs))  # which repeat fills each slot
        # every repeat's resampled sum for every slot; the slot then keeps its picked repeat's
        sums = np.stack([g[rng.integers(0, g.size, size=(m, n_runs, g.size))].sum(axis=2) for g in groups])
        total = np.take_along_axis(sums, picks[None], axis=0)[0].sum(axis=1)
        means[start : start + m] = total / sizes[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
