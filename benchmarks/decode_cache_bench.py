"""The engine's generation with a decoding cache allocated up front (models/kv_cache.py) vs the
growing DynamicCache (a torch.cat of the whole cache per layer per step), interleaved, same run.

    python benchmarks/decode_cache_bench.py [--limit 8] [--repeats 2] [--max-new-tokens 256]

gsm8k_cot 8-shot prompts, greedy. Each repeat runs both ways, alternating which goes first; the
fastest time per way is kept (on a loaded machine the minimum is the least disturbed figure). Prints
wall seconds, generated tokens per second, the ratio, and whether the texts are identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import lmgauge.tasks  # noqa: F401
from lmgauge.defaults import default_model_path
from lmgauge.models.hf import HFModel
from lmgauge.tasks.registry import build

WAYS = ("growing", "roomy")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    model = HFModel(args.model or default_model_path(), device="cpu", dtype="float32", name="bench")
    task = build("gsm8k_cot")
    docs, _ = task.load()
    requests = [
        replace(task.requests(d, i)[0], max_new_tokens=args.max_new_tokens) for i, d in enumerate(docs[: args.limit])
    ]
    roomy_expand = model.expand_state

    def growing_expand(state, n, room=0):
        return roomy_expand(state, n, 0)  # no room: transformers' own growing cache

    best = dict.fromkeys(WAYS, float("inf"))
    texts: dict[str, list[str]] = {}
    tokens = 0
    for rep in range(args.repeats):
        for way in WAYS if rep % 2 == 0 else WAYS[::-1]:
            model.expand_state = roomy_expand if way == "roomy" else growing_expand  # type: ignore[method-assign]
            t0 = time.perf_counter()
            out = model.generate(requests)
            best[way] = min(best[way], time.perf_counter() - t0)
            texts.setdefault(way, [r.text for r in out])
            tokens = sum(r.n_tokens for r in out)
    figures = {
        "questions": len(requests),
        "generated_tokens": tokens,
        **{f"{w}_s": round(best[w], 2) for w in WAYS},
        **{f"{w}_tokens_per_s": round(tokens / best[w], 1) for w in WAYS},
        "roomy_over_growing_time": round(best["roomy"] / best["growing"], 3),
        "identical_texts": sum(a == b for a, b in zip(texts["growing"], texts["roomy"])),
    }
    for k, v in figures.items():
        print(f"{k:>24}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0 if figures["identical_texts"] == len(requests) else 1


if __name__ == "__main__":
    sys.exit(main())
