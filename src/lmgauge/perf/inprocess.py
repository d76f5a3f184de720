"""In-process latency of an hf model: first-token and per-token time for one (input, output, batch) case.

One generation of a case: B prompts of exactly N tokens (prompts.py), greedy, forced to exactly M new
tokens (EOS is never looked at), through the model's KV cache, the clock read after a device
synchronisation at every token. From its token times T_1..T_M (seconds since the call began):

- first-token latency = T_1: the prefill of the whole batch plus its first token (what SDKs call
  forward_first_token_time);
- non-first-token latency = (T_M - T_1) / (M - 1): the mean decode step (forward_next_token_time);
- end-to-end = the whole call, from building the input tensor to the generated ids on the host.

Warm-up generations run first and are not counted; repeats give min / median / max.
"""

from __future__ import annotations

import inspect
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lmgauge.perf.cases import Case
from lmgauge.perf.prompts import random_prompts, text_prompts


@dataclass
class Trace:
    """One timed generation."""

    token_times_s: list[float]  # T_1..T_M, since the call began
    e2e_s: float
    generated: list[list[int]]  # the ids generated per row (M each)
    peak_memory_bytes: int | None  # device allocator peak during this generation (CUDA), else None


@dataclass
class Spread:
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))


@dataclass
class CaseResult:
    case: Case
    # The SDK's three figures, all from one repeat: the one with the median end-to-end time, so
    # they add up (E2E = first + (M-1) x next, plus the host copy); medians of each taken apart need not.
    response_time_s: float
    first_token_time_ms: float
    next_token_time_ms: float | None  # None when M == 1: there is no non-first token
    first_token_ms: Spread
    next_token_ms: Spread | None  # None when M == 1: there is no non-first token
    e2e_s: Spread
    prefill_tokens_per_s: float  # B*N / first-token time (the SDK repeat)
    decode_tokens_per_s: float | None  # B / non-first-token time
    output_tokens_per_s: float  # B*M / end-to-end time
    peak_memory_mb: float | None
    memory_kind: str  # what peak_memory_mb is: "cuda_max_allocated" or "process_peak_rss"
    kv_cache_mb: float
    repeats: int
    warmup: int
    traces: list[dict] = field(default_factory=list)  # every repeat's token times, for the JSON

    def row(self) -> dict[str, Any]:
        """The CSV row: the SDK's columns first (medians over repeats), ours after."""
        c = self.case
        nxt = self.next_token_ms
        return {
            "batch_size": c.batch_size,
            "input_seq_len(Encoding)": c.input_len,
            "output_seq_len(Decoding)": c.output_len,
            "ResponseTime(s)": round(self.response_time_s, 6),
            "forward_first_token_time(ms)": round(self.first_token_time_ms, 4),
            "forward_next_token_time(ms)": round(self.next_token_time_ms, 4) if self.next_token_time_ms else "",
            "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 2),
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2) if self.decode_tokens_per_s else "",
            "output_tokens_per_s": round(self.output_tokens_per_s, 2),
            "e2e_min_s": round(self.e2e_s.min, 6),
            "e2e_median_s": round(self.e2e_s.median, 6),
            "e2e_max_s": round(self.e2e_s.max, 6),
            "first_token_min_ms": round(self.first_token_ms.min, 4),
            "first_token_median_ms": round(self.first_token_ms.median, 4),
            "first_token_max_ms": round(self.first_token_ms.max, 4),
            "next_token_min_ms": round(nxt.min, 4) if nxt else "",
            "next_token_median_ms": round(nxt.median, 4) if nxt else "",
            "next_token_max_ms": round(nxt.max, 4) if nxt else "",
            "peak_memory_mb": round(self.peak_memory_mb, 1) if self.peak_memory_mb is not None else "",
            "memory_kind": self.memory_kind,
            "kv_cache_mb": round(self.kv_cache_mb, 3),
            "repeats": self.repeats,
            "warmup": self.warmup,
        }

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["case"] = asdict(self.case)
        return out


CSV_SDK_COLUMNS = [
    "batch_size",
    "input_seq_len(Encoding)",
    "output_seq_len(Decoding)",
    "ResponseTime(s)",
    "forward_first_token_time(ms)",
    "forward_next_token_time(ms)",
]


