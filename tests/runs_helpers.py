"""Helpers for the run tests: lmgauge in a child process (so it can be killed), and a comparable
snapshot of a run directory's results and samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HOOKS = str(Path(__file__).parent / "fault_hooks")


def lmgauge_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update({"LMGAUGE_NO_HUB": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HOOKS, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lmgauge", *args],
        cwd=cwd,
        env=lmgauge_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> tuple[int, str]:
    p = start(args, cwd, **env)
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def journal_lines(run_dir: Path, model: str, task: str) -> list[str]:
    """Complete lines of every journal file of a task."""
    out = []
    for f in sorted((run_dir / "samples" / model).glob(f"{task}*.jsonl")):
        text = f.read_text(encoding="utf-8")
        out += text.split("\n")[:-1]
    return out


def only_run(work: Path) -> Path:
    (d,) = [p for p in work.iterdir() if (p / "run.json").is_file()]
    return d


def snapshot(run_dir: Path) -> dict:
    """What must not depend on how a run was executed: metrics, counts, and every sample line."""
    out = {}
    for f in sorted((run_dir / "results").rglob("*.json")):
        r = json.loads(f.read_text())
        out[f"results/{f.parent.name}/{f.name}"] = {
            k: r.get(k) for k in ("version", "n", "n_errors", "metrics", "subjects", "categories")
        }
    for f in sorted((run_dir / "samples").rglob("*.jsonl")):
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        out[f"samples/{f.parent.name}/{f.name}"] = sorted(rows, key=lambda r: r["doc_id"])
    return out


def differences(a, b, path: str = "", rel: float = 1e-6) -> list[str]:
    """Where two snapshots differ: exactly for everything but floats, which may differ by float
    noise (a worker with one CPU thread sums in another order than one with two)."""
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= rel * max(1.0, abs(a), abs(b)) else [f"{path}: {a} != {b}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}", rel)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rel)]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def assert_same_results(run_a: Path, run_b: Path) -> None:
    diffs = differences(snapshot(run_a), snapshot(run_b))
    assert not diffs, "\n".join(diffs[:20])


TASK_ARGS = ["--datasets", "piqa", "mmlu_astronomy", "--limit", "6", "--num-fewshot", "1"]
_REFERENCE: dict[str, Path] = {}


def reference_run(tmp_path_factory, model_dir: Path) -> Path:
    """TASK_ARGS on the model in one process, no shards: what every other way of running must
    reproduce. Made once per session (in this process: no start-up cost), shared by the test modules."""
    if "run" not in _REFERENCE:
        from lmgauge.cli import main

        work = tmp_path_factory.mktemp("reference")
        assert (
            main(
                [
                    "run",
                    "--hf-path",
                    str(model_dir),
                    "--hf-abbr",
                    "tiny",
                    *TASK_ARGS,
                    "-w",
                    str(work),
                    "--batch-size",
                    "1",
                ]
            )
            == 0
        )
        _REFERENCE["run"] = only_run(work)
    return _REFERENCE["run"]
