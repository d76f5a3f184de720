"""Shards as jobs of a real Slurm: a one-node cluster started by scripts/slurm/start_cluster.sh
(Debian's slurm-wlm and munge, no accounting, fake GPUs). Where it cannot run (not root, packages
missing) the tests fail, or skip with LMGAUGE_TESTS_ALLOW_MISSING_TOOLS=1 (tests/system_tools.py);
scripts/ci/system_packages.sh installs the packages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import runs_helpers
from runs_helpers import assert_same_results, journal_lines, only_run, start, wait_for
from system_tools import missing_tool

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "slurm"


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        missing_tool("root, which the one-node test cluster needs")
    missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(c) is None]
    if missing:
        missing_tool(f"Slurm ({', '.join(missing)} not installed)")
    up = subprocess.run([str(SCRIPTS / "start_cluster.sh")], capture_output=True, text=True, timeout=120)
    if up.returncode == 2 and "is not ours" in up.stderr:  # a real cluster's config: never touched
        pytest.skip(up.stderr.strip())
    if up.returncode == 2:
        missing_tool(f"a Slurm cluster that starts here ({up.stderr.strip()})")
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    subprocess.run([str(SCRIPTS / "stop_cluster.sh")], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_llama_dir):
    return runs_helpers.reference_run(tmp_path_factory, tiny_llama_dir)


def _config(tmp_path: Path, model_dir: Path, num_gpus: int) -> Path:
    cfg = tmp_path / "cfg.yaml"
    model = {"path": str(model_dir), "abbr": "tiny", "batch_size": 1, "run_cfg": {"num_gpus": num_gpus}}
    cfg.write_text(json.dumps({"models": [model]}))  # JSON is YAML
    return cfg


def _our_jobs(manifest: dict) -> list[str]:
    return [j["job_id"] for s in manifest["shards"].values() for j in s.get("jobs", [])]


def test_slurm_jobs_with_gpus_a_timed_out_job_is_retried_and_results_equal_one_process(
    slurm_cluster, tmp_path, tiny_llama_dir, reference_run
):
    """Each shard is a job asking --gres=gpu:1 (Slurm sets CUDA_VISIBLE_DEVICES); the first job to
    answer hangs until Slurm kills it at its 1-minute limit; its shard is resubmitted and the
    results equal an unsharded run in one process."""
    args = [
        "run",
        str(_config(tmp_path, tiny_llama_dir, 1)),
        *runs_helpers.TASK_ARGS,
        "-w",
        str(tmp_path / "w"),
        "--slurm",
        "-p",
        "debug",
        "--max-num-workers",
        "2",
        "--slurm-time",
        "1",
    ]
    p = start(args, tmp_path, LMGAUGE_TEST_SLOW_APPEND="600", LMGAUGE_TEST_SLOW_ONCE=str(tmp_path / "slowed"))
    try:
        out, _ = p.communicate(timeout=400)
    finally:
        p.kill()
    assert p.returncode == 0, out
    rd = only_run(tmp_path / "w")
    assert_same_results(rd, reference_run)
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["executor"] == "slurm"
    states = {sid: [j["state"] for j in s["jobs"]] for sid, s in manifest["shards"].items()}
    assert sorted(states.values()) == [["COMPLETED"], ["TIMEOUT", "COMPLETED"]], states
    assert all(j["job_id"].isdigit() for s in manifest["shards"].values() for j in s["jobs"])
    for sid in manifest["shards"]:
        marker = json.loads((rd / "shards" / f"{sid}.json").read_text())
        assert marker["slurm_job_id"] and marker["devices"] in ("0", "1")  # --gres=gpu:1 honoured
    logs = sorted(p.name for p in (rd / "logs" / "slurm").iterdir())
    assert len(logs) == 3 and any(".attempt2." in n for n in logs)  # a log per shard and attempt


def test_ctrl_c_cancels_the_jobs_and_keeps_finished_answers(slurm_cluster, tmp_path, tiny_llama_dir):
    args = [
        "run",
        str(_config(tmp_path, tiny_llama_dir, 0)),
        *runs_helpers.TASK_ARGS,
        "-w",
        str(tmp_path / "w"),
        "--slurm",
        "--max-num-workers",
        "2",
    ]
    p = start(args, tmp_path, LMGAUGE_TEST_SLOW_APPEND="600")
    try:
        wait_for(
            lambda: (tmp_path / "w").is_dir() and any((d / "run.json").exists() for d in (tmp_path / "w").iterdir()),
            what="run dir",
        )
        rd = only_run(tmp_path / "w")
        wait_for(
            lambda: journal_lines(rd, "tiny", "piqa") or journal_lines(rd, "tiny", "mmlu_astronomy"), what="an answer"
        )
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, out
    manifest = json.loads((rd / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    ours = _our_jobs(manifest)
    assert ours and all(j["state"] == "CANCELLED" for s in manifest["shards"].values() for j in s["jobs"])

    def gone() -> bool:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        return not set(ours) & set(queue)

    wait_for(gone, timeout=60, what="cancelled jobs to leave the queue")
    assert len(journal_lines(rd, "tiny", "piqa")) + len(journal_lines(rd, "tiny", "mmlu_astronomy")) >= 1


def test_a_job_slurm_has_forgotten_is_read_from_the_completion_file(slurm_cluster, tmp_path):
    from lmgauge.runs.executors.slurm import job_completion_file, job_states

    assert job_completion_file() == Path(os.environ.get("LMGAUGE_SLURM_DIR", "/tmp/lmgauge-slurm")) / "jobcomp.txt"
    done = tmp_path / "jobcomp.txt"  # a line as jobcomp/filetxt writes it
    done.write_text(
        "JobId=987654 UserId=root(0) GroupId=root(0) Name=wrap JobState=TIMEOUT Partition=debug TimeLimit=1 "
        "StartTime=2026-12-01T22:38:12 EndTime=2026-12-01T22:39:40 NodeList=vm NodeCnt=1 ProcCnt=1\n"
    )
    assert job_states(["987654"], done) == {"987654": "TIMEOUT"}


def test_a_node_without_bwrap_refuses_code_tasks_before_its_model_loads(slurm_cluster, tmp_path, tiny_llama_dir):
    """Under --slurm the programs run on the nodes, so each job checks its own: here the jobs see
    no bwrap (LMGAUGE_BWRAP reaches them through sbatch's exported environment)."""
    cfg = tmp_path / "cfg.yaml"
    model = {"path": str(tiny_llama_dir), "abbr": "tiny", "run_cfg": {"num_gpus": 0}}
    cfg.write_text(json.dumps({"models": [model], "datasets": [{"name": "humaneval", "limit": 2, "max_out_len": 8}]}))
    args = ["run", str(cfg), "-w", str(tmp_path / "w"), "--slurm"]
    rc, out = runs_helpers.run(args, tmp_path, timeout=300, LMGAUGE_BWRAP="/nonexistent/bwrap")
    assert rc == 1, out
    rd = only_run(tmp_path / "w")
    task = json.loads((rd / "run.json").read_text())["tasks"]["tiny"]["humaneval"]
    assert task["status"] == "failed" and "SandboxUnavailable" in task["error"], task
    assert "apt-get install bubblewrap" in task["error"] and "--allow-weak-sandbox" in task["error"]
    assert journal_lines(rd, "tiny", "humaneval") == []  # nothing generated: refused before the model
