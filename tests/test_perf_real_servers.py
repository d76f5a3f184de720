"""lmgauge perf against the real vLLM CPU and llama-cpp-python servers (SmolLM2-135M-Instruct).

What holds on a real server: the prompts' exact token lengths (the server's own usage counts them),
outputs forced to exactly the asked length, vLLM-compatible result files, streamed and not.
"""

from __future__ import annotations

import json

import pytest

from lmgauge.cli import main
from servers import serve, server_fixture

pytestmark = [pytest.mark.servers, pytest.mark.slow]

vllm = server_fixture("vllm")
# llama-cpp-python cuts the running stream when a new request arrives unless told not to
llamacpp = server_fixture("llamacpp", extra_args=["--interrupt_requests", "False"])

VLLM_KEYS = ("completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput")
VLLM_KEYS += ("output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "mean_itl_ms")
VLLM_KEYS += ("mean_e2el_ms", "max_concurrency", "request_rate", "burstiness", "duration", "backend", "model_id")


def perf(tmp_path, url, rid, *extra) -> tuple[dict, list[dict]]:
    tok = str(serve.hf_folder_for(None))
    argv = ["perf", "--api-url", f"{url}/v1", "--tokenizer", tok, "--input-len", "32", "--output-len", "8"]
    argv += ["--num-prompts", "6", "--max-concurrency", "2", "--seed", "1", "-w", str(tmp_path), "--run-id", rid]
    assert main(argv + list(extra)) == 0
    serving = tmp_path / rid / "serving"
    result = json.loads((serving / "rateinf_conc2.json").read_text())
    records = [json.loads(x) for x in (serving / "rateinf_conc2.requests.jsonl").read_text().splitlines()]
    return result, records


def test_vllm_streamed(vllm, tmp_path):
    result, records = perf(tmp_path, vllm, "s")
    for k in VLLM_KEYS:
        assert k in result, k
    assert result["completed"] == 6 and result["failed"] == 0
    # the server's own usage: every prompt exactly 32 tokens, every output exactly 8
    assert all(r["usage"]["prompt_tokens"] == 32 and r["output_tokens"] == 8 for r in records)
    assert result["lmgauge_output_tokens_source"] == {"usage": 6}
    assert result["total_input_tokens"] == 6 * 32 and result["total_output_tokens"] == 6 * 8
    assert all(0 < r["ttft_s"] <= r["e2el_s"] for r in records)
    assert result["mean_tpot_ms"] > 0 and result["mean_itl_ms"] > 0
    assert (tmp_path / "s" / "plots" / "distributions_rateinf_conc2.png").is_file()


def test_vllm_not_streamed(vllm, tmp_path):
    result, records = perf(tmp_path, vllm, "n", "--no-stream")
    assert result["completed"] == 6 and result["total_output_tokens"] == 48
    assert result["mean_ttft_ms"] is None and result["mean_e2el_ms"] > 0  # no TTFT without a stream


def test_llamacpp_streamed_and_not(llamacpp, tmp_path):
    result, records = perf(tmp_path, llamacpp, "s")
    assert result["completed"] == 6 and result["failed"] == 0, result["lmgauge_errors"]
    # no usage in llama-cpp-python's streams: counted from the text, and the result says so
    assert result["lmgauge_output_tokens_source"] == {"retokenized": 6}
    assert all(len(r["chunk_times_s"]) >= 8 for r in records)  # a chunk per token (+ the finish chunk)
    whole, wrecs = perf(tmp_path, llamacpp, "n", "--no-stream")
    assert whole["completed"] == 6
    # not streamed, usage is there: prompts of exactly 32 tokens, outputs of exactly 8 (min_tokens)
    assert all(r["usage"]["prompt_tokens"] == 32 and r["usage"]["completion_tokens"] == 8 for r in wrecs)


def test_llamacpp_refuses_a_request_id_that_is_not_a_uuid(llamacpp):
    """Why `vllm bench serve` got 400 from llama-cpp-python: it sends `x-request-id: bench-<hex>-<n>`,
    and llama-cpp-python's RequestIdPlugin (starlette_context, validate=True) answers any id that is
    not a UUID with an empty 400. benchmarks/perf_vs_vllm.py sends them as UUIDs; lmgauge sends none."""
    import urllib.error
    import urllib.request
    import uuid

    body = json.dumps({"prompt": "Hello", "max_tokens": 1}).encode()

    def status(request_id: str) -> int:
        headers = {"Content-Type": "application/json", "x-request-id": request_id}
        req = urllib.request.Request(f"{llamacpp}/v1/completions", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("bench-1a2b3c4d-0") == 400
    assert status(str(uuid.uuid5(uuid.NAMESPACE_URL, "bench-1a2b3c4d-0"))) == 200


llamacpp_b = server_fixture("llamacpp", extra_args=["--interrupt_requests", "False"])


def test_ab_of_two_identical_llamacpp_servers_is_never_different(llamacpp, llamacpp_b, tmp_path):
    """The A/B on two real servers of the same model: the same seeded prompts reach both (the server's
    own prompt counts agree), and no metric is called "different" (two identical servers differ only
    by noise). "within noise" itself needs more repeats than a test can afford on a shared machine:
    benchmarks/ab_identical_servers.py measures it (docs/perf.md)."""
    assert llamacpp != llamacpp_b  # two server processes, not one twice
    tok = str(serve.hf_folder_for(None))
    argv = ["perf", "--api-url", f"{llamacpp}/v1", "--ab-url", f"{llamacpp_b}/v1", "--tokenizer", tok]
    argv += ["--input-len", "32", "--output-len", "8", "--num-prompts", "6", "--max-concurrency", "1"]
    argv += ["--seed", "1", "--ab-repeats", "2", "-w", str(tmp_path), "--run-id", "ab", "--ab-margin", "20%"]
    assert main(argv) == 0
    ab = json.loads((tmp_path / "ab" / "ab" / "ab.json").read_text())
    assert ab["failed"] == {"A": 0, "B": 0}
    verdicts = {k: m["verdict"] for k, m in {**ab["per_request"], **ab["per_run"]}.items()}
    assert "different" not in verdicts.values(), ab
    assert ab["per_request"]["e2el_ms"]["n"] == 12  # 6 prompts x 2 repeats, paired
    runs = [json.loads((tmp_path / "ab" / "ab" / f"{s}_{r}.json").read_text()) for s in "AB" for r in range(2)]
    assert {r["total_input_tokens"] for r in runs} == {6 * 32}
