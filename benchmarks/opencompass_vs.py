"""lmgauge against OpenCompass 0.5.4 on the same unchanged OpenCompass config, back to back.

    python benchmarks/opencompass_vs.py [--subjects 5] [--questions 20] [--batch-size 8] [--lmgauge-only]

Workload (issue 13): OpenCompass' stock MMLU 5-shot PPL config (`mmlu_ppl_ac766d`, imported through
read_base, cut with test_range) on the first N test questions of a few subjects, SmolLM2-135M fp32
(the folder lmgauge dequantizes from the packaged GGUF), CPU. OpenCompass runs in its own venv
(benchmarks/reference/opencompass_reference.py says how to make it; the same transformers-5 patch is
applied) with `--debug` (one process, tasks in turn: OpenCompass' fastest local mode on one machine);
lmgauge runs `lmgauge run CONFIG` on the same file and data. Each side is a child process, model load
included; wall time and peak RSS come from its own rusage (os.wait4). Prints both, their ratio
(target: lmgauge <= 1/10 of OpenCompass), and whether every per-question prediction agrees, with the
largest PPL difference; and lmgauge's own record of the run (run.json): the tokens it forwarded
against the per-request baseline (every label's whole text forwarded alone, as OpenCompass does),
and its model load against its scoring. `--lmgauge-only` runs lmgauge's side alone (no comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reference"))
sys.path.insert(0, str(HERE.parent / "tests"))

from opencompass_reference import REF_VENV, patch_transformers5, smollm2_fp32  # noqa: E402

SUBJECTS = ["high_school_geography", "marketing", "astronomy", "college_biology", "abstract_algebra"]
MODEL_ABBR = "smollm2-135m-fp32"

CONFIG = """from mmengine.config import read_base
from opencompass.models import HuggingFaceBaseModel

with read_base():
    from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets

datasets = [
    dict(d, reader_cfg=dict(d["reader_cfg"], test_range="[0:{questions}]"))
    for d in mmlu_datasets
    if d["name"] in {subjects!r}
]

models = [
    dict(
        type=HuggingFaceBaseModel,
        abbr={abbr!r},
        path={model!r},
        model_kwargs=dict(torch_dtype="torch.float32"),
        max_seq_len=2048,
        max_out_len=16,
        batch_size={batch_size},
        run_cfg=dict(num_gpus=0),
    )
]
"""


def run_child(cmd: list[str], log: Path, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; a failure stops the benchmark."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} exited {os.waitstatus_to_exitcode(status)}; see {log}")
    return wall, usage.ru_maxrss / 1024


def opencompass_rows(out: Path) -> dict[str, dict[str, dict]]:
    """dataset abbr -> OpenCompass' prediction records ("0".."n-1") of its latest run under out."""
    stamped = sorted(p for p in out.iterdir() if p.is_dir() and re.fullmatch(r"\d{8}_\d{6}", p.name))
    if not stamped:
        sys.exit(f"OpenCompass wrote no run folder under {out}")
    pred_dir = stamped[-1] / "predictions" / MODEL_ABBR
    return {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in sorted(pred_dir.glob("*.json"))}


def lmgauge_rows(run: Path, dataset: str) -> list[dict]:
    f = run / "samples" / MODEL_ABBR / f"{dataset}.jsonl"
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: r["doc_id"])


