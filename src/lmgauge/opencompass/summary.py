"""OpenCompass' summary of a run: summary/summary_<time>.{txt,csv,md}, as OpenCompass 0.5.4's
DefaultSummarizer (opencompass/summarizers/default.py) writes them, step for step.

- Results: per model (column order: the config's) and dataset (the config's order), the dict
  OpenCompass' evaluator returns (`{'accuracy': 60.0}`; `score` for EMEvaluator), computed from the
  counts lmgauge stored with OpenCompass' own arithmetic (AccEvaluator `k / n * 100`, Gsm8kEvaluator
  `100 * k / n`; MBPPEvaluator's pass/timeout/failed/wrong_answer counts and `score`), so the raw
  section prints the same numbers. A dataset without results (failed, not
  run) is absent, as a missing results file is to OpenCompass.
- Groups (`summary_groups`), in order, each on the results so far (a group may use earlier groups):
  a group none of whose subsets has results is left out; one with some missing gets
  `{'error': 'missing metrics: [...]'}` in the raw section and '-' in the table. Its metrics are the
  metrics all subsets share plus `naive_average` (or `weighted_average` with `weights`,
  `standard_deviation` with `std`, `sum`, `harmonic_mean`, or the group's `metric`), computed over
  each subset's first metric. OpenCompass lists the shared metrics in set order (Python's string
  hash, so random between its runs when there are several); here they are in the first subset's order.
- Table: `dataset, version, metric, mode, <model>...`; version = the first six characters of
  OpenCompass' prompt hash (datasets only, '-' for groups), mode ppl/gen (a group: its subsets' mode,
  `mixed` when they differ), values '{:.02f}', '-' where missing. Rows follow `dataset_abbrs` when the
  summarizer gives it (a name that is neither a dataset nor a group: a row of '-'), else every dataset
  then every group metric.
- txt: the time, the table as tabulate prints it (the same library, with wcwidth for wide
  characters as in OpenCompass' environment), then as csv, markdown and the raw results per model.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmgauge.opencompass.task import short
from lmgauge.opencompass.version import version
from lmgauge.runs.layout import RunLayout

METRIC_WHITELIST = [
    "score",
    "auc_score",
    "accuracy",
    "humaneval_pass@1",
    "rouge1",
    "avg_toxicity_score",
    "bleurt_diff",
    "matthews_correlation",
    "truth",
    "f1",
    "exact_match",
    "extract_rate",
]
METRIC_BLACKLIST = ["bp", "sys_len", "ref_len", "type"]


def evaluator_score(evaluator: str, correct: int, n: int, metric: str = "") -> float:
    """The number OpenCompass' evaluator reports for `correct` of `n`, with its arithmetic."""
    if evaluator == "MBPPEvaluator" and metric != "score":
        return correct  # its pass / timeout / failed / wrong_answer are counts
    if evaluator in ("Gsm8kEvaluator", "LambadaEvaluator"):  # 100 * k / n (Lambada's 100.0 * k / n: the same float)
        return 100 * correct / n
    return correct / n * 100  # AccEvaluator (sklearn's mean, x100), AccwithDetailsEvaluator, EMEvaluator


@dataclass
class OCDataset:
    abbr: str
    version: str  # get_prompt_hash(cfg)[:6]
    inferencer: str  # the inferencer's type name


def eval_mode(inferencer: str) -> str:
    if "GenInferencer" in inferencer:
        return "gen"
    if "PPLInferencer" in inferencer or "PPLOnlyInferencer" in inferencer:
        return "ppl"
    if "LLInferencer" in inferencer:
        return "ll"
    return "unknown"


