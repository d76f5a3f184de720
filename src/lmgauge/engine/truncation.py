"""Left truncation, written once: the hf engine and the served backends cut prompts the same way.

lm-evaluation-harness keeps the end of a prompt: a log-likelihood row keeps its last max_length+1
tokens (the forward sees max_length of them, the last is only predicted); a generation prompt keeps
its last max_length - max_new_tokens tokens (at least one), so the answer fits the context.
"""

from __future__ import annotations


def keep_last(ids: list[int], n: int) -> tuple[list[int], int]:
    """The last n tokens of ids, and how many were dropped on the left."""
    kept = ids[-n:] if n < len(ids) else ids
    return kept, len(ids) - len(kept)


def scored_window(context: list[int], continuation: list[int], max_length: int | None) -> tuple[list[int], int]:
    """context + continuation cut to what one forward of max_length tokens scores (None: uncut)."""
    full = context + continuation
    return keep_last(full, max_length + 1) if max_length else (full, 0)


def generation_room(max_length: int, max_new_tokens: int) -> int:
    """Prompt tokens a generation may keep so that its answer fits max_length."""
    return max(1, max_length - max_new_tokens)
