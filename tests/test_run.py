"""End to end with the real model: the run directory, group results, failures that keep results."""

from __future__ import annotations

import json

import pytest

from lmgauge.cli import main

pytestmark = pytest.mark.slow


def _run_dir(work):
    (d,) = [p for p in work.iterdir() if p.is_dir()]
    return d


@pytest.fixture(scope="module")
def mmlu_run(tmp_path_factory, smollm2):
    work = tmp_path_factory.mktemp("work")
    code = main(
        [
            "run",
            "--hf-path",
            smollm2.source,
            "--hf-abbr",
            "smol",
            "--datasets",
            "mmlu_astronomy",
            "mmlu_marketing",
            "mmlu_high_school_us_history",
            "lambada_openai",
            "--limit",
            "4",
            "-w",
            str(work),
        ]
    )
    return code, _run_dir(work)


def test_run_directory_contract(mmlu_run):
    code, run = mmlu_run
    assert code == 0
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["versions"]["torch"] and manifest["versions"]["transformers"]
    assert manifest["tasks"]["smol"]["mmlu_astronomy"]["status"] == "done"
    assert len(manifest["tasks"]["smol"]["mmlu_astronomy"]["version"]) == 8
    lines = (run / "samples" / "smol" / "mmlu_astronomy.jsonl").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        s = json.loads(line)
        assert {"doc_id", "gold", "pred", "correct", "logprobs", "prompt"} <= set(s)
        assert len(s["logprobs"]) == 4 and s["pred"] == max(range(4), key=lambda i: s["logprobs"][i])
        assert s["correct"] == (s["pred"] == s["gold"])
        assert s["prompt"].startswith("The following are multiple choice questions (with answers) about astronomy.\n\n")
        assert s["prompt"].count("\nAnswer:") == 6  # 5 shots + the question
        assert all("latency" not in a for a in s["answers"])  # in-process: no request is timed
    res = json.loads((run / "results" / "smol" / "mmlu_astronomy.json").read_text())
    assert res["n"] == 4 and res["n_available"] == 152 and res["category"] == "stem"
    assert set(res["metrics"]["acc"]) == {"value", "stderr", "n"}
    assert "latency" not in res


def test_group_results_micro_macro_and_categories(mmlu_run):
    _, run = mmlu_run
    group = json.loads((run / "results" / "smol" / "mmlu.json").read_text())
    subjects = ["mmlu_astronomy", "mmlu_marketing", "mmlu_high_school_us_history"]
    assert sorted(group["members"]) == sorted(subjects)
    accs = []
    for s in subjects:
        samples = [json.loads(x) for x in (run / "samples" / "smol" / f"{s}.jsonl").read_text().splitlines()]
        accs.append([float(x["correct"]) for x in samples])
    micro = sum(map(sum, accs)) / 12
    macro = sum(sum(a) / 4 for a in accs) / 3
    assert group["metrics"]["acc"]["micro"]["value"] == pytest.approx(micro)
    assert group["metrics"]["acc"]["macro"]["value"] == pytest.approx(macro)
    assert set(group["categories"]) == {"stem", "other", "humanities"}
    assert group["categories"]["other"]["acc"]["micro"]["n"] == 4
    assert group["subjects"]["mmlu_marketing"]["acc"]["n"] == 4


def test_summary_tables(mmlu_run):
    _, run = mmlu_run
    txt = (run / "summary.txt").read_text()
    header = txt.splitlines()[0].split()
    assert header == ["dataset", "version", "metric", "mode", "smol"]
    csv_rows = (run / "summary.csv").read_text().splitlines()
    assert any(r.startswith("mmlu,") and "acc (micro)" in r for r in csv_rows)
    assert any(r.startswith("mmlu,") and "acc (macro)" in r for r in csv_rows)
    assert any(r.startswith("lambada_openai,") and ",perplexity," in r for r in csv_rows)
    assert (run / "summary.md").read_text().startswith("| dataset | version | metric | mode | smol |")


