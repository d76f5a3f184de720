"""Cascade attention (models/prefix_attention.py): the suffix rows of a shared prefix attend to its
one stored KV cache; the numbers equal ordinary attention over the concatenated keys."""

from __future__ import annotations

import pytest
import torch

from lmgauge.models import prefix_attention
from lmgauge.requests import LoglikelihoodRequest


class _Attn(torch.nn.Module):
    layer_idx = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cascade_equals_attention_over_concatenated_keys(dtype):
    torch.manual_seed(0)
    n, heads, kv_heads, s, p, d = 3, 6, 2, 7, 11, 16
    q = torch.randn(n, heads, s, d, dtype=dtype)
    k, v = torch.randn(n, kv_heads, s, d, dtype=dtype), torch.randn(n, kv_heads, s, d, dtype=dtype)
    kp, vp = torch.randn(1, kv_heads, p, d, dtype=dtype), torch.randn(1, kv_heads, p, d, dtype=dtype)
    out, _ = prefix_attention.cascade_attention(
        _Attn(), q, k, v, None, scaling=0.3, **{prefix_attention.PREFIX_KWARG: [(kp, vp)]}
    )
    # reference: every row with its own copy of the prefix, GQA heads repeated, one causal mask
    keys = torch.cat([kp.expand(n, -1, -1, -1), k], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    values = torch.cat([vp.expand(n, -1, -1, -1), v], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    allowed = torch.ones(s, p + s, dtype=torch.bool).tril(p)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), keys.float(), values.float(), attn_mask=allowed, scale=0.3
    )
    assert out.shape == (n, s, heads, d) and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref.transpose(1, 2), atol=tol, rtol=tol)


def test_cascade_needs_its_prefix():
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match=prefix_attention.PREFIX_KWARG):
        prefix_attention.cascade_attention(_Attn(), q, q[:, :1], q[:, :1], None)


def _requests() -> list[LoglikelihoodRequest]:
    shots = "".join(f"Question: example {k} about foxes and dogs?\nAnswer: B\n\n" for k in range(6))
    reqs = []
    for q in ("What is the capital of France?", "Pick one: A. one B. two", "Which is lazy?"):
        for cont in (" A", " B", " jumps over the lazy dog.", " Paris"):
            reqs.append(LoglikelihoodRequest(shots + "Question: " + q + "\nAnswer:", cont))
    return reqs


def test_cascade_equals_per_row_copies_in_the_model(tiny_model, monkeypatch):
    """The tiny Llama through both prefix paths: the cascade is used when asked, and the numbers agree."""
    assert tiny_model.prefix_attention == "copies"  # auto: the way measured faster on CPU
    calls = []
    real = prefix_attention.cascade_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    from transformers import AttentionInterface

    prefix_attention.register()
    AttentionInterface.register(prefix_attention.NAME, counting)
    saved = tiny_model.prefix_attention, tiny_model.token_budget
    try:
        tiny_model.token_budget = 200  # several suffix batches of different widths
        tiny_model.prefix_attention = tiny_model._prefix_attention_way("cascade")
        fast = tiny_model.loglikelihood(_requests())
        assert calls, "the cascade attention was never called"
        tiny_model.prefix_attention = "copies"
        copies = tiny_model.loglikelihood(_requests())
    finally:
        AttentionInterface.register(prefix_attention.NAME, real)
        tiny_model.prefix_attention, tiny_model.token_budget = saved
    assert tiny_model.model.config._attn_implementation != prefix_attention.NAME  # switched back
    for a, b in zip(copies, fast):  # the tiny model's sharp weights give sums of hundreds: float32 noise is relative
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4, rel=1e-6)
        assert a.is_greedy == b.is_greedy


def test_prefix_attention_option_is_checked(tiny_model, tiny_llama_dir):
    from lmgauge.config import ModelConfig
    from lmgauge.models.base import ModelError
    from lmgauge.models.hf import HFModel

    with pytest.raises(ModelError, match="prefix_attention 'flash' is not one of auto, cascade, copies"):
        HFModel(str(tiny_llama_dir), device="cpu", prefix_attention="flash")
    with pytest.raises(ValueError, match="prefix_attention"):
        ModelConfig(path="m", prefix_attention="flash")
    assert ModelConfig(path="m").prefix_attention == "auto"
    # an architecture the cascade does not reproduce exactly is refused, naming it
    cfg = tiny_model.model.config
    saved = getattr(cfg, "sliding_window", None)
    try:
        cfg.sliding_window = 16
        with pytest.raises(ModelError, match="without sliding windows.*this model is LlamaForCausalLM"):
            tiny_model._prefix_attention_way("cascade")
    finally:
        cfg.sliding_window = saved
