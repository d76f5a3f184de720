"""Real inference servers (vLLM CPU, llama-cpp-python) serving SmolLM2-135M-Instruct on this machine.

Each module-scoped fixture installs its server when missing (scripts/servers/install_*.sh: minutes
the first time, cached after) and starts it on a free port; LMGAUGE_SKIP_SERVERS=1 skips them.
What the asserts pin down is described in docs/servers.md.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from servers import server_fixture

pytestmark = [pytest.mark.servers, pytest.mark.slow]

PROMPT = "The capital of France is Paris. The capital of Germany is"

vllm = server_fixture("vllm", max_len=4096)  # room for MMLU 5-shot high_school_european_history (~3,000 tokens)
llamacpp = server_fixture("llamacpp")


def post(url: str, body: dict, timeout: float = 300.0) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def hf_reference(smollm2_hf_folder):
    """(ids of PROMPT, log p(ids[i] | ids[:i]) from a plain float32 transformers forward, None first)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(smollm2_hf_folder)(PROMPT)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return ids, [None] + [lp[i - 1, t].item() for i, t in enumerate(ids) if i > 0]


@pytest.fixture(scope="module")
def smollm2_hf_folder():
    from servers import serve

    return serve.hf_folder_for(None)


def completion(url, prompt, max_tokens=1, **extra) -> dict:
    body = {
        "model": url.model,
        "prompt": prompt,
        "echo": True,
        "logprobs": 1,
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }
    return post(f"{url}/v1/completions", body)


def assert_echo_shape(choice: dict, n_prompt: int, n_generated: int) -> dict:
    """The OpenAI legacy layout: parallel lists over prompt tokens (+ generated ones)."""
    lp = choice["logprobs"]
    n = n_prompt + n_generated
    for key in ("tokens", "token_logprobs", "text_offset", "top_logprobs"):
        assert len(lp[key]) == n, (key, lp[key])
    assert all(isinstance(t, str) for t in lp["tokens"])
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    return lp


# --- vLLM ----------------------------------------------------------------------------------------


def test_vllm_serves_models(vllm):
    models = get(f"{vllm}/v1/models")
    assert [m["id"] for m in models["data"]] == [vllm.model]


@pytest.mark.parametrize("as_ids", [False, True], ids=["text", "token_ids"])
@pytest.mark.parametrize("max_tokens", [1, 0])
def test_vllm_echo_prompt_logprobs_equal_transformers(vllm, hf_reference, as_ids, max_tokens):
    """echo + logprobs: the prompt tokens' logprobs (first None) equal a float32 transformers forward."""
    ids, ref = hf_reference
    out = completion(vllm, ids if as_ids else PROMPT, max_tokens=max_tokens)
    choice = out["choices"][0]
    # max_tokens 0 is accepted: the prompt alone comes back (usage still counts 1 completion token)
    lp = assert_echo_shape(choice, len(ids), max_tokens)
    assert choice["text"].startswith(PROMPT)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert "".join(lp["tokens"][: len(ids)]) == PROMPT
    got = lp["token_logprobs"][1 : len(ids)]
    assert max(abs(a - b) for a, b in zip(got, ref[1:])) < 1e-3
    # top_logprobs holds the top-1 and the actual token when they differ
    for tok, lpv, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
        assert top[tok] == pytest.approx(lpv) and 1 <= len(top) <= 2
    # with echo, vLLM also fills its own prompt_logprobs: [None, {id: {logprob, rank, decoded_token}}]
    pl = choice["prompt_logprobs"]
    assert pl[0] is None and len(pl) == len(ids)
    assert [d[str(t)]["logprob"] for d, t in zip(pl[1:], ids[1:])] == pytest.approx(got, abs=1e-6)


def test_vllm_prompt_logprobs_extra_parameter(vllm, hf_reference):
    ids, ref = hf_reference
    out = completion(vllm, ids, echo=False, prompt_logprobs=1)
    choice = out["choices"][0]
    assert len(choice["logprobs"]["tokens"]) == 1  # the generated token only
    pl = choice["prompt_logprobs"]
    got = [d[str(t)]["logprob"] for d, t in zip(pl[1:], ids[1:])]
    assert pl[0] is None and max(abs(a - b) for a, b in zip(got, ref[1:])) < 1e-3


def test_vllm_chat_and_streaming(vllm):
    chat = post(
        f"{vllm}/v1/chat/completions",
        {
            "model": vllm.model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 1,
        },
    )
    msg = chat["choices"][0]
    assert "Paris" in msg["message"]["content"]
    assert len(msg["logprobs"]["content"]) == chat["usage"]["completion_tokens"]
    events = stream_events(
        f"{vllm}/v1/completions",
        {"model": vllm.model, "prompt": PROMPT, "max_tokens": 3, "temperature": 0, "stream": True},
    )
    assert events[-1] == "[DONE]" and len(events) == 4
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]).startswith(" Berlin")


