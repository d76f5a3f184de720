"""Slot decoding: rows continuing one shared prefix hold its KV once, and only their own tokens each.

The batched decode path (engine/generate.py `_decode_batch`) copies the shared few-shot prefix's
KV cache into a cache per row. Here the prefix's one-row KV stays as the prefix forward made it,
and each live row has a *slot*: preallocated buffers per layer for its own prompt suffix and the
tokens it generates, written in place. Per layer, a row's query attends

- to the prefix: every query of every row against the one unexpanded prefix K/V (one batched
  matmul per KV head, the batch folded into the query dimension), and
- to its own slot: its suffix and generated tokens, masked by its own length (causal within a
  prefill),

the two softmaxes merged exactly by their log-sum-exp (as models/prefix_attention.py's cascade).

Live rows occupy slots 0..n-1: a row that finishes leaves at once (the last row's slot is moved into
its place, a copy of that row's own tokens only), and new rows are prefilled into the slots after
the last live one. The engine schedules (engine/slots.py); this module owns the tensors.

Exact only for plain causal softmax attention with rotary positions applied to q and k (the
cascade's `CASCADE_ARCHITECTURES`); other models decode in batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

NAME = "lmgauge_slots"
SLOT_KWARG = "lmgauge_slot_forward"  # through the decoder's **kwargs to every attention call


@dataclass
class SlotForward:
    """What every layer's attention needs for one forward over slots first..first+n-1."""

    pool: SlotPool
    first: int
    write_at: torch.Tensor | None  # decode: (n,) where each row's new token goes; prefill: None (from 0)
    width: int  # keys per row to attend to after the write (the longest row's length)
    masked: torch.Tensor  # (n, 1, G*S, width) bool: the own keys a query must not see


