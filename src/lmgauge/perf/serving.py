"""`lmgauge perf --api-url`: prompts, the sweep over concurrencies or rates, and the files it writes.

Prompts: random with exact token lengths (prompts.py; lengths drawn as vLLM's random dataset does,
[L(1-r), L(1+r)]), a JSONL file (`{"prompt": ..., "output_len": ...}` per line), or a benchmark task's
real prompts. With the same seed two runs send the same prompts on the same schedule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lmgauge.perf import metrics
from lmgauge.perf.load import LoadSpec, PointResult, run_point
from lmgauge.perf.prompts import random_prompts, sample_lengths
from lmgauge.perf.stream_client import Endpoint, RequestSpec, retokenize_missing
from lmgauge.runs.rundir import dumps, write_json_atomic

log = logging.getLogger(__name__)

CONVENTIONS = {
    "source": "vllm bench serve (vllm/benchmarks/serve.py calculate_metrics, vllm 0.32)",
    "clock": "starts when the request is sent, after its concurrency slot is taken; client queue time apart",
    "ttft": "first streamed event carrying choices (text may be empty) - send",
    "e2el": "last streamed event carrying choices - send; not streamed: response time",
    "tpot": "(e2el - ttft) / (output_tokens - 1), over requests with more than one output token",
    "itl": "gaps between consecutive chunks, all requests pooled; a chunk may carry several tokens",
    "output_tokens": "server usage (stream_options.include_usage), else per-chunk token ids/logprobs, "
    "else re-tokenized text; lmgauge_output_tokens_source counts each",
    "percentiles": "numpy.percentile, linear interpolation; std is numpy's population std",
    "throughput": "over the benchmark duration: first send to last answer, warm-up excluded",
    "failures": "counted in `failed`, kept in the request records, left out of every latency and throughput",
    "random_lengths": "integer-uniform in [floor(L(1-r)), ceil(L(1+r))] (vLLM --random-range-ratio)",
    "goodput": "requests/s meeting every SLO; TPOT 0 for one-token outputs (vLLM)",
    "empty_metric": "null where vLLM writes 0 (no value: e.g. TTFT of a non-streamed run)",
}


class ServingError(ValueError):
    """Bad serving options or an endpoint that cannot be benchmarked; the message says which."""


def resolve_endpoint(api_url: str, endpoint: str, api_type: str | None) -> tuple[str, str, str]:
    """(base URL, full request URL, kind) from what a user gives: http://H:P, http://H:P/v1, a full path."""
    url = api_url.rstrip("/")
    kind = api_type or ("lightllm" if url.endswith(("/generate", "/generate_stream")) else None)
    if kind == "lightllm":
        base = url.rsplit("/generate", 1)[0] if "/generate" in url else url
        return base, base + "/generate", "lightllm"
    for tail, k in (("/v1/chat/completions", "chat"), ("/v1/completions", "completions")):
        if url.endswith(tail):
            return url[: -len(tail)], url, k
    base = url.removesuffix("/v1")
    kind = "chat" if endpoint == "chat" else "completions"
    return base, base + ("/v1/chat/completions" if kind == "chat" else "/v1/completions"), kind