def test_a_failing_task_keeps_the_others(tmp_path, smollm2):
    code = main(
        [
            "run",
            "--hf-path",
            smollm2.source,
            "--hf-abbr",
            "smol",
            "--datasets",
            "mmlu_astronomy",
            "wikitext2",
            "piqa",
            "--limit",
            "2",
            "-w",
            str(tmp_path),
        ]
    )
    assert code == 1
    run = _run_dir(tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["tasks"]["smol"]["wikitext2"]["status"] == "failed"
    assert "no data found for wikitext2" in manifest["tasks"]["smol"]["wikitext2"]["error"]
    assert (run / "results" / "smol" / "mmlu_astronomy.json").is_file()
    assert (run / "results" / "smol" / "piqa.json").is_file()
    assert "failed" in (run / "summary.txt").read_text()


def test_samples_are_on_disk_before_a_crash(tmp_path, smollm2, monkeypatch):
    """A task that dies mid-way leaves every doc it finished in its samples file."""
    from lmgauge.tasks.base import ChoiceTask

    real_score = ChoiceTask.score
    calls = {"n": 0}

    def flaky(self, doc, doc_id, results):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return real_score(self, doc, doc_id, results)

    monkeypatch.setattr(ChoiceTask, "score", flaky)
    code = main(
        [
            "run",
            "--hf-path",
            smollm2.source,
            "--hf-abbr",
            "smol",
            "--datasets",
            "piqa",
            "--limit",
            "6",
            "--batch-size",
            "1",
            "-w",
            str(tmp_path),
        ]
    )
    run = _run_dir(tmp_path)
    assert code == 1
    manifest = json.loads((run / "run.json").read_text())
    assert "boom" in manifest["tasks"]["smol"]["piqa"]["error"]
    lines = (run / "samples" / "smol" / "piqa.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["doc_id"] in range(6) for x in lines)


def test_unanswered_requests_are_errors_not_wrong_answers(tmp_path, smollm2, monkeypatch):
    """A backend that could not answer some requests (a server that kept failing): those docs are
    kept as errors on their samples, left out of the accuracy, and counted in the summary."""
    from dataclasses import replace

    from lmgauge.models.hf import HFModel

    real = HFModel.loglikelihood

    def failing_some(self, requests, on_result=None):
        def forward(j, result):
            if j in (0, 1, 2, 3):  # all four choices of the first doc
                result = replace(result, error="HTTP 503 after 5 tries")
            on_result(j, result)

        return real(self, requests, forward)

    monkeypatch.setattr(HFModel, "loglikelihood", failing_some)
    code = main(
        [
            "run",
            "--hf-path",
            smollm2.source,
            "--hf-abbr",
            "smol",
            "--datasets",
            "mmlu_astronomy",
            "--limit",
            "3",
            "-w",
            str(tmp_path),
        ]
    )
    assert code == 0
    run = _run_dir(tmp_path)
    lines = [json.loads(x) for x in (run / "samples" / "smol" / "mmlu_astronomy.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    (bad,) = [s for s in lines if "error" in s]
    assert bad["doc_id"] == 0 and "503" in bad["error"] and "correct" not in bad and bad["prompt"]
    result = json.loads((run / "results" / "smol" / "mmlu_astronomy.json").read_text())
    assert result["n"] == 2 and result["n_errors"] == 1 and result["metrics"]["acc"]["n"] == 2
    assert "errors (docs)" in (run / "summary.txt").read_text()


def test_the_reader_reads_a_new_run_as_written(mmlu_run):
    """A format-2 run through the public reader: the same numbers and lines as the files."""
    from lmgauge.runs.reader import open_run
    from lmgauge.runs.records import FORMAT, GroupResult, LoglikelihoodAnswer, TaskResult

    _, root = mmlu_run
    run = open_run(root)
    assert run.format == FORMAT == 2 and run.manifest.status == "done"
    assert run.models() == ["smol"]
    tasks = ["mmlu_astronomy", "mmlu_marketing", "mmlu_high_school_us_history", "lambada_openai"]
    assert run.tasks("smol") == tasks
    for task in tasks:
        lines = [json.loads(x) for x in (root / "samples" / "smol" / f"{task}.jsonl").read_text().splitlines()]
        samples = list(run.samples("smol", task))
        assert [s.to_json() for s in samples] == lines
        assert all(isinstance(a, LoglikelihoodAnswer) for s in samples for a in s.answers)
        res = run.result("smol", task)
        raw = json.loads((root / "results" / "smol" / f"{task}.json").read_text())
        assert isinstance(res, TaskResult) and res.format == 2 and res.to_json() == raw
    group = run.results("smol")["mmlu"]
    assert isinstance(group, GroupResult) and group.format == 2 and sorted(group.members) == sorted(tasks[:3])
    assert all(m.status == "done" for m in (run.marker(s.id) for s in run.plan().shards) if m)
