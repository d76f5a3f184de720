"""The served pair (`served:` in a compression config) and the KL lower bound from top-k logprobs.

- The bound's maths on hand-computed distributions, and on random ones against the exact KL.
- The flow on two stand-in servers (tests/api_standin.py: vLLM's protocol, a real model behind it):
  the float tiny model and its fake-quant weights, the same tasks on both with flips, perplexity
  equal to the in-process run's, and the bound <= the exact in-process KL at every position.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmgauge.cli import main
from lmgauge.compress.topk_kl import exact_kl, topk_kl
from lmgauge.config import ConfigError


def _known(p: np.ndarray, k: int, actual: int) -> dict[int, float]:
    """What a server returns at one position: the top-k logprobs and the actual token's."""
    top = np.argsort(-p, kind="stable")[:k]
    return {int(v): math.log(p[v]) for v in [*top, actual]}


def test_topk_bound_by_hand_coarse_bucket():
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    q = np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    b = topk_kl(_known(p, 2, 3), _known(q, 2, 3), 2, slack=0.0)
    # S = {0, 1, 3}; the rest: P 0.2, Q 0.3; B is empty (P's top-2 are Q's)
    head = 0.5 * math.log(0.5 / 0.3) + 0.2 * math.log(0.2 / 0.3) + 0.1 * math.log(0.1 / 0.1)
    assert b.n_shared == 3 and b.tail_ref == pytest.approx(0.2) and b.tail_cand == pytest.approx(0.3)
    assert b.coarse == pytest.approx(head + 0.2 * math.log(0.2 / 0.3), abs=1e-12)
    assert b.lower == b.coarse
    exact = float((p * np.log(p / q)).sum())
    assert b.lower <= exact
    # the gap is P(R) x KL of the conditional tails (chain rule): tokens 2 and 4
    pr, qr = p[[2, 4]] / 0.2, q[[2, 4]] / 0.3
    assert exact - b.coarse == pytest.approx(0.2 * float((pr * np.log(pr / qr)).sum()), abs=1e-12)


def test_topk_bound_by_hand_capped_bucket():
    # P's top tokens are outside Q's top-3: Q gives each at most q_3 = 0.3, so Q(B) <= 0.6 and the
    # bound uses B = {0, 1} as its own bucket at that cap
    p = np.array([0.45, 0.45, 0.02, 0.02, 0.02, 0.04])
    q = np.array([0.01, 0.01, 0.3, 0.3, 0.3, 0.08])
    b = topk_kl(_known(p, 3, 5), _known(q, 3, 5), 3, slack=0.0)
    head = 0.04 * math.log(0.04 / 0.08)
    assert b.coarse == pytest.approx(head + 0.96 * math.log(0.96 / 0.92), abs=1e-12)
    assert b.lower == pytest.approx(head + 0.9 * math.log(0.9 / 0.6) + 0.06 * math.log(0.06 / 0.32), abs=1e-12)
    exact = float((p * np.log(p / q)).sum())
    assert b.coarse < b.lower <= exact
    assert exact_kl(np.log(p), np.log(q)) == pytest.approx(exact, abs=1e-12)


def test_topk_bound_never_exceeds_the_exact_kl():
    rng = np.random.default_rng(0)
    for trial in range(400):
        v = int(rng.integers(5, 60))
        k = int(rng.integers(1, v + 1))
        a = rng.normal(scale=rng.uniform(0.5, 4), size=v)
        b = a + rng.normal(scale=rng.uniform(0, 3), size=v)
        p, q = np.exp(a - a.max()), np.exp(b - b.max())
        p, q = p / p.sum(), q / q.sum()
        actual = int(rng.integers(v))
        bound = topk_kl(_known(p, k, actual), _known(q, k, actual), k)
        exact = exact_kl(a, b)
        assert bound.coarse <= bound.lower <= exact + 1e-12, (trial, bound, exact)
        if k == v:  # everything known: the bound is the KL (up to the slack's P(R) ln(.) term, here 0)
            assert bound.lower == pytest.approx(exact, abs=1e-10)
    # float32 logprobs whose known mass rounds to more than 1: the slack keeps the rest term finite
    p32 = {0: math.log(0.9999999), 1: math.log(1e-7)}
    assert (
        topk_kl({**p32, 2: math.log(1e-8)}, {0: float(np.float32(math.log(0.99999994))), 1: math.log(1e-7)}, 2).lower
        < 1e-4
    )


def test_served_config_is_checked():
    base = {
        "model": {"path": "/m"},
        "eval": {"eval_pos": ["pretrain", "fake_quant"], "name": "wikitext2"},
        "served": {"pretrain": {"api_url": "http://a/v1"}},
    }
    from lmgauge.compress.config import load_compression_config

    with pytest.raises(ConfigError, match="eval_pos fake_quant has no served.fake_quant"):
        load_compression_config(base, "c.yaml")
    both = {**base, "served": {"pretrain": {"api_url": "u"}, "fake_quant": {"api_url": "v"}}}
    with pytest.raises(ConfigError, match="served: the positions are the servers' models"):
        load_compression_config({**both, "quant": {"method": "RTN", "weight": {"bit": 4}}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"served\.fake_quant\.api_ur: unknown key"):
        load_compression_config({**base, "served": {**base["served"], "fake_quant": {"api_ur": "v"}}}, "c.yaml")


def _corpus(tmp_path: Path) -> Path:
    from conftest import CORPUS

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(CORPUS * 12), encoding="utf-8")
    return text


