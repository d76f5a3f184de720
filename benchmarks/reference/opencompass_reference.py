"""Remake tests/fixtures/opencompass/*.json from OpenCompass 0.5.4's own prediction files.

Runs the OpenCompass eval config `tests/fixtures/opencompass/eval_reference.py` (stock dataset
configs for MMLU ppl/gen, GSM8K gen and C-Eval gen/ppl, imported through read_base, cut with
test_range) through OpenCompass itself, on SmolLM2-135M-Instruct dequantized to fp32 (the folder
lmgauge makes from the GGUF), and keeps, per question, what OpenCompass wrote: the prompt, each
label's PPL, the generation, the prediction and the gold.

    # once: OpenCompass in its own venv (never in lmgauge's)
    python3 -m venv ~/.cache/lmgauge-ref/opencompass-0.5.4
    ~/.cache/lmgauge-ref/opencompass-0.5.4/bin/pip install -c constraints.txt torch==2.13.0
    ~/.cache/lmgauge-ref/opencompass-0.5.4/bin/pip install -c constraints.txt opencompass==0.5.4 'pyarrow==21.*' 'numpy<2'
    # then, from the repository root with lmgauge's venv active (it writes the data files):
    python benchmarks/reference/opencompass_reference.py

The script patches the one incompatibility of OpenCompass 0.5.4 with transformers 5
(`tokenizer.batch_encode_plus`, removed, becomes `tokenizer(...)`), writes the data in
OpenCompass' layout under the run folder (MMLU CSVs and GSM8K JSONL from lmgauge's packaged
copies, C-Eval from tests/fixtures/opencompass/ceval_rows.json), and runs
`opencompass eval_reference.py --debug -w <run>/outputs` there.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "opencompass"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

REF_VENV = Path.home() / ".cache" / "lmgauge-ref" / "opencompass-0.5.4"
RUN_DIR = Path.home() / ".cache" / "lmgauge-ref" / "opencompass-run"


def patch_transformers5(venv: Path) -> None:
    """transformers 5 removed batch_encode_plus; OpenCompass' HF wrappers call it."""
    for f in glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "opencompass" / "models" / "huggingface*.py")):
        text = Path(f).read_text(encoding="utf-8")
        new = text.replace("self.tokenizer.batch_encode_plus(", "self.tokenizer(")
        if new != text:
            Path(f).write_text(new, encoding="utf-8")
            print(f"patched {f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=REF_VENV)
    ap.add_argument("--run-dir", type=Path, default=RUN_DIR)
    ap.add_argument("--model", help="fp32 SmolLM2 folder (default: lmgauge's dequantized GGUF)")
    ap.add_argument("--skip-run", action="store_true", help="only re-extract fixtures from existing runs")
    ap.add_argument("--config", default="eval_reference.py", help="which config of tests/fixtures/opencompass to run")
    args = ap.parse_args()

    from opencompass_data import write_choice_data, write_reference_data  # tests/opencompass_data.py

    model = args.model or smollm2_fp32()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    write_reference_data(args.run_dir / "data")
    write_choice_data(args.run_dir / "data", n=9)  # opencompass_prompts.py: ARC_c_few_shot_ppl shots 0-8
    cfg = args.run_dir / args.config
    text = (FIXTURES / args.config).read_text(encoding="utf-8")
    cfg.write_text(with_model(text, model), encoding="utf-8")
    out = args.run_dir / "outputs"
    if not args.skip_run:
        patch_transformers5(args.venv)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)
        cmd = [str(args.venv / "bin" / "opencompass"), str(cfg), "--debug", "-w", str(out / cfg.stem)]
        print("$", " ".join(cmd), f"(cwd {args.run_dir})")
        t0 = time.time()
        subprocess.run(cmd, cwd=args.run_dir, env=env, check=True)
        print(f"OpenCompass took {time.time() - t0:.0f} s")
    extract(out)
    return 0


def with_model(config_text: str, model: str) -> str:
    """The reference config with its placeholder model path replaced (the one line runs change)."""
    return config_text.replace('"SmolLM2-135M-Instruct"', repr(model))


def smollm2_fp32() -> str:
    """The fp32 folder lmgauge dequantizes the packaged GGUF into (made now if missing)."""
    from lmgauge.defaults import default_model_path
    from lmgauge.models.hf_loading import dequantized_gguf_folder, split_model_path

    folder, gguf = split_model_path(default_model_path())
    return str(dequantized_gguf_folder(folder, gguf or "", "float32"))


def extract(out: Path) -> None:
    """Each config's latest OpenCompass run: predictions/<model>/<dataset>.json -> compact rows,
    keyed by config and dataset (a dataset OpenCompass has not finished is left out)."""
    target = FIXTURES / "reference_predictions.json"
    # configs whose OpenCompass outputs are not on this machine keep their fixture rows
    old = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else {}
    predictions: dict[str, dict] = old.get("predictions", {})
    results: dict[str, dict] = old.get("results", {})
    for cfg_out in sorted(p for p in out.iterdir() if p.is_dir()):
        stamped = sorted(p for p in cfg_out.iterdir() if p.is_dir() and re.fullmatch(r"\d{8}_\d{6}", p.name))
        if not stamped:
            continue
        run = stamped[-1]
        predictions[cfg_out.name], results[cfg_out.name] = {}, {}
        for f in sorted((run / "predictions").glob("*/*.json")):
            predictions.setdefault(cfg_out.name, {})[f.stem] = {
                k: _row(v) for k, v in json.loads(f.read_text()).items()
            }
        for f in sorted((run / "results").glob("*/*.json")):
            results.setdefault(cfg_out.name, {})[f.stem] = _result(json.loads(f.read_text(encoding="utf-8")))
    doc = {"opencompass": "0.5.4", "predictions": predictions, "results": results}
    target.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n = sum(len(rows) for per_cfg in predictions.values() for rows in per_cfg.values())
    print(f"wrote {target} ({n} questions)")


def _row(v: dict) -> dict:
    row = {"gold": v.get("gold"), "prediction": v.get("prediction")}
    if "origin_prompt" in v:
        row["prompt"] = v["origin_prompt"]
    labels = {lk[len("label: ") :]: lv for lk, lv in v.items() if lk.startswith("label: ")}
    if labels:
        row["ppl"] = {lab: lv["PPL"] for lab, lv in labels.items()}
        row["label_prompts"] = {lab: lv["prompt"] for lab, lv in labels.items()}
    return row


def _result(r: dict) -> dict:
    entry = {k: v for k, v in r.items() if k != "details"}
    details = r.get("details")
    if isinstance(details, dict):  # AccwithDetailsEvaluator: {"0": {"pred", "refr", ...}}
        # per-question entries are keyed "0".."n-1"; other keys ("type": the details' kind) are not questions
        details = [details[k] for k in sorted((k for k in details if k.isdigit()), key=int)]
    if isinstance(details, list):  # the evaluator's extracted answer and reference per question
        keep = ("pred", "answer", "refr", "correct", "is_correct")
        entry["details"] = [{k: d.get(k) for k in keep if k in d} for d in details]
    return entry


if __name__ == "__main__":
    raise SystemExit(main())
