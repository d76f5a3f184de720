"""Runs that scale and survive: shards, a worker pool, the journal, resume, re-scoring.

The model is the tiny random Llama built in conftest (real transformers, loads in a blink) on real
PIQA and MMLU data, so the mechanics are tested with real parts in seconds; each run is a child
process so it can be killed like a real one.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

import runs_helpers
from lmgauge.cli import main
from lmgauge.runs.executors import lanes
from lmgauge.runs.journal import JournalWriter, read_lines
from lmgauge.runs.plan import Shard, split_by_cost
from runs_helpers import assert_same_results, journal_lines, only_run, run, start, wait_for

pytestmark = pytest.mark.slow

TASKS = runs_helpers.TASK_ARGS


def _args(model_dir, work, *extra: str) -> list[str]:
    return [
        "run",
        "--hf-path",
        str(model_dir),
        "--hf-abbr",
        "tiny",
        *TASKS,
        "-w",
        str(work),
        "--batch-size",
        "1",
        *extra,
    ]


# --- planning -------------------------------------------------------------------------------------


def test_split_by_cost_is_contiguous_and_bounded():
    costs = [5, 5, 5, 20, 1, 1, 1, 9]
    ranges = split_by_cost(costs, 10)
    assert ranges == [(0, 2), (2, 3), (3, 4), (4, 7), (7, 8)]  # a doc over the limit stands alone
    assert [i for a, b in ranges for i in range(a, b)] == list(range(len(costs)))
    assert split_by_cost(costs, 1000) == [(0, 8)]


def test_lanes_balance_by_estimated_cost():
    shards = [Shard("m", "t", i, i + 1, False, est_tokens=c) for i, c in enumerate([10, 1, 1, 8, 1, 1])]
    dealt = lanes(shards, 2)
    loads = sorted(sum(s.est_tokens for s in lane) for lane in dealt)
    assert loads == [11, 11]
    assert all([s.start for s in lane] == sorted(s.start for s in lane) for lane in dealt)
    assert len(lanes(shards[:1], 4)) == 1


def test_dry_run_prints_shards_with_estimated_cost(tmp_path, tiny_llama_dir, capsys):
    assert (
        main(
            _args(tiny_llama_dir, tmp_path / "w", "--max-partition-size", "400", "--max-num-workers", "2", "--dry-run")
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "executor pool, 2 worker(s), max partition 400 tokens" in out
    rows = [x.split() for x in out.splitlines() if x.strip().startswith("tiny__")]
    assert len(rows) >= 3 and all(int(r[2].replace(",", "")) > 0 for r in rows)
    assert sum(int(r[1]) for r in rows) == 12  # 6 docs of each task, no doc lost or doubled
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


# --- the journal ------------------------------------------------------------------------------------


def test_torn_line_is_ignored_then_cut_before_appending(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"doc_id": 0, "answers": []}\n{"doc_id": 1, "answers": [{"logp')
    records, good_end = read_lines(path)
    assert [r["doc_id"] for r, _ in records] == [0] and good_end == len('{"doc_id": 0, "answers": []}\n')
    with JournalWriter(path) as w:
        w.append({"doc_id": 1, "answers": []})
    assert path.read_text() == '{"doc_id": 0, "answers": []}\n{"doc_id": 1, "answers": []}\n'


# --- sharded runs equal an unsharded one ----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_llama_dir):
    """The same tasks, one process, no shards: what every other way of running must reproduce."""
    return runs_helpers.reference_run(tmp_path_factory, tiny_llama_dir)


def test_pool_of_two_workers_one_killed_mid_shard_equals_one_process(tmp_path, tiny_llama_dir, reference_run):
    """Shards in two worker processes; one worker is SIGKILLed after its first answer: its unfinished
    shards go to a new worker, and the merged results equal the unsharded run in one process."""
    args = _args(tiny_llama_dir, tmp_path, "--max-partition-size", "400", "--max-num-workers", "2")
    p = start(args, tmp_path, LMGAUGE_TEST_SLOW_APPEND="0.5", LMGAUGE_TEST_SLOW_ONCE=str(tmp_path / "slowed"))
    try:
        slowed = tmp_path / "slowed"
        wait_for(lambda: slowed.exists() and slowed.read_text(), what="a slowed worker's first answer")
        os.kill(int(slowed.read_text()), signal.SIGKILL)
        out, _ = p.communicate(timeout=600)
    finally:
        p.kill()
    assert p.returncode == 0, out
    assert "retry 1 of 2" in out
    rd = only_run(tmp_path)
    assert_same_results(rd, reference_run)
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["executor"] == "pool" and len(manifest["shards"]) >= 3
    jobs = [j for s in manifest["shards"].values() for j in s["jobs"]]
    assert len({j["pid"] for j in jobs}) == 3  # two workers, then the retry
    assert any(j["state"] == "FAILED (exit -9)" for j in jobs)
    assert not list((rd / "samples" / "tiny").glob("*.shard-*.jsonl"))  # merged: one file per task
    lines = (rd / "samples" / "tiny" / "mmlu_astronomy.jsonl").read_text().splitlines()
    assert [json.loads(x)["doc_id"] for x in lines] == list(range(6))


def test_run_killed_then_resumed_keeps_written_lines_and_redoes_a_torn_one(
    tmp_path, tiny_llama_dir, reference_run, capsys
):
    p = start(_args(tiny_llama_dir, tmp_path), tmp_path, LMGAUGE_TEST_SLOW_APPEND="0.5")
    try:
        wait_for(lambda: any((d / "run.json").exists() for d in tmp_path.iterdir() if d.is_dir()), what="run dir")
        rd = only_run(tmp_path)
        wait_for(lambda: len(journal_lines(rd, "tiny", "piqa")) >= 3, what="answers")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        p.kill()
    journal = rd / "samples" / "tiny" / "piqa.jsonl"
    kept = journal.read_text().splitlines()
    with journal.open("a") as f:  # what a crash in the middle of a write leaves
        f.write(kept[-1][: len(kept[-1]) // 2])
    assert main(["run", "-r", "-w", str(tmp_path)]) == 0  # -r alone: the latest run, its own config
    assert "cut short by a crash" in capsys.readouterr().err
    assert_same_results(rd, reference_run)
    final = journal.read_text().splitlines()
    assert all(line in final for line in kept)  # finished lines stay byte for byte
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["tasks"]["tiny"]["piqa"]["reused"] == len(kept) and manifest["resumed"]


def test_resume_retries_only_error_answers(tmp_path, tiny_llama_dir, reference_run, capsys):
    """A doc the backend could not answer is asked again; everything else is kept, and a finished
    task's model is not even loaded."""
    import shutil

    rd = tmp_path / "copy"
    shutil.copytree(reference_run, rd)
    journal = rd / "samples" / "tiny" / "piqa.jsonl"
    lines = journal.read_text().splitlines()
    lines[2] = json.dumps(
        {"doc_id": json.loads(lines[2])["doc_id"], "error": "HTTP 503 after 5 tries", "failed_requests": 2}
    )
    journal.write_text("\n".join(lines) + "\n")
    assert main(["run", "-r", str(rd), "-w", str(tmp_path)]) == 0
    assert "1 of 2 shard(s) already complete" in capsys.readouterr().err
    assert_same_results(rd, reference_run)
    tasks = json.loads((rd / "run.json").read_text())["tasks"]["tiny"]
    assert tasks["piqa"]["computed"] == 1 and tasks["piqa"]["reused"] == 5
    assert tasks["mmlu_astronomy"]["reused"] == 6


