"""Generation throughput: lmgauge's engine on GSM8K (gsm8k_cot, 8-shot) against the model's raw
transformers `generate` on the same prompts, same process, same run.

    python benchmarks/gen_bench.py [--limit 20] [--model PATH] [--device cpu]

Three ways to produce the same greedy answers:
- lmgauge: the engine (shared few-shot prefix computed once, token-budget batches, finished rows
  leave the batch, stop strings checked as text grows);
- raw, one prompt at a time: `model.generate(max_new_tokens=<what lmgauge produced for it>)`, the
  same work with no batching;
- raw, one left-padded batch: `model.generate` over all prompts until the longest answer is done.
Reports generated tokens per second for each and the ratios, and whether the texts agree.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

import lmgauge.tasks  # noqa: F401
from lmgauge.defaults import default_model_path
from lmgauge.engine.generate import cut_at_stop
from lmgauge.models.hf import HFModel
from lmgauge.tasks.registry import build


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    model = HFModel(args.model or default_model_path(), device=args.device, dtype="float32", name="bench")
    task = build("gsm8k_cot")
    docs, _ = task.load()
    docs = docs[: args.limit]
    requests = [task.requests(d, i)[0] for i, d in enumerate(docs)]

    t0 = time.perf_counter()
    ours = model.generate(requests)
    ours_s = time.perf_counter() - t0
    produced = [r.n_tokens for r in ours]
    n_tokens = sum(produced)

    hf, tok = model.model, model.tokenizer
    prompts = [model.encode(r.prompt) for r in requests]
    pad = model.eos_token_id
    t1 = time.perf_counter()
    single_texts = []
    with torch.inference_mode():
        for ids, n in zip(prompts, produced):
            out = hf.generate(
                torch.tensor([ids], device=model.device),
                max_new_tokens=max(n, 1),
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=None,
            )
            text = model.decode(out[0, len(ids) : len(ids) + n].tolist())
            single_texts.append(cut_at_stop(text, task.stop)[0])  # as the engine returns it
    single_s = time.perf_counter() - t1

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    t2 = time.perf_counter()
    with torch.inference_mode():
        hf.generate(ids, attention_mask=mask, max_new_tokens=max(produced), do_sample=False, pad_token_id=pad)
    batch_s = time.perf_counter() - t2
    del tok

    agree = sum(o.text == s for o, s in zip(ours, single_texts))
    figures = {
        "questions": len(docs),
        "generated_tokens": n_tokens,
        "lmgauge_s": round(ours_s, 2),
        "lmgauge_tokens_per_s": round(n_tokens / ours_s, 1),
        "raw_single_s": round(single_s, 2),
        "raw_single_tokens_per_s": round(n_tokens / single_s, 1),
        "raw_batched_s": round(batch_s, 2),
        "raw_batched_useful_tokens_per_s": round(n_tokens / batch_s, 1),
        "speedup_vs_raw_single": round(single_s / ours_s, 2),
        "speedup_vs_raw_batched": round(batch_s / ours_s, 2),
        "texts_equal_to_raw_single": f"{agree}/{len(docs)}",
        "tokens_forwarded": model.stats.forwarded,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }
    for k, v in figures.items():
        print(f"{k:>32}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
