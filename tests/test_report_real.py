"""The comparison on real runs: SmolLM2-135M on two MMLU subjects, 5-shot against 0-shot.

Flips and intervals are recomputed here from the two runs' samples files alone (json, no lmgauge
reader) and must equal what `lmgauge compare` reports; the runs' prompt versions differ, so the
comparison must say so with the config key that differs.
"""

from __future__ import annotations

import json
import shutil

import pytest

from lmgauge.cli import main
from lmgauge.report.compare import compare_runs
from lmgauge.report.load import load_run
from lmgauge.scoring.paired import FlipTable, compare_binary, newcombe_paired_interval

pytestmark = pytest.mark.slow

TASKS = ["mmlu_astronomy", "mmlu_marketing"]
LIMIT = 8


def correct_by_doc(run_dir, task):
    lines = (run_dir / "samples" / "smol" / f"{task}.jsonl").read_text().splitlines()
    return {r["doc_id"]: r["correct"] for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def fewshot_runs(tmp_path_factory, smollm2):
    """Two real runs of SmolLM2 on two MMLU subjects: 5-shot and 0-shot (each writes its report.html)."""
    work = tmp_path_factory.mktemp("work")
    base = [
        "run",
        "--hf-path",
        smollm2.source,
        "--hf-abbr",
        "smol",
        "--datasets",
        *TASKS,
        "--limit",
        str(LIMIT),
        "-w",
        str(work),
    ]
    assert main([*base, "--run-id", "shot5", "--num-fewshot", "5"]) == 0
    assert main([*base, "--run-id", "shot0", "--num-fewshot", "0"]) == 0
    return work


def test_fewshot_5_against_0_on_smollm2(fewshot_runs, capsys):
    work = fewshot_runs
    assert (work / "shot5" / "report.html").is_file() and (work / "shot0" / "report.html").is_file()

    cmp = compare_runs(load_run(work / "shot5"), load_run(work / "shot0"))
    assert "prompt versions differ" in cmp.warnings[0] and "num_fewshot: 5 -> 0" in cmp.warnings[0]
    rows = {(r.level, r.name): r for r in cmp.rows if r.metric.startswith("acc")}
    pooled_a, pooled_b = [], []
    expected_flips = set()
    for task in TASKS:
        a, b = correct_by_doc(work / "shot5", task), correct_by_doc(work / "shot0", task)
        assert sorted(a) == sorted(b) == list(range(LIMIT))
        xa, xb = [a[d] for d in sorted(a)], [b[d] for d in sorted(a)]
        pooled_a += xa
        pooled_b += xb
        expected_flips |= {(task, d, "right_to_wrong" if a[d] else "wrong_to_right") for d in a if a[d] != b[d]}
        ref = compare_binary(xa, xb)
        got = rows[("subject", task)].stats
        assert got.flips == ref.flips
        assert (got.delta, got.low, got.high, got.p_value, got.p_exact) == pytest.approx(
            (ref.delta, ref.low, ref.high, ref.p_value, ref.p_exact)
        )
    assert {(f.task, f.doc_id, f.direction) for f in cmp.flipped} == expected_flips
    directions = [f.direction for f in cmp.flipped]
    assert directions == sorted(directions, key=lambda d: d != "right_to_wrong")  # right->wrong first
    group = rows[("group", "mmlu")].stats
    ref = compare_binary(pooled_a, pooled_b)
    assert group.flips == ref.flips and (group.low, group.high) == pytest.approx((ref.low, ref.high))

    capsys.readouterr()  # the runs' own console output
    assert main(["compare", str(work / "shot5"), str(work / "shot0"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["flipped"]) == len(expected_flips)


def test_one_known_answer_changed_on_smollm2(fewshot_runs, tmp_path):
    """The 5-shot run, and a copy whose journal has one doc's answer changed (the gold choice made the
    most likely) and is re-scored with `--mode eval`: exactly that doc flips, wrong -> right."""
    work = tmp_path / "work"
    shutil.copytree(fewshot_runs / "shot5", work / "a")
    shutil.copytree(fewshot_runs / "shot5", work / "b")
    journal = work / "b" / "samples" / "smol" / "mmlu_astronomy.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    doc = next(s for s in lines if not s["correct"])
    top = max(a["logprob"] for a in doc["answers"])
    doc["answers"][doc["gold"]]["logprob"] = top + 1.0
    journal.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["run", "-r", str(work / "b"), "--mode", "eval", "-w", str(work)]) == 0

    cmp = compare_runs(load_run(work / "a"), load_run(work / "b"))
    assert cmp.warnings == []
    assert [(f.task, f.doc_id, f.direction) for f in cmp.flipped] == [
        ("mmlu_astronomy", doc["doc_id"], "wrong_to_right")
    ]
    (row,) = [r for r in cmp.rows if r.name == "mmlu_astronomy" and r.metric == "acc"]
    right = sum(s["correct"] for s in lines)
    table = FlipTable(both_right=right, right_to_wrong=0, wrong_to_right=1, both_wrong=LIMIT - right - 1)
    assert row.stats.flips == table
    assert (row.stats.p_exact, row.stats.p_value) == (1.0, 0.5)
    assert (row.stats.low, row.stats.high) == pytest.approx(newcombe_paired_interval(table))
    assert row.stats.delta == pytest.approx(1 / LIMIT) and row.stats.verdict == "within noise"
    flip = cmp.flipped[0]
    assert flip.margins_b[doc["gold"]] == pytest.approx(1.0) and flip.margins_a[doc["gold"]] < 0
