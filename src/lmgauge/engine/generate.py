"""Batched decoding over a KV cache: greedy, or sampled with a per-request seed.

Prompts that share a token prefix (few-shot exemplars) have it forwarded once; its KV cache is
copied into each batch, into a cache allocated for the whole decode (no per-step concatenation).
Rows are left-padded between the prefix and their own tokens, with their own position ids, so every
row decodes exactly as it would alone. Stop strings are checked on the decoded text as it grows;
finished rows leave the batch (and the cache) at once. A sampled row draws from its own generator
seeded by its request, so its text does not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lmgauge.engine.batching import token_budget_batches
from lmgauge.engine.prefix import prefix_groups
from lmgauge.engine.protocol import TokenModel
from lmgauge.engine.truncation import generation_room, keep_last
from lmgauge.requests import GenerateRequest, GenerateResult, TokenStats, all_answered


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _next_tokens(
    logits, reqs: list[GenerateRequest], live: list[int], generators: dict, n_done: list[int], eos: int | None
) -> list[int]:
    """One token per live row: argmax, or a draw from the temperature / top-p distribution."""
    import torch

    held = [b for b, k in enumerate(live) if eos is not None and n_done[k] < reqs[k].min_new_tokens]
    if held:
        logits = logits.clone()  # the model's logits are inference tensors: not writable in place
        logits[held, eos] = float("-inf")
    out = logits.argmax(-1).tolist()
    for b, k in enumerate(live):
        req = reqs[k]
        if req.temperature <= 0:
            continue
        probs = torch.softmax(logits[b] / req.temperature, dim=-1)
        if req.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < req.top_p  # smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        if k not in generators:
            generators[k] = torch.Generator().manual_seed(req.seed if req.seed is not None else 0)
        out[b] = int(torch.multinomial(probs, 1, generator=generators[k]))
    return out


def _decode_batch(
    model: TokenModel,
    state,
    prefix_len: int,
    rows: list[list[int]],
    reqs: list[GenerateRequest],
    stats: TokenStats | None,
) -> list[tuple[str, int, str]]:
    """Decode rows (each continuing the prefix in `state`, if any); (text, tokens, reason)."""
    import torch

    n, width = len(rows), max(len(r) for r in rows)
    pad = model.eos_token_id if model.eos_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    own = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    mask = torch.cat([torch.ones(n, prefix_len, dtype=own.dtype), own], dim=-1)
    positions = prefix_len + (own.cumsum(-1) - 1).clamp(min=0)
    # room for the rows' own tokens and every token they may generate: steps write in place
    cache = model.expand_state(state, n, room=width + max(r.max_new_tokens for r in reqs))

    out: list[tuple[str, int, str] | None] = [None] * n
    tokens: list[list[int]] = [[] for _ in rows]
    live = list(range(n))  # batch row -> request index within this batch
    generators: dict = {}
    step_ids = ids
    while live:
        logits, cache = model.decode_step(step_ids, mask, positions, cache)
        if stats is not None:
            stats.forwarded += int(step_ids.numel())  # left-padded prompts: padding included
            stats.computed += int(step_ids.numel())
        nxt = _next_tokens(logits, reqs, live, generators, [len(t) for t in tokens], model.eos_token_id)
        keep = []
        for b, k in enumerate(live):
            req = reqs[k]
            if nxt[b] == model.eos_token_id:
                out[k] = (model.decode(tokens[k]), len(tokens[k]), "eos")
                continue
            tokens[k].append(nxt[b])
            # decode the whole tail: single token pieces can split multi-byte characters
            text, hit = cut_at_stop(model.decode(tokens[k]), req.stop)
            if hit:
                out[k] = (text, len(tokens[k]), "stop")
            elif len(tokens[k]) >= req.max_new_tokens:
                out[k] = (text, len(tokens[k]), "length")
            else:
                keep.append(b)
        if not keep:
            break
        if len(keep) < len(live):
            cache = model.select_rows(cache, keep)
            mask, positions = mask[keep], positions[keep]
        live = [live[b] for b in keep]
        step_ids = torch.tensor([[tokens[k][-1]] for k in live])
        mask = torch.cat([mask, torch.ones(len(live), 1, dtype=mask.dtype)], dim=-1)
        positions = positions[:, -1:] + 1
    return all_answered(out)


def generate_until(
    model: TokenModel,
    requests: Sequence[GenerateRequest],
    on_result: Callable[[int, GenerateResult], None] | None = None,
    stats: TokenStats | None = None,
) -> list[GenerateResult]:
    prompts: list[list[int]] = []
    truncated: list[int] = []
    for r in requests:
        ids, dropped = keep_last(
            model.bos_ids + model.encode(r.prompt), generation_room(model.max_length, r.max_new_tokens)
        )
        truncated.append(dropped)
        prompts.append(ids)
    results: list[GenerateResult | None] = [None] * len(requests)

    def finish(indices: list[int], outs: list[tuple[str, int, str]]) -> None:
        for i, (text, n, reason) in zip(indices, outs):
            result = results[i] = GenerateResult(text, n, truncated[i], reason)
            if on_result is not None:
                on_result(i, result)

    if getattr(model, "prefix_reuse", False):
        groups, alone = prefix_groups(prompts, [len(p) - 1 for p in prompts])
    else:
        groups, alone = [], list(range(len(prompts)))
    budget = [len(p) + requests[i].max_new_tokens for i, p in enumerate(prompts)]

    for batch in token_budget_batches([budget[i] for i in alone], model.token_budget, model.batch_size):
        idx = [alone[k] for k in batch]
        finish(idx, _decode_batch(model, None, 0, [prompts[i] for i in idx], [requests[i] for i in idx], stats))
    for group in groups:
        p = group.prefix_len
        state = model.prefix_state(prompts[group.rows[0]][:p])
        if stats is not None:
            stats.forwarded += p
            stats.computed += p
        for batch in token_budget_batches([budget[i] for i in group.rows], model.token_budget, model.batch_size):
            idx = [group.rows[k] for k in batch]
            rows = [prompts[i][p:] for i in idx]
            finish(idx, _decode_batch(model, state, p, rows, [requests[i] for i in idx], stats))
    if stats is not None:
        stats.requests += len(requests)
    return all_answered(results)
