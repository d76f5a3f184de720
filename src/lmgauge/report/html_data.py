"""The data a report page shows, built from run directories only (one JSON-able dict).

Numbers are computed here, in Python, and the page only displays them: per task each metric with its
95% interval and n, group and category breakdowns, per-doc samples, perplexity and timing, and the
comparison when two runs are given. Intervals: Wilson score interval for binary per-doc metrics
(accuracy), value +/- 1.96 stderr otherwise; none where the run gives no stderr (corpus perplexity).

Samples are made compact without losing what a person looks at: the raw `answers` are dropped when
the line has its scored fields (they repeat them), the sandbox description is kept once per task,
and the few-shot context every prompt of a task shares is stored once as the task's `prefix`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from lmgauge.report.compare import Comparison
from lmgauge.report.load import LoadedRun
from lmgauge.report.summary import summary_rows
from lmgauge.runs.rundir import RunDir
from lmgauge.scoring.paired import wilson_interval

Z95 = 1.959963984540054
PERPLEXITY_METRICS = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity")
# a shared context shorter than this is not worth splitting off the prompts
MIN_PREFIX = 200


def metric_interval(value: float | None, stderr: float | None, n: int | None, binary: bool) -> list[float] | None:
    """95% interval of a task metric: Wilson for a proportion, normal from the stderr otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if binary and n:
        return list(wilson_interval(round(value * n), n))
    if stderr is None or (isinstance(stderr, float) and math.isnan(stderr)):
        return None
    return [value - Z95 * stderr, value + Z95 * stderr]


def _binary_metrics(samples: list[dict[str, Any]]) -> set[str]:
    seen: dict[str, bool] = {}
    for s in samples:
        for k, v in (s.get("metrics") or {}).items():
            seen[k] = seen.get(k, True) and v in (0, 1)
    return {k for k, b in seen.items() if b}


def _metrics_of(result: dict[str, Any], binary: set[str]) -> list[dict[str, Any]]:
    out = []
    for name, m in (result.get("metrics") or {}).items():
        value, stderr, n = m.get("value"), m.get("stderr"), m.get("n")
        out.append(
            {
                "name": name,
                "value": value,
                "stderr": stderr,
                "n": n,
                "binary": name in binary,
                "ci": metric_interval(value, stderr, n, name in binary),
            }
        )
    return out


def _group_metric(agg: dict[str, Any], binary: bool) -> dict[str, Any]:
    out = {}
    for kind in ("micro", "macro"):
        m = agg.get(kind) or {}
        out[kind] = {
            "value": m.get("value"),
            "stderr": m.get("stderr"),
            "n": m.get("n"),
            # a macro average is a mean of subject means, not a proportion: normal interval
            "ci": metric_interval(m.get("value"), m.get("stderr"), m.get("n"), binary and kind == "micro"),
        }
    return out


def _kind(result: dict[str, Any] | None, samples: list[dict[str, Any]]) -> str:
    first = samples[0] if samples else {}
    if "program" in first or "executions" in first:
        return "code"
    if "output" in first or str((result or {}).get("output_type", "")).startswith("generate"):
        return "generate"
    if "logprobs" in first:
        return "choice"
    if any(m in (result or {}).get("metrics", {}) for m in PERPLEXITY_METRICS):
        return "perplexity"
    return "other"


def _common_prefix(texts: list[str]) -> str:
    if len(texts) < 2:
        return ""
    lo, hi = min(texts), max(texts)  # the common prefix of all strings is that of the extremes
    i = 0
    while i < len(lo) and lo[i] == hi[i]:
        i += 1
    prefix = lo[:i]
    # cut at a blank line so the displayed question starts cleanly
    cut = prefix.rfind("\n\n")
    prefix = prefix[: cut + 2] if cut >= 0 else prefix
    return prefix if len(prefix) >= MIN_PREFIX else ""


