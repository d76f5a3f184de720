"""Device-map planning for a model split over several devices (models/device_map.py), on CPU: no
GPU is needed to check where each layer goes."""

from __future__ import annotations

import pytest

from lmgauge.models.device_map import DeviceMapError, auto_device_map, placement_units, plan_device_map

GiB = 2**30


def _llama_like(n_layers: int, layer: int, embed: int, head: int) -> list[tuple[str, int]]:
    return [
        ("model.embed_tokens", embed),
        *((f"model.layers.{i}", layer) for i in range(n_layers)),
        ("model.norm", 1),
        ("lm_head", head),
    ]


def test_a_70b_model_on_four_gpus_is_balanced():
    # Llama-2-70B in bf16: 80 layers of ~1.63 GiB, embeddings and head ~0.49 GiB each; 4 x 80 GiB
    units = _llama_like(80, int(1.63 * GiB), int(0.49 * GiB), int(0.49 * GiB))
    plan = plan_device_map(units, [80 * GiB] * 4, reserve=4 * GiB)
    loads = [sum(s for (n, s) in units if plan[n] == d) for d in range(4)]
    assert sorted(set(plan.values())) == [0, 1, 2, 3]
    assert max(loads) - min(loads) <= 2 * int(1.63 * GiB)  # within two layers of each other
    assert max(loads) <= 76 * GiB
    # in forward order: devices never go back, embeddings first, head last
    devices = [plan[n] for n, _ in units]
    assert devices == sorted(devices) and devices[0] == 0 and devices[-1] == 3


def test_balance_beats_greedy_fill():
    # greedy fill (accelerate without max_memory) would put 9 layers on device 0 and 1 on device 1
    units = _llama_like(10, 10, 1, 1)
    plan = plan_device_map(units, [1000, 1000])
    assert sum(1 for n in plan if n.startswith("model.layers") and plan[n] == 0) == 5


def test_unequal_devices_take_what_they_hold():
    units = _llama_like(8, 10, 0, 0)
    plan = plan_device_map(units, [25, 100])
    assert sum(1 for n, d in plan.items() if d == 0 and n.startswith("model.layers")) == 2


def test_too_big_says_by_how_much():
    with pytest.raises(DeviceMapError, match="does not fit on 2 device"):
        plan_device_map(_llama_like(10, 10 * GiB, GiB, GiB), [40 * GiB, 40 * GiB])
    with pytest.raises(DeviceMapError, match="model.layers.0 .* fits on no device"):
        plan_device_map(_llama_like(2, 50 * GiB, GiB, GiB), [40 * GiB, 40 * GiB])
    with pytest.raises(DeviceMapError, match="no devices"):
        plan_device_map(_llama_like(2, 1, 1, 1), [])


def test_units_of_a_real_architecture_on_the_meta_device():
    """SmolLM2's own config (a tied Llama), built without weights: every parameter is in one unit,
    the tied head goes with the embeddings, and the map has the names transformers expects."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    )  # fmt: skip
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    units = placement_units(model)
    names = [n for n, _ in units]
    assert names[0] == "model.embed_tokens" and names[-1] == "lm_head" and "model.norm" in names
    assert sum(1 for n in names if n.startswith("model.layers.")) == 30
    params = {n for n, _ in model.named_parameters()}
    assert all(any(p == u or p.startswith(u + ".") for u in names) for p in params)
    dmap = auto_device_map(model, [300 * 2**20] * 3)  # fp32: 0.54 GB in all
    assert dmap["lm_head"] == dmap["model.embed_tokens"] == "cuda:0"
    assert dmap["model.layers.29"] == dmap["model.norm"] == "cuda:2"
    assert {dmap[f"model.layers.{i}"] for i in range(30)} == {"cuda:0", "cuda:1", "cuda:2"}
