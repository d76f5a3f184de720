"""Whole-text scoring split where texts share tokens: a radix tree over the token sequences.

OpenCompass' PPL scores every label's whole filled prompt, so the labels of a question (and the
questions of a subject) repeat the same leading tokens: the subject hint and the in-context
examples, then the question. Each edge of a compressed token trie over all the sequences of a call
is one scoring pair: context = every token before the edge, continuation = the edge's tokens. A
sequence's log-probability is the sum of the edges on its path (the chain rule), so every shared
token is scored once. The root edge's first token is only context, as in the unsplit pair.

The pairs' contexts share prefixes along the tree, which the engine's shared-prefix rows then
forward once (loglikelihood.score_pairs: rows contained in longer rows, prefixes scored by the
prefix forward).
"""

from __future__ import annotations

from collections.abc import Sequence

Pair = tuple[list[int], list[int]]


def shared_segments(seqs: Sequence[Sequence[int]]) -> tuple[list[Pair], list[list[int]]]:
    """(pairs, paths): one (context, segment) pair per tree edge, and for each sequence the indices
    of the pairs on its path, whose log-probabilities sum to the sequence's (its tokens after the
    first). A sequence of fewer than two tokens predicts nothing and has an empty path."""
    pairs: list[Pair] = []
    paths: list[list[int]] = [[] for _ in seqs]
    # (sequences below this node, tokens they all share): an explicit stack, as a chain of texts
    # each extending the previous one nests as deep as there are texts
    stack: list[tuple[list[int], int]] = [([i for i, s in enumerate(seqs) if len(s) > 1], 0)]
    while stack:
        group, depth = stack.pop()
        if not group:
            continue
        first = seqs[group[0]]
        end = min(len(seqs[i]) for i in group)
        for i in group[1:]:
            s = seqs[i]
            k = depth
            while k < end and s[k] == first[k]:
                k += 1
            end = k
        start = max(depth, 1)  # a sequence's first token is context, never predicted
        if end > start:
            pairs.append((list(first[:start]), list(first[start:end])))
            for i in group:
                paths[i].append(len(pairs) - 1)
        children: dict[int, list[int]] = {}
        for i in group:
            if len(seqs[i]) > end:
                children.setdefault(seqs[i][end], []).append(i)
        stack.extend((child, end) for child in children.values())
    return pairs, paths