def served_model(base: str, api_key: str | None) -> str:
    """The one model /v1/models lists."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(base + "/v1/models", headers=headers, timeout=30)
        r.raise_for_status()
        ids = [m["id"] for m in r.json()["data"]]
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as e:
        raise ServingError(f"{base}/v1/models did not list the served model ({e}); give --api-model") from None
    if len(ids) != 1:
        raise ServingError(f"{base}/v1/models lists {len(ids)} models ({', '.join(ids)}): pick one with --api-model")
    return ids[0]


def load_tokenizer(source: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    p = Path(source).expanduser()
    kwargs: dict[str, Any] = {}
    if p.suffix.lower() == ".gguf":
        p, kwargs["gguf_file"] = p.parent, p.name
    try:
        return AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as e:
        raise ServingError(f"--tokenizer {source!r} could not be loaded: {e}") from None


@dataclass
class PromptSource:
    kind: str = "random"  # random | jsonl | task
    input_len: int = 1024
    output_len: int = 128
    range_ratio: float = 0.0
    path: str | None = None
    task: str | None = None


def build_specs(src: PromptSource, n: int, tokenizer: Any, seed: int) -> list[RequestSpec]:
    if src.kind == "random":
        if tokenizer is None:
            raise ServingError("random prompts of exact token lengths need the model's tokenizer: give --tokenizer")
        rng = np.random.default_rng(seed)
        specials = int(tokenizer.num_special_tokens_to_add()) if hasattr(tokenizer, "num_special_tokens_to_add") else 0
        ins = sample_lengths(max(1, src.input_len - specials), src.range_ratio, n, rng)
        outs = sample_lengths(src.output_len, src.range_ratio, n, rng)
        prompts = random_prompts(tokenizer, ins, seed)
        return [RequestSpec(i, p.text, len(p.ids) + specials, m) for i, (p, m) in enumerate(zip(prompts, outs))]
    if src.kind == "jsonl":
        return _jsonl_specs(Path(src.path or ""), n, src.output_len, tokenizer)
    return _task_specs(src.task or "", n, src.output_len, tokenizer)


def _count(tokenizer: Any, text: str) -> int | None:
    return len(tokenizer(text).input_ids) if tokenizer is not None else None


def _jsonl_specs(path: Path, n: int, default_out: int, tokenizer: Any) -> list[RequestSpec]:
    if not path.is_file():
        raise ServingError(f"--dataset-path {str(path)!r} is not a file")
    specs: list[RequestSpec] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ServingError(f"{path}: line {line_no}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise ServingError(f"{path}: line {line_no}: needs a string 'prompt' (and optionally 'output_len')")
            out = row.get("output_len", default_out)
            if not isinstance(out, int) or out < 1:
                raise ServingError(f"{path}: line {line_no}: output_len {out!r} is not a positive integer")
            specs.append(RequestSpec(len(specs), row["prompt"], _count(tokenizer, row["prompt"]), out))
            if len(specs) >= n:
                break
    if not specs:
        raise ServingError(f"{path}: no prompts")
    return specs


def _task_specs(name: str, n: int, output_len: int, tokenizer: Any) -> list[RequestSpec]:
    from lmgauge.requests import GenerateRequest, LoglikelihoodRequest
    from lmgauge.tasks.registry import UnknownTask, build, expand

    try:
        (task_name, mode), *_ = expand(name)
        task = build(task_name, mode)
        docs, where = task.load()
    except UnknownTask as e:
        raise ServingError(str(e)) from None
    specs = []
    for i, doc in enumerate(docs[:n]):
        req = task.requests(doc, i)[0]
        if isinstance(req, GenerateRequest):
            prompt = req.prompt
        elif isinstance(req, LoglikelihoodRequest):
            prompt = req.context
        else:
            raise ServingError(f"--task {name}: its requests are {type(req).__name__}, not prompts")
        specs.append(RequestSpec(i, prompt, _count(tokenizer, prompt), output_len))
    if not specs:
        raise ServingError(f"--task {name}: no docs in {where}")
    return specs


@dataclass
class SweepPoint:
    max_concurrency: int | None
    request_rate: float

    @property
    def label(self) -> str:
        rate = "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"
        conc = f"_conc{self.max_concurrency}" if self.max_concurrency else ""
        return f"rate{rate}{conc}"


@dataclass
class ServingRun:
    endpoint: Endpoint
    base_url: str
    specs: list[RequestSpec]
    points: list[SweepPoint]
    burstiness: float = 1.0
    duration_s: float | None = None
    num_warmups: int = 1
    seed: int = 0
    timeout_s: float = 600.0
    percentiles: list[float] = field(default_factory=lambda: [99.0])
    goodput: dict[str, float] = field(default_factory=dict)
    tokenizer: Any = None
    tokenizer_id: str | None = None

    def load_spec(self, point: SweepPoint) -> LoadSpec:
        """The load of one sweep point: its concurrency or rate, with the run's schedule settings."""
        return LoadSpec(
            max_concurrency=point.max_concurrency,
            request_rate=point.request_rate,
            burstiness=self.burstiness,
            duration_s=self.duration_s,
            num_warmups=self.num_warmups,
            seed=self.seed,
            timeout_s=self.timeout_s,
        )