class SlotPool:
    """Per-layer KV buffers for `slots` rows of `capacity` own tokens, beside one shared prefix.

    `decoder` maps (input_ids, position_ids, **kwargs) to hidden states, `to_logits` hidden states
    to float logits on the CPU (the backend's head, scaling and softcap).
    """

    def __init__(
        self,
        model: Any,
        decoder: Any,
        to_logits: Callable[[torch.Tensor], torch.Tensor],
        prefix: Any,
        prefix_len: int,
        slots: int,
        capacity: int,
        device: str,
    ) -> None:
        cfg = model.config
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        self.model, self.decoder, self.to_logits, self.device = model, decoder, to_logits, device
        self.groups = heads // kv_heads
        self.prefix_len, self.slots, self.capacity = prefix_len, slots, capacity
        # the prefix as the prefix forward stored it: (1, KVH, P, D) per layer, never expanded
        self.prefix = [(layer.keys, layer.values) for layer in prefix.layers] if prefix is not None else None
        # allocated at a layer's first write, on that layer's device (a model split over devices)
        self.keys: list[torch.Tensor | None] = [None] * cfg.num_hidden_layers
        self.values: list[torch.Tensor | None] = [None] * cfg.num_hidden_layers
        self.lengths: list[int] = []  # own tokens held per live row, slot order

    def buffers(self, layer: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.keys[layer], self.values[layer]
        if k is None or v is None:
            shape = (self.slots, like.shape[1], self.capacity, like.shape[-1])
            # zeros, not empty: masked keys still meet the values in a matmul (0 * NaN is NaN)
            k = self.keys[layer] = like.new_zeros(shape)
            v = self.values[layer] = like.new_zeros(shape)
        return k, v

    @property
    def live(self) -> int:
        return len(self.lengths)

    def free(self) -> int:
        return self.slots - self.live

    def remove(self, row: int) -> None:
        """Row `row` leaves; the last live row moves into its slot (the caller mirrors the move)."""
        last = self.live - 1
        if row != last:
            n = self.lengths[last]
            with torch.inference_mode():  # the buffers were made in a forward: inference tensors
                for k, v in zip(self.keys, self.values):
                    if k is not None and v is not None:
                        k[row, :, :n] = k[last, :, :n]
                        v[row, :, :n] = v[last, :, :n]
            self.lengths[row] = n
        self.lengths.pop()

    def prefill(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Admit rows (their own tokens after the prefix) into the next free slots; returns the
        logits at each row's last token, (m, vocab)."""
        m, width = len(rows), max(len(r) for r in rows)
        if m > self.free() or width > self.capacity:
            raise ValueError(f"{m} rows of up to {width} tokens do not fit {self.free()} free slots of {self.capacity}")
        first = self.live
        ids = torch.zeros((m, width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(list(r))
        lengths = torch.tensor([len(r) for r in rows])
        keys = torch.arange(width)
        causal = keys.unsqueeze(0) <= keys.unsqueeze(1)  # (S query, S key)
        visible = causal.unsqueeze(0) & (keys < lengths.unsqueeze(1)).unsqueeze(1)  # (m, S, S)
        masked = ~visible.unsqueeze(1).expand(m, self.groups, width, width).reshape(m, 1, self.groups * width, width)
        positions = (self.prefix_len + keys).unsqueeze(0).expand(m, -1)
        fwd = SlotForward(self, first, None, width, masked.to(self.device))
        states = self._forward(ids, positions, fwd)
        self.lengths.extend(len(r) for r in rows)
        return self.to_logits(states[torch.arange(m, device=states.device), (lengths - 1).to(states.device)])

    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """One new token for every live row (slot order); returns the logits after it, (n, vocab)."""
        n = self.live
        if len(tokens) != n:
            raise ValueError(f"{len(tokens)} tokens for {n} live rows")
        if max(self.lengths) >= self.capacity:
            raise ValueError(f"a row outgrew its slot of {self.capacity} tokens")
        at = torch.tensor(self.lengths)
        width = int(at.max()) + 1
        masked = (torch.arange(width).unsqueeze(0) > at.unsqueeze(1)).view(n, 1, 1, width)
        masked = masked.expand(n, 1, self.groups, width)
        fwd = SlotForward(self, 0, at.to(self.device), width, masked.to(self.device))
        states = self._forward(torch.tensor([[t] for t in tokens]), (self.prefix_len + at).unsqueeze(1), fwd)
        self.lengths = [x + 1 for x in self.lengths]
        return self.to_logits(states[:, -1])

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, fwd: SlotForward) -> torch.Tensor:
        with torch.inference_mode(), slots_on(self.model):
            return self.decoder(
                input_ids=ids.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
                **{SLOT_KWARG: fwd},
            ).last_hidden_state


def slot_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Write this forward's keys into the rows' slots, then attend (prefix + own slot); (n, S, H, D)."""
    fwd: SlotForward | None = kwargs.get(SLOT_KWARG)
    if fwd is None:
        raise RuntimeError(f"{NAME} attention called without {SLOT_KWARG}")
    pool, layer = fwd.pool, cast(int, module.layer_idx)
    n, heads, s, d = query.shape
    rows = slice(fwd.first, fwd.first + n)
    ks, vs = pool.buffers(layer, key)
    if fwd.write_at is None:  # prefill: the rows' tokens from their slot's start
        ks[rows, :, :s] = key
        vs[rows, :, :s] = value
    else:  # decode: one token per row, each at its own length
        index = torch.arange(fwd.first, fwd.first + n, device=key.device)
        at = fwd.write_at.to(key.device)
        ks[index, :, at] = key[:, :, 0]
        vs[index, :, at] = value[:, :, 0]
    own_k, own_v = ks[rows, :, : fwd.width], vs[rows, :, : fwd.width]  # views: no copy
    kv_heads = own_k.shape[1]
    g = heads // kv_heads
    out_dtype = query.dtype
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    scale = scaling if scaling is not None else d**-0.5
    # (n, KVH, G*S, D): query heads of one KV head side by side (repeat_kv's order)
    q = (query.to(work) * scale).reshape(n, kv_heads, g * s, d)

    so = torch.matmul(q, own_k.to(work).transpose(-1, -2))  # (n, KVH, G*S, width)
    so.masked_fill_(fwd.masked.to(so.device), float("-inf"))
    m = so.amax(-1, keepdim=True)  # every query sees at least its own first token: finite
    if pool.prefix is None:
        eo = so.sub_(m).exp_()
        out = torch.matmul(eo, own_v.to(work)).div_(eo.sum(-1, keepdim=True))
    else:
        kp, vp = pool.prefix[layer]
        qp = q.permute(1, 0, 2, 3).reshape(kv_heads, n * g * s, d)
        sp = torch.bmm(qp, kp[0].to(work).transpose(1, 2))  # (KVH, n*G*S, P)
        mp = sp.amax(-1, keepdim=True).view(kv_heads, n, g * s, 1).permute(1, 0, 2, 3)
        m = torch.maximum(m, mp)
        ep = sp.sub_(m.permute(1, 0, 2, 3).reshape(kv_heads, n * g * s, 1)).exp_()
        eo = so.sub_(m).exp_()
        denom = eo.sum(-1, keepdim=True) + ep.sum(-1, keepdim=True).view(kv_heads, n, g * s, 1).permute(1, 0, 2, 3)
        op = torch.bmm(ep, vp[0].to(work)).view(kv_heads, n, g * s, d).permute(1, 0, 2, 3)
        out = torch.matmul(eo, own_v.to(work)).add_(op).div_(denom)
    out = out.view(n, kv_heads, g, s, d).permute(0, 3, 1, 2, 4).reshape(n, s, heads, d)
    return out.to(out_dtype).contiguous(), None


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, slot_attention)
        _registered = True


@contextlib.contextmanager
def slots_on(model: Any) -> Iterator[None]:
    """The model's attention is slot attention inside this block, its own outside (no mask is built:
    the mask interface has no entry for NAME)."""
    register()
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = before
