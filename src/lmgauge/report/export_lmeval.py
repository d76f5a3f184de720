"""Export a run in lm-evaluation-harness' output layout (0.4.x, `--output_path DIR --log_samples`).

    DIR/<model>/results_<date>.json          results, groups, group_subtasks, configs, versions, n-shot,
                                             higher_is_better, n-samples, config, task_hashes, ...
    DIR/<model>/samples_<task>_<date>.jsonl  one line per doc (and per filter): doc_id, doc, target,
                                             arguments, resps, filtered_resps, filter, metrics,
                                             doc_hash, prompt_hash, target_hash, and each metric's value

`<date>` is `datetime.now().isoformat()` with ':' replaced by '-', as lm-eval's EvaluationTracker writes
it, so its helpers (get_results_filenames, get_sample_results_filenames, get_file_task_name,
get_file_datetime) and scripts/zeno_visualize.py find the files. Metric keys are "<metric>,<filter>"
("acc,none"); stderr keys "<metric>_stderr,<filter>". Responses are strings, as lm-eval's
sanitize_list leaves them. The raw dataset row is not in a run directory, so `doc` holds what is
(the choices and the gold answer).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from lmgauge.report.export_common import LOWER_IS_BETTER, num_fewshot, output_type, split_metric
from lmgauge.report.load import LoadedRun
from lmgauge.runs.rundir import dumps


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sanitize_model_name(name: str) -> str:
    """lm-eval's sanitize_model_name: path separators and the like become '__'."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _metric_entries(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, m in metrics.items():
        base, filt = split_metric(name)
        out[f"{base},{filt}"] = m.get("value")
        out[f"{base}_stderr,{filt}"] = m.get("stderr") if m.get("stderr") is not None else "N/A"
    return out


