"""Cascade attention: rows that continue one shared prefix attend to its single stored KV cache.

The plain way to run n suffix rows over a shared prefix expands the prefix's cache to n rows and
lets each layer's cache update concatenate it with the new keys, which materializes n copies of
the prefix per layer per batch (and `repeat_kv` copies them again per query head group). Here the
attention is split in two and merged exactly:

- over the prefix: every query of every row against the one unexpanded prefix K/V (one matmul per
  KV head, the batch folded into the query dimension);
- over the suffix: each row's causal attention over its own new keys;
- the two softmaxes merged by their log-sum-exp: out = (e_p V_p + e_s V_s) / (sum e_p + sum e_s),
  both exponentials taken against the same running maximum.

Packed attention goes one step further: all suffixes of a batch sit in ONE row after the prefix,
each with its own position ids, so no padding is computed either. Per layer:

- over the prefix: one fused attention call of every suffix token against the unexpanded prefix
  K/V (the query heads of a KV head folded into the query length: no mask, no repeat);
- over the suffixes: causal attention of each suffix over its own tokens only, as block-diagonal
  masked calls over chunks of neighbouring suffixes (a chunk's mask wastes at most its own square;
  on a CPU small chunks of suffixes under 8 tokens, any other suffix its own causal call);
- the two merged by the log-sum-exp both calls return.

Both are registered as transformers attention functions and switched on only for the suffix
forwards of architectures whose attention is plain scaled dot product with causal masking
(`CASCADE_ARCHITECTURES`); every other forward keeps the model's own attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

NAME = "lmgauge_cascade"
PREFIX_KWARG = "lmgauge_prefix_kv"  # passed through the decoder's **kwargs to every attention call
PACKED = "lmgauge_packed"
PACKED_KWARG = "lmgauge_packed"  # a PackedSuffixes, through the decoder's **kwargs
# Off a CPU, suffixes are grouped into chunks of about this many tokens for one block-diagonal call:
# the mask makes a chunk cost its length squared, a launch per suffix costs more (not measured here).
SUFFIX_CHUNK = 512
# On a CPU a suffix of CPU_ALONE_FROM tokens or more is its own causal call (the fused kernel skips
# the blocks above the diagonal, no mask), and runs of shorter ones share masked chunks of up to
# CPU_SUFFIX_CHUNK tokens (a call costs ~30 us whatever its size). Measured per forward (30 layers,
# SmolLM2's 9 heads): the MMLU 5-shot suffixes (20 per subject, 33-389 tokens) 98-150 ms against
# 360-533 ms for 512-token masked chunks (1.08 s against 1.33 s on high_school_us_history's
# 137-389-token ones); 400 two-token suffixes (OpenCompass' label tails) ~145 ms, against 360 ms
# one call each and 279 ms in 512-token chunks (a masked call costs about a dozen tiny causal ones).
CPU_SUFFIX_CHUNK = 64
CPU_ALONE_FROM = 8

# Attention modules that compute softmax(q k^T * scaling + causal mask) v with rotary positions
# already applied to q and k, no sliding window, no softcap, no sinks: the cascade is exact for them.
CASCADE_ARCHITECTURES = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"})


def supports_cascade(model: Any) -> bool:
    """Whether the loaded model's attention is one the cascade reproduces exactly."""
    cfg = model.config
    archs = set(getattr(cfg, "architectures", None) or [type(model).__name__])
    if not archs <= CASCADE_ARCHITECTURES and type(model).__name__ not in CASCADE_ARCHITECTURES:
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    return not getattr(cfg, "attn_logit_softcapping", None)


