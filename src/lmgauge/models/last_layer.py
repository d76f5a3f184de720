"""A scoring forward that runs the decoder's last layer in full only where its output is read.

In a causal decoder the last layer's output at a position feeds nothing but the final norm and
the vocabulary projection; the other positions need only its keys and values (a later position
of the same forward attends to them, and a prefix's cache holds them for the suffixes). So the
forwards that score (a prefix's, a packed batch of suffixes') run every layer but the last as the
model does, then the last layer's keys and values at every position and its query, attention,
output projection and MLP at the scored positions only: for MMLU 5-shot one position per question
instead of every token of it (1/L of the forward's work, ~3% for 30 layers).

The last layer is written out with the layer's own modules, so it is exact for the architectures
whose layer is (norm, attention with rotary positions, residual, norm, MLP, residual) and whose
attention is plain softmax attention: prefix_attention.CASCADE_ARCHITECTURES (Qwen3's per-head
q/k norms included).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from lmgauge.models.prefix_attention import PACKED_KWARG, PackedSuffixes, attention_with_lse

# Pruning pays while the kept positions are few: the kept queries attend with an explicit mask over
# the whole row (no causal block skipping), so a forward scoring most of its positions (a
# perplexity window) runs the model's own last layer instead.
MAX_KEPT_SHARE = 0.25


def prunes(keep: Sequence[int], length: int) -> bool:
    """Whether forward_keeping is the cheaper way for a forward of `length` positions."""
    return len(keep) <= MAX_KEPT_SHARE * length


def kept_positions(targets: Sequence[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """The distinct positions that (position, token) targets read, sorted (forward_keeping's
    `keep`), and the targets with each position replaced by its row in forward_keeping's output."""
    keep = sorted({p for p, _ in targets})
    row = {p: i for i, p in enumerate(keep)}
    return keep, [(row[p], tok) for p, tok in targets]


def forward_keeping(
    decoder: Any,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    keep: Sequence[int],
    lengths: Sequence[int] | None = None,
    packed: PackedSuffixes | None = None,
    cache: Any = None,
    cache_arg: str = "cache",
) -> torch.Tensor:
    """The decoder's final hidden states (1, len(keep), hidden) at positions `keep` of one row.

    lengths, packed: the row is packed suffixes of these lengths, each seeing the prefix in
    `packed` and its own earlier tokens only (inside prefix_attention.attention_on(PACKED));
    None: the row is one causal sequence. cache: an empty cache, filled for every layer, the last
    one included (a prefix forward's state)."""
    from transformers.masking_utils import create_causal_mask

    h = decoder.embed_tokens(input_ids)
    mask = create_causal_mask(
        config=decoder.config, inputs_embeds=h, attention_mask=None, cache=cache, position_ids=position_ids
    )
    pos_emb = decoder.rotary_emb(h, position_ids=position_ids)
    layers = decoder.layers[: decoder.config.num_hidden_layers]
    extra: dict[str, Any] = {cache_arg: cache, "use_cache": True} if cache is not None else {}
    if packed is not None:
        extra[PACKED_KWARG] = packed
    for layer in layers[:-1]:
        h = layer(h, attention_mask=mask, position_embeddings=pos_emb, position_ids=position_ids, **extra)
    t = h.shape[1]
    segment = torch.zeros(t, dtype=torch.long, device=h.device)
    if lengths is not None:
        n = torch.tensor(list(lengths), device=h.device)
        segment = torch.repeat_interleave(torch.arange(len(n), device=h.device), n)
    last = _LastLayer(layers[-1], pos_emb, segment, packed)
    return decoder.norm(last.at(h, list(keep), cache))


class _LastLayer:
    """The last decoder layer, written out with its own modules, at chosen positions."""

    def __init__(self, layer: Any, pos_emb: tuple[torch.Tensor, torch.Tensor], segment, packed) -> None:
        self.layer, self.attn = layer, layer.self_attn
        self.rope = sys.modules[type(self.attn).__module__].apply_rotary_pos_emb  # the model's own rotary
        self.cos, self.sin = pos_emb
        self.segment = segment  # which packed suffix (or 0: the one sequence) each position is in
        self.packed: PackedSuffixes | None = packed

    def _heads(self, proj: Any, norm_name: str, x: torch.Tensor) -> torch.Tensor:
        """(1, heads, T, D) of a projection, with the per-head norm Qwen3 applies before the rotary."""
        y = proj(x).view(1, x.shape[1], -1, self.attn.head_dim)
        norm = getattr(self.attn, norm_name, None)
        return (norm(y) if norm is not None else y).transpose(1, 2)

    def at(self, h: torch.Tensor, keep: list[int], cache: Any) -> torch.Tensor:
        """The layer's output at positions `keep` of the row h; its keys and values at every
        position go into `cache`, which holds nothing yet for this layer: key i is position i."""
        attn = self.attn
        x = self.layer.input_layernorm(h)
        k = self._heads(attn.k_proj, "k_norm", x)
        v = attn.v_proj(x).view(1, x.shape[1], -1, attn.head_dim).transpose(1, 2)
        _, k = self.rope(k, k, self.cos, self.sin)
        if cache is not None:
            k, v = cache.update(k, v, attn.layer_idx)
            if k.shape[2] != h.shape[1]:  # the mask below reads key positions as the row's own
                raise RuntimeError(f"forward_keeping: the cache already held {k.shape[2] - h.shape[1]} positions")
        if not keep:
            return h[:, :0]
        at = torch.tensor(keep, device=h.device)
        q = self._heads(attn.q_proj, "q_norm", x[:, at])
        q, _ = self.rope(q, q, self.cos[:, at], self.sin[:, at])
        q = q.contiguous()
        heads, kv_heads = q.shape[1], k.shape[1]
        g = heads // kv_heads

        # the row's own keys: a kept position sees the earlier positions of its own suffix (or row)
        key_pos = torch.arange(k.shape[2], device=h.device)
        seen = (self.segment[None, :] == self.segment[at][:, None]) & (key_pos[None, :] <= at[:, None])
        mask = torch.zeros(seen.shape, dtype=q.dtype, device=h.device).masked_fill_(~seen, float("-inf"))
        kr = k.repeat_interleave(g, dim=1) if g > 1 else k
        vr = v.repeat_interleave(g, dim=1) if g > 1 else v
        out, lse = attention_with_lse(q, kr, vr, mask, False, attn.scaling)
        if self.packed is not None:  # and the shared prefix, merged by the log-sum-exp as packed attention does
            kp, vp = self.packed.prefix[attn.layer_idx]
            folded = q.view(1, kv_heads, g * len(keep), attn.head_dim)
            out_p, lse_p = attention_with_lse(folded, kp, vp, None, False, attn.scaling)
            out_p, lse_p = out_p.reshape(1, heads, len(keep), -1), lse_p.reshape(1, heads, len(keep))
            out = torch.lerp(out.float(), out_p.float(), torch.sigmoid(lse_p - lse).unsqueeze(-1)).to(q.dtype)
        hk = h[:, at] + attn.o_proj(out.transpose(1, 2).reshape(1, len(keep), -1))
        return hk + self.layer.mlp(self.layer.post_attention_layernorm(hk))