class DefaultSummarizer:
    """OpenCompass' DefaultSummarizer on results already in hand (no files read here)."""

    def __init__(
        self,
        models: Sequence[str],
        datasets: Sequence[OCDataset],
        results: dict[str, dict[str, dict]],
        dataset_abbrs: list | None = None,
        summary_groups: list[dict] | None = None,
    ) -> None:
        self.model_abbrs = list(dict.fromkeys(models))
        self.datasets = list(datasets)
        self.results = results  # {model: {dataset abbr: the evaluator's result dict}}
        self.dataset_abbrs = dataset_abbrs
        self.summary_groups = summary_groups or []

    def _pick_up_results(self):
        raw: dict[str, dict[str, Any]] = {}
        parsed: dict[str, dict[str, dict[str, float]]] = {}
        metrics: dict[str, list[str]] = {}
        for model in self.model_abbrs:
            parsed.setdefault(model, {})
            raw.setdefault(model, {})
            for d in self.datasets:
                result = self.results.get(model, {}).get(d.abbr)
                if result is None:
                    continue
                result = {k: v for k, v in result.items() if k != "details"}
                raw[model][d.abbr] = result
                if "error" in result:
                    continue
                rst = {m: s for m, s in result.items() if m not in METRIC_BLACKLIST and isinstance(s, (int, float))}
                if not rst:
                    continue
                dm = sorted(
                    rst, key=lambda i: METRIC_WHITELIST.index(i) if i in METRIC_WHITELIST else len(METRIC_WHITELIST)
                )
                metrics.setdefault(d.abbr, dm)
                parsed[model][d.abbr] = rst
        modes = {d.abbr: eval_mode(d.inferencer) for d in self.datasets}
        return raw, parsed, metrics, modes

    def _calculate_group_metrics(self, raw, parsed, dataset_metrics, dataset_eval_mode):
        for sg in self.summary_groups:
            subsets = sg["subsets"]
            for model in self.model_abbrs:
                available: list[Any] = []
                missing: list[Any] = []
                for i in subsets:
                    if isinstance(i, (list, tuple)):
                        ok = i[0] in parsed[model] and i[1] in parsed[model][i[0]]
                    else:
                        ok = i in parsed[model]
                    (available if ok else missing).append(i)
                if not available:
                    continue
                if missing:
                    raw[model][sg["name"]] = {"error": f"missing metrics: {missing}"}
                    continue
                if "metric" in sg:
                    default_metric = sg["metric"]
                elif sg.get("std", False):
                    default_metric = "standard_deviation"
                elif sg.get("sum", False):
                    default_metric = "sum"
                elif sg.get("weights", []):
                    default_metric = "weighted_average"
                elif sg.get("harmonic_mean", False):
                    default_metric = "harmonic_mean"
                else:
                    default_metric = "naive_average"

                scores: dict[str, dict[str, float]] = {}
                eval_modes: list[str] = []
                if all(isinstance(a, (list, tuple)) for a in subsets):
                    group_metrics = [default_metric]
                    for abbr, metric in subsets:
                        scores.setdefault(default_metric, {})[abbr + "@" + metric] = parsed[model][abbr][metric]
                        eval_modes.append(dataset_eval_mode.get(abbr, "unknown"))
                else:
                    shared = functools.reduce(lambda a, b: a & b, [set(dataset_metrics[a]) for a in subsets])
                    # OpenCompass: list(set) (hash order); here the first subset's order
                    group_metrics = [m for m in dict.fromkeys(dataset_metrics[subsets[0]]) if m in shared]
                    group_metrics.append(default_metric)
                    for metric in group_metrics:
                        for abbr in subsets:
                            if metric == default_metric:
                                first = dataset_metrics[abbr][0]
                                scores.setdefault(default_metric, {})[abbr + "@" + first] = parsed[model][abbr][first]
                                eval_modes.append(dataset_eval_mode.get(abbr, "unknown"))
                            else:
                                scores.setdefault(metric, {})[abbr + "@" + metric] = parsed[model][abbr][metric]
                                eval_modes.append(dataset_eval_mode.get(subsets[0], "unknown"))

                transforms = sg.get("transforms", {})
                if transforms:
                    for metric in scores:
                        for key in list(scores[metric]):
                            name = key.split("@")[0]
                            if name in transforms:
                                scores[metric][key] = eval(  # noqa: S307 - the config's own expression, as OpenCompass evaluates it
                                    transforms[name], {"math": math}, {"x": scores[metric][key]}
                                )

                result: dict[str, float] = {}
                mode = "unknown"
                values: dict[str, Any] = dict(scores)
                for metric in scores:
                    vals = scores[metric]
                    if default_metric == "standard_deviation":
                        avg = sum(vals.values()) / len(vals)
                        variance = sum((vals[k] - avg) ** 2 for k in vals) / len(vals)
                        values[metric] = result[metric] = math.sqrt(variance)
                    elif default_metric == "harmonic_mean":
                        if any(vals[k] <= 0 for k in vals):
                            denominator = sum(1 / max(vals[k], 1) for k in vals)
                        else:
                            denominator = sum(1 / vals[k] for k in vals)
                        values[metric] = result[metric] = len(vals) / denominator
                    else:
                        weights = sg.get("weights", [])
                        if weights:
                            try:
                                numerator = sum(vals[k] * weights[k] for k in weights if weights[k] != 0)
                            except KeyError:
                                by_name = {k.split("@")[0]: v for k, v in vals.items()}
                                numerator = sum(by_name[k] * weights[k] for k in weights if weights[k] != 0)
                            denominator = sum(weights.values())
                        else:
                            numerator = sum(vals.values())
                            denominator = len(vals)
                        values[metric] = result[metric] = (
                            numerator if default_metric == "sum" else numerator / denominator
                        )
                    modes = list(set(eval_modes))
                    mode = modes[0] if len(modes) == 1 else "mixed"

                raw[model].setdefault(sg["name"], {}).update(values)
                parsed[model].setdefault(sg["name"], {}).update(result)
                dataset_metrics.setdefault(sg["name"], []).extend(group_metrics)
                dataset_eval_mode[sg["name"]] = mode
        return raw, parsed, dataset_metrics, dataset_eval_mode

    def _format_table(self, parsed, dataset_metrics, dataset_eval_mode) -> list[list[str]]:
        versions = {d.abbr: d.version for d in self.datasets}
        rows: list[tuple[str, str | None]] = []
        if self.dataset_abbrs is None:
            for d in self.datasets:
                if d.abbr in dataset_metrics:
                    rows += [(d.abbr, m) for m in dataset_metrics[d.abbr]]
                else:
                    rows.append((d.abbr, None))
            for abbr in dataset_metrics:
                for m in dataset_metrics[abbr]:
                    if (abbr, m) not in rows:
                        rows.append((abbr, m))
        else:
            for item in self.dataset_abbrs:
                rows.append((item, None) if isinstance(item, str) else (item[0], item[1]))

        table = [["dataset", "version", "metric", "mode", *self.model_abbrs]]
        dash = ["-"] * len(self.model_abbrs)
        for abbr, metric in rows:
            if abbr not in dataset_metrics or (metric is not None and metric not in dataset_metrics[abbr]):
                table.append([abbr, "-", "-", "-", *dash])
                continue
            metric = metric or dataset_metrics[abbr][0]
            row = [abbr, versions.get(abbr, "-"), metric, dataset_eval_mode.get(abbr, "-")]
            for model in self.model_abbrs:
                got = parsed[model].get(abbr, {})
                row.append(f"{got[metric]:.02f}" if metric in got else "-")
            table.append(row)
        return table

    def _format_raw_txt(self, raw) -> str:
        names: list[str] = []
        for model in self.model_abbrs:
            names += [n for n in raw[model] if n not in names]
        lines = []
        for model in self.model_abbrs:
            lines.append("-------------------------------")
            lines.append(f"Model: {model}")
            for name in names:
                lines.append(f"{name}: {raw[model].get(name, '{}')}")
        return "\n".join(lines)

    def summarize(self) -> tuple[list[list[str]], str]:
        """The table (header first) and the raw section."""
        raw, parsed, metrics, modes = self._pick_up_results()
        raw, parsed, metrics, modes = self._calculate_group_metrics(raw, parsed, metrics, modes)
        return self._format_table(parsed, metrics, modes), self._format_raw_txt(raw)