def test_changed_prompt_is_recomputed_and_the_log_says_why(tmp_path, tiny_llama_dir, reference_run, capsys):
    import shutil

    rd = tmp_path / "copy"
    shutil.copytree(reference_run, rd)
    args = _args(tiny_llama_dir, tmp_path, "-r", str(rd))
    args[args.index("--num-fewshot") + 1] = "0"
    assert main(args) == 0
    out = capsys.readouterr().err
    assert "recomputed from scratch, the prompt or model config changed (task_version" in out
    assert list((rd / "samples" / "tiny" / ".stale").rglob("mmlu_astronomy.jsonl"))
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["tasks"]["tiny"]["mmlu_astronomy"]["computed"] == 6
    assert json.loads(journal_lines(rd, "tiny", "mmlu_astronomy")[0])["prompt"].count("Answer:") == 1  # 0-shot now


def test_infer_then_eval_rescores_saved_answers_without_the_model(tmp_path, tiny_llama_dir, reference_run):
    """Answers only (in shards, inline), then scores from the journal with the model moved away."""
    assert main(_args(tiny_llama_dir, tmp_path, "--mode", "infer", "--max-partition-size", "400")) == 0
    rd = only_run(tmp_path)
    assert not list((rd / "results").rglob("*.json"))
    line = json.loads(journal_lines(rd, "tiny", "piqa")[0])
    assert "answers" in line and "metrics" not in line
    hidden = tmp_path / "model-moved-away"
    tiny_llama_dir.rename(hidden)  # eval must not need the model
    try:
        assert main(["run", "-r", "--mode", "eval", "-w", str(tmp_path)]) == 0
    finally:
        hidden.rename(tiny_llama_dir)
    assert_same_results(rd, reference_run)


