"""Batched decoding over a KV cache: greedy, or sampled with a per-request seed.

Prompts that share a token prefix (few-shot exemplars) have it forwarded once. Two ways to decode
after it (the model's `decode_way`):

- slots (engine/slots.py): the prefix's KV held once for every row, each row a slot of its own
  tokens, finished rows replaced at once by waiting requests (continuous refill);
- batches (`_decode_batch`): token-budget batches, the prefix's KV copied into each batch's cache,
  allocated for the whole decode (no per-step concatenation). Rows are left-padded between the
  prefix and their own tokens, with their own position ids, so every row decodes exactly as it
  would alone; finished rows leave the batch (and the cache) at once.

Both check stop strings on a decoded tail window (engine/stops.py). A sampled row draws from its
own generator seeded by its request, so its text does not depend on its batch or slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lmgauge.engine.batching import token_budget_batches
from lmgauge.engine.prefix import prefix_groups
from lmgauge.engine.protocol import TokenModel
from lmgauge.engine.sampling import advance, next_tokens
from lmgauge.engine.slots import decode_in_slots
from lmgauge.engine.stops import StopCheck, cut_at_stop
from lmgauge.engine.truncation import generation_room, keep_last
from lmgauge.requests import GenerateRequest, GenerateResult, TokenStats, all_answered

__all__ = ["cut_at_stop", "generate_until"]  # cut_at_stop: served backends cut server texts alike


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
    stops = [StopCheck(model.decode, r.stop) for r in reqs]
    step_ids = ids
    while live:
        logits, cache = model.decode_step(step_ids, mask, positions, cache)
        if stats is not None:
            stats.forwarded += int(step_ids.numel())  # left-padded prompts: padding included
            stats.computed += int(step_ids.numel())
        nxt = next_tokens(logits, reqs, live, generators, [len(t) for t in tokens], model.eos_token_id)
        keep = []
        for b, k in enumerate(live):
            out[k] = advance(model, reqs[k], tokens[k], nxt[b], stops[k])
            if out[k] is None:
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

    if getattr(model, "decode_way", "batches") == "slots":
        _generate_in_slots(model, prompts, list(requests), groups, alone, finish, stats)
        if stats is not None:
            stats.requests += len(requests)
        return all_answered(results)

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


def _generate_in_slots(model, prompts, requests, groups, alone, finish, stats) -> None:
    """Rows without a shared prefix in one pool with none, each prefix group in a pool of its own."""
    parts = [(None, alone)] if alone else []
    parts += [(group, group.rows) for group in groups]
    for group, idx in parts:
        p, state = 0, None
        if group is not None:
            p = group.prefix_len
            state = model.prefix_state(prompts[idx[0]][:p])
            if stats is not None:
                stats.forwarded += p
                stats.computed += p

        def done(k: int, out: tuple[str, int, str], idx: list[int] = idx) -> None:
            finish([idx[k]], [out])

        rows = [prompts[i][p:] for i in idx]
        decode_in_slots(model, state, p, rows, [requests[i] for i in idx], done, stats)
