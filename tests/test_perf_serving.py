"""lmgauge perf against a server: vLLM's metric definitions on hand-computed traces, the open-loop
schedule, and the client end to end against a timed stand-in that streams as vLLM does."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lmgauge.perf.load import LoadSpec, run_point
from lmgauge.perf.metrics import calculate, parse_goodput
from lmgauge.perf.schedule import arrival_times
from lmgauge.perf.serving import resolve_endpoint, sweep_summary
from lmgauge.perf.stream_client import Endpoint, RequestRecord, RequestSpec, retokenize_missing


def rec(i, start, chunks, out, source="usage", error=None, queue=0.0):
    r = RequestRecord(i, 10, out, arrival_s=start - queue, start_s=start, output_tokens=out, error=error)
    if error is None:
        r.chunk_times_s = list(chunks)
        r.ttft_s, r.e2el_s = chunks[0], chunks[-1]
        r.output_tokens_source = source
    return r


def traces():
    return [
        rec(0, 0.0, [0.1, 0.15, 0.25], 3),  # TPOT (0.25-0.1)/2 = 75 ms; ITL 50, 100 ms
        rec(1, 0.1, [0.2], 1),  # one token: no TPOT, no ITL
        rec(2, 0.2, [], 0, error="HTTP 500: boom"),  # failed: counted, in no latency
        rec(3, 0.3, [0.1, 0.3], 5),  # a chunk carries several tokens: TPOT 50 ms, ITL 200 ms
    ]


def test_metrics_by_hand():
    m = calculate(traces(), duration_s=1.0, percentiles=[50, 99], goodput={"ttft": 150})
    assert (m["completed"], m["failed"], m["total_input_tokens"], m["total_output_tokens"]) == (3, 1, 30, 9)
    assert m["request_throughput"] == 3.0 and m["output_throughput"] == 9.0 and m["total_token_throughput"] == 39.0
    assert m["mean_ttft_ms"] == pytest.approx(400 / 3)
    assert m["median_ttft_ms"] == pytest.approx(100)
    assert m["p99_ttft_ms"] == pytest.approx(198)  # sorted 100, 100, 200: linear interpolation at 1.98
    assert m["std_ttft_ms"] == pytest.approx(np.std([100, 200, 100]))
    assert m["mean_tpot_ms"] == pytest.approx(62.5)  # (75 + 50) / 2; the one-token request left out
    assert m["mean_itl_ms"] == pytest.approx((50 + 100 + 200) / 3)  # pooled gaps
    assert m["p50_itl_ms"] == pytest.approx(100)
    assert m["mean_e2el_ms"] == pytest.approx((250 + 200 + 300) / 3)
    assert m["request_goodput"] == 2.0  # TTFT <= 150 ms: requests 0 and 3
    assert m["lmgauge_tokens_per_chunk"]["max"] == 2.5
    assert m["lmgauge_errors"] == {"HTTP 500: boom": 1}
    assert m["lmgauge_output_tokens_source"] == {"usage": 3}


def test_metrics_edge_cases():
    only_fail = calculate([rec(0, 0, [], 0, error="x")], 1.0)
    assert only_fail["completed"] == 0 and only_fail["mean_ttft_ms"] is None and only_fail["failed"] == 1
    one_token = calculate([rec(0, 0, [0.1], 1), rec(1, 0, [0.3], 1)], 2.0, goodput={"tpot": 1})
    assert one_token["mean_tpot_ms"] is None and one_token["mean_itl_ms"] is None  # nothing to average
    assert one_token["request_goodput"] == 1.0  # TPOT counts 0 for one-token outputs (vLLM)
    queued = calculate([rec(0, 1.0, [0.1], 1, queue=0.5)], 1.0)
    assert queued["mean_client_queue_time_ms"] == pytest.approx(500) and queued["mean_ttft_ms"] == pytest.approx(100)


def test_usage_missing_retokenizes_and_says_so():
    class Tok:  # a whitespace tokenizer: enough to count
        def __call__(self, text, add_special_tokens=False):
            return type("Enc", (), {"input_ids": text.split()})()

    r = rec(0, 0, [0.1, 0.2], 0, source="none")
    r.text = "one two three"
    retokenize_missing([r], Tok())
    assert (r.output_tokens, r.output_tokens_source) == (3, "retokenized")
    assert calculate([r], 1.0)["lmgauge_output_tokens_source"] == {"retokenized": 1}


def test_goodput_parsing():
    assert parse_goodput(["ttft:200", "tpot:50"]) == {"ttft": 200.0, "tpot": 50.0}
    for bad in ("ttft", "itl:5", "ttft:fast", "e2el:-1"):
        with pytest.raises(ValueError, match="--goodput"):
            parse_goodput([bad])


def _cv(times):
    gaps = np.diff([0.0] + times)
    return gaps.std() / gaps.mean()


def test_schedule_rate_burstiness_seed():
    n, rate = 4000, 5.0
    poisson = arrival_times(n, rate, 1.0, seed=7)
    assert poisson[-1] == pytest.approx(n / rate)  # vLLM rescales the last arrival to N / rate
    assert poisson == arrival_times(n, rate, 1.0, seed=7) and poisson != arrival_times(n, rate, 1.0, seed=8)
    assert _cv(poisson) == pytest.approx(1.0, abs=0.06)  # exponential gaps
    assert _cv(arrival_times(n, rate, 0.25, seed=7)) == pytest.approx(2.0, abs=0.2)  # gamma: CV = 1/sqrt(k)
    assert _cv(arrival_times(n, rate, 4.0, seed=7)) == pytest.approx(0.5, abs=0.04)
    # counts per 1 s window of a Poisson process: mean = variance = rate
    counts = np.bincount(np.floor(poisson).astype(int))[:-1]
    assert counts.mean() == pytest.approx(rate, rel=0.02) and counts.var() == pytest.approx(rate, rel=0.15)
    assert arrival_times(3, math.inf) == [0.0, 0.0, 0.0]
    assert arrival_times(4, 2.0, math.inf) == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_resolve_endpoint():
    assert resolve_endpoint("http://h:1/v1", "completions", None) == (
        "http://h:1",
        "http://h:1/v1/completions",
        "completions",
    )
    assert resolve_endpoint("http://h:1", "chat", None)[1:] == ("http://h:1/v1/chat/completions", "chat")
    assert resolve_endpoint("http://h:1/v1/chat/completions", "completions", None)[2] == "chat"
    assert resolve_endpoint("http://h:1/generate", "completions", None) == (
        "http://h:1",
        "http://h:1/generate",
        "lightllm",
    )


def test_saturation_flag():
    def point(label, tput, ttft):
        return {"label": label, "output_throughput": tput, "mean_ttft_ms": ttft, "lmgauge_self_check": {}}

    s = sweep_summary([point("c1", 10, 100), point("c2", 19, 110), point("c4", 19.5, 300)])
    assert [p["saturated"] for p in s["points"]] == [False, False, True] and s["saturation_at"] == "c4"


class TimedStandIn:
    """Streams /v1/completions as vLLM does (text chunks, a usage chunk with empty choices, [DONE]),
    `per_chunk` tokens every `gap_s`; one request at a time like a single-slot server."""

    def __init__(self, gap_s=0.02, per_chunk=2, usage=True) -> None:
        self.gap_s, self.per_chunk, self.usage = gap_s, per_chunk, usage
        self.lock = threading.Lock()
        stand = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with stand.lock:
                    n = body["max_tokens"]
                    sent = 0
                    while sent < n:
                        time.sleep(stand.gap_s)
                        k = min(stand.per_chunk, n - sent)
                        sent += k
                        fin = "length" if sent == n else None
                        self._event({"choices": [{"index": 0, "text": " x" * k, "finish_reason": fin}]})
                    if stand.usage:
                        self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n}})
                    self._write(b"data: [DONE]\n\n")
                self._write(b"")

            def _event(self, obj):
                self._write(b"data: " + json.dumps(obj).encode() + b"\n\n")

            def _write(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/completions"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("usage", [True, False])
def test_client_end_to_end_chunks_queue_and_usage(usage):
    stand = TimedStandIn(gap_s=0.03, per_chunk=2, usage=usage)
    try:
        ep = Endpoint(url=stand.url, kind="completions", model="m")
        specs = [RequestSpec(i, "hello", 5, 8) for i in range(4)]
        res = asyncio.run(run_point(ep, specs, LoadSpec(max_concurrency=2, num_warmups=1)))
    finally:
        stand.close()
    recs = res.records
    assert all(r.success for r in recs), [r.error for r in recs]
    assert all(len(r.chunk_times_s) == 4 for r in recs)  # 8 tokens, 2 per chunk
    if usage:
        assert all(r.output_tokens == 8 and r.output_tokens_source == "usage" and r.prompt_len == 7 for r in recs)
        m = calculate(recs, res.duration_s)
        assert m["lmgauge_tokens_per_chunk"]["mean"] == 2.0
        # a chunk every 30 ms carrying 2 tokens: ITL ~30 ms, TPOT ~ (3 x 30) / 7 ~ 13 ms
        assert m["mean_itl_ms"] == pytest.approx(30, rel=0.5) and m["mean_tpot_ms"] < m["mean_itl_ms"]
    else:
        assert all(r.output_tokens_source == "none" for r in recs)  # left for the tokenizer, and said
    # 4 requests, 2 slots: two wait in the client (queue time, apart), never inside their TTFT;
    # the single-slot server makes the second of each pair wait too: that is the server's, inside TTFT
    queues = sorted(r.queue_s for r in recs)
    assert queues[1] < 0.05 and queues[2] > 0.1
    assert max(r.ttft_s for r in recs) > 0.12  # waited 4 chunks x 30 ms on the server


def test_failures_are_counted_and_kept():
    ep = Endpoint(url="http://127.0.0.1:9/v1/completions", kind="completions", model="m")  # nothing listens
    res = asyncio.run(
        run_point(ep, [RequestSpec(0, "a", 1, 4), RequestSpec(1, "b", 1, 4)], LoadSpec(max_concurrency=2))
    )
    m = calculate(res.records, res.duration_s)
    assert m["failed"] == 2 and m["completed"] == 0
    assert all("ConnectError" in (r.error or "") for r in res.records)


def _ab(tmp_path, stand_a, stand_b, rid, *extra, prompts=6):
    from lmgauge.cli import main

    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "output_len": 6}) + "\n" for i in range(prompts)))
    argv = ["perf", "--api-url", stand_a.url, "--api-model", "m", "--ab-url", stand_b.url, "--ab-model", "m"]
    argv += ["--dataset-path", str(path), "--num-prompts", str(prompts), "--max-concurrency", "1", "--ab-repeats", "3"]
    argv += ["--num-warmups", "0", "-w", str(tmp_path), "--run-id", rid, *extra]
    assert main(argv) == 0
    return json.loads((tmp_path / rid / "ab" / "ab.json").read_text())


def test_ab_identical_servers_are_within_noise_never_different(tmp_path):
    """Two identical stand-ins, both at once (--ab-order parallel: the machine's noise hits both sides
    of a pair). With the default 5% margin (2.5 ms of a 50 ms TPOT) TPOT and E2EL are "within noise".
    This shared machine's noise is a few ms per request whatever the server: at 20 ms per token the
    margin (1 ms) is below it. A load spike can still widen an interval to "inconclusive" (measured
    at 50 ms: one run in six), the honest answer then, so up to three tries; "different" is never right."""
    a, same = TimedStandIn(0.05, 1), TimedStandIn(0.05, 1)
    seen = []
    try:
        for attempt in range(3):
            eq = _ab(tmp_path, a, same, f"eq{attempt}", "--ab-order", "parallel", prompts=8)
            assert eq["per_request"]["tpot_ms"]["n"] == 24 and eq["failed"] == {"A": 0, "B": 0}
            assert eq["margin"] == 0.05
            verdicts = {m: r["verdict"] for m, r in eq["per_request"].items()}
            assert "different" not in verdicts.values(), eq["per_request"]
            seen.append({m: (r["verdict"], r["delta"], r["ci95"], r["margin"]) for m, r in eq["per_request"].items()})
            if verdicts["tpot_ms"] == verdicts["e2el_ms"] == "within noise":
                break
        else:
            pytest.fail(f"identical stand-ins never within noise in 3 tries: {seen}")
    finally:
        for s in (a, same):
            s.close()
    r = eq["per_request"]["tpot_ms"]
    assert "repeats" not in r["interval"]  # parallel: a pair's two requests ran at the same moment
    assert (
        r["margin"] == pytest.approx(0.05 * r["mean_a"]) and -r["margin"] <= r["ci95"][0] <= r["ci95"][1] <= r["margin"]
    )


def test_ab_a_known_difference_is_different(tmp_path):
    a, slower = TimedStandIn(0.02, 1), TimedStandIn(0.05, 1)
    try:
        diff = _ab(tmp_path, a, slower, "diff")  # the default order: interleaved, counterbalanced
    finally:
        for s in (a, slower):
            s.close()
    d = diff["per_request"]["tpot_ms"]
    # 50 - 20 = 30 ms more per token: far beyond the 1 ms margin
    assert (d["verdict"], d["direction"]) == ("different", "B higher") and d["ci95"][0] > 15
    assert "repeats" in d["interval"]  # interleaved: repeats resampled, then requests
    assert (diff["per_request"]["e2el_ms"]["verdict"], diff["per_request"]["e2el_ms"]["direction"]) == (
        "different",
        "B higher",
    )
    assert diff["per_run"]["request_throughput"]["mean_b"] < diff["per_run"]["request_throughput"]["mean_a"]
