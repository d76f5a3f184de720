"""Served MMLU log-likelihood: one request per question (next-token top-k) vs one per choice.

Issue 16's item 7: through a real vLLM CPU server, MMLU 5-shot (vs_lmeval.py's 5 subjects, 20
questions each) scored both ways in one process, back to back, the top-k path first (the server's
prefix cache starts cold; the per-choice requests, prompt logprobs, do not use it), then optionally
the hf backend in-process on the same requests (never at the same time as the server works):

  scripts/servers/serve.py vllm --max-len 4096 -- sh -c \\
      'python benchmarks/served_topk.py --api-url $LMGAUGE_SERVER_URL/v1 --limit 20 --hf --json figures.json'

Prints per path the wall time, the requests sent and what answered (scored_from), then the
predictions equal between the paths (and to the hf backend's), the largest |log-likelihood
difference|, the speed-up and the load average before and after. --api-tokenizer defaults to the
folder the server loaded (vLLM's /v1/models `root`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx

SUBJECTS = ["abstract_algebra", "astronomy", "high_school_us_history", "college_biology", "marketing"]


def questions(subjects: list[str], limit: int, num_fewshot: int) -> tuple[list, list[tuple]]:
    """The requests of each subject's first `limit` docs, and (task, doc, doc id, first request)."""
    import lmgauge.tasks  # noqa: F401  # registers the tasks
    from lmgauge.tasks.registry import build

    reqs, docs = [], []
    for s in subjects:
        task = build(f"mmlu_{s}", num_fewshot=num_fewshot, seed=1234)
        loaded, _ = task.load()
        for i, d in enumerate(loaded[:limit]):
            docs.append((task, d, i, len(reqs)))
            reqs += task.requests(d, i)
    return reqs, docs


def predictions(docs: list[tuple], results: list) -> list:
    return [t.score(d, i, results[at : at + len(t.requests(d, i))])["pred"] for t, d, i, at in docs]


def served_tokenizer(api_url: str) -> str:
    root = httpx.get(f"{api_url}/models", timeout=30).json()["data"][0].get("root")
    if not root or not Path(root).is_dir():
        raise SystemExit(f"the server names no local model folder ({root!r}): give --api-tokenizer")
    return root


def timed(model, reqs: list) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = model.loglikelihood(reqs)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api-url", default=os.environ.get("LMGAUGE_SERVER_URL", "http://127.0.0.1:8000") + "/v1")
    p.add_argument("--api-tokenizer", help="default: the folder the server loaded")
    p.add_argument("--subjects", nargs="+", default=SUBJECTS)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--num-fewshot", type=int, default=5)
    p.add_argument("--topk", type=int, default=20)
    p.add_argument("--hf", action="store_true", help="also the hf backend in-process (the tokenizer's folder)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    from lmgauge.config import ModelConfig
    from lmgauge.models import build_model

    tokenizer = args.api_tokenizer or served_tokenizer(args.api_url)
    reqs, docs = questions(args.subjects, args.limit, args.num_fewshot)
    load_before = os.getloadavg()
    figures: dict = {"questions": len(docs), "requests": len(reqs), "subjects": args.subjects}
    results = {}
    for path, k in (("topk", args.topk), ("per_choice", 0)):
        cfg = ModelConfig(backend="openai", api_url=args.api_url, tokenizer_path=tokenizer, api_topk=k)
        model = build_model(cfg)
        out, wall = timed(model, reqs)
        results[path] = out
        figures[path] = {
            "wall_s": round(wall, 1),
            "requests_sent": model.stats.requests,
            "errors": sum(1 for r in out if r.error),
            "scored_from": dict(model.scored_from),
            "k": model.topk,
        }
        print(f"{path:<10} {wall:8.1f} s  {model.stats.requests:4d} requests  {dict(model.scored_from)}", flush=True)
    preds = {path: predictions(docs, out) for path, out in results.items()}
    pairs = {"topk_vs_per_choice": (results["topk"], results["per_choice"])}
    if args.hf:
        from lmgauge.models.hf import HFModel

        hf = HFModel(tokenizer, device="cpu", dtype="float32")
        results["hf"], wall = timed(hf, reqs)
        preds["hf"] = predictions(docs, results["hf"])
        figures["hf"] = {"wall_s": round(wall, 1)}
        pairs |= {
            "topk_vs_hf": (results["topk"], results["hf"]),
            "per_choice_vs_hf": (results["per_choice"], results["hf"]),
        }
    for name, (a, b) in pairs.items():
        x, y = name.split("_vs_")
        figures[name] = {
            "pred_equal": sum(p == q for p, q in zip(preds[x], preds[y])),
            "is_greedy_equal": sum(r.is_greedy == s.is_greedy for r, s in zip(a, b)),
            "max_abs_logprob_diff": max(abs(r.logprob - s.logprob) for r, s in zip(a, b)),
        }
        f = figures[name]
        print(
            f"{name:<22} predictions equal {f['pred_equal']}/{len(docs)}, is_greedy equal "
            f"{f['is_greedy_equal']}/{len(reqs)}, max |dlogprob| {f['max_abs_logprob_diff']:.2e}"
        )
    figures["speedup"] = round(figures["per_choice"]["wall_s"] / figures["topk"]["wall_s"], 2)
    figures["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(
        f"speed-up {figures['speedup']}x; load average before {load_before}, after {figures['load_average']['after']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    same = figures["topk_vs_per_choice"]["pred_equal"] == len(docs)
    return 0 if same and not figures["topk"]["errors"] and not figures["per_choice"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
