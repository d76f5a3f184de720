"""Length-sorted batches packed by a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def token_budget_batches(lengths: Sequence[int], token_budget: int, max_rows: int | None = None) -> Iterator[list[int]]:
    """Yield lists of indices, longest first, so that rows x longest row <= token_budget.

    Longest first: the first batch is the most expensive one, so a budget that is too large
    fails at once rather than after an hour.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        full = max_rows is not None and len(batch) >= max_rows
        if batch and (full or new_width * (len(batch) + 1) > token_budget):
            yield batch
            batch, new_width = [], lengths[i]
        batch.append(i)
        width = new_width
    if batch:
        yield batch
