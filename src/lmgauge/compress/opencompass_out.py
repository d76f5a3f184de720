"""What the `opencompass:` block of a compression config writes, besides lmgauge's own results.

- In the run directory: OpenCompass' summary (summary/summary_<time>.{txt,csv,md}, its
  DefaultSummarizer, opencompass/summary.py) with one column per position (`<abbr>@<position>`).
- With `output_path`: OpenCompass' work-dir layout under output_path/<time>/, which is where a llmc
  user looks (llmc hands output_path to OpenCompass as its work dir, `-w`): the same summary files,
  results/<model>/<dataset>.json (the evaluator's dict, `{"accuracy": 60.0}`) and
  predictions/<model>/<dataset>.json (PPLInferencer's / GenInferencer's records, keyed "0".."n-1"),
  <model> being the position's folder name (`<abbr>_<position>`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmgauge.compress.config import CompressConfig
from lmgauge.opencompass.summary import render, run_summarizer, write_files
from lmgauge.opencompass.workdir import OpenCompassWorkDir, write_json
from lmgauge.runs.rundir import RunDir


def prediction_record(sample: dict[str, Any]) -> dict[str, Any]:
    """OpenCompass' prediction record of one lmgauge OpenCompass sample."""
    if "ppl" in sample:  # PPLInferencer: one entry per label, its prompt and PPL
        prompts = sample.get("label_prompts") or {}
        rec: dict[str, Any] = {"origin_prompt": next(iter(prompts.values()), "")}
        for label, ppl in sample["ppl"].items():
            rec[f"label: {label}"] = {"prompt": prompts.get(label, ""), "PPL": ppl}
        rec.update(prediction=sample.get("pred"), gold=sample.get("gold"))
        return rec
    return {
        "origin_prompt": sample.get("rendered_prompt", ""),
        "prediction": sample.get("output"),
        "gold": sample.get("gold"),
    }


def write_opencompass_outputs(rundir: RunDir, cc: CompressConfig, positions: list[str], time_str: str) -> list[Path]:
    """The summary with a column per position in the run directory, and output_path/<time>/ when set."""
    if cc.opencompass is None or not cc.oc_datasets:
        return []
    models = [cc.position_name(p) for p in positions]
    summarizer = run_summarizer(rundir, models)
    if summarizer is None:
        return []
    table, raw_txt = summarizer.summarize()
    texts = render(table, raw_txt, time_str)
    written = write_files(texts, {e: rundir.oc_summary(time_str, e) for e in ("txt", "csv", "md")})
    if not cc.opencompass.output_path:
        return written
    from lmgauge.report.load import load_run

    out = OpenCompassWorkDir(Path(cc.opencompass.output_path).expanduser() / time_str)
    written += write_files(texts, out.summaries(time_str))
    run = load_run(rundir.root)
    for model in models:
        for d in cc.oc_datasets:
            abbr = d["name"]
            result = summarizer.results.get(model, {}).get(abbr)
            if result is None:
                continue
            records = {str(i): prediction_record(s) for i, s in enumerate(run.answered(model, abbr))}
            written += [write_json(out.results(model, abbr), result), write_json(out.predictions(model, abbr), records)]
    return written