def compact_samples(samples: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
    """(shared prompt prefix, the task's sandbox description, compact samples)."""
    prompts = [s["prompt"] for s in samples if isinstance(s.get("prompt"), str)]
    prefix = _common_prefix(prompts)
    isolation = None
    out = []
    for s in samples:
        c = {k: v for k, v in s.items() if k not in ("answers", "isolation")}
        if "answers" in s and not any(k in s for k in ("logprobs", "output", "metrics")):
            c["answers"] = s["answers"]  # nothing else says what the model returned
        if isolation is None and s.get("isolation"):
            isolation = s["isolation"]
        if prefix and isinstance(c.get("prompt"), str) and c["prompt"].startswith(prefix):
            c["prompt"] = c["prompt"][len(prefix) :]
            c["_prefixed"] = True
        out.append(c)
    return prefix, isolation, out


def compression_rows(run: LoadedRun) -> dict[str, list[dict[str, Any]]]:
    """A compression run's positions against pretrain (results with `position` and `vs_pretrain`,
    written by lmgauge.compress), and the next-token fidelity of each position where it was measured."""
    rows, fidelity = [], []
    for model in run.models():
        for task, res in run.results.get(model, {}).items():
            pos = res.get("position")
            if not isinstance(pos, dict):
                continue
            for metric, m in ((res.get("vs_pretrain") or {}).get("metrics") or {}).items():
                p = m.get("paired") or {}
                flips = p.get("flips") or {}
                rows.append(
                    {
                        "position": pos.get("name"),
                        "kind": pos.get("kind"),
                        "task": task,
                        "metric": metric,
                        "pretrain": m.get("pretrain"),
                        "value": m.get("value"),
                        "delta": m.get("delta"),
                        "low": p.get("low", m.get("ratio_low")),
                        "high": p.get("high", m.get("ratio_high")),
                        "interval_of": "delta" if p else ("ppl ratio" if "ratio_low" in m else None),
                        "p": p.get("p_value"),
                        "right_to_wrong": flips.get("right_to_wrong"),
                        "wrong_to_right": flips.get("wrong_to_right"),
                        "recovery": m.get("recovery"),
                        "verdict": p.get("verdict", m.get("verdict")),
                    }
                )
            f = res.get("fidelity") or {}
            if f.get("n_positions"):
                fidelity.append({"position": pos.get("name"), "task": task, **f})
    return {"rows": rows, "fidelity": fidelity}


SERVING_KEYS = (
    "completed",
    "failed",
    "max_concurrency",
    "request_rate",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "mean_e2el_ms",
)


def latency_data(root: Path) -> dict[str, Any] | None:
    """`lmgauge perf` results written into the run directory (`lmgauge perf -w WORK --run-id RUN`):
    each serving sweep point's vLLM-style summary, and the in-process SDK CSV tables."""
    serving = []
    for f in sorted((root / "serving").glob("*.json")):
        if f.name == "sweep.json":
            continue
        try:
            point = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            serving.append({"label": f.stem, "error": f"{f}: {e}"})
            continue
        serving.append({"label": point.get("label") or f.stem, **{k: point.get(k) for k in SERVING_KEYS}})
    tables = []
    for f in sorted(root.glob("performance_test_*.csv")):
        rows = list(csv.reader(f.read_text(encoding="utf-8").splitlines()))
        if rows:
            tables.append({"file": f.name, "header": rows[0], "rows": rows[1:]})
    if not serving and not tables:
        return None
    return {"serving": serving, "serving_keys": list(SERVING_KEYS), "inprocess": tables}


def run_data(run: LoadedRun, key: str) -> dict[str, Any]:
    """Everything the page shows about one run."""
    manifest = run.manifest
    models, rows = summary_rows(RunDir(run.root))
    from lmgauge.report.summary import ROW_KEYS

    tasks, groups = [], []
    for model in run.models():
        binary_of: dict[str, set[str]] = {}
        for task in run.tasks(model):
            result = run.result(model, task)
            status = run.task_status(model, task)
            samples = run.samples(model, task)
            binary = binary_of[task] = _binary_metrics([s for s in samples if "metrics" in s])
            prefix, isolation, compact = compact_samples(samples)
            tasks.append(
                {
                    "model": model,
                    "task": task,
                    "kind": _kind(result, samples),
                    "version": (result or {}).get("version") or status.get("version"),
                    "status": status.get("status") or ("done" if result else "missing"),
                    "error": status.get("error"),
                    "n": (result or {}).get("n"),
                    "n_errors": (result or {}).get("n_errors", 0),
                    "group": (result or {}).get("group"),
                    "subject": (result or {}).get("subject"),
                    "category": (result or {}).get("category"),
                    "data_source": (result or {}).get("data_source"),
                    "limit": (result or {}).get("limit"),
                    "metrics": _metrics_of(result or {}, binary),
                    "timing": (result or {}).get("timing") or status.get("timing"),
                    "tokens": (result or {}).get("tokens") or status.get("tokens"),
                    "latency": (result or {}).get("latency"),  # served backends: the requests' latency summary
                    "prefix": prefix,
                    "isolation": isolation,
                    "samples": compact,
                }
            )
        for group, g in run.groups(model).items():
            members = g.get("members", [])
            binary = set.intersection(*(binary_of.get(m, set()) for m in members)) if members else set()
            groups.append(
                {
                    "model": model,
                    "group": group,
                    "version": g.get("version"),
                    "n": g.get("n"),
                    "members": members,
                    "metrics": {k: _group_metric(v, k in binary) for k, v in (g.get("metrics") or {}).items()},
                    "subjects": {
                        s: {
                            k: {**v, "ci": metric_interval(v.get("value"), v.get("stderr"), v.get("n"), k in binary)}
                            for k, v in ms.items()
                        }
                        for s, ms in (g.get("subjects") or {}).items()
                    },
                    "categories": {
                        c: {k: _group_metric(v, k in binary) for k, v in ms.items()}
                        for c, ms in (g.get("categories") or {}).items()
                    },
                }
            )
    return {
        "key": key,
        "id": run.run_id,
        "root": str(run.root),
        "status": manifest.get("status"),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "argv": manifest.get("argv"),
        "git_sha": manifest.get("git_sha"),
        "host": manifest.get("host"),
        "timings": manifest.get("timings"),
        "versions": manifest.get("versions"),
        "models": manifest.get("models") or {m: {} for m in models},
        "summary": {
            "columns": list(ROW_KEYS) + models,
            "rows": [[r[k] for k in ROW_KEYS] + [r.get(m) for m in models] for r in rows],
            "member_of": [r.get("_member_of") for r in rows],
        },
        "tasks": tasks,
        "groups": groups,
        "compression": {**compression_rows(run), "manifest": manifest.get("compression")}
        if manifest.get("compression")
        else None,
        "perf": latency_data(run.root),
    }


def report_data(runs: list[LoadedRun], comparison: Comparison | None = None) -> dict[str, Any]:
    from lmgauge import __version__

    keys = [chr(ord("A") + i) for i in range(len(runs))]
    cmp = comparison.to_dict() if comparison else None
    if cmp:
        for f in cmp["flipped"]:  # the samples are on the page already
            f.pop("prompt_a", None)
            f.pop("prompt_b", None)
    return {
        "title": "lmgauge report: " + " vs ".join(r.run_id for r in runs),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lmgauge_version": __version__,
        "runs": [run_data(r, k) for r, k in zip(runs, keys)],
        "comparison": cmp,
    }
