"""Rolling log-likelihood and word/byte perplexity equal lm-evaluation-harness 0.4.13's on the real
model (fixtures: tests/fixtures/lmeval/rolling/, made with HFLM.loglikelihood_rolling)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmgauge.engine.loglikelihood import rolling_windows
from lmgauge.requests import RollingRequest
from lmgauge.tasks import build

FIX = Path(__file__).parent / "fixtures" / "lmeval" / "rolling"
EXPECTED = json.loads((FIX / "expected.json").read_text())
DOCS = [(FIX / f"doc{i}.txt").read_text(encoding="utf-8") for i in range(3)]


def test_windows_equal_lm_evals(smollm2):
    tokens = smollm2.encode(DOCS[0])
    ours = [[ctx, cont] for ctx, cont in rolling_windows(tokens, smollm2.prefix_token_id, 64)]
    assert ours == EXPECTED["doc0_windows_max_length_64"]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["max_length_64", "default_max_length"])
def test_rolling_loglikelihood_and_perplexities(run, smollm2, tmp_path):
    exp = EXPECTED["runs"][run]
    saved = smollm2.max_length
    try:
        smollm2.max_length = exp["max_length"]
        results = smollm2.loglikelihood_rolling([RollingRequest(d) for d in DOCS])
        for res, e in zip(results, exp["per_doc"]):
            assert res.n_tokens == e["num_tokens"] and res.n_windows == e["num_windows"]
            assert res.logprob == pytest.approx(e["total_logprob"], abs=2e-3)
        task = build("ppl", path=str(FIX), style="rolling")
        docs, _ = task.load()
        samples = [task.score(d, i, [r]) for i, (d, r) in enumerate(zip(docs, results))]
        agg = task.aggregate(samples)
    finally:
        smollm2.max_length = saved
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert agg[metric]["value"] == pytest.approx(exp["corpus"][metric], rel=1e-5), metric
