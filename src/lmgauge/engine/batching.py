"""Length-sorted batches packed by a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def token_budget_batches(
    lengths: Sequence[int], token_budget: int, max_rows: int | None = None, packed: bool = False
) -> Iterator[list[int]]:
    """Yield lists of indices, longest first, so that rows x longest row <= token_budget (packed:
    the rows' summed length <= token_budget, as they are computed without padding).

    Longest first: the first batch is the most expensive one, so a budget that is too large
    fails at once rather than after an hour.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    total = 0  # summed length of the batch's rows
    for i in order:
        # longest first: the batch's first row is its widest
        cost = total + lengths[i] if packed else lengths[batch[0] if batch else i] * (len(batch) + 1)
        full = max_rows is not None and len(batch) >= max_rows
        if batch and (full or cost > token_budget):
            yield batch
            batch, total = [], 0
        batch.append(i)
        total += lengths[i]
    if batch:
        yield batch
