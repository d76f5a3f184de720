"""The HTTP backends against a stand-in server that speaks vLLM's and lightllm's protocols with the
real SmolLM2 behind them: equal numbers to the hf backend, generation, and every fault a served
model meets (restarts, timeouts, 429, malformed answers, wrong prompt logprobs, secrets)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from api_standin import ModelBackend, StandIn
from lmgauge.cli import main
from lmgauge.config import ConfigError, validate
from lmgauge.models import ModelError, build_model
from lmgauge.models.http_client import retry_after_seconds
from lmgauge.models.lightllm import LightLLMModel, lightllm_base_url
from lmgauge.models.openai_api import OpenAIModel, openai_base_url
from lmgauge.models.served import TOPK_QUESTIONS
from lmgauge.models.served_choices import PROMPT, TOPK
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest

SHORT = [
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " Paris"),
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " London"),
    LoglikelihoodRequest("The quick brown fox jumps over the lazy ", "dog"),
    LoglikelihoodRequest("", "Hello world"),  # empty context: the prefix token stands in
]


@pytest.fixture(scope="module")
def server(smollm2):
    s = StandIn(ModelBackend(smollm2)).start()
    yield s
    s.stop()


@pytest.fixture
def standin(server):
    """The shared server, reset to good behaviour before each test."""
    server.mode, server.fail_next, server.api_key, server.service_s = set(), [], None, 0.0
    server.max_logprobs = 20
    server.requests.clear()
    server.max_in_flight = 0
    return server


@pytest.fixture(scope="module")
def fast_server(tiny_model):
    """The same server with the tiny random Llama behind it: for faults, where only timing matters
    and a forward must stay far below the timeouts however busy the machine is."""
    s = StandIn(ModelBackend(tiny_model), model_id="tiny").start()
    yield s
    s.stop()


@pytest.fixture
def fast(fast_server):
    fast_server.mode, fast_server.fail_next, fast_server.api_key, fast_server.service_s = set(), [], None, 0.0
    fast_server.requests.clear()
    fast_server.max_in_flight = 0
    return fast_server


@pytest.fixture(scope="module")
def tokenizer_dir(smollm2) -> str:
    return smollm2.tokenizer.name_or_path  # the folder the hf backend read its tokenizer from


@pytest.fixture(scope="module")
def mmlu_requests():
    from lmgauge.tasks.registry import build

    task = build("mmlu_astronomy", num_fewshot=5, seed=1234)
    docs, _ = task.load()
    return [r for i, d in enumerate(docs[:3]) for r in task.requests(d, i)]


@pytest.fixture(scope="module")
def hf_mmlu(smollm2, mmlu_requests):
    return smollm2.loglikelihood(mmlu_requests)


def _predictions(results, per_doc=4):
    scores = [r.logprob for r in results]
    return [max(range(per_doc), key=lambda k: scores[d + k]) for d in range(0, len(scores), per_doc)]


def _openai(standin, **kw) -> OpenAIModel:
    kw.setdefault("backoff", 0.05)
    return OpenAIModel(standin.url + "/v1", **kw)


# --- numbers equal to the hf backend -------------------------------------------------------------


@pytest.mark.slow
def test_openai_token_ids_give_hf_loglikelihoods_and_mmlu_predictions(
    standin, tokenizer_dir, smollm2, mmlu_requests, hf_mmlu
):
    model = _openai(standin, tokenizer_path=tokenizer_dir, topk=0)  # one request per choice
    seen: list[int] = []
    api = model.loglikelihood(mmlu_requests, lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(len(mmlu_requests)))  # every answer delivered, once
    for a, h in zip(api, hf_mmlu):
        assert a.error is None and abs(a.logprob - h.logprob) < 1e-3
        assert (a.is_greedy, a.n_tokens) == (h.is_greedy, h.n_tokens)
    assert _predictions(api) == _predictions(hf_mmlu)
    # the request lm-eval's local-completions sends, with the hf path's token ids as the prompt
    body = [r["body"] for r in standin.requests if r["path"] == "/v1/completions"][-1]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["model"] == "smollm2" and all(isinstance(t, int) for t in body["prompt"])
    short = model.loglikelihood(SHORT)
    for a, h in zip(short, smollm2.loglikelihood(SHORT)):
        assert abs(a.logprob - h.logprob) < 1e-3 and a.is_greedy == h.is_greedy


@pytest.mark.slow
def test_openai_text_prompts_find_the_continuation_by_text_offset(standin, smollm2, mmlu_requests, hf_mmlu):
    model = _openai(standin)  # no tokenizer: the server tokenizes
    api = model.loglikelihood(mmlu_requests)
    assert max(abs(a.logprob - h.logprob) for a, h in zip(api, hf_mmlu)) < 1e-3
    assert _predictions(api) == _predictions(hf_mmlu)
    assert isinstance(standin.requests[-1]["body"]["prompt"], str)
    (empty,) = model.loglikelihood(SHORT[3:])
    assert empty.error and "tokenizer" in empty.error  # reported, never a silent number


@pytest.mark.slow
@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_lightllm_prompt_logprobs_give_hf_loglikelihoods(standin, tokenizer_dir, smollm2, with_tokenizer):
    model = LightLLMModel(
        standin.url + "/generate", tokenizer_path=tokenizer_dir if with_tokenizer else None, backoff=0.05
    )
    reqs = SHORT if with_tokenizer else SHORT[:3]
    for a, h in zip(model.loglikelihood(reqs), smollm2.loglikelihood(reqs)):
        assert a.error is None and abs(a.logprob - h.logprob) < 1e-3 and a.n_tokens == h.n_tokens
    body = standin.requests[-1]["body"]
    assert body["parameters"] == {"do_sample": False, "ignore_eos": False, "max_new_tokens": 1}
    assert isinstance(body["inputs"], list if with_tokenizer else str)


@pytest.mark.slow
def test_rolling_loglikelihood_over_http_equals_hf(standin, tokenizer_dir, smollm2):
    text = "Language models assign probabilities to sequences of tokens. " * 6
    reqs = [RollingRequest(text), RollingRequest(text, window=16, style="disjoint")]
    hf = smollm2.loglikelihood_rolling(reqs)
    for model in (
        _openai(standin, tokenizer_path=tokenizer_dir),
        LightLLMModel(standin.url + "/generate", tokenizer_path=tokenizer_dir, backoff=0.05),
    ):
        for a, h in zip(model.loglikelihood_rolling(reqs), hf):
            assert a.error is None and abs(a.logprob - h.logprob) < 1e-3
            assert (a.n_tokens, a.n_windows) == (h.n_tokens, h.n_windows)
    with pytest.raises(ModelError, match="tokenizer"):
        _openai(standin).loglikelihood_rolling(reqs)


@pytest.mark.slow
def test_generation_completions_chat_and_streams(standin, tokenizer_dir, smollm2):
    reqs = [GenerateRequest("The capital of France is", ("\n",), 6), GenerateRequest("1, 2, 3, 4,", (" 7",), 8)]
    hf = smollm2.generate(reqs)
    plain = _openai(standin, tokenizer_path=tokenizer_dir).generate(reqs)
    streamed = _openai(standin, tokenizer_path=tokenizer_dir, stream=True).generate(reqs)
    light = LightLLMModel(standin.url + "/generate", tokenizer_path=tokenizer_dir).generate(reqs)
    light_streamed = LightLLMModel(standin.url + "/generate", stream=True).generate(reqs)
    for h, *served in zip(hf, plain, streamed, light, light_streamed):
        assert all(s.error is None and s.text == h.text for s in served), (h, served)
    assert plain[1].finish_reason == "stop" and " 7" not in plain[1].text  # stopped at the stop string
    chat = _openai(standin, chat=True).generate(reqs[:1])[0]
    assert chat.error is None and chat.n_tokens > 0
    body = standin.requests[-1]["body"]
    assert standin.requests[-1]["path"] == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "The capital of France is"}] and body["stop"] == ["\n"]
    # a request's own chat turns and sampling settings, on a model not configured for chat
    turns = (("system", "Answer briefly."), ("user", "Capital of France?"))
    sampled = GenerateRequest("Capital of France?", (), 3, messages=turns, chat=True, temperature=0.7, seed=5)
    assert _openai(standin).generate([sampled])[0].error is None
    body = standin.requests[-1]["body"]
    assert standin.requests[-1]["path"] == "/v1/chat/completions" and body["messages"][0] == {
        "role": "system",
        "content": "Answer briefly.",
    }
    assert (body["temperature"], body["seed"]) == (0.7, 5)


# --- one request per question: next-token top-k ---------------------------------------------------

CAPITAL = "The capital of France is"
QA = "Question: What is the capital of France?\nAnswer:"
# SmolLM2's next-token top-20: after CAPITAL " Paris" (greedy), " the", " London" are in it; after QA
# " Paris" is (9th) and " London" is not; " Buenos Aires" is two tokens
QUESTIONS = [
    *(LoglikelihoodRequest(CAPITAL, c) for c in (" Paris", " the", " London")),
    *(LoglikelihoodRequest(QA, c) for c in (" Paris", " London")),
    *(LoglikelihoodRequest("The capital of Argentina is", c) for c in (" Lima", " Rome", " Buenos Aires")),
    LoglikelihoodRequest("The quick brown fox jumps over the lazy ", "dog"),  # alone: no question
]


def _topk_posts(server) -> list[dict]:
    return [r["body"] for r in server.requests if r["body"].get("return_tokens_as_token_ids")]


@pytest.mark.slow
def test_topk_questions_equal_per_choice_requests_and_hf(standin, tokenizer_dir, smollm2, mmlu_requests, hf_mmlu):
    """MMLU 5-shot (3 questions x 4 one-token choices): one request per question, the hf backend's
    numbers, the per-choice path's numbers and is_greedy, and every answer says where it came from."""
    model = _openai(standin, tokenizer_path=tokenizer_dir)
    assert (model.topk, model.describe()["loglikelihood_topk"]) == (20, 20)
    standin.requests.clear()
    seen: list[int] = []
    api = model.loglikelihood(mmlu_requests, lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(len(mmlu_requests)))
    posts = [r["body"] for r in standin.requests]
    assert len(posts) == 3 == len(_topk_posts(standin))  # questions, not choices
    body = posts[0]
    assert (body["max_tokens"], body["logprobs"], body["temperature"], body.get("echo")) == (1, 20, 0, None)
    assert model.stats.requests == 3 and model.describe()["scored_from"] == {TOPK_QUESTIONS: 3}
    # the question's one request's latency is on its first choice: results' summary counts requests
    assert [r.latency is not None for r in api] == [True, False, False, False] * 3
    per_choice = _openai(standin, tokenizer_path=tokenizer_dir, topk=0).loglikelihood(mmlu_requests)
    for a, c, h in zip(api, per_choice, hf_mmlu):
        assert (a.error, a.scored_from, c.scored_from, a.n_tokens) == (None, TOPK, PROMPT, 1)
        assert abs(a.logprob - c.logprob) < 1e-4 and abs(a.logprob - h.logprob) < 1e-3
        assert a.is_greedy == c.is_greedy == h.is_greedy
    assert _predictions(api) == _predictions(hf_mmlu)
    # a greedy choice: is_greedy True from the top-k as from the prompt path
    (paris, *_), hf_short = model.loglikelihood(QUESTIONS[:3]), smollm2.loglikelihood(QUESTIONS[:1])
    assert paris.scored_from == TOPK and paris.is_greedy and hf_short[0].is_greedy
    assert abs(paris.logprob - hf_short[0].logprob) < 1e-3


