#!/usr/bin/env python3
"""Probe what a real server returns for prompt logprobs (the facts docs/servers.md records).

    .venv/bin/python scripts/servers/probe.py vllm [--out probe-vllm.json]
    .venv/bin/python scripts/servers/probe.py llamacpp --url http://127.0.0.1:8000   # a running one

Sends /v1/completions with echo + logprobs (max_tokens 1 and 0; prompt as text and as token ids),
vLLM's extra prompt_logprobs, /v1/chat/completions, and a streamed completion; compares the prompt
logprobs with a plain transformers float32 forward of the same ids (needs the project venv: torch +
transformers). Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # noqa: E402

PROMPT = "The capital of France is Paris. The capital of Germany is"


def reference_logprobs(hf_folder: Path, ids: list[int]) -> list[float | None]:
    """log p(ids[i] | ids[:i]) from a plain float32 transformers forward; None for the first."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [None] + [lp[i - 1, t].item() for i, t in enumerate(ids) if i > 0]


def try_post(url: str, body: dict) -> dict:
    t0 = time.monotonic()
    try:
        out = serve.post_json(url, body)
        return {"ok": True, "seconds": round(time.monotonic() - t0, 2), "response": out}
    except Exception as e:  # noqa: BLE001 - a probe records every failure
        return {"ok": False, "error": str(e)[:1500]}


def stream(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            lines = [ln.decode().strip() for ln in r if ln.strip()]
        return {"ok": True, "n_events": len(lines), "first": lines[:2], "last": lines[-2:]}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": str(e)[:1500]}


def max_abs_diff(a: list, b: list) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs or len(a) != len(b):
        return None
    return max(abs(x - y) for x, y in pairs)


def probe(url: str, model: str, kind: str, hf_folder: Path) -> dict:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(hf_folder)(PROMPT)["input_ids"]
    ref = reference_logprobs(hf_folder, ids)
    comp = f"{url}/v1/completions"
    base = {"model": model, "echo": True, "logprobs": 1, "temperature": 0}
    report: dict = {"kind": kind, "url": url, "prompt": PROMPT, "ids": ids, "transformers_logprobs": ref}
    report["models"] = serve.get_json(f"{url}/v1/models")
    for prompt_kind, prompt in (("text", PROMPT), ("ids", ids)):
        for max_tokens in (1, 0):
            r = try_post(comp, {**base, "prompt": prompt, "max_tokens": max_tokens})
            key = f"completion_{prompt_kind}_max{max_tokens}"
            report[key] = r
            if r["ok"]:
                lp = r["response"]["choices"][0].get("logprobs") or {}
                got = (lp.get("token_logprobs") or [])[: len(ids)]
                report[key]["max_abs_diff_vs_transformers"] = max_abs_diff(got, ref)
                if kind == "llamacpp" and got:
                    # issue 1983: each prompt token's logprob given ITSELF as context (the next
                    # position's distribution) instead of given its prefix: compare shifted by one
                    report[key]["max_abs_diff_vs_transformers_shifted"] = max_abs_diff(got[:-1], [r_ for r_ in ref[1:]])
    if kind == "vllm":
        r = try_post(comp, {**base, "prompt": ids, "max_tokens": 1, "echo": False, "prompt_logprobs": 1})
        report["completion_ids_prompt_logprobs_extra"] = r
        if r["ok"]:
            pl = r["response"]["choices"][0].get("prompt_logprobs") or []
            got = [None if d is None else d[str(t)]["logprob"] for d, t in zip(pl, ids)]
            report["completion_ids_prompt_logprobs_extra"]["max_abs_diff_vs_transformers"] = max_abs_diff(got, ref)
    report["chat"] = try_post(
        f"{url}/v1/chat/completions",
        {
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 1,
        },
    )
    report["stream_completion"] = stream(
        comp, {"model": model, "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "stream": True}
    )
    report["stream_chat"] = stream(
        f"{url}/v1/chat/completions",
        {
            "model": model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
            "temperature": 0,
            "stream": True,
        },
    )
    return report


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=serve.KINDS)
    ap.add_argument("--url", help="a running server (default: start one)")
    ap.add_argument("--model-name", default=serve.DEFAULT_SERVED_NAME)
    ap.add_argument("--out")
    args = ap.parse_args()
    hf_folder = serve.hf_folder_for(None)
    if args.url:
        report = probe(args.url, args.model_name, args.kind, hf_folder)
    else:
        t0 = time.monotonic()
        with serve.start(args.kind) as server:
            start_s = round(time.monotonic() - t0, 1)
            report = probe(server.base_url, server.model, args.kind, hf_folder)
            report["start_seconds"] = start_s
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
