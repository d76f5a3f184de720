"""Serving metrics from per-request records, with `vllm bench serve`'s definitions and result keys.

Over successful requests only (failures are counted apart and left out of every latency):
- TTFT: first chunk - send; E2EL: last chunk - send (non-streamed: the response time, no TTFT);
- TPOT = (E2EL - TTFT) / (output tokens - 1), over requests with more than one output token;
- ITL: the gaps between consecutive chunks of every request, pooled (a chunk may carry several tokens:
  see tokens per chunk);
- mean, median, std (numpy's, population) and percentiles (numpy's linear interpolation), in ms;
- request / output-token / total-token throughput over the benchmark's duration;
- goodput: requests per second that meet every SLO given (TPOT counted 0 for one-token outputs, as vLLM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmgauge.perf.stream_client import RequestRecord

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")


def percentile_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def _stats(name: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict[str, float | None]:
    """mean/median/std/pP of `name` in ms; None when there are no values (vLLM writes 0 there)."""
    out: dict[str, float | None] = {}
    arr = np.asarray(values_s, dtype=float) * 1000
    for key, fn in (("mean", np.mean), ("median", np.median), ("std", np.std)):
        out[f"{key}_{name}_ms"] = float(fn(arr)) if arr.size else None
    for p in percentiles:
        out[f"p{percentile_word(p)}_{name}_ms"] = float(np.percentile(arr, p)) if arr.size else None
    return out


def tpot_s(r: RequestRecord) -> float | None:
    if r.ttft_s is None or r.e2el_s is None or r.output_tokens <= 1:
        return None
    return (r.e2el_s - r.ttft_s) / (r.output_tokens - 1)


def parse_goodput(items: Sequence[str]) -> dict[str, float]:
    """`ttft:200 tpot:50 e2el:1000` (ms) -> {"ttft": 200.0, ...}; anything else is an error naming the item."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or name not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"--goodput {item!r}: use NAME:MS with NAME one of ttft, tpot, e2el")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--goodput {item!r}: {value!r} is not a number of milliseconds") from None
        if out[name] <= 0:
            raise ValueError(f"--goodput {item!r}: the SLO must be positive")
    return out


def _meets(r: RequestRecord, slos: dict[str, float]) -> bool:
    """Every SLO met (seconds compared as vLLM does: slo_ms / 1000 >= value); TPOT 0 for one-token outputs."""
    values = {"ttft": r.ttft_s, "tpot": tpot_s(r) or 0.0, "e2el": r.e2el_s}
    for name, slo_ms in slos.items():
        v = values[name]
        if v is None or not slo_ms / 1000 >= v:
            return False
    return True


def _peak_per_second(ok: Sequence[RequestRecord]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s (chunks per 1 s bucket) and max_concurrent_requests."""
    if not ok:
        return 0.0, 0
    t0 = min(r.start_s for r in ok)
    t1 = max(r.start_s + (r.e2el_s or 0.0) for r in ok)
    n = int(math.ceil(t1 - t0)) + 1
    tokens, conc = np.zeros(n), np.zeros(n)
    for r in ok:
        for t in r.chunk_times_s:
            b = int(r.start_s + t - t0)
            if 0 <= b < n:
                tokens[b] += 1
        for s in range(int(r.start_s - t0), int(r.start_s + (r.e2el_s or 0.0) - t0) + 1):
            conc[s] += 1
    return float(tokens.max()), int(conc.max())


def calculate(
    records: Sequence[RequestRecord],
    duration_s: float,
    percentiles: Sequence[float] = (99.0,),
    goodput: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The vLLM result keys (plus `lmgauge_*` extras computed from the same records)."""
    ok = [r for r in records if r.success]
    failed = [r for r in records if not r.success]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    tpots = [t for t in (tpot_s(r) for r in ok) if t is not None]
    itls = [g for r in ok for g in r.itl_s]
    e2els = [r.e2el_s for r in ok if r.e2el_s is not None]
    total_in = sum(r.prompt_len or 0 for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    good = None
    if goodput:
        good = sum(1 for r in ok if _meets(r, goodput)) / duration_s
    peak_tok, peak_conc = _peak_per_second(ok)
    out: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(failed),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration_s,
        "request_goodput": good,
        "output_throughput": total_out / duration_s,
        "total_token_throughput": (total_in + total_out) / duration_s,
        "max_output_tokens_per_s": peak_tok,
        "max_concurrent_requests": peak_conc,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        out.update(_stats(name, values, percentiles))
    out.update(_stats("client_queue_time", [r.queue_s for r in ok], percentiles))
    out.update(_extras(ok, failed, records, percentiles))
    return out


def _extras(ok, failed, records, percentiles) -> dict[str, Any]:
    """What vLLM does not report: tokens per chunk, where output token counts came from, failures."""
    per_chunk = [n for r in ok for n in r.chunk_tokens if n is not None]
    est = [r.output_tokens / len(r.chunk_times_s) for r in ok if r.chunk_times_s and r.output_tokens]
    sources: dict[str, int] = {}
    for r in ok:
        sources[r.output_tokens_source] = sources.get(r.output_tokens_source, 0) + 1
    errors: dict[str, int] = {}
    for r in failed:
        key = (r.error or "")[:200]
        errors[key] = errors.get(key, 0) + 1
    return {
        "lmgauge_tokens_per_chunk": {
            # output tokens / chunks, per request: above 1 means a chunk carries several tokens, and
            # ITL (a gap between chunks) is then longer than TPOT (a time per token)
            "mean": float(np.mean(est)) if est else None,
            "max": float(np.max(est)) if est else None,
            "chunks_with_several_tokens": sum(1 for n in per_chunk if n > 1) if per_chunk else None,
            "chunks_counted": len(per_chunk),
        },
        "lmgauge_output_tokens_source": sources,
        "lmgauge_streamed_requests": sum(1 for r in ok if r.streamed),
        "lmgauge_errors": errors,
        "lmgauge_requests": len(records),
    }
