"""Synthetic run directories for the report tests, written in the run-directory format (docs/run-directory.md).

They are what `lmgauge run` writes (run.json, samples/<model>/<task>.jsonl, results/<model>/<task>.json, a
group file with subjects and categories), built here so the tests know every answer: which docs are right,
which flip between two runs, and text that tries to run in the page.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

XSS = {
    "script": "</script><script>window.__pwned = 1</script>",
    "img": '<img src=x onerror="window.__pwned = 2">',
    "markup": "<b>bold</b> <!-- comment --> &amp; <a href='javascript:window.__pwned=3'>link</a>",
}


def _stderr(xs: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mu = sum(xs) / n
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def _agg(xs: list[float]) -> dict[str, Any]:
    return {"value": sum(xs) / len(xs), "stderr": _stderr(xs), "n": len(xs)}


def choice_sample(doc_id: int, gold: int, correct: bool, prompt: str, rng: random.Random) -> dict[str, Any]:
    pred = gold if correct else (gold + 1) % 4
    logprobs = [-rng.uniform(2.0, 6.0) for _ in range(4)]
    logprobs[pred] = max(logprobs) + rng.uniform(0.05, 1.5)
    return {
        "doc_id": doc_id,
        "gold": gold,
        "pred": pred,
        "correct": correct,
        "logprobs": logprobs,
        "is_greedy": [i == pred for i in range(4)],
        "metrics": {"acc": 1.0 if correct else 0.0},
        "truncated": 0,
        "answers": [
            {"logprob": lp, "is_greedy": i == pred, "n_tokens": 1, "truncated": 0, "error": None}
            for i, lp in enumerate(logprobs)
        ],
        "prompt": prompt,
        "continuations": [" A", " B", " C", " D"],
    }


SHOTS = "".join(
    f"Example question {i} with enough words to make a shared few-shot context?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n"
    for i in range(5)
)


def write_run(
    root: Path,
    subjects: dict[str, list[bool]],
    *,
    model: str = "m",
    category: str = "stem",
    version: str = "v0000001",
    num_fewshot: int | None = 5,
    seed: int = 0,
    generation: list[bool] | None = None,
    code: list[bool] | None = None,
    perplexity: list[float] | None = None,
    xss: bool = False,
    run_id: str | None = None,
) -> Path:
    """A finished run of `model` on MMLU-like subjects (one list of right/wrong per subject) and extras."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples_dir, results_dir = root / "samples" / model, root / "results" / model
    samples_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, Any] = {}
    member_values: dict[str, list[float]] = {}

    def write(task: str, samples: list[dict[str, Any]], result: dict[str, Any]) -> None:
        with (samples_dir / f"{task}.jsonl").open("w", encoding="utf-8") as f:
            for s in samples:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
        (results_dir / f"{task}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        tasks[task] = {"status": "done", "version": result["version"], "n": result["n"], "timing": result["timing"]}

    for task, right in subjects.items():
        subject = task.split("_", 1)[1]
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        samples = []
        for d, ok in enumerate(right):
            question = f"Question {d} of {subject}: which letter is right?"
            if xss and d == 0:
                question = f"{XSS['script']} {XSS['img']} {XSS['markup']}"
            prompt = header + SHOTS + f"{question}\nA. one\nB. two\nC. three\nD. four\nAnswer:"
            gold = random.Random(f"{task}:{d}").randrange(4)  # the same doc has the same answer in every run
            samples.append(choice_sample(d, gold, ok, prompt, rng))
        values = [s["metrics"]["acc"] for s in samples]
        member_values[task] = values
        write(
            task,
            samples,
            {
                "task": task,
                "version": version,
                "model": model,
                "group": "mmlu",
                "subject": subject,
                "category": category,
                "data_source": "synthetic",
                "n": len(samples),
                "n_available": len(samples),
                "limit": None,
                "options": {"seed": 1234},
                "truncated_samples": 0,
                "metrics": {"acc": _agg(values)},
                "timing": {"load_data_s": 0.1, "build_requests_s": 0.0, "model_s": 1.0 + 0.01 * len(samples)},
                "tokens": {
                    "forwarded": 1000 * len(samples),
                    "per_request_baseline": 0,
                    "scored": 0,
                    "requests": 4 * len(samples),
                },
            },
        )
    if subjects:
        all_values = [v for vs in member_values.values() for v in vs]
        means = [sum(vs) / len(vs) for vs in member_values.values()]
        micro_macro = {
            "micro": _agg(all_values),
            "macro": {"value": sum(means) / len(means), "stderr": _stderr(means), "n": len(means)},
        }
        group = {
            "task": "mmlu",
            "is_group": True,
            "model": model,
            "members": list(subjects),
            "versions": {t: version for t in subjects},
            "version": version,
            "n": len(all_values),
            "metrics": {"acc": micro_macro},
            "subjects": {t: {"acc": _agg(vs)} for t, vs in member_values.items()},
            "categories": {category: {"acc": micro_macro}},
        }
        (results_dir / "mmlu.json").write_text(json.dumps(group, indent=2), encoding="utf-8")
    if generation is not None:
        samples = []
        for d, ok in enumerate(generation):
            output = f"The answer is {d if ok else d + 1}." + (f" {XSS['img']}" if xss and d == 0 else "")
            samples.append(
                {
                    "doc_id": d,
                    "gold": str(d),
                    "pred": str(d if ok else d + 1),
                    "correct": ok,
                    "output": output,
                    "extracted": {"strict-match": str(d if ok else d + 1), "flexible-extract": str(d if ok else d + 1)},
                    "metrics": {"exact_match,strict-match": float(ok), "exact_match,flexible-extract": float(ok)},
                    "finish_reason": "stop",
                    "truncated": 0,
                    "answers": [
                        {
                            "text": output,
                            "n_tokens": 9,
                            "truncated": 0,
                            "finish_reason": "stop",
                            "error": None,
                            "prompt": None,
                        }
                    ],
                    "prompt": SHOTS + f"Q: what is {d} + 0?\nA:",
                }
            )
        vals = [float(x) for x in generation]
        write(
            "gsm8k_cot",
            samples,
            {
                "task": "gsm8k_cot",
                "version": "g0000001",
                "model": model,
                "group": None,
                "subject": None,
                "category": None,
                "output_type": "generate_until",
                "n": len(samples),
                "n_errors": 0,
                "n_available": 1319,
                "limit": len(samples),
                "options": {},
                "metrics": {"exact_match,strict-match": _agg(vals), "exact_match,flexible-extract": _agg(vals)},
                "timing": {"model_s": 2.0},
                "tokens": {"forwarded": 500},
            },
        )
    if code is not None:
        samples = []
        for d, ok in enumerate(code):
            program = f"def f():\n    return {d}\n\nassert f() == {d if ok else -1}\n"
            samples.append(
                {
                    "doc_id": d,
                    "gold": "pass",
                    "pred": "passed" if ok else "failed",
                    "correct": ok,
                    "output": f"    return {d}\n",
                    "program": program,
                    "executions": [
                        {
                            "status": "passed" if ok else "failed",
                            "detail": None if ok else "exit code 1",
                            "duration_s": 0.05,
                            "stderr": "" if ok else "AssertionError\n",
                        }
                    ],
                    "isolation": {"tool": "bwrap", "net_ns": True},
                    "metrics": {"pass@1": float(ok)},
                    "finish_reason": "stop",
                    "truncated": 0,
                    "prompt": "def f():\n",
                    "answers": [
                        {
                            "text": f"    return {d}\n",
                            "n_tokens": 4,
                            "truncated": 0,
                            "finish_reason": "stop",
                            "error": None,
                            "prompt": None,
                        }
                    ],
                }
            )
        vals = [float(x) for x in code]
        write(
            "humaneval",
            samples,
            {
                "task": "humaneval",
                "version": "h0000001",
                "model": model,
                "output_type": "generate_until",
                "n": len(samples),
                "n_available": 164,
                "limit": len(samples),
                "options": {},
                "metrics": {"pass@1": _agg(vals)},
                "timing": {"model_s": 3.0},
                "tokens": {"forwarded": 300},
            },
        )
    if perplexity is not None:
        samples = [
            {
                "doc_id": d,
                "gold": None,
                "pred": None,
                "correct": None,
                "logprob": lp,
                "tokens": 100,
                "metrics": {"logprob": lp, "tokens": 100},
                "truncated": 0,
                "answers": [{"logprob": lp, "n_tokens": 100, "error": None}],
            }
            for d, lp in enumerate(perplexity)
        ]
        ppl = math.exp(-sum(perplexity) / (100 * len(perplexity)))
        write(
            "wikitext2",
            samples,
            {
                "task": "wikitext2",
                "version": "w0000001",
                "model": model,
                "n": len(samples),
                "n_available": len(samples),
                "limit": None,
                "options": {},
                "metrics": {"token_perplexity": {"value": ppl, "stderr": None, "n": len(samples)}},
                "timing": {"model_s": 1.5},
                "tokens": {"forwarded": 100 * len(samples)},
            },
        )
    config = {
        "models": [{"backend": "hf", "abbr": model, "path": f"/models/{model}"}],
        "datasets": [{"name": t, "num_fewshot": None} for t in tasks],
        "num_fewshot": num_fewshot,
        "limit": None,
        "seed": None,
        "work_dir": str(root.parent),
    }
    manifest = {
        "format": 1,
        "run_id": run_id or root.name,
        "started": "2026-12-02T06:00:00",
        "finished": "2026-12-02T06:01:00",
        "status": "done",
        "argv": ["lmgauge", "run"],
        "config": config,
        "models": {
            model: {
                "backend": "hf",
                "name": model,
                "path": f"/models/{model}",
                "dtype": "float32",
                "device": "cpu",
                "load_s": 1.0,
                "eval_s": 10.0,
                "tokens": {"forwarded": 123456},
                "peak_memory": {"rss_mb": 512.0},
            }
        },
        "tasks": {model: tasks},
        "versions": {"lmgauge": "0.1.0"},
        "git_sha": None,
        "host": {"hostname": "test"},
        "timings": {"total_s": 60.0},
        "executor": "inline",
    }
    (root / "run.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root


def mmlu_sizes(total: int = 14_042, subjects: int = 57) -> list[int]:
    base, extra = divmod(total, subjects)
    return [base + (1 if i < extra else 0) for i in range(subjects)]
