"""HumanEval through `lmgauge run` (a real model, real data, real workers): without bubblewrap the
run refuses before any model work and says what to do; with the explicit opt-in the programs run
under the weaker fallback, and every sample, the results and the console say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmgauge.scoring.sandbox import isolation_available
from runs_helpers import only_run, run
from system_tools import missing_tool

pytestmark = pytest.mark.slow

HIDDEN = {"LMGAUGE_BWRAP": "/nonexistent/bwrap"}  # a bwrap that is not there, for this run only


def _config(tmp_path: Path, model_dir: Path, **top: object) -> Path:
    cfg = {
        "models": [{"path": str(model_dir), "abbr": "tiny", "device": "cpu", "dtype": "float32"}],
        # few new tokens: the tiny random model writes nonsense, and the programs fail, but they run
        "datasets": [{"name": "humaneval", "limit": 3, "max_out_len": 12}],
        **top,
    }
    path = tmp_path / "humaneval.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _samples(run_dir: Path) -> list[dict]:
    lines = (run_dir / "samples" / "tiny" / "humaneval.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_without_bwrap_humaneval_refuses_before_any_model_work(tmp_path: Path, tiny_llama_dir: Path) -> None:
    work = tmp_path / "outputs"
    for env in (HIDDEN, {"PATH": str(tmp_path)}):  # a missing configured bwrap; PATH without bwrap
        rc, out = run(["run", str(_config(tmp_path, tiny_llama_dir)), "-w", str(work)], tmp_path, 300, **env)
        assert rc == 2, out
        assert "humaneval run model-written programs" in out, out
        assert "apt-get install bubblewrap" in out and "--allow-weak-sandbox" in out, out
        assert "allow_weak_sandbox: true" in out, out
        assert not work.exists()  # no run directory: nothing was planned, loaded or generated


def test_with_the_opt_in_programs_run_under_the_fallback_and_every_sample_says_so(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    work = tmp_path / "outputs"
    # the config key, and two pool workers: the workers read it from the plan and score there
    cfg = _config(tmp_path, tiny_llama_dir, allow_weak_sandbox=True)
    args = ["run", str(cfg), "-w", str(work), "--max-num-workers", "2", "--max-partition-size", "900"]
    rc, out = run(args, tmp_path, 600, **HIDDEN)
    assert rc == 0, out
    assert "programs will run under the weaker rlimit fallback" in out, out
    run_dir = only_run(work)
    samples = _samples(run_dir)
    assert len(samples) == 3
    for s in samples:
        assert s["isolation"]["tool"] == "rlimit", s["isolation"]
        assert "LMGAUGE_BWRAP" in s["isolation"]["reason"]
        assert [e["isolation"] for e in s["executions"]] == ["rlimit"]
    results = json.loads((run_dir / "results" / "tiny" / "humaneval.json").read_text())
    assert results["sandbox"] == {"programs": 3, "isolation": {"rlimit": 3}, "weak": 3}
    summary = (run_dir / "summary.txt").read_text()
    assert "weak sandbox (programs)" in summary, summary
    assert "3 of 3 programs ran under the weaker rlimit fallback" in out, out

    # the same answers re-scored where bwrap works: every program now under bwrap, no warning row
    if isolation_available(mode="allow-weak")["tool"] != "bwrap":
        missing_tool("bwrap cannot start here")
    rc, out = run(["run", "-r", str(run_dir), "--mode", "eval", "-w", str(work)], tmp_path, timeout=300)
    assert rc == 0, out
    assert "humaneval: 3 programs run under bwrap" in out, out
    assert all(e["isolation"].startswith("bwrap") for s in _samples(run_dir) for e in s["executions"])
    results = json.loads((run_dir / "results" / "tiny" / "humaneval.json").read_text())
    assert results["sandbox"]["weak"] == 0 and results["sandbox"]["programs"] == 3
    assert "weak sandbox" not in (run_dir / "summary.txt").read_text()


def test_the_flag_opts_in_too(tmp_path: Path, tiny_llama_dir: Path) -> None:
    work = tmp_path / "outputs"
    rc, out = run(
        ["run", str(_config(tmp_path, tiny_llama_dir)), "-w", str(work), "--allow-weak-sandbox"],
        tmp_path,
        timeout=300,
        **HIDDEN,
    )
    assert rc == 0, out
    assert all(e["isolation"] == "rlimit" for s in _samples(only_run(work)) for e in s["executions"])
