"""Shared-prefix groups: rows that start with the same tokens (an MMLU subject's header and five
shots, a question's context before its choices) are split at a common token position; the prefix
is forwarded once and its KV cache serves every row's suffix.

Splitting happens on token ids of fully tokenized rows, so a row's tokens, and therefore its
numbers, are exactly those of the plain path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_PREFIX = 16  # below this, a separate prefix forward costs more than it saves


@dataclass
class PrefixGroup:
    prefix_len: int
    rows: list[int]  # indices into the row list


def _common_len(a: Sequence[int], b: Sequence[int], cap: int) -> int:
    n = min(len(a), len(b), cap)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(
    rows: Sequence[list[int]], first_scored: Sequence[int], min_prefix: int = MIN_PREFIX
) -> tuple[list[PrefixGroup], list[int]]:
    """Groups of >= 2 rows sharing a prefix, and the rows left alone.

    A prefix never reaches a row's first scored position, so every scored hidden state comes from
    the suffix forward. Rows are visited in sorted order (rows sharing a prefix are neighbours); a
    row joins the current group when the shrunken prefix still saves more than it costs:
    new_prefix * n >= old_prefix * (n - 1) for a group of n rows.
    """
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    groups: list[PrefixGroup] = []
    alone: list[int] = []
    current: list[int] = []
    plen = 0

    def close() -> None:
        if len(current) >= 2 and plen >= min_prefix:
            groups.append(PrefixGroup(plen, list(current)))
        else:
            alone.extend(current)

    for i in order:
        cap = first_scored[i]
        if current:
            common = _common_len(rows[current[0]], rows[i], min(plen, cap))
            n = len(current)
            if common >= min_prefix and common * n >= plen * (n - 1):
                current.append(i)
                plen = common
                continue
            close()
        current, plen = [i], cap
    if current:
        close()
    return groups, alone
