"""A/B of two endpoints: the same seeded prompts on the same schedule against both, repeated, and per
metric the paired difference B - A with a bootstrap 95% interval (lmgauge.scoring.paired).

Per-request metrics (TTFT, TPOT, E2EL, the request's mean ITL) are paired by (repeat, request index):
request k of repeat r carries the same prompt and is sent at the same point of the schedule on both
sides, so machine noise common to a moment cancels. Only pairs where both sides succeeded count
(failures are reported per side). Run-level throughputs are paired by repeat. The order is
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
    a: Side, b: Side, percentiles: Sequence[float] = (99.0,), seed: int = 0, margin: float = DEFAULT_MARGIN
) -> dict[str, Any]:
    """Per metric: mean A, mean B, delta B - A, its 95% bootstrap interval, n pairs, the margin
    (absolute, in the metric's unit), verdict and direction."""
    out: dict[str, Any] = {"margin": margin, "per_request": {}, "per_run": {}, "failed": {}}
    for name, side in (("A", a), ("B", b)):
        out["failed"][name] = sum(1 for run in side.runs for r in run.records if not r.success)
    for metric, fn in PER_REQUEST.items():
        xs, ys = [], []
        for ra, rb in zip(a.runs, b.runs):
            by_index = {r.index: r for r in rb.records}
            for r in ra.records:
                other = by_index.get(r.index)
                if other is None or not (r.success and other.success):
                    continue
                va, vb = fn(r), fn(other)
                if va is not None and vb is not None:
                    xs.append(va)
                    ys.append(vb)
        out["per_request"][metric] = paired_verdict(xs, ys, margin, seed)
    for metric in PER_RUN:
        xs = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in a.runs]
        ys = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in b.runs]
        out["per_run"][metric] = paired_verdict(xs, ys, margin, seed)
    return out


def paired_verdict(xs: list[float], ys: list[float], margin: float = DEFAULT_MARGIN, seed: int = 0) -> dict[str, Any]:
    """B - A over pairs (xs[i], ys[i]) with its interval, judged against margin x |mean A|."""
    if len(xs) < 2:
        return {"n": len(xs), "verdict": "too few pairs", "direction": None}
    res = paired_bootstrap(xs, ys, seed=seed)
    m = margin * abs(res.mean_a)
    return {
        "n": res.n,
        "mean_a": res.mean_a,
        "mean_b": res.mean_b,
        "delta": res.delta,
        "ci95": [res.low, res.high],
        "margin": m,
        "verdict": verdict(res.low, res.high, m),
        "direction": direction(res.low, res.high),
        "interval": res.interval,
    }
