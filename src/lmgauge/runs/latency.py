"""A task's latency summary (results' `latency`) from the `latency` of its samples' answers.

Served backends time each request (lmgauge.models.served); in-process backends do not, and their
tasks get no summary. Mean, median and percentiles use numpy's linear interpolation, as
`lmgauge perf` does, and its key names (mean_e2el_ms, p99_ttft_ms, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lmgauge.runs.records import LatencySummary

PERCENTILES = (90, 99)


def _stats(name: str, values_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(values_s, dtype=float) * 1000
    out = {f"mean_{name}_ms": float(ms.mean()), f"median_{name}_ms": float(np.median(ms))}
    out.update({f"p{p}_{name}_ms": float(np.percentile(ms, p)) for p in PERCENTILES})
    return {k: round(v, 3) for k, v in out.items()}


def latency_summary(samples: Iterable[dict[str, Any]]) -> LatencySummary | None:
    """Over every answer that carries a latency; None when none does (an in-process run)."""
    e2el: list[float] = []
    ttft: list[float] = []
    calls = retried = 0
    out_tokens: int | None = None
    for s in samples:
        for a in s.get("answers") or ():
            lat = a.get("latency")
            if not lat:
                continue
            e2el.append(lat["e2el_s"])
            calls += lat.get("calls", 1)
            retried += lat.get("tries", 1) > lat.get("calls", 1)
            if lat.get("ttft_s") is not None:
                ttft.append(lat["ttft_s"])
            if "text" in a:  # a generation: its tokens are the request's output
                out_tokens = (out_tokens or 0) + int(a.get("n_tokens") or 0)
    if not e2el:
        return None
    fields: dict[str, Any] = {"requests": len(e2el), "calls": calls, "retried": retried, "streamed": len(ttft)}
    if out_tokens is not None:
        fields["output_tokens"] = out_tokens
    fields.update(_stats("e2el", e2el))
    if ttft:
        fields.update(_stats("ttft", ttft))
    return LatencySummary(**fields)
