"""A decoding KV cache with room for the tokens to come: each step writes in place.

transformers' DynamicCache grows by `torch.cat` of the whole cache with the new token's keys, per
layer per step: every decode step copies the entire cache (the shared few-shot prefix included,
once per row) into freshly allocated memory. On a CPU those copies and page faults cost as much
as the step's compute. `RoomyLayer` allocates prefix + prompt + new tokens once and writes each
step's keys into the next free slots; attention reads a view of the filled part, so the numbers
are the plain cache's exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class RoomyLayer(DynamicLayer):
    """A full-attention layer's cache in buffers of a fixed capacity (grown by doubling if a step
    overruns it); `keys`/`values` are views of the filled part, as DynamicLayer's tensors are."""

    def __init__(self, keys: torch.Tensor | None, values: torch.Tensor | None, rows: int, room: int) -> None:
        super().__init__()
        self._rows, self._room = rows, room
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0
        if keys is not None and values is not None:
            self._allocate(keys, keys.shape[-2] + room)
            self._write(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))

    def _allocate(self, like: torch.Tensor, capacity: int) -> None:
        heads, dim = like.shape[1], like.shape[-1]
        k = like.new_empty(self._rows, heads, capacity, dim)
        v = like.new_empty(self._rows, heads, capacity, dim)
        if self._k is not None and self._v is not None and self._len:
            k[:, :, : self._len] = self._k[:, :, : self._len]
            v[:, :, : self._len] = self._v[:, :, : self._len]
        self._k, self._v = k, v
        self.device = like.device
        self.is_initialized = True

    def _write(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        end = self._len + keys.shape[-2]
        if self._k is None or end > self._k.shape[-2]:
            self._allocate(keys, max(end + self._room, 2 * (self._k.shape[-2] if self._k is not None else 0)))
        assert self._k is not None and self._v is not None
        self._k[:, :, self._len : end] = keys
        self._v[:, :, self._len : end] = values
        self._len = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self._allocate(key_states, key_states.shape[-2] + self._room)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if key_states.shape[0] != self._rows:
            raise ValueError(f"a cache made for {self._rows} rows was given {key_states.shape[0]}")
        self._write(key_states, value_states)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._k is None or self._v is None:
            return
        self._k, self._v = self._k[indices], self._v[indices]  # a copy, once per row leaving
        self._rows = self._k.shape[0]
        self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("RoomyLayer is for decoding forward only")


def roomy_cache(config: Any, prefix: Any, rows: int, room: int) -> DynamicCache | None:
    """A cache for `rows` rows starting from a one-row prefix cache (or empty, `prefix` None) with
    room for `room` more tokens per row; None where a layer is not plain full attention (sliding
    windows, linear attention keep transformers' own layers)."""
    cache = DynamicCache(config=config)
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    if prefix is None:
        cache.layers = [RoomyLayer(None, None, rows, room) for _ in cache.layers]
    else:
        if len(prefix.layers) != len(cache.layers):
            return None
        cache.layers = [RoomyLayer(layer.keys, layer.values, rows, room) for layer in prefix.layers]
    return cache