def md_table(table: list[list[str]]) -> str:
    out = "| " + " | ".join(table[0]) + " |\n"
    out += "|" + " | ".join("-----" for _ in table[0]) + "|\n"
    for row in table[1:]:
        out += "| " + " | ".join(row) + " |\n"
    return out


def tabulated(table: list[list[str]]) -> str:
    import tabulate

    return tabulate.tabulate(table, headers="firstrow", floatfmt=".2f")


def render(table: list[list[str]], raw_txt: str, time_str: str) -> dict[str, str]:
    """The three files' text: {'txt': ..., 'csv': ..., 'md': ...}."""
    bar, end = "^" * 128, "$" * 128
    divider = "-" * 128 + " THIS IS A DIVIDER " + "-" * 128
    md = md_table(table)
    txt = (
        f"{time_str}\ntabulate format\n{bar}\n{tabulated(table)}\n{end}\n\n{divider}\n\n"
        f"csv format\n{bar}\n" + "\n".join(",".join(r) for r in table) + f"\n{end}\n\n"
        f"markdown format\n{bar}\n{md}\n{end}\n{divider}\n\nraw format\n{bar}\n{raw_txt}\n{end}\n"
    )
    csv_rows = [[c.replace(",", " ") for c in r] for r in table]
    return {"txt": txt, "csv": "\n".join(",".join(r) for r in csv_rows) + "\n", "md": md}


