"""The comparison on real runs: SmolLM2-135M on two MMLU subjects, 5-shot against 0-shot.

Flips and intervals are recomputed here from the two runs' samples files alone (json, no lmgauge
reader) and must equal what `lmgauge compare` reports; the runs' prompt versions differ, so the
comparison must say so with the config key that differs.
"""

from __future__ import annotations

import json

import pytest

from lmgauge.cli import main
from lmgauge.report.compare import compare_runs
from lmgauge.report.load import load_run
from lmgauge.scoring.paired import compare_binary

pytestmark = pytest.mark.slow

TASKS = ["mmlu_astronomy", "mmlu_marketing"]


def correct_by_doc(run_dir, task):
    lines = (run_dir / "samples" / "smol" / f"{task}.jsonl").read_text().splitlines()
    return {r["doc_id"]: r["correct"] for r in map(json.loads, lines)}


def test_fewshot_5_against_0_on_smollm2(tmp_path, smollm2, capsys):
    work = tmp_path / "work"
    base = [
        "run",
        "--hf-path",
        smollm2.source,
        "--hf-abbr",
        "smol",
        "--datasets",
        *TASKS,
        "--limit",
        "10",
        "-w",
        str(work),
    ]
    assert main([*base, "--run-id", "shot5", "--num-fewshot", "5"]) == 0
    assert main([*base, "--run-id", "shot0", "--num-fewshot", "0"]) == 0
    assert (work / "shot5" / "report.html").is_file() and (work / "shot0" / "report.html").is_file()

    cmp = compare_runs(load_run(work / "shot5"), load_run(work / "shot0"))
    assert "prompt versions differ" in cmp.warnings[0] and "num_fewshot: 5 -> 0" in cmp.warnings[0]
    rows = {(r.level, r.name): r for r in cmp.rows if r.metric.startswith("acc")}
    pooled_a, pooled_b = [], []
    expected_flips = set()
    for task in TASKS:
        a, b = correct_by_doc(work / "shot5", task), correct_by_doc(work / "shot0", task)
        assert sorted(a) == sorted(b) == list(range(10))
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
