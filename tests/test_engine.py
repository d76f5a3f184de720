"""The engine on a tiny random Llama: batching, grouping and truncation never change a number."""

from __future__ import annotations

import math

import pytest
import torch

from lmgauge.engine.batching import token_budget_batches
from lmgauge.engine.loglikelihood import encode_pair, encode_pairs, rolling_windows
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest

REQUESTS = [
    LoglikelihoodRequest("The quick brown fox", " jumps over the lazy dog."),
    LoglikelihoodRequest("The quick brown fox", " sleeps."),
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " Paris"),
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " B"),
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer: ", "Paris"),  # trailing space moves
    LoglikelihoodRequest("", "Language models assign probabilities."),
    LoglikelihoodRequest("A. one\nB. two\nC. three\nD. four\nAnswer:", " B"),
    LoglikelihoodRequest("ÄÖÜ ß 日本語", " emoji 🙂"),
]


def reference_logprob(model, request) -> tuple[float, bool]:
    """A plain transformers forward over context+continuation, full logits, no batching."""
    ctx, cont = encode_pair(model, request.context, request.continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = model.model(ids).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    total, greedy = 0.0, True
    for k, tok in enumerate(cont):
        pos = len(ctx) + k - 1
        total += logprobs[pos, tok].item()
        greedy &= logprobs[pos].argmax().item() == tok
    return total, greedy


def test_loglikelihood_equals_plain_forward(tiny_model):
    results = tiny_model.loglikelihood(REQUESTS)
    for req, res in zip(REQUESTS, results):
        ref, ref_greedy = reference_logprob(tiny_model, req)
        assert res.logprob == pytest.approx(ref, abs=1e-4), req
        assert res.is_greedy == ref_greedy


def test_batched_equals_unbatched(tiny_model):
    saved = tiny_model.batch_size, tiny_model.token_budget
    try:
        tiny_model.batch_size, tiny_model.token_budget = 1, 10_000
        one = tiny_model.loglikelihood(REQUESTS)
        tiny_model.batch_size, tiny_model.token_budget = None, 10_000
        many = tiny_model.loglikelihood(REQUESTS)
        tiny_model.token_budget = 40  # forces several small batches of mixed lengths
        small = tiny_model.loglikelihood(REQUESTS)
    finally:
        tiny_model.batch_size, tiny_model.token_budget = saved
    for a, b, c in zip(one, many, small):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.logprob == pytest.approx(c.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy == c.is_greedy


def test_shared_context_single_token_choices_are_one_row(tiny_model):
    """The four answer letters of a question share one forward."""
    words = [" B", " one", " two", " three", " four", " the", " fox", " dog"]
    ctx_text = "A. one\nB. two\nAnswer:"
    single = [w for w in words if len(encode_pair(tiny_model, ctx_text, w)[1]) == 1]
    assert len(single) >= 3, single
    reqs = [LoglikelihoodRequest(ctx_text, w) for w in single]
    before = tiny_model.stats.forwarded
    res = tiny_model.loglikelihood(reqs)
    ctx, _ = encode_pair(tiny_model, reqs[0].context, reqs[0].continuation)
    assert tiny_model.stats.forwarded - before == len(ctx)
    assert len({r.logprob for r in res}) == len(single)


def test_a_position_read_by_several_targets_is_projected_once(tiny_model, monkeypatch):
    """_score_hidden projects each distinct (row, position) once, across chunk boundaries, and
    every target reads its own token's logprob there, as a full log-softmax per target gives."""
    from lmgauge.models import hf

    monkeypatch.setattr(hf, "SCORE_CHUNK", 3)
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, tiny_model.model.config.hidden_size)
    targets = [[(0, 7), (0, 9), (1, 3), (4, 5), (4, 6)], [(0, 1), (2, 2), (2, 8), (3, 4)]]
    projected = []
    real_logits = tiny_model._logits

    def counting(h):
        projected.append(h.shape[0])
        return real_logits(h)

    monkeypatch.setattr(tiny_model, "_logits", counting)
    got = tiny_model._score_hidden(hidden, targets)
    assert projected == [3, 3]  # 9 targets at 6 distinct positions, chunks of 3
    with torch.inference_mode():
        full = torch.log_softmax(real_logits(hidden), dim=-1)
    for row, (t, g) in enumerate(zip(targets, got)):
        for (pos, tok), (lp, greedy) in zip(t, g):
            assert lp == pytest.approx(full[row, pos, tok].item(), abs=1e-6)
            assert greedy == (full[row, pos].argmax().item() == tok)


def test_encode_pair_follows_lm_eval():
    class Tok:
        prefix_token_id, bos_ids = 99, []

        def encode(self, text):
            return [ord(c) for c in text]

    ctx, cont = encode_pair(Tok(), "Answer: ", "B")
    assert ctx == [ord(c) for c in "Answer:"] and cont == [ord(" "), ord("B")]
    assert encode_pair(Tok(), "", "hi") == ([99], [ord("h"), ord("i")])


def test_the_choices_of_a_question_encode_their_context_once_in_one_batch(tiny_model, monkeypatch):
    reqs = [LoglikelihoodRequest("Question: 2+2=?\nAnswer: ", c) for c in ("3", "4", "5")]
    reqs += [LoglikelihoodRequest("The quick brown fox", " jumps"), LoglikelihoodRequest("", "alone")]

    def lm_eval(ctx: str, cont: str) -> tuple[list[int], list[int]]:  # lm-eval's encode_pair, one by one
        if ctx == "":
            return [tiny_model.prefix_token_id], tiny_model.encode(cont)
        n = len(ctx) - len(ctx.rstrip())
        ctx, cont = (ctx[:-n], ctx[-n:] + cont) if n else (ctx, cont)
        whole, own = tiny_model.encode(ctx + cont), tiny_model.encode(ctx)
        return own, whole[len(own) :]

    batches: list[list[str]] = []
    real = tiny_model.encode_many
    monkeypatch.setattr(tiny_model, "encode_many", lambda texts: batches.append(list(texts)) or real(texts))
    assert encode_pairs(tiny_model, [(r.context, r.continuation) for r in reqs]) == [
        lm_eval(r.context, r.continuation) for r in reqs
    ]
    # one call: every context + continuation, each distinct context once, the lone continuation
    assert len(batches) == 1 and len(batches[0]) == len(set(batches[0])) == 4 + 2 + 1
    assert {"Question: 2+2=?\nAnswer:", "The quick brown fox", "alone"} <= set(batches[0])


def test_served_prompts_are_the_hf_paths_tokens_cut_as_its_forward_cuts_them(tiny_model):
    from lmgauge.models.base import ModelError
    from lmgauge.models.served_prompts import loglikelihood_prompts

    tok = tiny_model.tokens  # the ModelTokenizer a served backend holds
    pairs = [(r.context, r.continuation) for r in REQUESTS]
    for (ctx, cont), p in zip(
        (encode_pair(tiny_model, c, x) for c, x in pairs), loglikelihood_prompts(tok, pairs), strict=True
    ):
        assert p.ids == ctx + cont and p.first == len(ctx) and p.truncated == 0
    saved = tok.max_length
    try:
        ctx, cont = encode_pair(tiny_model, REQUESTS[0].context, REQUESTS[0].continuation)
        tok.max_length = len(cont) + 2  # the forward keeps the last max_length + 1 tokens
        (p,) = loglikelihood_prompts(tok, pairs[:1])
        kept = len(cont) + 3
        assert p.ids == (ctx + cont)[-kept:] and p.n_scored == len(cont) and p.truncated == len(ctx) + len(cont) - kept
    finally:
        tok.max_length = saved
    with pytest.raises(ModelError, match="request 1: the continuation encodes to no tokens"):
        loglikelihood_prompts(tok, [pairs[0], ("Answer:", "")])


def test_left_truncation_is_recorded(tiny_model):
    long_ctx = "The quick brown fox jumps over the lazy dog. " * 40
    saved = tiny_model.max_length
    try:
        tiny_model.max_length = 32
        res = tiny_model.loglikelihood([LoglikelihoodRequest(long_ctx, " Paris")])[0]
        ctx, cont = encode_pair(tiny_model, long_ctx, " Paris")
        assert res.truncated == len(ctx) + len(cont) - 33
        # equals a plain forward over the last 33 tokens
        keep = (ctx + cont)[-33:]
        with torch.no_grad():
            lp = torch.log_softmax(tiny_model.model(torch.tensor([keep[:-1]])).logits[0].float(), -1)
        ref = sum(lp[len(keep) - len(cont) - 1 + k, t].item() for k, t in enumerate(cont))
        assert res.logprob == pytest.approx(ref, abs=1e-4)
    finally:
        tiny_model.max_length = saved


def test_rolling_windows_predict_every_token_once():
    tokens = list(range(100, 237))
    for max_len in (1, 7, 64, 137, 500):
        windows = list(rolling_windows(tokens, 1, max_len))
        predicted = [t for _, cont in windows for t in cont]
        assert predicted == tokens
        for ctx, cont in windows:
            assert len(ctx) + len(cont) - 1 <= max_len  # the model input fits
    # lm-eval's first window is [prefix] + tokens[:max_len-1]
    assert next(rolling_windows(tokens, 1, 8)) == ([1], tokens[:8])


def test_rolling_equals_sum_of_plain_forward(tiny_model):
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    saved = tiny_model.max_length
    try:
        tiny_model.max_length = 40  # several windows
        res = tiny_model.loglikelihood_rolling([RollingRequest(text)])[0]
    finally:
        tiny_model.max_length = saved
    toks = tiny_model.encode(text)
    assert res.n_tokens == len(toks)
    total = 0.0
    for ctx, cont in rolling_windows(toks, tiny_model.prefix_token_id, 40):
        full = ctx + cont
        with torch.no_grad():
            lp = torch.log_softmax(tiny_model.model(torch.tensor([full[:-1]])).logits[0].float(), -1)
        total += sum(lp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))
    assert res.logprob == pytest.approx(total, abs=1e-3)


