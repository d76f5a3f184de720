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

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from lmgauge.report.export_common import letter
from lmgauge.report.load import LoadedRun
from lmgauge.runs.rundir import safe_name

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


def _tabulate(table: list[list[str]]) -> str:
    """tabulate's default ('simple') layout with the first row as headers; numbers right-aligned."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]

    def is_num(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    numeric = [all(is_num(r[i]) or r[i] == "-" for r in table[1:]) and len(table) > 1 for i in range(len(widths))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(table[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in table[1:]])


def _md(table: list[list[str]]) -> str:
    out = "| " + " | ".join(table[0]) + " |\n"
    out += "|" + " | ".join("-----" for _ in table[0]) + "|\n"
    for r in table[1:]:
        out += "| " + " | ".join(r) + " |\n"
    return out


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
    written = []
    table = summary_table(run)
    summary = out / "summary"
    summary.mkdir(parents=True, exist_ok=True)
    md = _md(table)
    bar = "^" * 128
    end = "$" * 128
    divider = "-" * 128 + " THIS IS A DIVIDER " + "-" * 128
    text = (
        f"{time_str}\ntabulate format\n{bar}\n{_tabulate(table)}\n{end}\n\n{divider}\n\n"
        f"csv format\n{bar}\n" + "\n".join(",".join(r) for r in table) + f"\n{end}\n\n"
        f"markdown format\n{bar}\n{md}\n{end}\n{divider}\n\nraw format\n{bar}\n{_raw(run)}\n{end}\n"
    )
    paths = {ext: summary / f"summary_{time_str}.{ext}" for ext in ("txt", "csv", "md")}
    paths["txt"].write_text(text, encoding="utf-8")
    csv_rows = [[c.replace(",", " ") for c in r] for r in table]
    paths["csv"].write_text("\n".join(",".join(r) for r in csv_rows) + "\n", encoding="utf-8")
    paths["md"].write_text(md, encoding="utf-8")
    written += list(paths.values())
    for model in run.models():
        folder = out / "predictions" / safe_name(model)
        for task in run.tasks(model):
            samples = run.answered(model, task)
            if not samples:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            records = {str(i): _prediction_record(s) for i, s in enumerate(samples)}
            path = folder / f"{task}.json"
            path.write_text(json.dumps(records, indent=4, ensure_ascii=False), encoding="utf-8")
            written.append(path)
    return written
