"""MMLU 5-shot through the whole lmgauge pipeline vs the model's raw forward, same run, same shapes.

    python benchmarks/mmlu_bench.py [--limit 20] [--subjects a b ...] [--model PATH] [--device cpu]

Prints questions/s, tokens forwarded, peak memory, and the raw forward throughput of the model at
the batch shapes the engine used, measured in this process right after; the ratio shows what the
pipeline (data, prompts, grouping, scoring, journaling) costs on top of the model itself.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import torch

from lmgauge.defaults import default_model_path
from lmgauge.models.hf import HFModel
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.runner import Progress, TaskSpec, run_task
from lmgauge.tasks import build

SUBJECTS = ["abstract_algebra", "astronomy", "high_school_us_history", "college_biology", "marketing"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--subjects", nargs="+", default=SUBJECTS)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    t_load = time.perf_counter()
    model = HFModel(args.model or default_model_path(), device=args.device, dtype="float32", name="bench")
    t_load = time.perf_counter() - t_load

    # every forward the engine makes, by kind: ("plain", rows, width), ("prefix", 1, width) and
    # ("suffix", rows, width, prefix_len) for rows run over a shared prefix's KV cache
    shapes: list[tuple] = []
    real_score_rows, real_score_prefix, real_after = model.score_rows, model.score_prefix, model.score_rows_after_prefix

    def recording_score_rows(rows, targets):
        shapes.append(("plain", len(rows), max(len(r) for r in rows)))
        return real_score_rows(rows, targets)

    def recording_score_prefix(prefix, targets):
        shapes.append(("prefix", 1, len(prefix)))
        return real_score_prefix(prefix, targets)

    def recording_after(state, prefix_len, rows, targets):
        shapes.append(("suffix", len(rows), max(len(r) for r in rows), prefix_len))
        return real_after(state, prefix_len, rows, targets)

    model.score_rows = recording_score_rows  # type: ignore[method-assign]
    model.score_prefix = recording_score_prefix  # type: ignore[method-assign]
    model.score_rows_after_prefix = recording_after  # type: ignore[method-assign]
    rundir = RunDir.create(tempfile.mkdtemp(prefix="lmgauge-bench-"))
    questions = 0
    correct = 0
    t0 = time.perf_counter()
    for subject in args.subjects:
        name = f"mmlu_{subject}"
        task = build(name)
        samples, info = run_task(
            model, task, TaskSpec(name, None, {}, args.limit, lambda _model, task=task: task), rundir, Progress()
        )
        questions += len(samples)
        correct += sum(s["correct"] for s in samples)
    pipeline_s = time.perf_counter() - t0
    forwarded = model.stats.forwarded
    padded = sum(shape[1] * shape[2] for shape in shapes)

    # the raw decoder at the same shapes on random tokens: no data, prompts, grouping or scoring
    from transformers import DynamicCache

    decoder = model.model.get_decoder()
    cache_arg = model._cache_arg
    dev = model.device
    raw_s = 0.0
    with torch.inference_mode():
        for shape in shapes:
            kind, rows, width = shape[:3]
            ids = torch.randint(0, 1000, (rows, width), device=dev)
            kwargs = {"use_cache": kind != "plain"}
            if kind == "suffix":  # the prefix's cache is built outside the timed call, as the engine does once
                out = decoder(input_ids=torch.randint(0, 1000, (1, shape[3]), device=dev), use_cache=True)
                state = out.cache if cache_arg == "cache" else out.past_key_values
                layers = [
                    (lay.keys.expand(rows, -1, -1, -1), lay.values.expand(rows, -1, -1, -1)) for lay in state.layers
                ]
                kwargs[cache_arg] = DynamicCache(ddp_cache_data=layers, config=model.model.config)
            t = time.perf_counter()
            decoder(input_ids=ids, **kwargs)
            raw_s += time.perf_counter() - t

    figures = {
        "subjects": args.subjects,
        "limit": args.limit,
        "questions": questions,
        "accuracy": correct / questions,
        "model_load_s": round(t_load, 2),
        "pipeline_s": round(pipeline_s, 2),
        "questions_per_s": round(questions / pipeline_s, 3),
        "tokens_forwarded": forwarded,
        "padded_tokens": padded,
        "pipeline_tokens_per_s": round(forwarded / pipeline_s, 1),
        "raw_forward_s": round(raw_s, 2),
        "raw_padded_tokens_per_s": round(padded / raw_s, 1),
        "forwards_by_kind": {k: sum(1 for sh in shapes if sh[0] == k) for k in ("plain", "prefix", "suffix")},
        "pipeline_over_raw_time": round(pipeline_s / raw_s, 3),
        "batches": len(shapes),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": model.device,
        "threads": torch.get_num_threads(),
    }
    for k, v in figures.items():
        print(f"{k:>24}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