def test_disjoint_windows_drop_remainder(tiny_model):
    text = "The quick brown fox jumps over the lazy dog. " * 10
    toks = tiny_model.encode_document(text)
    res = tiny_model.loglikelihood_rolling([RollingRequest(text, window=16, style="disjoint", rows_per_batch=2)])[0]
    n = len(toks) // 16
    assert res.n_windows == n and res.n_tokens == n * 15
    total = 0.0
    for k in range(n):
        w = toks[k * 16 : (k + 1) * 16]
        with torch.no_grad():
            lp = torch.log_softmax(tiny_model.model(torch.tensor([w])).logits[0].float(), -1)
        total += sum(lp[p, w[p + 1]].item() for p in range(15))
    assert res.logprob == pytest.approx(total, abs=1e-3)


def test_token_budget_batches():
    lengths = [5, 50, 20, 20, 49, 1]
    batches = list(token_budget_batches(lengths, 100))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 100
    assert batches[0][0] == 1  # longest first
    assert all(len(b) <= 2 for b in token_budget_batches(lengths, 10_000, max_rows=2))
    # packed rows cost their summed length, not rows x longest
    packed = list(token_budget_batches(lengths, 100, packed=True))
    assert packed == [[1, 4], [2, 3, 0, 5]]  # 50 + 49 = 99; 20 + 20 + 5 + 1 = 46