def run_sweep(run: ServingRun, root: Path, on_point=None) -> list[dict[str, Any]]:
    """Every sweep point in order; each point's files are written as soon as it finishes."""
    out_dir = root / "serving"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for point in run.points:
        res = asyncio.run(run_point(run.endpoint, run.specs, run.load_spec(point)))
        retokenize_missing(res.records, run.tokenizer)
        result = point_result(run, point, res)
        with (out_dir / f"{point.label}.requests.jsonl").open("w", encoding="utf-8") as f:
            for r in res.records:
                f.write(dumps(r.to_json()) + "\n")
        write_json_atomic(out_dir / f"{point.label}.json", result)
        results.append(result)
        write_json_atomic(out_dir / "sweep.json", sweep_summary(results))
        if on_point is not None:
            on_point(point, result)
    return results


def point_result(run: ServingRun, point: SweepPoint, res: PointResult) -> dict[str, Any]:
    """vLLM's --save-result layout: setup keys, then the metrics, then lmgauge's extras."""
    ep = run.endpoint
    head = {
        "date": time.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": {"completions": "openai", "chat": "openai-chat", "lightllm": "lightllm"}[ep.kind],
        "backend": {"completions": "openai", "chat": "openai-chat", "lightllm": "lightllm"}[ep.kind],
        "label": point.label,
        "model_id": ep.model,
        "tokenizer_id": run.tokenizer_id,
        "num_prompts": len(run.specs) if run.duration_s is None else None,
        "request_rate": "inf" if math.isinf(point.request_rate) else point.request_rate,
        "burstiness": run.burstiness,
        "max_concurrency": point.max_concurrency,
    }
    body = metrics.calculate(res.records, res.duration_s, run.percentiles, run.goodput or None)
    if not any(r.streamed for r in res.records):
        for k in list(body):
            if k.endswith(("_ttft_ms", "_tpot_ms", "_itl_ms")):
                body[k] = None
    return {
        **head,
        **body,
        "lmgauge_conventions": CONVENTIONS,
        "lmgauge_self_check": res.self_check,
        "lmgauge_endpoint": {
            "url": ep.url,
            "kind": ep.kind,
            "stream": ep.stream,
            "forced_output_len": ep.force_output_len,
        },
        "lmgauge_duration_mode_s": run.duration_s,
        "lmgauge_num_warmups": run.num_warmups,
        "lmgauge_seed": run.seed,
        "lmgauge_goodput_slo_ms": run.goodput or None,
    }


SATURATION_THROUGHPUT_GAIN = 0.05
SATURATION_TTFT_RISE = 0.20


def sweep_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The points side by side; a point is saturated when output throughput rose < 5% over the previous
    point while mean TTFT rose > 20% (more load buys only waiting)."""
    rows = []
    prev = None
    for r in results:
        sat = False
        if prev is not None and prev["output_throughput"] > 0 and (prev.get("mean_ttft_ms") or 0) > 0:
            gain = r["output_throughput"] / prev["output_throughput"] - 1
            rise = (r.get("mean_ttft_ms") or 0) / prev["mean_ttft_ms"] - 1
            sat = gain < SATURATION_THROUGHPUT_GAIN and rise > SATURATION_TTFT_RISE
        rows.append(
            {
                k: r.get(k)
                for k in (
                    "label",
                    "max_concurrency",
                    "request_rate",
                    "completed",
                    "failed",
                    "request_throughput",
                    "output_throughput",
                    "mean_ttft_ms",
                    "median_ttft_ms",
                    "mean_tpot_ms",
                    "mean_itl_ms",
                    "mean_e2el_ms",
                )
            }
            | {"saturated": sat, "client_limited": r["lmgauge_self_check"].get("client_limited")}
        )
        prev = r
    first = next((x["label"] for x in rows if x["saturated"]), None)
    return {"points": rows, "saturation_at": first, "saturation_rule": sweep_summary.__doc__}