def print_lmgauge_record(run: Path) -> None:
    """lmgauge's tokens and time split, from its run.json."""
    manifest = json.loads((run / "run.json").read_text(encoding="utf-8"))
    info = manifest.get("models", {}).get(MODEL_ABBR, {})
    tok = info.get("tokens") or {}
    base = tok.get("per_request_baseline") or 0
    print(
        f"lmgauge tokens: forwarded {tok.get('forwarded')}, computed {tok.get('computed')}, scored "
        f"{tok.get('scored')}; per-request baseline {base}"
        + (f" ({base / tok['forwarded']:.1f}x the forwarded)" if base and tok.get("forwarded") else "")
    )
    load, total = info.get("load_s"), info.get("eval_s")  # eval_s: the shards' wall time plus the load
    scoring = f"{total - load:.1f}" if load is not None and total is not None else "?"
    print(
        f"lmgauge time: model load {load} s, shards (scoring, journaling) {scoring} s; the rest of the wall is startup"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=5, help=f"how many of {SUBJECTS}")
    ap.add_argument("--questions", type=int, default=20, help="test questions per subject")
    ap.add_argument("--batch-size", type=int, default=8, help="the model config's batch_size (both tools read it)")
    ap.add_argument("--venv", type=Path, default=REF_VENV, help="OpenCompass 0.5.4's venv")
    ap.add_argument("--out", type=Path, help="work folder (default: a new temporary one)")
    ap.add_argument("--lmgauge-only", action="store_true", help="run lmgauge's side alone, no OpenCompass")
    args = ap.parse_args()
    opencompass = args.venv / "bin" / "opencompass"
    if not args.lmgauge_only and not opencompass.is_file():
        sys.exit(f"{opencompass} not found: make OpenCompass' venv (benchmarks/reference/opencompass_reference.py)")

    from opencompass_data import write_mmlu  # tests/opencompass_data.py: OpenCompass' MMLU CSV layout

    subjects = SUBJECTS[: args.subjects]
    work = args.out or Path(tempfile.mkdtemp(prefix="oc-vs-"))
    work.mkdir(parents=True, exist_ok=True)
    write_mmlu(work / "data", subjects)
    cfg = work / "eval_bench_mmlu_ppl.py"
    text = CONFIG.format(
        questions=args.questions, subjects=subjects, abbr=MODEL_ABBR, model=smollm2_fp32(), batch_size=args.batch_size
    )
    cfg.write_text(text, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LMGAUGE_NO_HUB": "1"}
    oc_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    oc_cmd = [str(opencompass), str(cfg), "--debug", "-w", str(work / "oc")]
    ours_cmd = [sys.executable, "-m", "lmgauge", "run", str(cfg), "--data-dir", str(work / "data")]
    ours_cmd += ["-w", str(work / "lmgauge"), "--run-id", "bench"]
    print(
        f"workload: mmlu_ppl_ac766d, {len(subjects)} subjects x {args.questions} questions, batch_size {args.batch_size}"
    )
    print(f"load before: {os.getloadavg()}")
    if args.lmgauge_only:
        ours_wall, ours_rss = run_child(ours_cmd, work / "lmgauge.log", work, env)
        print(f"load after: {os.getloadavg()}")
        print(f"lmgauge:           {ours_wall:8.1f} s   peak RSS {ours_rss:7.0f} MB")
        print_lmgauge_record(work / "lmgauge" / "bench")
        print(f"work folder: {work}")
        return 0
    patch_transformers5(args.venv)
    oc_wall, oc_rss = run_child(oc_cmd, work / "opencompass.log", work, oc_env)
    ours_wall, ours_rss = run_child(ours_cmd, work / "lmgauge.log", work, env)
    print(f"load after: {os.getloadavg()}")

    theirs = opencompass_rows(work / "oc")
    same = compared = 0
    worst = 0.0
    for dataset, records in theirs.items():
        ours = lmgauge_rows(work / "lmgauge" / "bench", dataset)
        if len(ours) != len(records):
            sys.exit(f"{dataset}: OpenCompass answered {len(records)} questions, lmgauge {len(ours)}")
        for i, s in enumerate(ours):
            r = records[str(i)]
            compared += 1
            same += s["pred"] == r["prediction"]
            for key, v in r.items():
                if key.startswith("label: "):
                    worst = max(worst, abs(s["ppl"][key[len("label: ") :]] - v["PPL"]))
    print(f"OpenCompass 0.5.4: {oc_wall:8.1f} s   peak RSS {oc_rss:7.0f} MB")
    print(f"lmgauge:           {ours_wall:8.1f} s   peak RSS {ours_rss:7.0f} MB")
    print(f"wall ratio lmgauge / OpenCompass: {ours_wall / oc_wall:.3f} (target <= 0.100)")
    print(f"predictions identical: {same}/{compared}; max |PPL difference| {worst:.2e}")
    print_lmgauge_record(work / "lmgauge" / "bench")
    print(f"work folder: {work}")
    return 0 if same == compared and compared > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
