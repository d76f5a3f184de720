"""Export a run in OpenCompass' work-dir layout (0.5.x).

    DIR/summary/summary_<time>.txt          time, then the table in tabulate, csv, markdown and raw formats
    DIR/summary/summary_<time>.csv          dataset,version,metric,mode,<model>... (commas in cells -> spaces)
    DIR/summary/summary_<time>.md           the markdown table
    DIR/predictions/<model>/<dataset>.json  {"0": {...}, "1": {...}}: keys are positions 0..n-1, which is how
                                            OpenICLEvalTask._load_predictions reads them back

`<time>` is `%Y%m%d_%H%M%S`, as DefaultSummarizer writes it. Values are percentages with two decimals
(`'{:.02f}'`). Accuracy is named `accuracy` (OpenCompass' AccEvaluator name), other metrics keep their
lmgauge names; a group has `naive_average` (mean of subjects: our macro) and `weighted_average`
(mean over questions: our micro), its categories are `<group>-<category>` rows. A log-likelihood
prediction record is PPLInferencer's (`origin_prompt`, `label: <L>` with `testing input`, `prompt`,
`PPL` = the negated log-likelihood, `prediction`, `gold`); a generation record is GenInferencer's
(`origin_prompt`, `prediction`, `gold`). The `mode` column says ppl or gen.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from lmgauge.opencompass.summary import render, write_files
from lmgauge.opencompass.workdir import OpenCompassWorkDir, write_json
from lmgauge.report.export_common import letter
from lmgauge.report.load import LoadedRun

OC_NAMES = {"acc": "accuracy"}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v * 100:.02f}" if 0 <= v <= 1 else f"{v:.02f}"


def summary_table(run: LoadedRun) -> list[list[str]]:
    models = run.models()
    rows: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for model in models:
        for task in run.tasks(model):
            res = run.result(model, task)
            if res is None:
                rows.setdefault((task, "-", "-", "-"), {})[model] = "-"
                continue
            mode = "gen" if str(res.get("output_type", "")).startswith("generate") else "ppl"
            for name, m in (res.get("metrics") or {}).items():
                key = (task, str(res.get("version") or "-"), OC_NAMES.get(name, name), mode)
                rows.setdefault(key, {})[model] = _fmt(m.get("value"))
        for group, g in run.groups(model).items():
            for name, m in (g.get("metrics") or {}).items():
                suffix = "" if name == "acc" else f" {name}"
                for kind, label in (("macro", "naive_average"), ("micro", "weighted_average")):
                    key = (group, "-", label + suffix, "ppl")
                    rows.setdefault(key, {})[model] = _fmt((m.get(kind) or {}).get("value"))
            for cat, cm in (g.get("categories") or {}).items():
                for name, m in cm.items():
                    suffix = "" if name == "acc" else f" {name}"
                    for kind, label in (("macro", "naive_average"), ("micro", "weighted_average")):
                        key = (f"{group}-{cat}", "-", label + suffix, "ppl")
                        rows.setdefault(key, {})[model] = _fmt((m.get(kind) or {}).get("value"))
    table = [["dataset", "version", "metric", "mode", *models]]
    for key, per_model in rows.items():
        table.append([*key, *(per_model.get(m, "-") for m in models)])
    return table


def _raw(run: LoadedRun) -> str:
    lines = []
    for model in run.models():
        lines.append("-------------------------------")
        lines.append(f"Model: {model}")
        for task in run.tasks(model):
            res = run.result(model, task) or {}
            values = {
                OC_NAMES.get(k, k): (v.get("value") or 0) * (100 if 0 <= (v.get("value") or 0) <= 1 else 1)
                for k, v in (res.get("metrics") or {}).items()
            }
            lines.append(f"{task}: {values if values else '{}'}")
    return "\n".join(lines)


def _prediction_record(sample: dict[str, Any]) -> dict[str, Any]:
    conts = sample.get("continuations")
    gold = letter(sample.get("gold"), conts)
    if "logprobs" in sample:
        rec: dict[str, Any] = {"origin_prompt": sample.get("prompt") or (sample.get("prompts") or [""])[0]}
        contexts = sample.get("prompts") or [sample.get("prompt", "")] * len(sample["logprobs"])
        for i, (lp, ctx) in enumerate(zip(sample["logprobs"], contexts)):
            label = letter(i, conts)
            rec[f"label: {label}"] = {"testing input": ctx, "prompt": ctx + (conts[i] if conts else ""), "PPL": -lp}
        rec["prediction"] = letter(sample.get("pred"), conts)
        rec["gold"] = gold
        return rec
    rec = {"origin_prompt": sample.get("prompt", ""), "prediction": sample.get("output", sample.get("pred"))}
    if sample.get("gold") is not None:
        rec["gold"] = gold
    return rec


def export_opencompass(run: LoadedRun, out: Path, time_str: str | None = None) -> list[Path]:
    time_str = time_str or datetime.now().strftime("%Y%m%d_%H%M%S")
    table = summary_table(run)
    out_dir = OpenCompassWorkDir(out)
    written = write_files(render(table, _raw(run), time_str), out_dir.summaries(time_str))
    for model in run.models():
        for task in run.tasks(model):
            samples = run.answered(model, task)
            if samples:
                records = {str(i): _prediction_record(s) for i, s in enumerate(samples)}
                written.append(write_json(out_dir.predictions(model, task), records))
    return written
