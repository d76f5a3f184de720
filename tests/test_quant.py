"""Fake-quant formulas (llmc's RTN, llmc/compression/quantization/quant.py) against values computed by
hand, and the in-place transform of a real (tiny, random) Llama: skips, refusals, identity at 16 bits,
the float weights kept for a paired pass, per-token activation quant."""

from __future__ import annotations

import pytest
import torch

from lmgauge.models.quant import (
    QuantError,
    QuantScheme,
    QuantSpec,
    fake_quant_act,
    fake_quant_weight,
    quantize_model,
)


def test_asymmetric_per_channel_2bit_by_hand():
    # min -1, max 2: scale = 3 / 3 = 1; zero = 0 - round(-1) = 1; round(0.5) = 0 (half to even)
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    out = fake_quant_weight(w, QuantSpec(bit=2, symmetric=False, granularity="per_channel"))
    assert out.tolist() == [[-1.0, 0.0, 0.0, 2.0]]


def test_symmetric_per_channel_3bit_by_hand():
    # absmax 2, qmax 3: scale 2/3; w/scale = -3, -0.45, 1.35, 2.25 -> -3, 0, 1, 2
    w = torch.tensor([[-2.0, -0.3, 0.9, 1.5]])
    out = fake_quant_weight(w, QuantSpec(bit=3, symmetric=True, granularity="per_channel"))
    assert out[0].tolist() == pytest.approx([-2.0, 0.0, 2 / 3, 4 / 3], abs=1e-6)


def test_symmetric_uses_the_negative_end_of_the_range():
    # 2 bits symmetric: q in [-2, 1]; absmax 1 -> scale 1; -1 stays, 1 stays (qmax 1)
    w = torch.tensor([[-1.0, -0.6, 0.4, 1.0]])
    out = fake_quant_weight(w, QuantSpec(bit=2, symmetric=True))
    assert out.tolist() == [[-1.0, -1.0, 0.0, 1.0]]


def test_per_group_along_the_input_dimension_by_hand():
    # groups [-1, 0] and [0.5, 2], 2-bit asymmetric.
    # group 1: scale 1/3, zero = 0 - round(-3) = 3, q = [0, 3] -> [-1, 0]
    # group 2: scale 0.5, zero = -round(1) = -1 clamped to 0, q = clamp([1, 4]) = [1, 3] -> [0.5, 1.5]
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    out = fake_quant_weight(w, QuantSpec(bit=2, granularity="per_group", group_size=2))
    assert out[0].tolist() == pytest.approx([-1.0, 0.0, 0.5, 1.5], abs=1e-6)


def test_per_channel_is_per_output_row_and_per_tensor_is_one_range():
    w = torch.tensor([[0.0, 1.0, 3.0], [0.0, 10.0, 30.0]])
    per_row = fake_quant_weight(w, QuantSpec(bit=2, granularity="per_channel"))
    assert per_row.tolist() == [[0.0, 1.0, 3.0], [0.0, 10.0, 30.0]]  # scale 1 and 10: exact
    one = fake_quant_weight(w, QuantSpec(bit=2, granularity="per_tensor"))
    assert one.tolist() == [[0.0, 0.0, 0.0], [0.0, 10.0, 30.0]]  # scale 10 for all


def test_range_is_clamped_for_constant_rows():
    w = torch.zeros(2, 4)
    assert torch.equal(fake_quant_weight(w, QuantSpec(bit=4)), w)


def test_sixteen_bits_is_the_identity():
    w = torch.randn(8, 16)
    assert fake_quant_weight(w, QuantSpec(bit=16)) is w
    x = torch.randn(2, 3, 16)
    assert fake_quant_act(x, QuantSpec(bit=16, granularity="per_token")) is x


def test_eight_bits_is_close_and_idempotent():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    spec = QuantSpec(bit=8, symmetric=True)
    q = fake_quant_weight(w, spec)
    step = w.abs().amax(dim=1, keepdim=True) / 127
    assert ((q - w).abs() <= step / 2 + 1e-6).all()
    assert torch.allclose(fake_quant_weight(q, spec), q, atol=1e-6)