@pytest.mark.slow
def test_topk_falls_back_per_question(standin, tokenizer_dir, smollm2):
    """A question with a choice missing from the top-k, or with a choice of two tokens, is scored
    by per-choice requests, all of its choices (their numbers are compared with each other)."""
    model = _openai(standin, tokenizer_path=tokenizer_dir)
    standin.requests.clear()
    got = model.loglikelihood(QUESTIONS)
    hf = smollm2.loglikelihood(QUESTIONS)
    assert [r.scored_from for r in got] == [TOPK] * 3 + [PROMPT] * 6
    for a, h in zip(got, hf):
        assert a.error is None and abs(a.logprob - h.logprob) < 1e-3 and a.is_greedy == h.is_greedy
    # 2 questions by top-k (one of them answered), then 6 per choice: QA's two, Argentina's three, the fox
    assert len(_topk_posts(standin)) == 2 and len(standin.requests) == 2 + 6
    assert model.describe()["scored_from"] == {TOPK_QUESTIONS: 1, "fallback: not in top-k": 1, PROMPT: 6}


@pytest.mark.slow
def test_topk_probe_takes_the_servers_cap_and_refusals_fall_back(standin, tokenizer_dir, smollm2):
    standin.max_logprobs = 5  # vLLM --max-logprobs 5: logprobs 20 is a 400 naming the cap
    model = _openai(standin, tokenizer_path=tokenizer_dir)
    assert model.topk == 5
    assert [r["body"]["logprobs"] for r in standin.requests if r["body"].get("return_tokens_as_token_ids")] == [20, 5]
    hf = smollm2.loglikelihood(QUESTIONS[:3])
    got = model.loglikelihood(QUESTIONS[:3])
    assert [r.scored_from for r in got] == [TOPK] * 3
    # the server's cap lowered after the probe: the question's request is refused (400, not
    # retried, not counted as failed), and its choices are scored one request each
    standin.max_logprobs = 2
    standin.requests.clear()
    got = model.loglikelihood(QUESTIONS[:3])
    assert [r.scored_from for r in got] == [PROMPT] * 3 and len(standin.requests) == 1 + 3
    assert max(abs(a.logprob - h.logprob) for a, h in zip(got, hf)) < 1e-3
    assert model.counts.failed == 0 and model.describe()["scored_from"]["fallback: request failed"] == 1
    # opted out, or a server without token-id keys: one request per choice from the start
    standin.max_logprobs = 20
    assert _openai(standin, tokenizer_path=tokenizer_dir, topk=0).describe()["loglikelihood_topk"] == "off: api_topk 0"
    standin.mode.add("no_token_id_keys")
    plain = _openai(standin, tokenizer_path=tokenizer_dir)
    assert plain.topk == 0 and "token id" in plain.describe()["loglikelihood_topk"]
    assert [r.scored_from for r in plain.loglikelihood(QUESTIONS[:3])] == [PROMPT] * 3
    # without a tokenizer there are no token ids to match
    assert "tokenizer" in _openai(standin).describe()["loglikelihood_topk"]


