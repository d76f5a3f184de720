"""The scoring forward that runs the last layer only at the scored positions (models/last_layer.py)
gives the decoder's own hidden states there and its whole cache, for every architecture it is
used on (random tiny models built from their configs: nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from lmgauge.models import last_layer, prefix_attention

SHAPE = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=97,
    max_position_embeddings=256,
)


def _tiny(arch: str):
    import transformers

    config = {
        "LlamaForCausalLM": lambda: transformers.LlamaConfig(**SHAPE),
        "MistralForCausalLM": lambda: transformers.MistralConfig(**SHAPE, sliding_window=None),
        "Qwen2ForCausalLM": lambda: transformers.Qwen2Config(**SHAPE),  # q/k/v biases
        "Qwen3ForCausalLM": lambda: transformers.Qwen3Config(**SHAPE, head_dim=8),  # per-head q/k norms
    }[arch]()
    config.architectures = [arch]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    for p in model.parameters():  # norms start at 1 and biases at 0: give every weight a say
        p.data.add_(torch.randn_like(p) * 0.05)
    assert prefix_attention.supports_cascade(model)
    return model


@pytest.mark.parametrize("arch", sorted(prefix_attention.CASCADE_ARCHITECTURES))
def test_a_prefix_forward_keeping_a_few_positions_equals_the_full_forward(arch):
    from transformers import DynamicCache

    model = _tiny(arch)
    decoder = model.get_decoder()
    ids = torch.randint(0, 97, (1, 23))
    positions = torch.arange(23).unsqueeze(0)
    keep = [0, 5, 22]
    with torch.inference_mode():
        full = decoder(input_ids=ids, use_cache=True)
        cache = DynamicCache(config=model.config)
        kept = last_layer.forward_keeping(decoder, ids, positions, keep, cache=cache)
        none = last_layer.forward_keeping(decoder, ids, positions, [], cache=DynamicCache(config=model.config))
    torch.testing.assert_close(kept, full.last_hidden_state[:, keep], atol=1e-5, rtol=1e-5)
    assert none.shape == (1, 0, SHAPE["hidden_size"])
    for ours, theirs in zip(cache.layers, full.cache.layers, strict=True):  # every layer, the last one too
        torch.testing.assert_close(ours.keys, theirs.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.values, theirs.values, atol=1e-5, rtol=1e-5)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="the cache already held 23 positions"):
        last_layer.forward_keeping(decoder, ids, positions, keep, cache=cache)  # its keys are not the row's


@pytest.mark.parametrize("arch", sorted(prefix_attention.CASCADE_ARCHITECTURES))
def test_packed_suffixes_keeping_their_last_positions_equal_the_packed_forward(arch):
    from transformers import DynamicCache

    model = _tiny(arch)
    decoder = model.get_decoder()
    p, lengths = 13, [6, 1, 9, 4]
    prefix = torch.randint(0, 97, (1, p))
    ids = torch.randint(0, 97, (1, sum(lengths)))
    positions = torch.tensor([[p + i for n in lengths for i in range(n)]])
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    keep = sorted({s + n - 1 for s, n in zip(starts, lengths)} | {starts[2] + 3})
    with torch.inference_mode():
        state = decoder(input_ids=prefix, use_cache=True).cache
        kv = prefix_attention.prefix_kv(state)
        packed = prefix_attention.PackedSuffixes(kv, prefix_attention.suffix_chunks(lengths, torch.float32, "cpu"))
        kwargs = {prefix_attention.PACKED_KWARG: packed}
        with prefix_attention.attention_on(model, prefix_attention.PACKED):
            full = decoder(input_ids=ids, position_ids=positions, use_cache=False, **kwargs).last_hidden_state
            kept = last_layer.forward_keeping(decoder, ids, positions, keep, lengths=lengths, packed=packed)
        # and each suffix alone over a copy of the prefix's cache: the plain model
        for s, n in zip(starts, lengths):
            alone = decoder(
                input_ids=ids[:, s : s + n],
                position_ids=positions[:, s : s + n],
                cache=DynamicCache(ddp_cache_data=[(k, v) for k, v in kv], config=model.config),
                use_cache=True,
            ).last_hidden_state
            for q in (x for x in keep if s <= x < s + n):
                torch.testing.assert_close(kept[:, keep.index(q)], alone[:, q - s], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kept, full[:, keep], atol=1e-5, rtol=1e-5)


def test_pruning_is_for_forwards_that_read_few_positions():
    assert last_layer.prunes([], 10) and last_layer.prunes([3, 9], 8)
    assert not last_layer.prunes(list(range(8)), 8)  # a perplexity window reads every position


def test_kept_positions_read_each_position_once_and_point_targets_at_its_row():
    # an MMLU question's four letters are read at one position
    keep, targets = last_layer.kept_positions([(9, 30), (9, 31), (4, 7), (9, 32), (9, 33)])
    assert keep == [4, 9] and targets == [(1, 30), (1, 31), (0, 7), (1, 32), (1, 33)]
    assert last_layer.kept_positions([]) == ([], [])
