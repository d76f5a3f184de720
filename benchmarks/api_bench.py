"""How close does lmgauge's HTTP backend come to the server's own limit?

Two timings of the same log-likelihood requests (a task's, e.g. MMLU), in one process against one
server, alternating so that neither always runs on a warm cache:

  eval   lmgauge's openai backend: tokenization, bounded concurrency, retries, parsing, callbacks
  raw    the very same JSON bodies posted by a plain httpx client with every request in flight at
         once and nothing but the HTTP round trip: what the server itself can do

ratio = eval / raw; 1.0 means the client costs nothing. Usage:

  python benchmarks/api_bench.py --api-url http://127.0.0.1:8000/v1 [--api-tokenizer DIR] \\
      [--datasets mmlu_astronomy] [--limit 20] [--num-fewshot 5] [--concurrency 64] [--repeats 2]

Against the tests' stand-in server: `python tests/api_standin.py --port 8000` in another shell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx


def build_requests(datasets: list[str], limit: int, num_fewshot: int | None) -> list:
    from lmgauge.tasks.registry import build, expand, options_schema

    reqs = []
    for name in datasets:
        for task_name, mode in expand(name):
            options = {"seed": 1234} | ({"num_fewshot": num_fewshot} if num_fewshot is not None else {})
            takes = options_schema(task_name, mode).model_fields  # as the planner does: where the task takes them
            task = build(task_name, mode, **{k: v for k, v in options.items() if k in takes})
            docs, _ = task.load()
            reqs += [r for i, d in enumerate(docs[:limit]) for r in task.requests(d, i)]
    return reqs


async def post_all(url: str, bodies: list[dict], headers: dict) -> int:
    """Every body at once, as fast as the server answers; returns the failures."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=600, trust_env=False) as client:
        answers = await asyncio.gather(*(client.post(url, json=b) for b in bodies), return_exceptions=True)
    return sum(1 for a in answers if isinstance(a, Exception) or a.status_code != 200)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api-url", required=True)
    p.add_argument("--api-model")
    p.add_argument("--api-key-env")
    p.add_argument("--api-tokenizer", help="send the hf backend's token ids (as a real evaluation would)")
    p.add_argument("--datasets", nargs="+", default=["mmlu_astronomy"])
    p.add_argument("--limit", type=int, default=20, help="docs per task")
    p.add_argument("--num-fewshot", type=int)
    p.add_argument("--concurrency", type=int, default=64, help="the backend's requests in flight")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    from lmgauge.models.openai_api import OpenAIModel

    reqs = build_requests(args.datasets, args.limit, args.num_fewshot)
    model = OpenAIModel(
        args.api_url,
        api_model=args.api_model,
        api_key_env=args.api_key_env,
        tokenizer_path=args.api_tokenizer,
        concurrency=args.concurrency,
    )
    bodies = model.loglikelihood_bodies(reqs)
    url = f"{model.base_url}/completions"
    tokens = sum(len(b["prompt"]) if isinstance(b["prompt"], list) else 0 for b in bodies)
    print(
        f"{len(reqs)} log-likelihood requests ({', '.join(args.datasets)}, {args.limit} docs each) "
        f"-> {url} ({model.api_model}); prompts as {'token ids, ' + str(tokens) + ' tokens' if tokens else 'text'}"
    )

    evals, raws, failures = [], [], 0
    for k in range(args.repeats):
        t0 = time.perf_counter()
        results = model.loglikelihood(reqs)
        evals.append(time.perf_counter() - t0)
        errors = sum(1 for r in results if r.error)
        t0 = time.perf_counter()
        raw_failures = asyncio.run(post_all(url, bodies, model.link.headers))
        raws.append(time.perf_counter() - t0)
        failures += raw_failures + errors
        print(
            f"  round {k + 1}: eval {evals[-1]:.2f}s ({errors} errors)   raw {raws[-1]:.2f}s ({raw_failures} failures)"
        )
    best_eval, best_raw = min(evals), min(raws)
    figures = {
        "requests": len(reqs),
        "prompt_tokens": tokens or None,
        "concurrency": args.concurrency,
        "eval_s": round(best_eval, 3),
        "raw_s": round(best_raw, 3),
        "ratio": round(best_eval / best_raw, 3),
        "eval_requests_per_s": round(len(reqs) / best_eval, 2),
        "raw_requests_per_s": round(len(reqs) / best_raw, 2),
    }
    print(
        f"best of {args.repeats}: eval {best_eval:.2f}s, raw {best_raw:.2f}s, ratio {figures['ratio']:.3f} "
        f"({figures['eval_requests_per_s']} vs {figures['raw_requests_per_s']} requests/s)"
    )
    if failures:
        print(f"warning: {failures} requests failed: a failed request is quick, so the ratio is not to be trusted")
    figures["failures"] = failures
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
