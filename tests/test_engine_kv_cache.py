"""The decoding cache allocated up front (models/kv_cache.py): the same keys and logits as
transformers' growing DynamicCache, through growth past its room and rows leaving the batch."""

from __future__ import annotations

import torch

from lmgauge.models.kv_cache import RoomyLayer, roomy_cache
from lmgauge.requests import GenerateRequest


def test_roomy_layer_holds_what_a_growing_layer_holds():
    torch.manual_seed(0)
    prefix_k, prefix_v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    layer = RoomyLayer(prefix_k, prefix_v, rows=3, room=2)
    keys, values = prefix_k.expand(3, -1, -1, -1), prefix_v.expand(3, -1, -1, -1)
    for step in range(5):  # past the room of 2: the buffers grow, the filled part is kept
        k, v = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
        got_k, got_v = layer.update(k, v)
        keys, values = torch.cat([keys, k], dim=-2), torch.cat([values, v], dim=-2)
        assert torch.equal(got_k, keys) and torch.equal(got_v, values)
        assert layer.get_seq_length() == 6 + step
    layer.batch_select_indices(torch.tensor([0, 2]))  # a row finished
    k, v = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    got_k, _ = layer.update(k, v)
    assert torch.equal(got_k, torch.cat([keys[[0, 2]], k], dim=-2))


def test_decoding_writes_in_place_and_gives_the_growing_cache_logits(tiny_model):
    cfg = tiny_model.model.config
    prefix = tiny_model.prefix_state(tiny_model.encode("Question: What is the capital of France?\nAnswer:"))
    p = prefix.get_seq_length()
    rows = torch.tensor([[5, 6, 7], [8, 9, 10]])
    mask = torch.ones(2, p + 3, dtype=torch.long)
    positions = torch.arange(p, p + 3).unsqueeze(0).expand(2, -1)
    roomy, growing = roomy_cache(cfg, prefix, 2, 8), tiny_model.expand_state(prefix, 2)
    assert roomy is not None and all(isinstance(layer, RoomyLayer) for layer in roomy.layers)
    buffers = [layer._k.data_ptr() for layer in roomy.layers]
    ids = rows
    for _ in range(4):
        a, roomy = tiny_model.decode_step(ids, mask, positions, roomy)
        b, growing = tiny_model.decode_step(ids, mask, positions, growing)
        assert torch.allclose(a, b, atol=1e-5)
        ids = a.argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=-1)
        positions = positions[:, -1:] + 1
    assert [layer._k.data_ptr() for layer in roomy.layers] == buffers  # never reallocated: in place


def test_generation_uses_the_roomy_cache(tiny_model, monkeypatch):
    made = []
    real = tiny_model.expand_state

    def spy(state, n, room=0):
        cache = real(state, n, room)
        made.append((room, cache))
        return cache

    monkeypatch.setattr(tiny_model, "expand_state", spy)
    monkeypatch.setattr(tiny_model, "decode_way", "batches")  # the slots hold no per-row cache
    tiny_model.generate([GenerateRequest("The quick brown", max_new_tokens=5)])
    ((room, cache),) = made
    assert room >= 5 and all(isinstance(layer, RoomyLayer) for layer in cache.layers)