def test_generate_matches_unbatched_greedy(tiny_model):
    prompts = ["The quick brown", "Question: What is", "A. one\nB."]
    reqs = [GenerateRequest(p, max_new_tokens=12) for p in prompts]
    batched = tiny_model.generate(reqs)
    for p, res in zip(prompts, batched):
        ids = torch.tensor([tiny_model.encode(p)])
        with torch.no_grad():
            out = tiny_model.model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
        expected = out[0, ids.shape[1] :].tolist()
        expected = (
            expected[: expected.index(tiny_model.eos_token_id)] if tiny_model.eos_token_id in expected else expected
        )
        assert res.text == tiny_model.decode(expected)


def test_generate_stops_at_stop_string(tiny_model):
    free = tiny_model.generate([GenerateRequest("The quick brown", max_new_tokens=20)])[0]
    assert len(free.text) > 3
    stop = free.text[2:4]
    res = tiny_model.generate([GenerateRequest("The quick brown", stop=(stop,), max_new_tokens=20)])[0]
    assert res.finish_reason == "stop"
    assert res.text == free.text[: free.text.find(stop)]
    assert not math.isnan(len(res.text))


def _shared_prefix_requests():
    shots = "Question: What is the capital of France?\nAnswer: Paris\n\n" * 3
    qs = ["The quick brown fox", "Language models assign", "A. one\nB. two", "ÄÖÜ ß 日本語"]
    reqs = []
    for q in qs:
        for cont in (" B", " jumps over the lazy dog.", " Paris", " probabilities to sequences"):
            reqs.append(LoglikelihoodRequest(shots + q + "\nAnswer:", cont))
    reqs.append(LoglikelihoodRequest("unrelated short context", " here"))
    return reqs


def test_prefix_reuse_equals_plain_path(tiny_model):
    reqs = _shared_prefix_requests()
    saved = tiny_model.prefix_reuse, tiny_model.token_budget
    try:
        tiny_model.prefix_reuse = False
        before = tiny_model.stats.forwarded
        plain = tiny_model.loglikelihood(reqs)
        plain_tokens = tiny_model.stats.forwarded - before
        tiny_model.prefix_reuse = True
        tiny_model.token_budget = 200  # several suffix batches per prefix
        before = tiny_model.stats.forwarded
        fast = tiny_model.loglikelihood(reqs)
        fast_tokens = tiny_model.stats.forwarded - before
    finally:
        tiny_model.prefix_reuse, tiny_model.token_budget = saved
    for a, b in zip(plain, fast):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy
    assert fast_tokens < plain_tokens / 2


