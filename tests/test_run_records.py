"""The run directory's records and its public reader, on a format-1 directory written by the code
before records existed (tests/fixtures/rundir_v1/v1: a real run of SmolLM2-135M Q4_1, `--limit 2
--num-fewshot 0` on two MMLU subjects, arc_easy (failed: its test split is not shipped), gsm8k_cot
and lambada_openai)."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from lmgauge.requests import GenerateResult, LoglikelihoodResult, RollingResult
from lmgauge.runs.layout import RunLayout
from lmgauge.runs.reader import RunDirError, open_run
from lmgauge.runs.records import (
    FORMAT,
    GenerateAnswer,
    GroupResult,
    LoglikelihoodAnswer,
    RollingAnswer,
    RunManifest,
    SampleRecord,
    ShardMarker,
    TaskResult,
)

V1 = Path(__file__).parent / "fixtures" / "rundir_v1" / "v1"
TASKS = ["mmlu_abstract_algebra", "mmlu_anatomy", "arc_easy", "gsm8k_cot", "lambada_openai"]


def _raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_format_1_directory_opens():
    run = open_run(V1)
    assert run.format == 1 and run.root == V1
    assert run.manifest.status == "done (1 task(s) failed)" and run.manifest.executor == "inline"
    assert run.models() == ["smol"]
    assert run.tasks("smol") == TASKS  # plan order; the failed task is listed
    assert run.groups("smol") == ["mmlu"]
    assert run.manifest.tasks["smol"]["arc_easy"].status == "failed"
    assert "ARC-Easy" in (run.manifest.tasks["smol"]["arc_easy"].error or "")
    assert run.manifest.models["smol"].tokens is not None and run.manifest.models["smol"].tokens.forwarded > 0


def test_format_1_samples_are_typed_and_equal_to_the_files():
    run = open_run(V1)
    for task in ("mmlu_anatomy", "gsm8k_cot", "lambada_openai"):
        raw = _raw_lines(V1 / "samples" / "smol" / f"{task}.jsonl")
        got = list(run.samples("smol", task))
        assert [s.doc_id for s in got] == [r["doc_id"] for r in raw] == [0, 1]
        for s, r in zip(got, raw):
            assert s.to_json() == r  # nothing lost, nothing added
            assert s.metrics == r["metrics"] and s.gold == r["gold"] and s.correct == r["correct"]
    mmlu = list(run.samples("smol", "mmlu_anatomy"))
    assert all(isinstance(a, LoglikelihoodAnswer) for a in mmlu[0].answers) and len(mmlu[0].answers) == 4
    assert mmlu[0].continuations == [" A", " B", " C", " D"] and mmlu[0].prompt.endswith("Answer:")
    assert mmlu[0].logprobs == [a.logprob for a in mmlu[0].answers]
    gsm = list(run.samples("smol", "gsm8k_cot"))
    (answer,) = gsm[0].answers
    assert isinstance(answer, GenerateAnswer) and answer.text == gsm[0].extras["output"]
    assert set(gsm[0].extracted or {}) == {"strict-match", "flexible-extract"}
    assert list(run.samples("smol", "arc_easy")) == []


def test_format_1_results_tasks_and_groups():
    run = open_run(V1)
    res = run.result("smol", "mmlu_anatomy")
    assert isinstance(res, TaskResult) and res.format == 1
    raw = json.loads((V1 / "results" / "smol" / "mmlu_anatomy.json").read_text())
    assert res.metrics["acc"].value == raw["metrics"]["acc"]["value"] and res.metrics["acc"].n == 2
    assert res.group == "mmlu" and res.category == "stem" and res.n == 2 and res.limit == 2
    group = run.result("smol", "mmlu")
    assert isinstance(group, GroupResult) and group.members == ["mmlu_abstract_algebra", "mmlu_anatomy"]
    assert group.metrics["acc"].micro.n == 4 and group.metrics["acc"].macro.n == 2
    assert set(group.subjects) == set(group.members) and set(group.categories) == {"stem"}
    assert run.result("smol", "arc_easy") is None
    assert list(run.results("smol")) == ["mmlu_abstract_algebra", "mmlu_anatomy", "gsm8k_cot", "lambada_openai", "mmlu"]


def test_format_1_plan_and_markers():
    run = open_run(V1)
    plan = run.plan()
    assert plan is not None and plan.format == 1 and [s.task for s in plan.shards] == TASKS
    done = run.marker("smol__mmlu_anatomy__0-end")
    assert isinstance(done, ShardMarker) and done.status == "done" and done.n_available == 135
    failed = run.marker("smol__arc_easy__0-end")
    assert failed is not None and failed.status == "failed" and "ARC-Easy" in (failed.error or "")
    assert run.marker("no_such_shard") is None


def test_the_summary_of_a_format_1_directory_is_rebuilt_the_same(tmp_path, capsys):
    from lmgauge.cli import main

    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    assert main(["summary", str(copy)]) == 0
    for ext in ("txt", "csv", "md"):
        assert (copy / f"summary.{ext}").read_text() == (V1 / f"summary.{ext}").read_text()


def test_not_a_run_directory_is_named(tmp_path):
    with pytest.raises(RunDirError, match=f"{tmp_path}: not a run directory"):
        open_run(tmp_path)
    with pytest.raises(RunDirError, match="no such run directory"):
        open_run(tmp_path / "missing")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunDirError, match="run.json: not valid JSON"):
        open_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format": FORMAT + 1, "run_id": "x", "started": "t"}))
    with pytest.raises(RunDirError, match="newer lmgauge"):
        open_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format": 2, "started": "t"}))
    with pytest.raises(RunDirError, match="run.json: run_id: Field required"):
        open_run(tmp_path)


def test_a_bad_sample_line_names_the_file_and_doc(tmp_path):
    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    path = copy / "samples" / "smol" / "mmlu_anatomy.jsonl"
    lines = _raw_lines(path)
    lines[1]["metrics"] = "oops"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(RunDirError, match=r"mmlu_anatomy.jsonl: doc 1: metrics"):
        list(open_run(copy).samples("smol", "mmlu_anatomy"))


def test_answer_records_have_the_result_dataclass_fields():
    """An answer record cannot drift from the result a backend returns."""
    for record, result in (
        (LoglikelihoodAnswer, LoglikelihoodResult),
        (RollingAnswer, RollingResult),
        (GenerateAnswer, GenerateResult),
    ):
        assert set(record.model_fields) - {"kind"} == {f.name for f in fields(result)}


def test_records_round_trip_and_keep_unknown_keys(tmp_path):
    raw = json.loads((V1 / "run.json").read_text())
    raw["a_key_from_a_later_format"] = {"x": 1}
    m = RunManifest.model_validate(raw)
    assert m.to_json() == raw  # format 1 as read: nothing dropped
    again = RunManifest.model_validate(m.to_json())
    assert again == m
    fresh = RunManifest(run_id="r", started="t")
    assert fresh.to_json()["format"] == FORMAT == 2
    s = SampleRecord(doc_id=3, answers=[RollingAnswer(logprob=-1.5, n_tokens=4)], metrics={"logprob": -1.5})
    back = SampleRecord.model_validate(json.loads(json.dumps(s.to_json())))
    assert isinstance(back.answers[0], RollingAnswer) and back == s and back.is_answer


def test_layout_builds_the_paths_of_the_docs(tmp_path):
    lay = RunLayout(tmp_path)
    assert lay.samples("a/b", "mmlu_x") == tmp_path / "samples" / "a_b" / "mmlu_x.jsonl"
    assert lay.shard_journal("m", "t", 3, 40).name == "t.shard-000003-000040.jsonl"
    assert lay.marker("m__t__0-end") == tmp_path / "shards" / "m__t__0-end.json"
    assert lay.results("m", "mmlu") == tmp_path / "results" / "m" / "mmlu.json"


@pytest.mark.slow  # builds five tasks' data and re-scores (no model): about a minute on a loaded machine
def test_a_format_1_run_is_rescored_with_r_and_mode_eval(tmp_path):
    """Continuing an old run (`-r RUN --mode eval`: no model) reads its format-1 files, keeps its
    history and rewrites results in format 2 with the same numbers."""
    from lmgauge.cli import main

    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    assert main(["run", "-r", str(copy), "--mode", "eval", "--no-report"]) == 1  # arc_easy still has no data
    run, old = open_run(copy), open_run(V1)
    assert run.format == 2 and run.manifest.resumed and run.manifest.started == old.manifest.started
    for task in ("mmlu_abstract_algebra", "mmlu_anatomy", "gsm8k_cot", "lambada_openai", "mmlu"):
        new_res, old_res = run.result("smol", task), old.result("smol", task)
        assert new_res is not None and old_res is not None and new_res.format == 2
        assert new_res.metrics == old_res.metrics
    assert [s.metrics for s in run.samples("smol", "gsm8k_cot")] == [
        s.metrics for s in old.samples("smol", "gsm8k_cot")
    ]
