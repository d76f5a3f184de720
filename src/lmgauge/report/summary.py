"""summary.{txt,csv,md}: dataset | version | metric | mode | one column per model."""

from __future__ import annotations

import csv
import io
import json

from lmgauge.runs.rundir import RunDir

ROW_KEYS = ("dataset", "version", "metric", "mode")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 100:.2f}" if 0 <= value <= 1 else f"{value:.4f}"
    return str(value)


def summary_rows(rundir: RunDir) -> tuple[list[str], list[dict]]:
    """Models (column order) and rows; accuracies in percent as OpenCompass prints them."""
    models: list[str] = []
    rows: dict[tuple, dict] = {}
    member_of: dict[str, str] = {}  # task -> the group that reports it (lets the console fold families)
    manifest = json.loads(rundir.manifest.read_text()) if rundir.manifest.exists() else {}
    for model, task, res in rundir.iter_results():
        if model not in models:
            models.append(model)
        mode = "gen" if str(res.get("output_type", "")).startswith("generate") else "ppl"
        if res.get("is_group"):
            member_of.update({m: task for m in res.get("members", [])})
            for metric, agg in res["metrics"].items():
                for kind in ("micro", "macro"):
                    key = (task, res["version"], f"{metric} ({kind})", mode)
                    rows.setdefault(key, {})[model] = agg[kind]["value"]
            for cat, cat_metrics in res.get("categories", {}).items():
                for metric, agg in cat_metrics.items():
                    key = (f"{task}_{cat}", res["version"], f"{metric} (micro)", mode)
                    rows.setdefault(key, {})[model] = agg["micro"]["value"]
            continue
        for metric, agg in res["metrics"].items():
            key = (task, res["version"], metric, mode)
            rows.setdefault(key, {})[model] = agg["value"]
        if res.get("n_errors"):  # docs the model never answered: counted, never scored as wrong
            rows.setdefault((task, res["version"], "errors (docs)", mode), {})[model] = res["n_errors"]
        if res.get("sandbox", {}).get("weak"):  # programs that ran under the rlimit fallback, not bwrap
            rows.setdefault((task, res["version"], "weak sandbox (programs)", mode), {})[model] = res["sandbox"]["weak"]
    for model, tasks in manifest.get("tasks", {}).items():
        for task, info in tasks.items():
            if info.get("status") == "failed":
                rows.setdefault((task, "-", "failed", "-"), {})[model] = None
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0].split("_")[0], kv[0][0], kv[0][2]))
    return models, [
        dict(zip(ROW_KEYS, k), **{m: v.get(m) for m in models}, _member_of=member_of.get(k[0])) for k, v in ordered
    ]


def render_txt(models: list[str], rows: list[dict]) -> str:
    header = list(ROW_KEYS) + models
    table = [header] + [[str(r[k]) for k in ROW_KEYS] + [_fmt(r[m]) for m in models] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def render_md(models: list[str], rows: list[dict]) -> str:
    header = list(ROW_KEYS) + models
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join([str(r[k]) for k in ROW_KEYS] + [_fmt(r[m]) for m in models]) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_csv(models: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(list(ROW_KEYS) + models)
    for r in rows:
        w.writerow([r[k] for k in ROW_KEYS] + ["" if r[m] is None else r[m] for m in models])
    return buf.getvalue()


def write_summary(rundir: RunDir) -> tuple[list[str], list[dict]]:
    models, rows = summary_rows(rundir)
    rundir.summary("txt").write_text(render_txt(models, rows), encoding="utf-8")
    rundir.summary("md").write_text(render_md(models, rows), encoding="utf-8")
    rundir.summary("csv").write_text(render_csv(models, rows), encoding="utf-8")
    return models, rows
