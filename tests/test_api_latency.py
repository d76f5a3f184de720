"""Accuracy runs through a served backend record each request's latency (issue 14, item 5): in the
samples' answers, summarised in results; in-process runs write none."""

from __future__ import annotations

import json

import pytest

from api_standin import ModelBackend, StandIn
from lmgauge.cli import main
from lmgauge.models.openai_api import OpenAIModel
from lmgauge.report.html_data import run_data
from lmgauge.report.load import load_run
from lmgauge.requests import GenerateRequest, RequestLatency, RollingRequest, RollingResult
from lmgauge.runs.journal import answers_of, results_from
from lmgauge.runs.latency import latency_summary
from lmgauge.runs.reader import open_run

SERVICE_S = 0.1  # the stand-in's time per request, one at a time: every latency is at least this


@pytest.fixture(scope="module")
def slow_server(tiny_model):
    s = StandIn(ModelBackend(tiny_model), model_id="tiny", max_model_len=250).start()
    s.mode.add("one_at_a_time")
    s.service_s = SERVICE_S
    yield s
    s.stop()


def test_cli_run_records_latency_per_answer_and_a_summary(slow_server, tiny_llama_dir, tmp_path):
    argv = ["run", "--api-url", slow_server.url + "/v1", "--api-tokenizer", str(tiny_llama_dir), "--abbr", "served"]
    argv += ["--datasets", "mmlu_astronomy", "--limit", "2", "--num-fewshot", "0", "-w", str(tmp_path), "--debug"]
    argv += ["--api-topk", "0"]  # one request per choice (a top-k question's one request is on its first choice)
    assert main(argv) == 0
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    run = open_run(root)
    samples = list(run.samples("served", "mmlu_astronomy"))
    lats = [a.latency for s in samples for a in s.answers]
    assert len(lats) == 8 and all(x is not None for x in lats)  # 2 docs x 4 choices
    assert all(x.e2el_s >= SERVICE_S and x.ttft_s is None and (x.calls, x.tries) == (1, 1) for x in lats)
    res = run.result("served", "mmlu_astronomy")
    assert res is not None and res.latency is not None
    s = res.latency
    assert (s.requests, s.calls, s.retried, s.streamed, s.output_tokens) == (8, 8, 0, 0, None)
    e2el_ms = sorted(x.e2el_s * 1000 for x in lats)
    assert s.mean_e2el_ms == pytest.approx(sum(e2el_ms) / 8, abs=0.01) and s.mean_e2el_ms >= SERVICE_S * 1000
    assert e2el_ms[0] <= s.median_e2el_ms <= s.p90_e2el_ms <= s.p99_e2el_ms <= e2el_ms[-1]
    assert s.mean_ttft_ms is None  # not streamed
    raw = json.loads((root / "results" / "served" / "mmlu_astronomy.json").read_text())
    assert "ttft" not in json.dumps(raw["latency"])  # no TTFT keys at all, rather than nulls
    (shown,) = [t for t in run_data(load_run(root), "A")["tasks"] if t["task"] == "mmlu_astronomy"]
    assert shown["latency"] == raw["latency"]  # what report.html's latency table reads


def test_group_results_and_run_json_carry_the_pooled_latency(slow_server, tiny_llama_dir, tmp_path):
    served = ["--api-url", slow_server.url + "/v1", "--api-tokenizer", str(tiny_llama_dir), "--abbr", "served"]
    common = ["--datasets", "mmlu_astronomy", "mmlu_anatomy", "--limit", "1", "--num-fewshot", "0", "--debug"]
    assert main(["run", *served, "--api-topk", "0", *common, "-w", str(tmp_path / "api")]) == 0
    (root,) = (tmp_path / "api").iterdir()
    run = open_run(root)
    subjects = ["mmlu_astronomy", "mmlu_anatomy"]
    samples = [s.to_json() for t in subjects for s in run.samples("served", t)]
    pooled = latency_summary(samples)  # every request of both subjects, not a mean of their means
    assert pooled is not None and pooled.requests == 8  # 2 subjects x 1 doc x 4 choices
    group = run.result("served", "mmlu")
    assert group is not None and group.is_group and group.latency == pooled
    per_task = {t: run.result("served", t) for t in subjects}
    assert all(r is not None and r.latency is not None and r.latency.requests == 4 for r in per_task.values())
    manifest = json.loads((root / "run.json").read_text())
    assert manifest["models"]["served"]["latency"] == pooled.to_json()
    for t, r in per_task.items():
        assert r is not None and r.latency is not None
        assert manifest["tasks"]["served"][t]["latency"] == r.latency.to_json()
    # in-process: no latency key anywhere (no nulls)
    inproc = ["--hf-path", str(tiny_llama_dir), "--hf-abbr", "tiny", *common, "-w", str(tmp_path / "hf")]
    assert main(["run", *inproc]) == 0
    (root,) = (tmp_path / "hf").iterdir()
    manifest = json.loads((root / "run.json").read_text())
    assert "latency" not in manifest["models"]["tiny"]
    assert all("latency" not in st for st in manifest["tasks"]["tiny"].values())
    assert "latency" not in json.loads((root / "results" / "tiny" / "mmlu.json").read_text())


def test_streamed_generation_has_ttft_and_rolling_counts_its_windows(slow_server, tiny_llama_dir):
    model = OpenAIModel(slow_server.url + "/v1", tokenizer_path=str(tiny_llama_dir), stream=True, backoff=0.05)
    got = model.generate([GenerateRequest("The quick brown fox", max_new_tokens=4) for _ in range(2)])
    assert all(r.error is None and r.latency is not None for r in got)
    for r in got:
        lat = r.latency
        assert lat is not None and lat.ttft_s is not None
        assert SERVICE_S <= lat.ttft_s <= lat.e2el_s and lat.calls == 1
    summary = latency_summary([{"answers": answers_of(got)}])
    assert summary is not None and summary.streamed == 2 and summary.output_tokens == sum(r.n_tokens for r in got)
    assert summary.mean_ttft_ms is not None and summary.mean_ttft_ms >= SERVICE_S * 1000
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
    (doc,) = model.loglikelihood_rolling([RollingRequest(text, window=32)])
    assert doc.error is None and doc.latency is not None
    assert doc.latency.calls == doc.n_windows > 1 and doc.latency.e2el_s >= doc.n_windows * SERVICE_S


def test_latency_round_trips_through_the_journal_and_hf_answers_have_none():
    timed = RollingResult(-3.0, 5, 1, latency=RequestLatency(0.25, None, 1, 2))
    plain = RollingResult(-3.0, 5, 1)
    answers = answers_of([timed, plain])
    assert answers[0]["latency"] == {"e2el_s": 0.25, "ttft_s": None, "calls": 1, "tries": 2}
    assert "latency" not in answers[1]  # in-process: no key rather than null
    requests = [RollingRequest("x"), RollingRequest("y")]
    assert results_from(json.loads(json.dumps(answers)), requests) == [timed, plain]  # --mode eval keeps it
    assert latency_summary([{"answers": answers[1:]}]) is None
    s = latency_summary([{"answers": answers}])
    assert s is not None and (s.requests, s.retried, s.mean_e2el_ms) == (1, 1, 250.0)
