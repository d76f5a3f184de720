"""Whole-text scoring split where texts share tokens (engine/shared_segments.py) gives each text's
numbers as if it were scored alone, and forwards the shared tokens once."""

from __future__ import annotations

import json
import random

import pytest

from lmgauge.engine.shared_segments import shared_segments
from lmgauge.requests import RollingRequest
from opencompass_data import FIXTURES


def test_every_predicted_token_is_one_segment_token():
    """The segments on a sequence's path are its tokens after the first, in order, each edge's
    context is everything before it, and a token shared by several sequences is in one segment."""
    rng = random.Random(1)
    for _ in range(2000):
        base = [rng.randint(0, 3) for _ in range(rng.randint(0, 12))]
        seqs = [
            base[: rng.randint(0, len(base))] + [rng.randint(0, 3) for _ in range(rng.randint(0, 5))]
            for _ in range(rng.randint(0, 8))
        ]
        pairs, paths = shared_segments(seqs)
        for s, path in zip(seqs, paths):
            got: list[int] = []
            for k in path:
                ctx, seg = pairs[k]
                assert ctx == s[: len(ctx)] and len(ctx) == len(got) + 1, (s, pairs[k])
                got += seg
            assert got == s[1:], (s, [pairs[k] for k in path])
        assert {k for p in paths for k in p} == set(range(len(pairs)))
        distinct = {tuple(s[: j + 1]) for s in seqs for j in range(1, len(s))}
        assert sum(len(seg) for _, seg in pairs) == len(distinct)


def test_labels_share_the_question_segment():
    head, q = [5, 6, 7, 8], [20, 21, 22]
    seqs = [head + q + [30], head + q + [31], head + [40, 41], [9, 9]]
    pairs, paths = shared_segments(seqs)
    assert sorted(pairs) == sorted(
        [([5], [6, 7, 8]), (head, q), (head + q, [30]), (head + q, [31]), (head, [40, 41]), ([9], [9])]
    )
    assert paths[0][:2] == paths[1][:2] and paths[0][0] == paths[2][0]
    assert shared_segments([[1], []]) == ([], [[], []])  # nothing to predict


def _split_and_alone(model, texts):
    reqs = [RollingRequest(t, style="whole") for t in texts]
    delivered: dict[int, int] = {}

    def on_result(i, _):
        delivered[i] = delivered.get(i, 0) + 1

    before = model.stats.forwarded
    split = model.loglikelihood_rolling(reqs, on_result)
    split_tokens = model.stats.forwarded - before
    assert delivered == dict.fromkeys(range(len(reqs)), 1)  # each request once, as it completes
    before = model.stats.forwarded
    alone = [model.loglikelihood_rolling([r])[0] for r in reqs]  # one text: one segment, the unsplit pair
    alone_tokens = model.stats.forwarded - before
    for a, b in zip(split, alone):
        assert (a.n_tokens, a.n_windows) == (b.n_tokens, b.n_windows)
    return split, alone, split_tokens, alone_tokens


def test_whole_texts_split_equal_each_alone(tiny_model):
    shots = "Question: What is the capital of France?\nAnswer: Paris\n\n" * 3
    texts = [shots + q + "\nAnswer:" + a for q in ("The quick brown fox", "A. one\nB. two") for a in (" B", " one")]
    texts += ["unrelated short text", "x"]  # nothing shared; one token predicts nothing
    split, alone, split_tokens, alone_tokens = _split_and_alone(tiny_model, texts)
    for a, b in zip(split, alone):
        # sums of ~150 float32 logprobs of ~-11 each (a random model): float32's own rounding
        assert a.logprob == pytest.approx(b.logprob, rel=1e-7, abs=1e-5)
    assert alone[-1].n_tokens == 0 and split[-1].logprob == 0.0
    assert split_tokens < alone_tokens / 2


@pytest.mark.slow
def test_opencompass_mmlu_label_prompts_split_equal_alone(smollm2):
    """OpenCompass' own 5-shot MMLU label prompts (3 subjects x 3 questions x 4 labels, from its
    prediction files): split within 1e-5 of each alone, PPL within 1e-3 of OpenCompass', the shared
    shots and questions forwarded once."""
    ref = json.loads((FIXTURES / "reference_predictions.json").read_text(encoding="utf-8"))
    rows = [r for per in ref["predictions"]["eval_reference"].values() for r in per.values() if "ppl" in r]
    texts = [p for r in rows for p in r["label_prompts"].values()]
    want = [v for r in rows for v in r["ppl"].values()]
    assert len(texts) == 36
    split, alone, split_tokens, alone_tokens = _split_and_alone(smollm2, texts)
    for a, b, ppl in zip(split, alone, want):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5 * max(1.0, abs(b.logprob) / 100))
        assert -a.logprob / (a.n_tokens + 1) == pytest.approx(ppl, abs=1e-3)
    assert split_tokens * 6 < alone_tokens, (split_tokens, alone_tokens)