def test_served_pair_on_stand_ins_matches_the_in_process_run(tmp_path, tiny_llama_dir):
    from api_standin import ModelBackend, StandIn
    from lmgauge.models.hf import HFModel
    from lmgauge.models.quant import QuantScheme, QuantSpec, quantize_model

    text = _corpus(tmp_path)
    common = {
        "eval": {"eval_pos": ["pretrain", "fake_quant"], "name": str(text), "seq_len": 64},
        "tasks": [{"name": "mmlu_astronomy", "limit": 6, "num_fewshot": 1}],
    }
    model = {"path": str(tiny_llama_dir), "torch_dtype": "float32", "abbr": "tiny"}
    weight = {"bit": 3, "symmetric": False, "granularity": "per_group", "group_size": 16}
    here = {**common, "model": model, "quant": {"method": "RTN", "weight": weight}, "work_dir": str(tmp_path / "here")}
    (tmp_path / "here.yaml").write_text(yaml.safe_dump(here))
    assert main(["run", str(tmp_path / "here.yaml"), "--run-id", "r", "--no-report"]) == 0

    float_model = HFModel(str(tiny_llama_dir), device="cpu", dtype="float32", name="f")
    quant_model = HFModel(str(tiny_llama_dir), device="cpu", dtype="float32", name="q")
    quantize_model(quant_model.model, QuantScheme(QuantSpec(3, False, "per_group", 16)))
    # 258: the served prompts are cut as the in-process ones (max_position_embeddings 256 = max_model_len - 2)
    a = StandIn(ModelBackend(float_model), model_id="tiny", max_model_len=258).start()
    b = StandIn(ModelBackend(quant_model), model_id="tiny-w3", max_model_len=258).start()
    try:
        served = {
            **common,
            "model": {"path": str(tiny_llama_dir), "abbr": "tiny"},
            "served": {
                "topk": 5,
                "pretrain": {"api_url": f"{a.url}/v1"},
                "fake_quant": {"api_url": f"{b.url}/v1", "kind": "fake-quant"},
            },
            "work_dir": str(tmp_path / "served"),
        }
        (tmp_path / "served.yaml").write_text(yaml.safe_dump(served))
        assert main(["run", str(tmp_path / "served.yaml"), "--run-id", "r", "--no-report"]) == 0
    finally:
        a.stop()
        b.stop()
    h, s = tmp_path / "here" / "r", tmp_path / "served" / "r"
    run = json.loads((s / "run.json").read_text())
    assert run["compression"]["positions"]["fake_quant"]["kind"] == "fake-quant"
    fq_here = json.loads((h / "results" / "tiny_fake_quant" / "ppl.json").read_text())
    fq = json.loads((s / "results" / "tiny_fake_quant" / "ppl.json").read_text())
    assert fq["metrics"]["perplexity"]["value"] == pytest.approx(fq_here["metrics"]["perplexity"]["value"], rel=1e-4)
    fid, fid_here = fq["fidelity"], fq_here["fidelity"]
    assert "lower bound from each server's top-5" in fid["kl_bound"]
    assert fid["same_top"]["value"] == fid_here["same_top"]["value"]  # top-1 is in the top-k: exact
    assert fid["ln_ppl_ratio"]["value"] == pytest.approx(fid_here["ln_ppl_ratio"]["value"], abs=1e-4)
    bound, exact = (
        np.load(s / "fidelity" / "tiny_fake_quant" / "ppl.npz"),
        np.load(h / "fidelity" / "tiny_fake_quant" / "ppl.npz"),
    )
    assert bound["kl"].shape == exact["kl"].shape
    assert np.all(bound["kl"] <= exact["kl"] + 1e-4)  # float32 logprobs over HTTP: rounding only
    assert np.all(bound["kl_coarse"] <= bound["kl"] + 1e-7)
    assert 0 < fid["kl"]["mean"] <= fid_here["kl"]["mean"]
    assert fq["vs_pretrain"]["kl_mean_is"] == "a lower bound (top-k)"
    mmlu = json.loads((s / "results" / "tiny_fake_quant" / "mmlu_astronomy.json").read_text())
    mmlu_here = json.loads((h / "results" / "tiny_fake_quant" / "mmlu_astronomy.json").read_text())
    flips = mmlu["vs_pretrain"]["metrics"]["acc"]["paired"]["flips"]
    assert flips == mmlu_here["vs_pretrain"]["metrics"]["acc"]["paired"]["flips"] and sum(flips.values()) == 6
