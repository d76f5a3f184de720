"""Where an MMLU 5-shot run's time goes, phase by phase, against the model body's floor, same run.

    python benchmarks/engine_profile.py [--limit 10] [--subjects a b ...] [--threads N] [--json F]

Phases (seconds, wall): tokenize (tokenizer calls), prefix forwards (one per shared prefix),
suffix forwards (rows over a prefix's KV cache: the decoder call, less the cache handling inside
it), cache handling (building the n-row cache from a prefix and the cache updates' concatenations),
plain forwards (rows with no shared prefix), scoring (vocabulary projection, log-softmax, picking),
journaling (answers written to disk and merged), and the rest (prompts, grouping, Python).

The floor is what the tokens the engine forwarded cost in the model body alone: the raw decoder's
throughput at batch 8 x 128 random tokens, no cache, measured in this process right after the run.
On a loaded machine absolute figures move; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lmgauge.defaults import default_model_path
from lmgauge.models.hf import HFModel
from lmgauge.runs import journal
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.runner import Progress, TaskSpec, run_task
from lmgauge.tasks import build

SUBJECTS = ["abstract_algebra", "high_school_us_history", "marketing"]


class Phases:
    """Wall time per phase; nested phases are subtracted from the enclosing one."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, time spent in nested phases]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, nested = self._stack.pop()
            spent = time.perf_counter() - start
            self.total[name] += spent - nested
            if self._stack:
                self._stack[-1][1] += spent

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        real: Callable = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.phase(name):
                return real(*args, **kwargs)

        setattr(owner, attr, timed)


def floor_tokens_per_s(model: HFModel, rows: int = 8, width: int = 128, repeats: int = 3) -> float:
    decoder = model.model.get_decoder()
    ids = torch.randint(0, 1000, (rows, width), device=model.device)
    with torch.inference_mode():
        decoder(input_ids=ids, use_cache=False)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            decoder(input_ids=ids, use_cache=False)
            best = min(best, time.perf_counter() - t)
    return rows * width / best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--subjects", nargs="+", default=SUBJECTS)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t_load = time.perf_counter()
    model = HFModel(args.model or default_model_path(), device=args.device, dtype="float32", name="profile")
    t_load = time.perf_counter() - t_load

    ph = Phases()
    ph.wrap(model.tokens, "encode", "tokenize")
    ph.wrap(model.tokens, "encode_document", "tokenize")
    ph.wrap(model, "score_prefix", "prefix forwards")  # the engine's prefix forward (prefix_state wraps it)
    ph.wrap(model, "score_rows_after_prefix", "suffix forwards")
    ph.wrap(model, "score_rows", "plain forwards")
    ph.wrap(model, "_score_hidden", "scoring")
    for attr in ("expand_state", "suffix_cache"):
        if hasattr(model, attr):
            ph.wrap(model, attr, "cache handling")
    from transformers import cache_utils

    # the n-row cache's concatenation with the suffix's keys happens inside the decoder call
    ph.wrap(cache_utils.DynamicLayer, "update", "cache handling")
    ph.wrap(journal.JournalWriter, "append", "journaling")
    ph.wrap(journal.TaskJournal, "merge", "journaling")

    rundir = RunDir.create(tempfile.mkdtemp(prefix="lmgauge-profile-"))
    questions = correct = 0
    t0 = time.perf_counter()
    with ph.phase("rest"):
        for subject in args.subjects:
            name = f"mmlu_{subject}"
            task = build(name)
            samples, _ = run_task(
                model, task, TaskSpec(name, None, {}, args.limit, lambda _model, task=task: task), rundir, Progress()
            )
            questions += len(samples)
            correct += sum(s["correct"] for s in samples)
    run_s = time.perf_counter() - t0

    tps = floor_tokens_per_s(model)
    stats = model.stats
    floor_s = stats.forwarded / tps
    figures: dict[str, Any] = {
        "subjects": args.subjects,
        "questions": questions,
        "accuracy": round(correct / questions, 4),
        "model_load_s": round(t_load, 2),
        "run_s": round(run_s, 2),
        "phases_s": {k: round(v, 3) for k, v in sorted(ph.total.items(), key=lambda kv: -kv[1])},
        "tokens_forwarded": stats.forwarded,
        "tokens_computed": getattr(stats, "computed", None),  # with padding, where the engine counts it
        "floor_tokens_per_s": round(tps, 1),
        "floor_s": round(floor_s, 2),
        "run_over_floor": round(run_s / floor_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "prefix_attention": getattr(model, "prefix_attention", "copies"),
    }
    for k, v in figures.items():
        if k == "phases_s":
            for name, s in v.items():
                print(f"{'phase ' + name:>28}: {s:8.3f} s  {100 * s / run_s:5.1f} %")
        else:
            print(f"{k:>28}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