def test_per_token_activation_by_hand():
    # token 1: [-1, 0, 0.5, 2] 2-bit asym -> [-1, 0, 0, 2]. token 2 is constant: llmc's range has
    # scale = 1e-5 / 3 and zero = -round(3 / scale) clamped to 0, so q = 3 and 3 -> 3 * scale = 1e-5
    # (llmc does not widen the range to include 0; a constant positive row collapses; kept as llmc has it)
    x = torch.tensor([[[-1.0, 0.0, 0.5, 2.0], [3.0, 3.0, 3.0, 3.0]]])
    out = fake_quant_act(x, QuantSpec(bit=2, granularity="per_token"))
    assert out[0, 0].tolist() == [-1.0, 0.0, 0.0, 2.0]
    assert out[0, 1].tolist() == pytest.approx([1e-5] * 4, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bit": 1}, "2..8 bits"),
        ({"bit": 9}, "2..8 bits"),
        ({"bit": 4, "granularity": "per_row"}, "granularity"),
        ({"bit": 4, "granularity": "per_group"}, "group_size"),
    ],
)
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(QuantError, match=message):
        QuantSpec(**kwargs)


def _tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


def test_transform_quantizes_every_linear_but_lm_head(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fq = quantize_model(model, QuantScheme(QuantSpec(bit=4, granularity="per_group", group_size=16)))
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert fq.skipped == ["lm_head"] and sorted(fq.layers) == sorted(n for n in linears if n != "lm_head")
    after = dict(model.named_parameters())
    for name in fq.layers:
        w = after[f"{name}.weight"]
        expected = fake_quant_weight(before[f"{name}.weight"], fq.scheme.weight)
        assert torch.equal(w, expected), name
        assert not torch.equal(w, before[f"{name}.weight"]), name
    assert torch.equal(after["lm_head.weight"], before["lm_head.weight"])
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])


def test_group_size_that_does_not_divide_is_refused_before_any_change(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # hidden 48, intermediate 96: 36 divides neither, the first Linear met is named
    with pytest.raises(QuantError, match=r"model\.layers\.0\.self_attn\.q_proj: group_size 36 does not divide .* 48"):
        quantize_model(model, QuantScheme(QuantSpec(bit=4, granularity="per_group", group_size=36)))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_skip_list_and_16_bit_scheme(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    ref = model(ids).logits
    fq = quantize_model(model, QuantScheme(QuantSpec(bit=16)))
    assert torch.equal(model(ids).logits, ref)
    model2 = _tiny(tiny_llama_dir)
    fq = quantize_model(model2, QuantScheme(QuantSpec(bit=4), skip=("lm_head", "mlp.down_proj")))
    assert "model.layers.0.mlp.down_proj" in fq.skipped and "model.layers.1.mlp.down_proj" in fq.skipped


def test_float_weights_restore_the_float_model_exactly(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        ref = model(ids).logits
        fq = quantize_model(
            model,
            QuantScheme(QuantSpec(bit=3), act=QuantSpec(bit=8, symmetric=True, granularity="per_token")),
            keep_float=True,
        )
        quant = model(ids).logits
        assert not torch.allclose(quant, ref)
        with fq.float_weights():
            assert torch.equal(model(ids).logits, ref)
        assert torch.equal(model(ids).logits, quant)  # back to the quantized model
        fq.remove_act_quant()
        assert not torch.equal(model(ids).logits, quant)  # the activation quant was on
        fq.restore()
        assert torch.equal(model(ids).logits, ref)


def test_activation_quant_sees_every_linear_input(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    seen = []
    act = QuantSpec(bit=8, symmetric=True, granularity="per_token")
    quantize_model(model, QuantScheme(QuantSpec(bit=8, symmetric=True), act=act))
    # a hook registered after the quant hook sees the quantized input: each token on <= 255 levels
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and name != "lm_head":
            m.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, args[0].detach().clone())))
    with torch.no_grad():
        model(torch.tensor([[1, 5, 9, 13]]))
    assert len(seen) == 14  # 2 layers x 7 Linears
    for name, x in seen:
        assert torch.allclose(fake_quant_act(x, act), x, atol=1e-5), name


def test_tied_lm_head_is_refused(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    model.lm_head.weight = model.model.embed_tokens.weight
    with pytest.raises(QuantError, match="tie_word_embeddings"):
        quantize_model(model, QuantScheme(QuantSpec(bit=4), skip=()))
