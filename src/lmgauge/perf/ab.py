"""A/B of two endpoints: the same seeded prompts on the same schedule against both, repeated, and per
metric the paired difference B - A with a bootstrap 95% interval (lmgauge.scoring.paired).

Per-request metrics (TTFT, TPOT, E2EL, the request's mean ITL) are paired by (repeat, request index):
request k of repeat r carries the same prompt and is sent at the same point of the schedule on both
sides, so machine noise common to a moment cancels. Only pairs where both sides succeeded count
(failures are reported per side). Run-level throughputs are paired by repeat. The order is
interleaved, counterbalanced (A B, B A, A B, ...: which side goes first alternates per repeat, so
an order effect such as a warmer machine for the second run cancels instead of showing as a
difference) or sequential (all of A, then all of B).

"within noise": the interval contains 0. Otherwise "B higher" / "B lower" (for latencies lower is
faster; for throughputs higher is better).
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
    if order not in ("interleaved", "sequential"):
        raise ValueError(f"--ab-order {order!r}: interleaved or sequential")
    if repeats < 1:
        raise ValueError("--repeats must be at least 1")
    sides = {"A": Side(a, []), "B": Side(b, [])}
    plan = (
        [(s, r) for r in range(repeats) for s in ("AB" if r % 2 == 0 else "BA")]
        if order == "interleaved"
        else [(s, r) for s in "AB" for r in range(repeats)]
    )
    for name, r in plan:
        res = asyncio.run(run_point(sides[name].endpoint, specs, load))
        retokenize_missing(res.records, tokenizer)
        sides[name].runs.append(res)
        if on_run is not None:
            on_run(name, r, res)
    return sides["A"], sides["B"]


def _label(low: float, high: float) -> str:
    if low <= 0.0 <= high:
        return "within noise"
    return "B higher" if low > 0 else "B lower"


def compare(a: Side, b: Side, percentiles: Sequence[float] = (99.0,), seed: int = 0) -> dict[str, Any]:
    """Per metric: mean A, mean B, delta B - A, its 95% bootstrap interval, n pairs, verdict."""
    out: dict[str, Any] = {"per_request": {}, "per_run": {}, "failed": {}}
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
        out["per_request"][metric] = _paired(xs, ys, seed)
    for metric in PER_RUN:
        xs = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in a.runs]
        ys = [metrics.calculate(run.records, run.duration_s, percentiles)[metric] for run in b.runs]
        out["per_run"][metric] = _paired(xs, ys, seed)
    return out


def _paired(xs: list[float], ys: list[float], seed: int) -> dict[str, Any]:
    if len(xs) < 2:
        return {"n": len(xs), "verdict": "too few pairs"}
    res = paired_bootstrap(xs, ys, seed=seed)
    return {
        "n": res.n,
        "mean_a": res.mean_a,
        "mean_b": res.mean_b,
        "delta": res.delta,
        "ci95": [res.low, res.high],
        "verdict": _label(res.low, res.high),
        "interval": res.interval,
    }