def test_unwritable_work_dir_is_refused_before_work_starts(tmp_path, tiny_llama_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(_args(tiny_llama_dir, blocker / "work")) == 2
    assert "is not writable" in capsys.readouterr().err


def test_disk_full_is_refused_before_work_starts(tmp_path, tiny_llama_dir, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    assert main(_args(tiny_llama_dir, tmp_path / "w")[:-2]) == 2
    assert not (tmp_path / "w").exists()


def test_interrupt_stops_workers_and_keeps_answers(tmp_path, tiny_llama_dir):
    # 5 s after each answer: the run cannot finish between the first answer and the interrupt, even
    # when a loaded machine delays this process's polling by seconds (1 s once let it finish first)
    p = start(_args(tiny_llama_dir, tmp_path, "--max-num-workers", "2"), tmp_path, LMGAUGE_TEST_SLOW_APPEND="5")
    try:
        wait_for(lambda: any((d / "run.json").exists() for d in tmp_path.iterdir() if d.is_dir()), what="run dir")
        rd = only_run(tmp_path)
        wait_for(lambda: len(journal_lines(rd, "tiny", "piqa")) >= 1, what="answers")
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, out
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert any(j["state"] == "CANCELLED" for s in manifest["shards"].values() for j in s["jobs"])
    assert len(journal_lines(rd, "tiny", "piqa")) >= 1
    for s in manifest["shards"].values():  # every worker is gone
        for j in s["jobs"]:
            with pytest.raises(ProcessLookupError):
                os.kill(j["pid"], 0)


def test_workers_hold_their_devices_and_wait_for_free_ones(tmp_path, tiny_llama_dir):
    """Two devices, a model that wants both per worker, two workers asked for: the second worker
    waits until the first gives the devices back, and each is handed them in CUDA_VISIBLE_DEVICES.
    (No GPU here: the ids are only handed out, the tiny model runs on CPU.)"""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"models": [{"path": str(tiny_llama_dir), "abbr": "tiny", "run_cfg": {"num_gpus": 2}}]}))
    code, out = run(
        [
            "run",
            str(cfg),
            "--datasets",
            "piqa",
            "--limit",
            "4",
            "-w",
            str(tmp_path / "w"),
            "--max-num-workers",
            "2",
            "--max-partition-size",
            "60",
        ],
        tmp_path,
        CUDA_VISIBLE_DEVICES="0,1",
    )
    assert code == 0, out
    rd = only_run(tmp_path / "w")
    manifest = json.loads((rd / "run.json").read_text())
    jobs = {j["pid"]: j for s in manifest["shards"].values() for j in s["jobs"]}
    assert len(jobs) == 2 and all(j["devices"] == ["0", "1"] for j in jobs.values())
    markers = [json.loads(f.read_text()) for f in (rd / "shards").glob("*.json")]
    assert len(markers) >= 2 and {m["devices"] for m in markers} == {"0,1"}
    first, second = sorted(jobs.values(), key=lambda j: j["started"])
    assert second["started"] >= first["ended"]  # it waited for the devices
