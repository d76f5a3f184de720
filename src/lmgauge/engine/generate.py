"""Batched greedy decoding over a KV cache, with stop strings checked as text grows."""

from __future__ import annotations

from typing import Callable, Sequence

from lmgauge.engine.batching import token_budget_batches
from lmgauge.engine.protocol import TokenModel
from lmgauge.requests import GenerateRequest, GenerateResult, TokenStats


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def generate_greedy(
    model: TokenModel,
    requests: Sequence[GenerateRequest],
    on_result: Callable[[int, GenerateResult], None] | None = None,
    stats: TokenStats | None = None,
) -> list[GenerateResult]:
    import torch

    prompts: list[list[int]] = []
    truncated: list[int] = []
    for r in requests:
        ids = model.bos_ids + model.encode(r.prompt)
        room = max(1, model.max_length - r.max_new_tokens)
        truncated.append(max(0, len(ids) - room))
        prompts.append(ids[-room:])
    results: list[GenerateResult | None] = [None] * len(requests)
    budget_lengths = [len(p) + r.max_new_tokens for p, r in zip(prompts, requests)]

    for batch in token_budget_batches(budget_lengths, model.token_budget, model.batch_size):
        width = max(len(prompts[i]) for i in batch)
        pad = model.eos_token_id if model.eos_token_id is not None else 0
        # left padding keeps every row's next token at the last position
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in batch])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in batch])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out_tokens: list[list[int]] = [[] for _ in batch]
        texts = [""] * len(batch)
        reasons = ["length"] * len(batch)
        active = [True] * len(batch)
        limit = max(requests[i].max_new_tokens for i in batch)
        cache = None
        step_ids = ids
        for _ in range(limit):
            logits, cache = model.decode_step(step_ids, mask, positions, cache)
            if stats is not None:
                stats.forwarded += int(step_ids.numel())
            nxt = logits.argmax(-1).tolist()
            for k, i in enumerate(batch):
                if not active[k]:
                    continue
                req = requests[i]
                if nxt[k] == model.eos_token_id:
                    active[k], reasons[k] = False, "eos"
                    continue
                out_tokens[k].append(nxt[k])
                # decode the whole tail: token pieces alone can split multi-byte characters
                texts[k] = model.decode(out_tokens[k])
                texts[k], hit = _cut_at_stop(texts[k], req.stop)
                if hit:
                    active[k], reasons[k] = False, "stop"
                elif len(out_tokens[k]) >= req.max_new_tokens:
                    active[k] = False
            if not any(active):
                break
            step_ids = torch.tensor(nxt).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones(len(batch), 1, dtype=mask.dtype)], dim=-1)
            positions = positions[:, -1:] + 1
        for k, i in enumerate(batch):
            results[i] = GenerateResult(texts[k], len(out_tokens[k]), truncated[i], reasons[k])
            if on_result is not None:
                on_result(i, results[i])
    if stats is not None:
        stats.requests += len(requests)
    return results  # type: ignore[return-value]
