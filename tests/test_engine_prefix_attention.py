"""Cascade and packed attention (models/prefix_attention.py): the suffix rows of a shared prefix
attend to its one stored KV cache; the numbers equal ordinary attention over the concatenated keys."""

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


def _reference_per_suffix(q, k, v, kp, vp, lengths, scale):
    """Each suffix alone: its queries against (prefix keys, its own keys), causal, GQA repeated."""
    heads, kv_heads = q.shape[1], k.shape[1]
    outs, at = [], 0
    p = kp.shape[2]
    for n in lengths:
        keys = torch.cat([kp, k[:, :, at : at + n]], dim=2).repeat_interleave(heads // kv_heads, dim=1)
        values = torch.cat([vp, v[:, :, at : at + n]], dim=2).repeat_interleave(heads // kv_heads, dim=1)
        allowed = torch.ones(n, p + n, dtype=torch.bool).tril(p)
        outs.append(
            torch.nn.functional.scaled_dot_product_attention(
                q[:, :, at : at + n].float(), keys.float(), values.float(), attn_mask=allowed, scale=scale
            )
        )
        at += n
    return torch.cat(outs, dim=2).transpose(1, 2)  # (1, T, H, D)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [1, 9, 512])  # every suffix alone; chunks of several; one chunk
def test_packed_equals_each_suffix_over_concatenated_keys(dtype, chunk):
    torch.manual_seed(0)
    heads, kv_heads, p, d = 6, 2, 11, 16
    lengths = [7, 5, 5, 3, 1]
    t = sum(lengths)
    q = torch.randn(1, heads, t, d, dtype=dtype)
    k, v = torch.randn(1, kv_heads, t, d, dtype=dtype), torch.randn(1, kv_heads, t, d, dtype=dtype)
    kp, vp = torch.randn(1, kv_heads, p, d, dtype=dtype), torch.randn(1, kv_heads, p, d, dtype=dtype)
    chunks = prefix_attention.suffix_chunks(lengths, dtype, "cpu", chunk=chunk)
    assert [b - a for a, b, _ in chunks] == {1: lengths, 9: [7, 5, 9], 512: [t]}[chunk]
    packed = prefix_attention.PackedSuffixes([(kp, vp)], chunks)
    out, _ = prefix_attention.packed_attention(
        _Attn(), q, k, v, None, scaling=0.3, **{prefix_attention.PACKED_KWARG: packed}
    )
    ref = _reference_per_suffix(q, k, v, kp, vp, lengths, 0.3)
    assert out.shape == (1, t, heads, d) and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


def test_on_a_cpu_only_tiny_suffixes_share_a_masked_chunk():
    """A suffix of CPU_ALONE_FROM tokens or more is its own causal call (no mask); runs of shorter
    ones share chunks of up to CPU_SUFFIX_CHUNK tokens; off a CPU everything groups up to 512."""
    assert prefix_attention.CPU_ALONE_FROM == 8 and prefix_attention.CPU_SUFFIX_CHUNK == 64
    lengths = [2, 2, 30, 2, 2, 2, 8, 7] + [3] * 30
    chunks = prefix_attention.suffix_chunks(lengths, torch.float32, "cpu")
    assert [b - a for a, b, _ in chunks] == [4, 30, 6, 8, 7 + 3 * 19, 3 * 11]
    assert [m is None for _, _, m in chunks] == [False, True, False, True, False, False]
    assert chunks[0][0] == 0 and all(a == b for (_, b, _), (a, _, _) in zip(chunks, chunks[1:]))
    elsewhere = prefix_attention.suffix_chunks(lengths, torch.float32, "meta")
    assert [b - a for a, b, _ in elsewhere] == [sum(lengths)]


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_lse_math_equals_the_fused_kernel(causal):
    """The materialized path (devices other than a CPU) gives the CPU kernel's output and log-sum-exp."""
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 3, 9, 8), torch.randn(1, 3, 9, 8), torch.randn(1, 3, 9, 8)
    mask = None if causal else prefix_attention.suffix_chunks([4, 5], torch.float32, "cpu")[0][2]
    fused = prefix_attention.attention_with_lse(q, k, v, mask, causal, 0.4)
    math = prefix_attention.attention_with_lse_math(q, k, v, mask, causal, 0.4)
    torch.testing.assert_close(fused[0], math[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[1], math[1], atol=1e-5, rtol=1e-5)


def test_packed_needs_its_suffixes():
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match=prefix_attention.PACKED_KWARG):
        prefix_attention.packed_attention(_Attn(), q, q[:, :1], q[:, :1], None)


def _requests() -> list[LoglikelihoodRequest]:
    shots = "".join(f"Question: example {k} about foxes and dogs?\nAnswer: B\n\n" for k in range(6))
    reqs = []
    for q in ("What is the capital of France?", "Pick one: A. one B. two", "Which is lazy?"):
        for cont in (" A", " B", " jumps over the lazy dog.", " Paris"):
            reqs.append(LoglikelihoodRequest(shots + "Question: " + q + "\nAnswer:", cont))
    return reqs


@pytest.mark.parametrize("way", ["cascade", "packed"])
def test_one_stored_prefix_equals_per_row_copies_in_the_model(tiny_model, way):
    """The tiny Llama through the prefix paths: each way's attention is used when asked, and the
    numbers agree with per-row copies; packed computes no padding."""
    assert tiny_model.prefix_attention == "packed"  # auto: the way measured faster on CPU
    name = {"cascade": prefix_attention.NAME, "packed": prefix_attention.PACKED}[way]
    real = {"cascade": prefix_attention.cascade_attention, "packed": prefix_attention.packed_attention}[way]
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    from transformers import AttentionInterface

    prefix_attention.register()
    AttentionInterface.register(name, counting)
    saved = tiny_model.prefix_attention, tiny_model.token_budget
    stats = tiny_model.stats
    try:
        tiny_model.token_budget = 200  # several suffix batches of different widths
        tiny_model.prefix_attention = tiny_model._prefix_attention_way(way)
        before = stats.forwarded, stats.computed
        fast = tiny_model.loglikelihood(_requests())
        fast_tokens = stats.forwarded - before[0], stats.computed - before[1]
        assert calls, f"the {way} attention was never called"
        tiny_model.prefix_attention = "copies"
        before = stats.forwarded, stats.computed
        copies = tiny_model.loglikelihood(_requests())
        copies_tokens = stats.forwarded - before[0], stats.computed - before[1]
    finally:
        AttentionInterface.register(name, real)
        tiny_model.prefix_attention, tiny_model.token_budget = saved
    assert tiny_model.model.config._attn_implementation != name  # switched back
    for a, b in zip(copies, fast):  # the tiny model's sharp weights give sums of hundreds: float32 noise is relative
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4, rel=1e-6)
        assert a.is_greedy == b.is_greedy
    assert fast_tokens[0] == copies_tokens[0]  # the same tokens forwarded
    assert copies_tokens[1] >= copies_tokens[0]  # padded suffix rows, if any
    if way == "packed":
        assert fast_tokens[1] == fast_tokens[0]  # no padding computed


def test_prefix_attention_option_is_checked(tiny_model, tiny_llama_dir):
    from lmgauge.config import ModelConfig
    from lmgauge.models.base import ModelError
    from lmgauge.models.hf import HFModel

    with pytest.raises(ModelError, match="prefix_attention 'flash' is not one of auto, packed, cascade, copies"):
        HFModel(str(tiny_llama_dir), device="cpu", prefix_attention="flash")
    with pytest.raises(ValueError, match="prefix_attention"):
        ModelConfig(path="m", prefix_attention="flash")
    assert ModelConfig(path="m").prefix_attention == "auto"
    # an architecture the cascade does not reproduce exactly is refused, naming it
    cfg = tiny_model.model.config
    saved = getattr(cfg, "sliding_window", None)
    try:
        cfg.sliding_window = 16
        for way in ("cascade", "packed"):
            with pytest.raises(ModelError, match=f"'{way}' is exact only.*without sliding windows.*LlamaForCausalLM"):
                tiny_model._prefix_attention_way(way)
        assert tiny_model._prefix_attention_way("auto") == "copies"  # auto falls back where packed is not exact
    finally:
        cfg.sliding_window = saved
