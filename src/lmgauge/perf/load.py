"""One benchmark point: send requests closed-loop (a concurrency limit) and/or open-loop (arrivals on a
schedule), excluding warm-up requests, and check that the load generator itself kept up.

Closed loop with --num-prompts (vLLM's way): every request arrives at 0 and waits for one of
`max_concurrency` slots; the wait is its client queue time, reported apart and never inside TTFT.
Closed loop with --duration: `max_concurrency` workers send back to back until the time is up.
Open loop: requests arrive on the schedule (schedule.py), bounded by the concurrency limit if given.

Self-check: the event loop's lag (a 5 ms timer's overshoot), how late arrivals left against their
schedule, the achieved against the asked arrival rate, and the client's CPU use. A warning names what
made the client, not the server, the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from lmgauge.perf import stream_client
from lmgauge.perf.schedule import arrival_times
from lmgauge.perf.stream_client import Endpoint, RequestRecord, RequestSpec

LAG_TICK_S = 0.005
LAG_WARN_MS = 20.0
CPU_WARN = 0.9  # of one core
RATE_WARN = 0.95  # achieved / asked arrival rate


@dataclass
class LoadSpec:
    max_concurrency: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    duration_s: float | None = None  # instead of one pass over the prompts
    num_warmups: int = 0
    seed: int = 0
    timeout_s: float = 600.0


@dataclass
class PointResult:
    records: list[RequestRecord]
    duration_s: float
    self_check: dict[str, Any] = field(default_factory=dict)


async def _lag_monitor(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        samples.append(time.perf_counter() - t - LAG_TICK_S)


async def run_point(ep: Endpoint, specs: Sequence[RequestSpec], load: LoadSpec) -> PointResult:
    limit = load.max_concurrency or max(1, len(specs))
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    async with httpx.AsyncClient(limits=limits, timeout=load.timeout_s) as client:
        if load.num_warmups:
            sem = asyncio.Semaphore(load.max_concurrency or load.num_warmups)

            async def warm(i: int) -> RequestRecord:
                async with sem:
                    return await stream_client.send(
                        client, ep, specs[i % len(specs)], time.perf_counter(), load.timeout_s
                    )

            warm_recs = await asyncio.gather(*(warm(i) for i in range(load.num_warmups)))
            bad = [r for r in warm_recs if not r.success]
            if len(bad) == len(warm_recs):
                raise RuntimeError(f"every warm-up request failed; the first: {bad[0].error}")
        lag: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(_lag_monitor(lag, stop))
        cpu0, t0 = time.process_time(), time.perf_counter()
        if load.duration_s is not None and math.isinf(load.request_rate):
            records, late = await _closed_for_duration(client, ep, specs, load, t0), list[float]()
        else:
            records, late = await _scheduled(client, ep, specs, load, t0)
        duration = time.perf_counter() - t0
        cpu = (time.process_time() - cpu0) / duration if duration > 0 else 0.0
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
    records.sort(key=lambda r: r.start_s)
    return PointResult(records, duration, _self_check(records, load, late, lag, cpu))


async def _scheduled(
    client: httpx.AsyncClient, ep: Endpoint, specs: Sequence[RequestSpec], load: LoadSpec, t0: float
) -> tuple[list[RequestRecord], list[float]]:
    """Arrivals on the schedule (all at 0 for rate inf), each waiting for a slot under the limit."""
    if load.duration_s is not None:  # open loop for a time: enough arrivals to cover it, cut at the end
        expected = int(load.request_rate * load.duration_s * 1.5) + 10
        times = [t for t in arrival_times(expected, load.request_rate, load.burstiness, load.seed, rescale=False)]
        times = [t for t in times if t < load.duration_s]
    else:
        times = arrival_times(len(specs), load.request_rate, load.burstiness, load.seed)
    sem = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None
    late: list[float] = []

    async def one(k: int, arrived: float) -> RequestRecord:
        spec = specs[k % len(specs)]
        if k >= len(specs):
            spec = RequestSpec(k, spec.prompt, spec.prompt_len, spec.output_len)
        if sem is None:
            rec = await stream_client.send(client, ep, spec, t0, load.timeout_s)
        else:
            async with sem:
                rec = await stream_client.send(client, ep, spec, t0, load.timeout_s)
        rec.arrival_s = arrived - t0
        return rec

    tasks = []
    for k, at in enumerate(times):
        wait = t0 + at - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        now = time.perf_counter()
        late.append(now - (t0 + at))
        tasks.append(asyncio.create_task(one(k, now)))
    return list(await asyncio.gather(*tasks)), late


async def _closed_for_duration(
    client: httpx.AsyncClient, ep: Endpoint, specs: Sequence[RequestSpec], load: LoadSpec, t0: float
) -> list[RequestRecord]:
    """`max_concurrency` workers, each sending the next prompt as soon as its last answer is in."""
    assert load.duration_s is not None
    counter = iter(range(10**9))
    records: list[RequestRecord] = []

    async def worker() -> None:
        while time.perf_counter() - t0 < (load.duration_s or 0.0):
            k = next(counter)
            base = specs[k % len(specs)]
            now = time.perf_counter()
            rec = await stream_client.send(
                client, ep, RequestSpec(k, base.prompt, base.prompt_len, base.output_len), t0, load.timeout_s
            )
            rec.arrival_s = now - t0
            records.append(rec)

    await asyncio.gather(*(worker() for _ in range(load.max_concurrency or 1)))
    return records


def _self_check(
    records: list[RequestRecord], load: LoadSpec, late: list[float], lag: list[float], cpu: float
) -> dict[str, Any]:
    warnings = []
    out: dict[str, Any] = {"client_cpu_cores": round(cpu, 3)}
    if lag:
        out["event_loop_lag_ms"] = {
            "median": float(np.median(lag) * 1000),
            "p99": float(np.percentile(lag, 99) * 1000),
            "max": float(np.max(lag) * 1000),
        }
        if out["event_loop_lag_ms"]["p99"] > LAG_WARN_MS:
            warnings.append(
                f"event-loop lag p99 {out['event_loop_lag_ms']['p99']:.1f} ms > {LAG_WARN_MS} ms: "
                "the client's timestamps and sends are late, latencies include client delay"
            )
    if late:
        out["send_lateness_ms"] = {"p99": float(np.percentile(late, 99) * 1000), "max": float(np.max(late) * 1000)}
    if not math.isinf(load.request_rate) and len(records) > 1:
        arrivals = sorted(r.arrival_s for r in records)
        span = arrivals[-1] - arrivals[0]
        achieved = (len(arrivals) - 1) / span if span > 0 else math.inf
        out["asked_request_rate"] = load.request_rate
        out["achieved_arrival_rate"] = achieved
        if achieved < RATE_WARN * load.request_rate and len(records) >= 20:
            warnings.append(
                f"arrivals came at {achieved:.2f}/s, asked {load.request_rate:g}/s: the load generator fell behind"
            )
    if cpu > CPU_WARN:
        warnings.append(f"the client used {cpu:.2f} CPU cores: it may be the limit, not the server")
    out["warnings"] = warnings
    out["client_limited"] = bool(warnings)
    return out