# --- start: discovery and the capability probe ---------------------------------------------------


def test_urls_and_config_entries():
    assert openai_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert openai_base_url("http://h:8000") == "http://h:8000/v1"
    assert openai_base_url("http://h:8000/v1/completions") == "http://h:8000/v1"
    assert lightllm_base_url("http://h:8080/generate") == "http://h:8080"
    with pytest.raises(ModelError, match="http"):
        openai_base_url("h:8000")
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds(None) is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") < 1  # a date in the past: now
    cfg = validate(
        {
            "models": [
                {"api_url": "http://h:8000/v1", "api_model": "m"},
                {"api_url": "http://h:8080/generate", "api_tokenizer": "/tok"},
            ],
            "datasets": ["piqa"],
        }
    )
    a, b = cfg.models
    assert (a.backend, a.name, b.backend, b.name, b.tokenizer_path) == ("openai", "m", "lightllm", "h_8080", "/tok")
    assert a.api_topk == 20  # one request per question unless the server cannot or api_topk is 0
    from lmgauge.cli import _parser
    from lmgauge.runs.launch import RunRequest, raw_config

    args = _parser().parse_args(["run", "--api-url", "http://h:8000/v1", "--api-topk", "0", "--datasets", "piqa"])
    assert raw_config(RunRequest.from_args(args))["models"][-1]["api_topk"] == 0
    with pytest.raises(ConfigError, match="api_url"):
        validate({"models": [{"backend": "openai"}], "datasets": ["piqa"]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.path"):  # hf entries still need their path
        validate({"models": [{"abbr": "x"}], "datasets": ["piqa"]})


@pytest.mark.slow
def test_model_name_discovered_and_build_model(standin, tokenizer_dir):
    from lmgauge.config import ModelConfig

    model = build_model(ModelConfig(backend="openai", api_url=standin.url + "/v1", tokenizer_path=tokenizer_dir))
    d = model.describe()
    # no abbr or api_model in the config: named after the server; the served model's id found on it
    assert (model.name, d["api_model"], d["server_max_len"], d["loglikelihood"]) == (
        f"127.0.0.1_{standin.port}",
        "smollm2",
        2048,
        "ok",
    )
    assert d["max_length"] == 2046  # the prompt and its one generated token fit the server's limit


@pytest.mark.slow
def test_llama_cpp_python_self_repeat_logprobs_are_refused(standin, tokenizer_dir):
    standin.mode.add("selfrepeat")
    for kw in ({}, {"tokenizer_path": tokenizer_dir}):
        model = _openai(standin, **kw)
        assert "issue 1983" in model.logprobs_problem
        with pytest.raises(ModelError, match="mmlu_gen"):
            model.loglikelihood(SHORT)
    # llama-cpp-python also refuses token-id prompts (HTTP 500): text is sent instead, and checked
    standin.mode.add("text_prompts_only")
    model = _openai(standin, tokenizer_path=tokenizer_dir, retries=1)
    assert model.describe()["prompts"] == "text" and "issue 1983" in model.logprobs_problem
    # generation still works from such a server
    assert model.generate([GenerateRequest("The capital of France is", ("\n",), 4)])[0].error is None


@pytest.mark.slow
def test_missing_prompt_logprobs_fail_fast_naming_the_generation_variant(standin):
    standin.mode.add("no_prompt_logprobs")  # llama.cpp's server: logprobs for generated tokens only
    with pytest.raises(ModelError, match="does not return prompt logprobs.*mmlu_gen"):
        _openai(standin).loglikelihood(SHORT)
    standin.mode = {"no_return_all_prompt_logprobs"}
    with pytest.raises(ModelError, match="--return_all_prompt_logprobs"):
        LightLLMModel(standin.url + "/generate").loglikelihood(SHORT)


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_server_killed_mid_run_and_restarted_loses_nothing(tiny_model, tiny_llama_dir):
    s = StandIn(ModelBackend(tiny_model)).start()
    try:
        model = OpenAIModel(s.url + "/v1", tokenizer_path=str(tiny_llama_dir), concurrency=4, retries=10, backoff=0.1)
        reqs = SHORT * 6
        expected = [r.logprob for r in model.loglikelihood(reqs)]
        seen: list[int] = []
        restarted = threading.Event()

        def kill_and_restart() -> None:
            s.stop()
            time.sleep(1.0)  # down long enough for several retries to hit a closed port
            s.start()
            restarted.set()

        def on_result(i, r) -> None:
            seen.append(i)
            if len(seen) == 5:
                threading.Thread(target=kill_and_restart).start()

        got = model.loglikelihood(reqs, on_result)
        assert restarted.is_set()
        assert sorted(seen) == list(range(len(reqs)))
        assert all(r.error is None for r in got)
        assert max(abs(r.logprob - e) for r, e in zip(got, expected)) < 1e-4
    finally:
        s.stop()


@pytest.mark.slow
def test_slow_answers_time_out_then_retry_then_error(fast, tiny_llama_dir):
    model = _openai(fast, tokenizer_path=str(tiny_llama_dir), timeout=2.0, retries=1, concurrency=1)
    fast.fail_next = [("slow", 3)]  # one slow answer: the retry succeeds
    (ok,) = model.loglikelihood(SHORT[:1])
    assert ok.error is None
    fast.fail_next = [("slow", 3), ("slow", 3)]  # slow every try: an error, not a score
    got = model.loglikelihood(SHORT[:2])
    assert "Timeout" in got[0].error and "after 2 tries" in got[0].error
    assert got[1].error is None  # the others are answered


@pytest.mark.slow
def test_429_retry_after_is_honoured(fast, tiny_llama_dir):
    model = _openai(fast, tokenizer_path=str(tiny_llama_dir), concurrency=1, backoff=0.01)
    fast.fail_next = [("status", 429, 2)]
    t0 = time.perf_counter()
    (r,) = model.loglikelihood(SHORT[:1])
    assert r.error is None and time.perf_counter() - t0 >= 2.0  # waited as told, not the 10 ms backoff


@pytest.mark.slow
def test_5xx_and_malformed_json_are_retried_4xx_is_not(fast, tiny_llama_dir):
    model = _openai(fast, tokenizer_path=str(tiny_llama_dir), concurrency=1, retries=3)
    fast.fail_next = [("status", 503), ("malformed",), ("drop",)]  # three faults, then the answer
    (r,) = model.loglikelihood(SHORT[:1])
    assert r.error is None
    fast.fail_next = [("malformed",)] * 4
    (r,) = model.loglikelihood(SHORT[:1])
    assert "malformed answer" in r.error and "after 4 tries" in r.error
    n = len(fast.requests)
    fast.fail_next = [("status", 400)]
    (r,) = model.loglikelihood(SHORT[:1])
    assert r.error.startswith("HTTP 400") and len(fast.requests) == n + 1  # not retried


@pytest.mark.slow
def test_bounded_requests_in_flight(fast, tiny_llama_dir):
    model = _openai(fast, tokenizer_path=str(tiny_llama_dir), concurrency=3)
    fast.max_in_flight = 0
    got = model.loglikelihood(SHORT * 4)
    assert all(r.error is None for r in got)
    assert 2 <= fast.max_in_flight <= 3


@pytest.mark.slow
def test_one_at_a_time_server_no_error_no_retry_hf_numbers(fast, tiny_model, tiny_llama_dir):
    """A slow but healthy server that works on one request at a time (vLLM on a CPU with long
    prompt-logprob requests): 16 requests, each taking half a second, with a 3 s timeout. Sent all
    at once, the last waits ~8 s in the server's queue; the old client gave it up after 3 s, sent it
    again to the back of the queue, and so on until it failed. (The tiny model keeps the time in the
    server's own sleep, so the test means the same on a busy machine; the timeout is 6 answers long,
    so a loaded machine's pauses between answers are not a stall.)"""
    reqs = SHORT * 4
    hf = tiny_model.loglikelihood(reqs)
    fast.mode.add("one_at_a_time")
    fast.service_s = 0.5
    for adaptive in (True, False):
        model = _openai(fast, tokenizer_path=str(tiny_llama_dir), timeout=3.0, adaptive=adaptive)  # 64 at most
        fast.requests.clear()
        fast.max_in_flight = 0
        timings: list[tuple] = []
        model.link.on_timing = lambda i, t, seen=timings: seen.append((i, t.latency, t.tries))
        t0 = time.perf_counter()
        api = model.loglikelihood(reqs)
        wall = time.perf_counter() - t0
        assert [r.error for r in api] == [None] * len(api)
        assert (model.counts.retries, model.counts.stalls, model.counts.failed) == (0, 0, 0)
        assert len(fast.requests) == len(reqs)  # each sent once: no try wasted
        assert sorted(i for i, _, _ in timings) == list(range(len(reqs)))  # each answer's timing, by request
        assert all(latency >= 0.5 and tries == 1 for _, latency, tries in timings)
        assert max(abs(a.logprob - h.logprob) for a, h in zip(api, hf)) < 1e-4
        assert [a.is_greedy for a in api] == [h.is_greedy for h in hf]
        if adaptive:  # the limit followed the server: a few queued, not all sixteen
            assert fast.max_in_flight <= 6, fast.max_in_flight
            assert model.describe()["adaptive_concurrency"] is True
        else:  # all sixteen queued at once: the last waited far past the timeout, and that is no failure
            assert fast.max_in_flight == len(reqs) and wall > 2 * 3.0


@pytest.mark.slow
def test_request_queued_behind_later_ones_is_not_a_stall(fast, tiny_llama_dir):
    """The first request sent (one in flight then) reaches a one-at-a-time server last: the three
    sent just after it are queued ahead of it, and its answer comes after 0.3 + 4 x 0.8 s, past the
    3 s timeout, while the server answers the others every 0.8 s. Waiting behind requests sent after
    it is queueing, not a stall (the client once bounded the wait by the requests in flight when
    it was sent, and gave this one up)."""
    fast.mode.add("one_at_a_time")
    fast.service_s = 0.8
    model = _openai(fast, tokenizer_path=str(tiny_llama_dir), timeout=3.0, concurrency=4, adaptive=False)
    fast.requests.clear()  # the probes made when the model was built
    fast.late_next = [0.3]  # the first to arrive joins the queue last
    got = model.loglikelihood(SHORT[:4])
    assert [r.error for r in got] == [None] * 4
    assert (model.counts.retries, model.counts.stalls) == (0, 0)
    assert len(fast.requests) == 4


# --- the API key ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_key_is_sent_but_never_written(standin, tokenizer_dir, tmp_path, monkeypatch):
    secret = "sk-test-7f3a9c1e5b"
    standin.api_key = secret
    monkeypatch.setenv("LMGAUGE_TEST_KEY", secret)
    code = main(
        [
            "run",
            "--api-url",
            standin.url + "/v1",
            "--api-key-env",
            "LMGAUGE_TEST_KEY",
            "--api-tokenizer",
            tokenizer_dir,
            "--abbr",
            "served",
            "--datasets",
            "mmlu_astronomy",
            "--limit",
            "2",
            "--num-fewshot",
            "0",
            "-w",
            str(tmp_path),
            "--debug",
        ]
    )
    assert code == 0
    assert all(r["headers"].get("Authorization") == f"Bearer {secret}" for r in standin.requests)
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in files)
    for p in files:
        assert secret not in p.read_text(errors="replace"), p
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["models"]["served"]["api_key_env"] == "LMGAUGE_TEST_KEY"
    result = json.loads((run / "results" / "served" / "mmlu_astronomy.json").read_text())
    assert result["n"] == 2 and result["n_errors"] == 0
    # a wrong key: every request refused, reported as errors and not retried
    monkeypatch.setenv("LMGAUGE_TEST_KEY", "wrong")
    with pytest.raises(ModelError, match="401"):
        _openai(standin, api_key_env="LMGAUGE_TEST_KEY", tokenizer_path=tokenizer_dir, api_model="smollm2")
    monkeypatch.delenv("LMGAUGE_TEST_KEY")
    with pytest.raises(ModelError, match="LMGAUGE_TEST_KEY"):
        _openai(standin, api_key_env="LMGAUGE_TEST_KEY")