def _arguments(sample: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "multiple_choice":
        conts = sample.get("continuations") or []
        contexts = sample.get("prompts") or [sample.get("prompt", "")] * len(conts)
        return {f"gen_args_{i}": {"arg_0": ctx, "arg_1": c} for i, (ctx, c) in enumerate(zip(contexts, conts))}
    if kind == "loglikelihood":
        return {"gen_args_0": {"arg_0": sample.get("prompt", ""), "arg_1": (sample.get("continuations") or [""])[0]}}
    if kind == "generate_until":
        return {"gen_args_0": {"arg_0": sample.get("prompt", ""), "arg_1": {}}}
    return {"gen_args_0": {"arg_0": sample.get("prompt", "")}}


# a corpus-level metric's per-doc item in lm-eval's samples: the log-likelihood and its weight
_CORPUS_WEIGHT = {
    "word_perplexity": "words",
    "byte_perplexity": "bytes",
    "bits_per_byte": "bytes",
    "token_perplexity": "tokens",
}


def _corpus_item(metric: str, metrics: dict[str, Any]) -> Any:
    lp = metrics.get("logprob")
    if metric in _CORPUS_WEIGHT:
        return [lp, metrics.get(_CORPUS_WEIGHT[metric])]
    return lp  # LAMBADA's perplexity aggregates the per-doc log-likelihoods


def _sample_lines(sample: dict[str, Any], kind: str, result_metrics: list[str]) -> list[dict[str, Any]]:
    """lm-eval sample records for one doc: one per filter of its metrics."""
    metrics = sample.get("metrics") or {}
    by_filter: dict[str, dict[str, Any]] = {}
    for name, value in metrics.items():
        base, filt = split_metric(name)
        by_filter.setdefault(filt, {})[base] = value
    for name in result_metrics:  # corpus-level metrics: the per-doc item lm-eval aggregates
        base, filt = split_metric(name)
        if base in LOWER_IS_BETTER and base not in by_filter.get(filt, {}):
            by_filter.setdefault(filt, {})[base] = _corpus_item(base, metrics)
    if not by_filter:
        by_filter["none"] = {}
    args = _arguments(sample, kind)
    first: dict[str, Any] = next(iter(args.values()), {})
    first_context = str(first.get("arg_0", ""))
    target = sample.get("gold")
    lines = []
    for filt, values in by_filter.items():
        if kind == "multiple_choice":
            pairs = [[str(lp), str(g)] for lp, g in zip(sample.get("logprobs") or [], sample.get("is_greedy") or [])]
            resps: list[Any] = [[p] for p in pairs]
            filtered: list[Any] = pairs
        elif kind == "generate_until":
            resps = [[sample.get("output", "")]]
            extracted = sample.get("extracted")
            pick = extracted.get(filt) if isinstance(extracted, dict) else extracted
            filtered = [str(pick if pick is not None else sample.get("output", ""))]
        else:
            lp = sample.get("logprob", (sample.get("metrics") or {}).get("logprob"))
            resps = [[str(lp)]]
            filtered = [str(lp)]
        line = {
            "doc_id": sample["doc_id"],
            "doc": {"choices": sample.get("continuations"), "gold": target},
            "target": str(target),
            "arguments": args,
            "resps": resps,
            "filtered_resps": filtered,
            "filter": filt,
            "metrics": list(values),
            "doc_hash": _hash(json.dumps({"doc_id": sample["doc_id"], "gold": target}, ensure_ascii=False)),
            "prompt_hash": _hash(first_context),
            "target_hash": _hash(str(target)),
        }
        line.update(values)
        lines.append(line)
    return lines


def export_lmeval(run: LoadedRun, out: Path, date_id: str | None = None) -> list[Path]:
    date_id = date_id or datetime.now().isoformat().replace(":", "-")
    written = []
    for model in run.models():
        folder = out / sanitize_model_name(model)
        folder.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        group_subtasks: dict[str, list[str]] = {}
        configs, versions, n_shot, higher, n_samples = {}, {}, {}, {}, {}
        task_hashes = {}
        for task in run.tasks(model):
            res = run.result(model, task)
            if res is None:
                continue  # a failed task has no results; lm-eval writes none either
            samples = run.answered(model, task)
            kind = output_type(samples[0]) if samples else "loglikelihood"
            results[task] = {"alias": task, **_metric_entries(res.get("metrics") or {})}
            versions[task] = res.get("version")
            shots = num_fewshot(run, task)
            if shots is not None:
                n_shot[task] = shots
            bases = list(dict.fromkeys(split_metric(m)[0] for m in res.get("metrics") or {}))
            higher[task] = {b: b not in LOWER_IS_BETTER for b in bases}
            configs[task] = {
                "task": task,
                "output_type": kind,
                "num_fewshot": shots,
                "metric_list": [
                    {
                        "metric": b,
                        "aggregation": "mean" if b not in LOWER_IS_BETTER else b,
                        "higher_is_better": higher[task][b],
                    }
                    for b in bases
                ],
                "metadata": {"version": res.get("version"), "lmgauge_data_source": res.get("data_source")},
            }
            filters = sorted({split_metric(m)[1] for m in res.get("metrics") or {}} - {"none"})
            if filters:
                configs[task]["filter_list"] = [{"name": f} for f in filters]
            n_samples[task] = {"original": res.get("n_available", res.get("n")), "effective": res.get("n")}
            lines = [line for s in samples for line in _sample_lines(s, kind, list(res.get("metrics") or {}))]
            task_hashes[task] = _hash("".join(x["doc_hash"] + x["prompt_hash"] + x["target_hash"] for x in lines))
            path = folder / f"samples_{task}_{date_id}.jsonl"
            path.write_text("".join(dumps(x) + "\n" for x in lines), encoding="utf-8")
            written.append(path)
        for group, g in run.groups(model).items():
            micro = {k: v.get("micro", {}) for k, v in (g.get("metrics") or {}).items()}
            groups[group] = results[group] = {"alias": group, **_metric_entries(micro)}
            cats = g.get("categories") or {}
            members = [m for m in g.get("members", []) if m in results]
            if cats:
                group_subtasks[group] = [f"{group}_{c}" for c in cats]
                for c, cm in cats.items():
                    name = f"{group}_{c}"
                    entry = {"alias": f" - {c}", **_metric_entries({k: v.get("micro", {}) for k, v in cm.items()})}
                    groups[name] = results[name] = entry
                    group_subtasks[name] = [m for m in members if (run.result(model, m) or {}).get("category") == c]
            else:
                group_subtasks[group] = members
            versions[group] = g.get("version")
        for task in results:
            group_subtasks.setdefault(task, [])
        manifest = run.manifest
        model_info = (manifest.get("models") or {}).get(model, {})
        doc = {
            "results": results,
            **({"groups": groups} if groups else {}),
            "group_subtasks": group_subtasks,
            "configs": dict(sorted(configs.items())),
            "versions": dict(sorted(versions.items())),
            "n-shot": dict(sorted(n_shot.items())),
            "higher_is_better": dict(sorted(higher.items())),
            "n-samples": n_samples,
            "config": {
                "model": f"lmgauge-{model_info.get('backend', 'hf')}",
                "model_args": f"pretrained={model_info.get('path', model)}",
                "batch_size": model_info.get("batch_size"),
                "device": model_info.get("device"),
                "limit": (manifest.get("config") or {}).get("limit"),
                "bootstrap_iters": 0,
                "random_seed": (manifest.get("config") or {}).get("seed"),
            },
            "git_hash": manifest.get("git_sha"),
            "date": _epoch(manifest.get("started")),
            "lmgauge_run": str(run.root),
            "task_hashes": task_hashes,
            "model_source": model_info.get("backend"),
            "model_name": model_info.get("path", model),
            "model_name_sanitized": sanitize_model_name(model),
            "start_time": None,
            "end_time": None,
            "total_evaluation_time_seconds": str(model_info.get("eval_s", "")),
        }
        path = folder / f"results_{date_id}.json"
        path.write_text(dumps(doc, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