def test_prefix_groups_split_where_sharing_pays():
    from lmgauge.engine.prefix import prefix_groups

    shared = list(range(100))
    rows = [shared + [1000 + i] * 5 for i in range(4)] + [[7] * 50, [7] * 40 + [8] * 10, [9] * 3]
    first = [len(r) - 1 for r in rows]
    groups, alone = prefix_groups(rows, first)
    by_rows = {tuple(sorted(g.rows)): g.prefix_len for g in groups}
    assert by_rows[(0, 1, 2, 3)] == 100
    assert by_rows[(4, 5)] == 40
    assert alone == [6]
    # a prefix never covers a scored position
    groups, _ = prefix_groups(rows[:4], [30, 105, 105, 105])
    assert groups[0].prefix_len == 30


def test_generation_with_shared_prefix_and_early_finishers_equals_alone(tiny_model):
    shots = "Question: What is the capital of France?\nAnswer: Paris\n\n" * 3
    prompts = [shots + q for q in ("The quick brown", "Question: What is", "A. one\nB.", "ÄÖÜ ß")]
    lengths = [3, 12, 7, 1]  # rows finish at different steps and leave the batch
    reqs = [GenerateRequest(p, max_new_tokens=n) for p, n in zip(prompts, lengths)]
    saved = tiny_model.prefix_reuse
    try:
        tiny_model.prefix_reuse = True
        before = tiny_model.stats.forwarded
        shared = tiny_model.generate(reqs)
        shared_tokens = tiny_model.stats.forwarded - before
        tiny_model.prefix_reuse = False
        alone = [tiny_model.generate([r])[0] for r in reqs]
    finally:
        tiny_model.prefix_reuse = saved
    assert [r.text for r in shared] == [r.text for r in alone]
    assert [r.n_tokens for r in shared] == [r.n_tokens for r in alone]
    assert shared_tokens < sum(len(tiny_model.encode(p)) for p in prompts)


def test_sampling_is_seeded_per_request_not_per_batch(tiny_model):
    """A sampled row draws from its own generator: the same seed gives the same text alone or in a
    batch; other seeds give other texts; temperature 0 stays greedy."""
    prompts = ["The quick brown", "Question: What is", "A. one\nB."]
    reqs = [GenerateRequest(p, max_new_tokens=10, temperature=1.0, seed=7 + i) for i, p in enumerate(prompts)]
    batched = tiny_model.generate(reqs)
    alone = [tiny_model.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in alone]
    again = tiny_model.generate(
        [GenerateRequest(prompts[0], max_new_tokens=10, temperature=1.0, seed=s) for s in range(6)]
    )
    assert len({r.text for r in again}) > 1
    greedy = tiny_model.generate([GenerateRequest(prompts[0], max_new_tokens=10)])[0]
    assert (
        tiny_model.generate([GenerateRequest(prompts[0], max_new_tokens=10, temperature=0.0, seed=3)])[0].text
        == greedy.text
    )


def test_top_p_keeps_only_the_head_of_the_distribution(tiny_model):
    """top_p so small that only the most likely token survives: sampling becomes greedy."""
    greedy = tiny_model.generate([GenerateRequest("The quick brown", max_new_tokens=8)])[0]
    nucleus = tiny_model.generate(
        [GenerateRequest("The quick brown", max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=1)]
    )[0]
    assert nucleus.text == greedy.text


def test_min_new_tokens_holds_back_end_of_sequence(tiny_model, monkeypatch):
    """EOS made the likeliest token everywhere: without a minimum the row ends at once (the batched
    path; tests/test_slot_decoding.py checks the slots)."""
    monkeypatch.setattr(tiny_model, "decode_way", "batches")
    eos = tiny_model.eos_token_id
    real = tiny_model.decode_step

    def eos_first(input_ids, attention_mask, position_ids, cache):
        logits, cache = real(input_ids, attention_mask, position_ids, cache)
        logits = logits.clone()
        logits[:, eos] = logits.max() + 10
        return logits, cache

    monkeypatch.setattr(tiny_model, "decode_step", eos_first)
    assert tiny_model.generate([GenerateRequest("The quick brown", max_new_tokens=8)])[0].n_tokens == 0
    res = tiny_model.generate([GenerateRequest("The quick brown", max_new_tokens=8, min_new_tokens=3)])[0]
    assert res.n_tokens == 3 and res.finish_reason == "eos"
