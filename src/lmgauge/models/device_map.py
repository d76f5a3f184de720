"""A model larger than one device: its layers split over the worker's devices, memory-balanced.

The worker of a model with run_cfg.num_gpus = N sees N devices (CUDA_VISIBLE_DEVICES). As
OpenCompass and llmc do for a 70B model on 4 GPUs (transformers' device_map="auto" with
max_memory, accelerate's infer_auto_device_map), whole decoder layers are placed in order, the
embeddings on the first device and the final norm and head on the last, so hidden states cross
each device boundary once per forward; accelerate's hooks move activations between devices and
each layer's KV cache stays on its layer's device.

The planning is a pure function of module sizes and device memories (`plan_device_map`), so it is
tested without GPUs. Unlike accelerate's greedy fill (device 0 first, up to its memory), the plan
balances: it finds the smallest per-device load with which the modules, kept in order, fit the
devices, so no device holds much more than its share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class DeviceMapError(ValueError):
    pass


def _fits(sizes: Sequence[int], caps: Sequence[int]) -> list[int] | None:
    """Device of each module, filling devices in order up to their caps; None if they do not fit."""
    placed: list[int] = []
    dev, used = 0, 0
    for size in sizes:
        while dev < len(caps) and used + size > caps[dev]:
            dev, used = dev + 1, 0
        if dev == len(caps):
            return None
        placed.append(dev)
        used += size
    return placed


def plan_device_map(
    modules: Sequence[tuple[str, int]], memory: Sequence[int], reserve: Sequence[int] | int = 0
) -> dict[str, int]:
    """Contiguous placement of modules (name, bytes), in forward order, on devices of `memory` bytes.

    Args:
        modules: the model's placement units in the order a forward visits them (embeddings,
            each decoder layer, final norm, head); a unit is never split.
        memory: bytes each device may hold for weights.
        reserve: bytes kept free per device (one value or one per device) for activations and caches.

    Returns:
        module name -> device index; the largest per-device load is the smallest possible.
    """
    if not memory:
        raise DeviceMapError("no devices to place the model on")
    reserves = [reserve] * len(memory) if isinstance(reserve, int) else list(reserve)
    if len(reserves) != len(memory):
        raise DeviceMapError(f"{len(reserves)} reserves for {len(memory)} devices")
    caps = [max(0, m - r) for m, r in zip(memory, reserves)]
    sizes = [s for _, s in modules]
    if not sizes:
        return {}
    too_big = [(n, s) for n, s in modules if s > max(caps)]
    if too_big:
        name, size = too_big[0]
        raise DeviceMapError(
            f"module {name} ({size / 2**30:.2f} GiB) fits on no device (largest: {max(caps) / 2**30:.2f} GiB free)"
        )
    if _fits(sizes, caps) is None:
        raise DeviceMapError(
            f"the model ({sum(sizes) / 2**30:.2f} GiB) does not fit on {len(caps)} device(s) "
            f"with {sum(caps) / 2**30:.2f} GiB free for weights"
        )
    lo, hi = max(sizes), max(caps)  # the smallest load bound with which the modules still fit
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(sizes, [min(c, mid) for c in caps]) is None:
            lo = mid + 1
        else:
            hi = mid
    placed = _fits(sizes, [min(c, lo) for c in caps])
    assert placed is not None  # lo is a bound that fits, found above
    return {name: dev for (name, _), dev in zip(modules, placed)}


def placement_units(model: Any) -> list[tuple[str, int]]:
    """(module name, bytes) of a causal LM in forward order: whole decoder layers, never split.

    Works on a model built on the meta device (sizes from shapes, no weights loaded).
    """
    decoder = model.get_decoder()
    prefix = next(name for name, mod in model.named_modules() if mod is decoder)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise DeviceMapError(f"{type(model).__name__}: no decoder.layers to place")

    def size(mod: Any) -> int:
        return sum(p.numel() * p.element_size() for p in mod.parameters(recurse=True)) + sum(
            b.numel() * b.element_size() for b in mod.buffers(recurse=True)
        )

    units: list[tuple[str, int]] = []
    layer_ids = {id(layer) for layer in layers}
    head: list[tuple[str, int]] = []
    for name, child in decoder.named_children():
        if child is layers:
            units.extend((f"{prefix}.{name}.{i}", size(layer)) for i, layer in enumerate(layers))
        elif id(child) not in layer_ids:
            # embeddings and rotary tables before the layers, the final norm after them
            (head if units else units).append((f"{prefix}.{name}", size(child)))
    units.extend(head)
    for name, child in model.named_children():
        if child is not decoder:
            units.append((name, size(child)))
    return units


def auto_device_map(model_on_meta: Any, memory: Sequence[int], reserve: Sequence[int] | int = 0) -> dict[str, str]:
    """A transformers `device_map` ({module: "cuda:i"}) for `from_pretrained`, balanced by plan_device_map.

    Tied input and output embeddings stay on one device (the first), as accelerate requires; the
    head then weighs nothing of its own.
    """
    units = placement_units(model_on_meta)
    tied = bool(getattr(model_on_meta.config, "tie_word_embeddings", False))
    head_name = next((n for n, c in model_on_meta.named_children() if c is model_on_meta.get_output_embeddings()), None)
    if tied:
        units = [(n, 0 if n == head_name else s) for n, s in units]
    plan = plan_device_map(units, memory, reserve)
    if tied and head_name in plan:
        embed = next(n for n, _ in units)
        plan[head_name] = plan[embed]
    return {name: f"cuda:{dev}" for name, dev in plan.items()}


KV_RESERVE_SHARE = 0.25  # of each device's free memory left for activations and KV caches


def device_map_for_visible_gpus(folder: str, dtype: Any, trust_remote_code: bool = False) -> dict[str, str] | None:
    """The balanced device map over every visible CUDA device, or None with fewer than two.

    The worker of a model with run_cfg.num_gpus = N sees exactly its N devices.
    """
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    free = [int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count())]
    return auto_device_map(meta, free, reserve=[int(f * KV_RESERVE_SHARE) for f in free])
