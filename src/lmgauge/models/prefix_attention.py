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

It is registered as a transformers attention function and switched on only for the suffix
forwards of architectures whose attention is plain scaled dot product with causal masking
(`CASCADE_ARCHITECTURES`); every other forward keeps the model's own attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

NAME = "lmgauge_cascade"
PREFIX_KWARG = "lmgauge_prefix_kv"  # passed through the decoder's **kwargs to every attention call

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


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, cascade_attention)
        _registered = True


@contextlib.contextmanager
def cascade_on(model: Any) -> Iterator[None]:
    """The model's attention is the cascade inside this block, its own outside.

    The mask interface has no entry for NAME, so the decoder builds no mask for these forwards.
    """
    register()
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = before


def prefix_kv(state: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of a one-row prefix cache, unexpanded."""
    return [(layer.keys, layer.values) for layer in state.layers]