def cascade_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of suffix rows over (shared prefix, own causal suffix), output (n, S, H, D).

    query (n, H, S, D); key, value (n, KVH, S, D): the suffix only (no cache); the prefix's
    (1, KVH, P, D) keys and values per layer come in kwargs[PREFIX_KWARG]. Right padding needs no
    mask: a real token never sees a later (padded) one under the causal mask.
    """
    prefix = kwargs.get(PREFIX_KWARG)
    if prefix is None:
        raise RuntimeError(f"{NAME} attention called without {PREFIX_KWARG}")
    kp, vp = prefix[module.layer_idx]
    n, heads, s, d = query.shape
    kv_heads = kp.shape[1]
    g = heads // kv_heads
    out_dtype = query.dtype
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    scale = scaling if scaling is not None else d**-0.5
    q = (query.to(work) * scale).view(n, kv_heads, g, s, d)

    # prefix part: (KVH, n*G*S, D) @ (KVH, D, P), the batch folded into the query rows
    qp = q.permute(1, 0, 2, 3, 4).reshape(kv_heads, n * g * s, d)
    sp = torch.bmm(qp, kp[0].to(work).transpose(1, 2))
    mp = sp.amax(-1, keepdim=True)  # (KVH, nGS, 1)

    # suffix part: causal within each row's own new tokens
    ss = torch.matmul(q, key.to(work).unsqueeze(2).transpose(-1, -2))  # (n, KVH, G, S, S)
    future = torch.ones(s, s, dtype=torch.bool, device=query.device).triu_(1)
    ss.masked_fill_(future, float("-inf"))
    ms = ss.amax(-1, keepdim=True)  # (n, KVH, G, S, 1); the diagonal is always finite

    m = torch.maximum(ms, mp.view(kv_heads, n, g, s, 1).permute(1, 0, 2, 3, 4))
    m_p = m.permute(1, 0, 2, 3, 4).reshape(kv_heads, n * g * s, 1)
    ep = sp.sub_(m_p).exp_()
    es = ss.sub_(m).exp_()
    denom = es.sum(-1, keepdim=True) + ep.sum(-1, keepdim=True).view(kv_heads, n, g, s, 1).permute(1, 0, 2, 3, 4)
    op = torch.bmm(ep, vp[0].to(work)).view(kv_heads, n, g, s, d).permute(1, 0, 2, 3, 4)
    out = torch.matmul(es, value.to(work).unsqueeze(2)).add_(op).div_(denom)  # (n, KVH, G, S, D)
    out = out.permute(0, 3, 1, 2, 4).reshape(n, s, heads, d)
    return out.to(out_dtype).contiguous(), None


@dataclass
class PackedSuffixes:
    """What every layer's packed attention needs: the prefix's per-layer (keys, values), each one
    (1, KVH, P, D), and the suffixes' chunks: (start, stop, additive mask or None for one causal
    suffix) over the packed row. Built once per batch."""

    prefix: list[tuple[torch.Tensor, torch.Tensor]]
    chunks: list[tuple[int, int, torch.Tensor | None]]


def suffix_chunks(
    lengths: Sequence[int], dtype: torch.dtype, device: Any, chunk: int | None = None, alone_from: int | None = None
) -> list[tuple[int, int, torch.Tensor | None]]:
    """Neighbouring suffixes grouped into chunks of up to `chunk` tokens (a longer suffix alone, and
    one of `alone_from` tokens or more), each with the additive mask that lets a token see only
    the earlier tokens of its own suffix (None: one suffix, plain causal). The defaults are by
    device: on a CPU CPU_SUFFIX_CHUNK and CPU_ALONE_FROM, else SUFFIX_CHUNK (and no size alone)."""
    cpu = torch.device(device).type == "cpu"
    if chunk is None:
        chunk = CPU_SUFFIX_CHUNK if cpu else SUFFIX_CHUNK
    if alone_from is None:
        alone_from = CPU_ALONE_FROM if cpu else chunk + 1
    out: list[tuple[int, int, torch.Tensor | None]] = []
    start = 0
    group: list[int] = []

    def close() -> None:
        total = sum(group)
        if len(group) == 1:
            out.append((start, start + total, None))  # one suffix: plain causal, no mask
        else:
            seg = torch.repeat_interleave(torch.arange(len(group)), torch.tensor(group))
            pos = torch.cat([torch.arange(n) for n in group])
            allowed = (seg[:, None] == seg[None, :]) & (pos[:, None] >= pos[None, :])
            mask = torch.zeros(total, total, dtype=dtype).masked_fill_(~allowed, float("-inf"))
            out.append((start, start + total, mask.to(device)))

    for n in lengths:
        if group and (sum(group) + n > chunk or n >= alone_from or group[-1] >= alone_from):
            close()
            start += sum(group)
            group = []
        group.append(n)
    if group:
        close()
    return out


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + mask) v and its log-sum-exp per query: (B, H, L, D), (B, H, L) float32.

    On a CPU the fused flash kernel returns both; elsewhere the scores are materialized (CUDA's
    fused kernels with a log-sum-exp output want half precision or aligned masks)."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, is_causal=causal, attn_mask=mask, scale=scale
        )
        return out, lse.float()
    return attention_with_lse_math(q, k, v, mask, causal, scale)


def attention_with_lse_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """attention_with_lse with the scores materialized, in float32."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(scale)
    if mask is not None:
        scores += mask.float()
    if causal:
        n = scores.shape[-1]
        scores.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=q.device).triu_(1), float("-inf"))
    lse = torch.logsumexp(scores, -1)
    out = torch.matmul(scores.sub_(lse.unsqueeze(-1)).exp_(), v.float())
    return out.to(q.dtype), lse


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of one packed row of suffixes over (shared prefix, own causal suffix): (1, T, H, D).

    query (1, H, T, D); key, value (1, KVH, T, D): the packed suffixes only (no cache); the prefix
    and the suffixes' chunks come in kwargs[PACKED_KWARG].
    """
    packed = kwargs.get(PACKED_KWARG)
    if not isinstance(packed, PackedSuffixes):
        raise RuntimeError(f"{PACKED} attention called without {PACKED_KWARG}")
    kp, vp = packed.prefix[cast(int, module.layer_idx)]
    _, heads, t, d = query.shape
    kv_heads = kp.shape[1]
    g = heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    q = query.contiguous()

    # prefix: the G query heads of a KV head folded into the query length, against the one copy
    out_p, lse_p = attention_with_lse(q.view(1, kv_heads, g * t, d), kp, vp, None, False, scale)
    out_p, lse_p = out_p.reshape(1, heads, t, d), lse_p.reshape(1, heads, t)

    # suffixes: each sees only its own earlier tokens
    k = key.repeat_interleave(g, dim=1) if g > 1 else key
    v = value.repeat_interleave(g, dim=1) if g > 1 else value
    parts = [
        attention_with_lse(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], _on(mask, q.device), mask is None, scale)
        for a, b, mask in packed.chunks
    ]
    out_s = torch.cat([o for o, _ in parts], dim=2) if len(parts) > 1 else parts[0][0]
    lse_s = torch.cat([lse for _, lse in parts], dim=2) if len(parts) > 1 else parts[0][1]

    # merge: out = (e^lse_p out_p + e^lse_s out_s) / (e^lse_p + e^lse_s)
    w = torch.sigmoid(lse_p - lse_s).unsqueeze(-1)
    out = torch.lerp(out_s.float(), out_p.float(), w)  # .float() is a no-op for float32
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def _on(mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """The chunk's mask where this layer runs (a model split over devices)."""
    return mask if mask is None or mask.device == device else mask.to(device)


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, cascade_attention)
        AttentionInterface.register(PACKED, packed_attention)
        _registered = True


@contextlib.contextmanager
def attention_on(model: Any, name: str) -> Iterator[None]:
    """The model's attention is `name` (NAME or PACKED) inside this block, its own outside.

    The mask interface has no entry for these names, so the decoder builds no mask for these forwards.
    """
    register()
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = name
    try:
        yield
    finally:
        cfg._attn_implementation = before


def cascade_on(model: Any) -> contextlib.AbstractContextManager[None]:
    return attention_on(model, NAME)


def prefix_kv(state: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of a one-row prefix cache, unexpanded."""
    return [(layer.keys, layer.values) for layer in state.layers]