class TimedGenerator:
    """Greedy generation of exactly M tokens through a transformers causal LM, timed per token."""

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        # transformers >= 5.2x names the KV cache argument `cache`; older releases `past_key_values`
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.kv_bytes = 0

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def _cache_of(self, out: Any) -> Any:
        return getattr(out, "cache", None) if self.cache_arg == "cache" else out.past_key_values

    def generate(self, rows: Sequence[Sequence[int]], m: int) -> Trace:
        torch = self.torch
        on_cuda = self.device.startswith("cuda")
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        times: list[float] = []
        steps = []
        with torch.inference_mode():
            self._sync()
            t0 = time.perf_counter()
            ids = torch.tensor([list(r) for r in rows], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1, :].argmax(-1, keepdim=True)
            self._sync()
            times.append(time.perf_counter() - t0)
            steps.append(tok)
            cache = self._cache_of(out)
            for _ in range(m - 1):
                out = self.model(input_ids=tok, use_cache=True, logits_to_keep=1, **{self.cache_arg: cache})
                cache = self._cache_of(out)
                tok = out.logits[:, -1, :].argmax(-1, keepdim=True)
                self._sync()
                times.append(time.perf_counter() - t0)
                steps.append(tok)
            generated = torch.cat(steps, dim=1).cpu().tolist()
            e2e = time.perf_counter() - t0
        self.kv_bytes = _cache_bytes(cache)
        peak = int(torch.cuda.max_memory_allocated(self.device)) if on_cuda else None
        return Trace(times, e2e, generated, peak)


def _cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers cache's key and value tensors."""
    total = 0
    for layer in getattr(cache, "layers", []) or []:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None and hasattr(t, "nbytes"):
                total += int(t.nbytes)
    return total


@dataclass
class InProcessOptions:
    warmup: int = 1
    repeats: int = 3
    seed: int = 0
    prompt_text: str | None = None  # cut prompts from this text instead of random ids


def case_prompts(tokenizer: Any, case: Case, opts: InProcessOptions) -> list[list[int]]:
    """B distinct prompts of exactly N tokens; the same for a case whatever other cases run."""
    seed = opts.seed * 1_000_003 + case.input_len * 1009 + case.batch_size
    lengths = [case.input_len] * case.batch_size
    if opts.prompt_text is not None:
        prompts = text_prompts(tokenizer, opts.prompt_text, lengths, seed)
    else:
        prompts = random_prompts(tokenizer, lengths, seed)
    return [list(p.ids) for p in prompts]


def measure_case(gen: TimedGenerator, rows: list[list[int]], case: Case, opts: InProcessOptions) -> CaseResult:
    """Warm up, then time `opts.repeats` generations of the case."""
    if opts.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {opts.repeats}")
    m = case.output_len
    for _ in range(opts.warmup):
        gen.generate(rows, m)
    traces = [gen.generate(rows, m) for _ in range(opts.repeats)]
    for t in traces:  # the forced length is the point of the measurement: check it
        if len(t.token_times_s) != m or any(len(g) != m for g in t.generated):
            raise RuntimeError(f"case {case}: a generation did not produce exactly {m} tokens")
    first_ms = [t.token_times_s[0] * 1000 for t in traces]
    next_ms = [(t.token_times_s[-1] - t.token_times_s[0]) * 1000 / (m - 1) for t in traces] if m > 1 else None
    e2e = [t.e2e_s for t in traces]
    b, n = case.batch_size, case.input_len
    first, nxt, end = Spread.of(first_ms), Spread.of(next_ms) if next_ms else None, Spread.of(e2e)
    peaks = [t.peak_memory_bytes for t in traces if t.peak_memory_bytes is not None]
    if peaks:
        peak_mb, kind = max(peaks) / 2**20, "cuda_max_allocated"
    else:  # CPU: the process's high-water mark so far (it only grows over a run's cases)
        peak_mb, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"
    mid = sorted(range(len(traces)), key=lambda i: e2e[i])[(len(traces) - 1) // 2]
    return CaseResult(
        case=case,
        response_time_s=e2e[mid],
        first_token_time_ms=first_ms[mid],
        next_token_time_ms=next_ms[mid] if next_ms else None,
        first_token_ms=first,
        next_token_ms=nxt,
        e2e_s=end,
        prefill_tokens_per_s=b * n / (first_ms[mid] / 1000),
        decode_tokens_per_s=b / (next_ms[mid] / 1000) if next_ms else None,
        output_tokens_per_s=b * m / e2e[mid],
        peak_memory_mb=peak_mb,
        memory_kind=kind,
        kv_cache_mb=gen.kv_bytes / 2**20,
        repeats=opts.repeats,
        warmup=opts.warmup,
        traces=[{"token_times_s": t.token_times_s, "e2e_s": t.e2e_s} for t in traces],
    )


def run_cases(
    model: Any,
    tokenizer: Any,
    device: str,
    cases: Sequence[Case],
    opts: InProcessOptions,
    on_case: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case in order; `on_case` sees each result as soon as it exists (so files grow as it runs)."""
    max_len = getattr(model.config, "max_position_embeddings", None)
    for c in cases:
        if max_len and c.input_len + c.output_len > max_len:
            raise ValueError(
                f"case [{c.input_len}, {c.output_len}]: {c.input_len + c.output_len} tokens exceed the model's "
                f"{max_len} positions"
            )
    gen = TimedGenerator(model, device)
    results = []
    for c in cases:
        r = measure_case(gen, case_prompts(tokenizer, c, opts), c, opts)
        results.append(r)
        if on_case is not None:
            on_case(r)
    return results