def write_files(texts: dict[str, str], paths: dict[str, Path]) -> list[Path]:
    for ext, text in texts.items():
        paths[ext].parent.mkdir(parents=True, exist_ok=True)
        paths[ext].write_text(text, encoding="utf-8")
    return [paths[ext] for ext in texts]


def run_summarizer(rundir: RunLayout, models: Sequence[str] | None = None) -> DefaultSummarizer | None:
    """The summarizer of a run directory's OpenCompass datasets (None when it has none): its
    config from run.json, each dataset's result from results/<model>/<dataset>.json. `models`:
    the columns (default: run.json's models; a compression run's are its positions)."""
    from lmgauge.config import ModelConfig

    if not rundir.manifest.is_file():
        return None
    config = json.loads(rundir.manifest.read_text(encoding="utf-8")).get("config") or {}
    datasets, evaluators = [], {}
    for d in config.get("datasets") or []:
        spec = d.get("opencompass") if isinstance(d, dict) else None
        if not spec:
            continue  # lmgauge's own tasks are in lmgauge's summary only
        entry, abbr = spec["entry"], d.get("name") or d.get("abbr")
        datasets.append(
            OCDataset(abbr, spec.get("version") or version(entry), str(entry["infer_cfg"]["inferencer"]["type"]))
        )
        evaluators[abbr] = short(entry["eval_cfg"]["evaluator"]["type"])
    if not datasets:
        return None
    if models is None:
        # a model's column: its summarizer_abbr, else its name (model_abbr_from_cfg_used_in_summarizer);
        # models sharing one column share its cells, a later model's result replacing an earlier one's
        model_cfgs = [ModelConfig.model_validate(m) for m in config.get("models") or []]
        pairs = [(m.name, m.summarizer_abbr or m.name) for m in model_cfgs]
    else:
        pairs = [(m, m) for m in models]
    columns = [c for _, c in pairs]
    results: dict[str, dict[str, dict]] = {}
    for model, column in pairs:
        for ds in datasets:
            f = rundir.results(model, ds.abbr)
            if not f.is_file():
                continue
            metrics = json.loads(f.read_text(encoding="utf-8")).get("metrics") or {}
            scored = {
                name: evaluator_score(evaluators[ds.abbr], round(m["value"] * m["n"]), m["n"], name)
                for name, m in metrics.items()
                if m.get("n") and m.get("value") is not None
            }
            if scored:
                results.setdefault(column, {})[ds.abbr] = scored
    s = config.get("summarizer") or {}
    return DefaultSummarizer(columns, datasets, results, s.get("dataset_abbrs"), s.get("summary_groups"))


def write_run_summary(rundir: RunLayout, time_str: str, models: Sequence[str] | None = None) -> list[Path]:
    """summary/summary_<time_str>.{txt,csv,md} of a run with OpenCompass datasets; [] without."""
    summarizer = run_summarizer(rundir, models)
    if summarizer is None:
        return []
    table, raw_txt = summarizer.summarize()
    return write_files(
        render(table, raw_txt, time_str), {e: rundir.oc_summary(time_str, e) for e in ("txt", "csv", "md")}
    )