def stream_events(url: str, body: dict) -> list[str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        lines = [ln.decode().strip() for ln in r]
    return [ln.removeprefix("data: ") for ln in lines if ln.startswith("data: ")]


# --- llama-cpp-python ----------------------------------------------------------------------------


def test_llamacpp_serves_models(llamacpp):
    models = get(f"{llamacpp}/v1/models")
    assert [m["id"] for m in models["data"]] == [llamacpp.model]


def test_llamacpp_echo_logprobs_shape_and_issue_1983_quirk(llamacpp, hf_reference, smollm2_hf_folder):
    """echo + logprobs on llama-cpp-python 0.3.36 (model without BOS): parallel lists over the PROMPT
    tokens only (the one generated token has no entry), first None, and each value is the token's
    logprob of REPEATING ITSELF, log p(t_i | t_0..t_i), not log p(t_i | t_0..t_{i-1}) (issue 1983);
    top_logprobs[i] is the distribution of the NEXT token. The GGUF is Q4_1 (llama.cpp also quantizes
    activations), so values match the float32 folder dequantized from it to ~0.4, not 1e-3."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids, ref = hf_reference
    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_folder)
    out = completion(llamacpp, PROMPT, max_tokens=1)
    choice = out["choices"][0]
    assert out["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}
    assert choice["text"].startswith(PROMPT) and len(choice["text"]) > len(PROMPT)
    lp = assert_echo_shape(choice, len(ids), 0)  # no entry for the generated token
    assert "".join(lp["tokens"]) == PROMPT
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None

    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    got = lp["token_logprobs"][1:]
    itself = [full[i, ids[i]].item() for i in range(1, len(ids))]
    correct = ref[1:]
    assert max(abs(a - b) for a, b in zip(got, itself)) < 1.0  # the quirk
    assert max(abs(a - b) for a, b in zip(got, correct)) > 5.0  # so NOT the prompt logprobs
    argmax = [tokenizer.decode([full[i].argmax().item()]) for i in range(len(ids))]
    for i in range(1, len(ids)):  # top_logprobs[i]: the top-1 predicting token i+1, and token i itself
        top1 = max(lp["top_logprobs"][i].items(), key=lambda kv: kv[1])[0]
        assert top1 == argmax[i]
        assert lp["top_logprobs"][i][lp["tokens"][i]] == pytest.approx(lp["token_logprobs"][i])


def test_llamacpp_rejects_token_id_prompts(llamacpp, hf_reference):
    """prompt must be str or list[str]: a list of ids fails validation (HTTP 500, not 4xx)."""
    ids, _ = hf_reference
    with pytest.raises(urllib.error.HTTPError) as e:
        completion(llamacpp, ids, max_tokens=1)
    assert e.value.code >= 400 and "Input should be a valid string" in e.value.read().decode()


def test_llamacpp_chat_and_streaming(llamacpp):
    chat = post(
        f"{llamacpp}/v1/chat/completions",
        {
            "model": llamacpp.model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 1,
        },
    )
    msg = chat["choices"][0]
    assert msg["message"]["role"] == "assistant" and msg["message"]["content"]
    assert len(msg["logprobs"]["content"]) == chat["usage"]["completion_tokens"]
    events = stream_events(
        f"{llamacpp}/v1/completions",
        {"model": llamacpp.model, "prompt": PROMPT, "max_tokens": 3, "temperature": 0, "stream": True},
    )
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]).startswith(" Berlin")


# --- lmgauge's openai backend against the real servers --------------------------------------------


def _served(url, **kw):
    from lmgauge.config import ModelConfig
    from lmgauge.models import build_model

    return build_model(ModelConfig(backend="openai", api_url=f"{url}/v1", **kw))


def test_mmlu_through_vllm_equals_the_hf_backend(vllm, smollm2):
    """MMLU 5-shot log-likelihoods through vLLM (prompts as the hf path's token ids) equal the hf
    backend's to 1e-3, with identical predictions (one prompt-logprob request per choice)."""
    import lmgauge.tasks  # noqa: F401
    from lmgauge.tasks.registry import build

    served = _served(vllm, tokenizer_path=str(vllm.model_path), api_topk=0)
    assert served.logprobs_problem is None and served.token_prompts
    task = build("mmlu_college_biology")
    docs, _ = task.load()
    docs = docs[:8]
    requests = [r for i, d in enumerate(docs) for r in task.requests(d, i)]
    ours, theirs = smollm2.loglikelihood(requests), served.loglikelihood(requests)
    assert not any(r.error for r in theirs)
    assert not any(r.truncated for r in ours + theirs)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(ours, theirs)) < 1e-3
    for i, d in enumerate(docs):
        a = task.score(d, i, ours[4 * i : 4 * i + 4])
        b = task.score(d, i, theirs[4 * i : 4 * i + 4])
        assert a["pred"] == b["pred"], i


def test_long_mmlu_prompts_through_vllm_with_default_client_settings(vllm, smollm2):
    """Issue 11's case, small: MMLU 5-shot with ~2,800-token prompts (high_school_european_history)
    and short ones, default client settings (at most 64 in flight, 120 s timeout). vLLM on a CPU
    works on about one such prompt-logprob request at a time: the client's in-flight limit follows
    it, nothing waits its turn into a retry, and the predictions are the hf backend's. (One request
    per choice: one per question, next-token top-k, is the test after.)"""
    import lmgauge.tasks  # noqa: F401  # registers the tasks
    from lmgauge.tasks.registry import build

    served = _served(vllm, tokenizer_path=str(vllm.model_path), api_topk=0)
    for subject in ("high_school_european_history", "astronomy"):
        task = build(f"mmlu_{subject}")
        docs, _ = task.load()
        docs = docs[:3]
        requests = [r for i, d in enumerate(docs) for r in task.requests(d, i)]
        ours = smollm2.loglikelihood(requests)  # first the hf side, then the server's: not at once
        theirs = served.loglikelihood(requests)
        assert [r.error for r in theirs] == [None] * len(theirs), subject
        assert not any(r.truncated for r in ours + theirs)
        assert max(abs(a.logprob - b.logprob) for a, b in zip(ours, theirs)) < 1e-3, subject
        for i, d in enumerate(docs):
            assert (
                task.score(d, i, ours[4 * i : 4 * i + 4])["pred"] == task.score(d, i, theirs[4 * i : 4 * i + 4])["pred"]
            )
    assert (served.counts.retries, served.counts.stalls, served.counts.failed) == (0, 0, 0)


def test_mmlu_through_vllm_one_request_per_question(vllm, smollm2):
    """MMLU 5-shot through vLLM by next-token top-k (one request per question, the shared 5-shot
    prefix from vLLM's prefix cache): the hf backend's predictions and is_greedy, log-likelihoods
    within 1e-3 (measured on 100 questions: at most 2.3e-5), and as many requests as questions."""
    import lmgauge.tasks  # noqa: F401
    from lmgauge.models.served_choices import TOPK
    from lmgauge.tasks.registry import build

    served = _served(vllm, tokenizer_path=str(vllm.model_path))
    assert served.topk == 20, served.topk_problem  # the server's default --max-logprobs, found by the probe
    n_questions, diffs = 0, []
    for subject, n in (("astronomy", 6), ("high_school_european_history", 2)):  # ~600 and ~2,800 tokens
        task = build(f"mmlu_{subject}")
        docs, _ = task.load()
        docs = docs[:n]
        requests = [r for i, d in enumerate(docs) for r in task.requests(d, i)]
        before = served.stats.requests
        ours, theirs = smollm2.loglikelihood(requests), served.loglikelihood(requests)
        assert served.stats.requests - before == n  # questions, not choices
        assert [r.scored_from for r in theirs] == [TOPK] * len(requests), subject
        assert [r.is_greedy for r in theirs] == [r.is_greedy for r in ours], subject
        diffs += [abs(a.logprob - b.logprob) for a, b in zip(ours, theirs)]
        for i, d in enumerate(docs):
            a = task.score(d, i, ours[4 * i : 4 * i + 4])
            b = task.score(d, i, theirs[4 * i : 4 * i + 4])
            assert a["pred"] == b["pred"], (subject, i)
        n_questions += n
    assert max(diffs) < 1e-3, max(diffs)
    assert served.counts.requests == n_questions and served.counts.failed == 0


def test_lmgauge_run_against_vllm_writes_the_run_directory(vllm, tmp_path):
    from lmgauge.cli import main

    code = main(
        [
            "run",
            "--api-url",
            f"{vllm}/v1",
            "--api-tokenizer",
            str(vllm.model_path),
            "--datasets",
            "mmlu_astronomy",
            "gsm8k_cot",
            "--limit",
            "3",
            "-w",
            str(tmp_path),
        ]
    )
    assert code == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (model_dir,) = (run / "results").iterdir()  # named after the server (host_port) unless --hf-abbr
    result = json.loads((model_dir / "mmlu_astronomy.json").read_text())
    assert result["n"] == 3 and not result.get("n_errors")
    samples = [
        json.loads(x) for x in (run / "samples" / model_dir.name / "mmlu_astronomy.jsonl").read_text().splitlines()
    ]
    assert [a["scored_from"] for s in samples for a in s["answers"]] == ["next_token_topk"] * 12  # one request each
    lines = (run / "samples" / model_dir.name / "gsm8k_cot.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all("output" in json.loads(x) for x in lines)


def test_llamacpp_quirk_refuses_loglikelihood_and_generation_still_works(llamacpp):
    """The probe sees issue 1983 and refuses log-likelihood, naming the gen variant; generation runs."""
    from lmgauge.models import ModelError
    from lmgauge.requests import GenerateRequest, LoglikelihoodRequest

    served = _served(llamacpp)
    assert served.logprobs_problem and "1983" in served.logprobs_problem
    with pytest.raises(ModelError, match="_gen"):
        served.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
    (out,) = served.generate([GenerateRequest("The capital of France is", stop=("\n",), max_new_tokens=8)])
    assert out.error is None and out.text.strip()
