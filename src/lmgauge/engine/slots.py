"""Continuous refill over a slot pool: the engine's side of slot decoding.

Rows continuing one shared prefix (or none) decode in a fixed number of slots (a model's
`slot_pool`: the prefix's KV held once, each slot only its row's own tokens; models/slot_decoding.py
for the hf backend). A row that finishes leaves its slot at once and the next waiting request is
prefilled into it (its own prompt suffix against the prefix), so every step decodes a full pool
until the queue runs dry. As many slots as the token budget holds: the prefix once, plus each slot's
room for the longest suffix and the largest max_new_tokens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from lmgauge.engine.protocol import TokenModel
from lmgauge.engine.sampling import advance, next_tokens
from lmgauge.engine.stops import StopCheck
from lmgauge.requests import GenerateRequest, TokenStats

Finish = Callable[[int, tuple[str, int, str]], None]


def slot_count(token_budget: int, max_rows: int | None, prefix_len: int, capacity: int, n_rows: int) -> int:
    """Slots that fit the budget (prefix held once), at least one, at most max_rows and n_rows."""
    fit = max(1, (token_budget - prefix_len) // capacity)
    return max(1, min(fit, n_rows, max_rows or n_rows))


def decode_in_slots(
    model: TokenModel,
    state,
    prefix_len: int,
    rows: Sequence[list[int]],
    reqs: Sequence[GenerateRequest],
    finish: Finish,
    stats: TokenStats | None = None,
) -> None:
    """Decode rows (each continuing the prefix in `state`, None: no prefix); finish(row, (text,
    tokens, reason)) as each row is done, in the order they finish."""
    capacity = max(len(r) for r in rows) + max(q.max_new_tokens for q in reqs)
    pool = model.slot_pool(
        state, prefix_len, slot_count(model.token_budget, model.batch_size, prefix_len, capacity, len(rows)), capacity
    )
    reqs = list(reqs)
    # longest first, as batches are: a budget too large fails at once
    waiting = deque(sorted(range(len(rows)), key=lambda i: -(len(rows[i]) + reqs[i].max_new_tokens)))
    tokens: list[list[int]] = [[] for _ in rows]
    stops = [StopCheck(model.decode, q.stop) for q in reqs]
    generators: dict = {}
    live: list[int] = []  # slot -> row, mirroring the pool's order

    def take(stepped: list[int], logits) -> None:
        """Sample the stepped rows' next tokens; rows that are done leave their slots."""
        nxt = next_tokens(logits, reqs, stepped, generators, [len(t) for t in tokens], model.eos_token_id)
        done = []
        for b, k in enumerate(stepped):
            out = advance(model, reqs[k], tokens[k], nxt[b], stops[k])
            if out is not None:
                finish(k, out)
                done.append(b + len(live) - len(stepped))  # stepped rows are the last len(stepped) slots
        for slot in sorted(done, reverse=True):  # the last live row moves into each freed slot
            pool.remove(slot)
            live[slot] = live[-1]
            live.pop()

    while waiting or live:
        if waiting and pool.free():
            admit = [waiting.popleft() for _ in range(min(pool.free(), len(waiting)))]
            logits = pool.prefill([rows[k] for k in admit])
            if stats is not None:
                stats.forwarded += sum(len(rows[k]) for k in admit)
                stats.computed += len(admit) * max(len(rows[k]) for k in admit)  # right-padded rows
            live.extend(admit)
            take(admit, logits)
        else:
            logits = pool.step([tokens[k][-1] for k in live])
            if stats is not None:
                stats.forwarded += len(live)
                stats.computed += len(live)
            take(list(live), logits)
