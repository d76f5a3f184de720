"""Compare two runs document by document: what changed beyond noise, and which questions flipped.

Runs are joined on model, task and doc_id. Before any number is computed the joins are checked:
a task whose prompt version differs between the runs, or whose documents differ, is reported with a
loud warning and the config keys that differ (or refused with ``strict``). Per task, per subject,
per group (micro, over all member docs) and per category:

- binary per-doc metrics (acc, exact match, pass@1): McNemar's test and Newcombe's paired interval
  (lmgauge.scoring.paired), and the 2x2 flip table;
- other per-doc metrics (log-likelihood, F1): a seeded paired bootstrap of the mean difference;
- metrics that exist only at task level (corpus perplexity): both values, no paired interval.

Differences are b - a: positive means run B scores higher. Flipped docs list right->wrong first,
with each choice's margin (its log-likelihood minus the best other choice's) in both runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lmgauge.report.load import LoadedRun
from lmgauge.scoring.paired import DEFAULT_RESAMPLES, DEFAULT_SEED, PairedResult, compare_paired, is_binary

# config keys that never change what a run computes
_IGNORED_CONFIG_KEYS = ("work_dir",)
_PRESENT = object()  # marks a list entry (a dataset, a model) in a flattened config


class CompareRefused(ValueError):
    """The runs cannot be compared (no common model or task, or a mismatch under strict)."""


@dataclass
class Row:
    """One line of the comparison: a metric of a task, subject, group or category."""

    level: str  # "task" | "subject" | "group" | "category"
    name: str
    metric: str
    model_a: str
    model_b: str
    value_a: float | None
    value_b: float | None
    stats: PairedResult | None = None
    group: str | None = None
    n_a: int | None = None
    n_b: int | None = None

    @property
    def delta(self) -> float | None:
        if self.stats is not None:
            return self.stats.delta
        if self.value_a is None or self.value_b is None:
            return None
        return self.value_b - self.value_a

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["delta"] = self.delta
        out["stats"] = self.stats.to_dict() if self.stats else None
        return out


@dataclass
class FlippedDoc:
    model_a: str
    model_b: str
    task: str
    doc_id: int
    metric: str
    direction: str  # "right_to_wrong" | "wrong_to_right"
    gold: Any
    pred_a: Any
    pred_b: Any
    choices: list[str] | None = None
    logprobs_a: list[float] | None = None
    logprobs_b: list[float] | None = None
    margins_a: list[float] | None = None
    margins_b: list[float] | None = None
    output_a: str | None = None
    output_b: str | None = None
    prompt_a: str | None = None
    prompt_b: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskTiming:
    model_a: str
    model_b: str
    task: str
    model_s_a: float | None
    model_s_b: float | None
    tokens_per_s_a: float | None
    tokens_per_s_b: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    pairs: list[tuple[str, str]]
    rows: list[Row] = field(default_factory=list)
    flipped: list[FlippedDoc] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config_diff: list[str] = field(default_factory=list)
    timing: list[TaskTiming] = field(default_factory=list)
    seed: int = DEFAULT_SEED
    n_resamples: int = DEFAULT_RESAMPLES

    def worst_first(self) -> list[Row]:
        """Rows with a paired difference, most negative first; then the rest."""
        with_delta = [r for r in self.rows if r.delta is not None and not math.isnan(r.delta)]
        rest = [r for r in self.rows if r not in with_delta]
        return sorted(with_delta, key=lambda r: r.delta if r.delta is not None else 0.0) + rest

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "pairs": [list(p) for p in self.pairs],
            "orientation": "delta = b - a",
            "seed": self.seed,
            "n_resamples": self.n_resamples,
            "warnings": self.warnings,
            "config_diff": self.config_diff,
            "rows": [r.to_dict() for r in self.worst_first()],
            "flipped": [f.to_dict() for f in self.flipped],
            "timing": [t.to_dict() for t in self.timing],
        }


def pair_models(
    a: LoadedRun, b: LoadedRun, model_a: str | None = None, model_b: str | None = None
) -> list[tuple[str, str]]:
    """Models joined by name; two runs of one model each are paired whatever their names."""
    ma, mb = a.models(), b.models()
    if model_a or model_b:
        left, right = model_a or (ma[0] if len(ma) == 1 else None), model_b or (mb[0] if len(mb) == 1 else None)
        if left not in ma:
            raise CompareRefused(f"{a.root}: no model {left!r} (models: {', '.join(ma) or 'none'})")
        if right not in mb:
            raise CompareRefused(f"{b.root}: no model {right!r} (models: {', '.join(mb) or 'none'})")
        return [(left, right)]
    common = [m for m in ma if m in mb]
    if common:
        return [(m, m) for m in common]
    if len(ma) == 1 and len(mb) == 1:
        return [(ma[0], mb[0])]
    raise CompareRefused(
        f"no model in common between {a.root} ({', '.join(ma)}) and {b.root} ({', '.join(mb)}): "
        "name them with --model-a / --model-b"
    )


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        out = {}
        for i, v in enumerate(obj):
            entry = f"{prefix}[{v.get('name') or v.get('abbr') or i}]"
            out[entry] = _PRESENT
            out.update(_flatten(v, entry))
        return out
    return {prefix: obj}


def config_diff(a: LoadedRun, b: LoadedRun) -> list[str]:
    """`key: a -> b` for every configuration key that differs (work_dir and the like excluded)."""
    fa, fb = _flatten(a.manifest.get("config", {})), _flatten(b.manifest.get("config", {}))
    out: list[str] = []
    for k in sorted(set(fa) | set(fb)):
        if k.split(".")[0] in _IGNORED_CONFIG_KEYS or any(k.startswith(e + ".") for e in out_entries(out)):
            continue
        if fa.get(k) == fb.get(k):
            continue
        if fa.get(k) is _PRESENT or fb.get(k) is _PRESENT:
            out.append(f"{k}: only in {'A' if k in fa else 'B'}")
        else:
            out.append(f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}")
    return out


def out_entries(lines: list[str]) -> list[str]:
    """List entries already reported as present on one side only (their keys are not listed again)."""
    return [line.split(": only in ")[0] for line in lines if ": only in " in line]


def _metric_names(result: dict[str, Any] | None, samples: Iterable[dict[str, Any]]) -> list[str]:
    names = list((result or {}).get("metrics", {}))
    for s in samples:
        for k in s.get("metrics") or {}:
            if k not in names:
                names.append(k)
    return names


def _values(samples: dict[int, dict[str, Any]], ids: list[int], metric: str) -> list[float] | None:
    out = []
    for d in ids:
        v = (samples[d].get("metrics") or {}).get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        out.append(float(v))
    return out


def margins(logprobs: list[float]) -> list[float]:
    """Each choice's log-likelihood minus the best of the other choices (> 0 only for the argmax)."""
    out = []
    for i, lp in enumerate(logprobs):
        others = [x for j, x in enumerate(logprobs) if j != i]
        out.append(lp - max(others) if others else 0.0)
    return out


def _pred_for(metric: str, sample: dict[str, Any]) -> Any:
    return sample.get("pred_norm") if metric == "acc_norm" and "pred_norm" in sample else sample.get("pred")


def _flipped(
    model_a: str, model_b: str, task: str, metric: str, sa: dict[str, Any], sb: dict[str, Any]
) -> FlippedDoc | None:
    va, vb = (sa.get("metrics") or {}).get(metric), (sb.get("metrics") or {}).get(metric)
    if va == vb or va not in (0, 1) or vb not in (0, 1):
        return None
    la, lb = sa.get("logprobs"), sb.get("logprobs")
    pa, pb = sa.get("prompt"), sb.get("prompt")
    return FlippedDoc(
        model_a=model_a,
        model_b=model_b,
        task=task,
        doc_id=int(sa["doc_id"]),
        metric=metric,
        direction="right_to_wrong" if va == 1 else "wrong_to_right",
        gold=sa.get("gold"),
        pred_a=_pred_for(metric, sa),
        pred_b=_pred_for(metric, sb),
        choices=sa.get("continuations"),
        logprobs_a=la,
        logprobs_b=lb,
        margins_a=margins(la) if la else None,
        margins_b=margins(lb) if lb else None,
        output_a=sa.get("output"),
        output_b=sb.get("output"),
        prompt_a=pa,
        prompt_b=pb if pb != pa else None,
    )


@dataclass
class _Joined:
    ids: list[int]
    a: dict[int, dict[str, Any]]
    b: dict[int, dict[str, Any]]


def _join(run_a: LoadedRun, run_b: LoadedRun, ma: str, mb: str, task: str, warnings: list[str]) -> _Joined:
    a = {s["doc_id"]: s for s in run_a.answered(ma, task)}
    b = {s["doc_id"]: s for s in run_b.answered(mb, task)}
    ids = sorted(set(a) & set(b))
    only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
    if only_a or only_b:
        warnings.append(
            f"{task} ({ma} vs {mb}): the runs answered different docs: {len(ids)} in both, "
            f"{only_a} only in A, {only_b} only in B; compared on the {len(ids)} common docs"
        )
    return _Joined(ids, a, b)


def compare_runs(
    run_a: LoadedRun,
    run_b: LoadedRun,
    *,
    model_a: str | None = None,
    model_b: str | None = None,
    strict: bool = False,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Join two runs and compute every paired difference (see the module docstring)."""
    pairs = pair_models(run_a, run_b, model_a, model_b)
    cmp = Comparison(run_a=str(run_a.root), run_b=str(run_b.root), pairs=pairs, seed=seed, n_resamples=n_resamples)
    cmp.config_diff = config_diff(run_a, run_b)
    mismatched: list[str] = []

    def paired(xa: list[float], xb: list[float], binary: bool) -> PairedResult:
        return compare_paired(xa, xb, binary=binary, seed=seed, n_resamples=n_resamples)

    for ma, mb in pairs:
        tasks_b = set(run_b.tasks(mb))
        common = [t for t in run_a.tasks(ma) if t in tasks_b]
        if not common:
            raise CompareRefused(f"{ma} in {run_a.root} and {mb} in {run_b.root} share no task")
        joined: dict[str, _Joined] = {}
        binary_metrics: dict[str, set[str]] = {}
        groups_a, groups_b = run_a.groups(ma), run_b.groups(mb)
        member_of = {m: g for g, r in groups_a.items() if g in groups_b for m in r.get("members", [])}
        for task in common:
            ra, rb = run_a.result(ma, task), run_b.result(mb, task)
            va, vb = (ra or {}).get("version"), (rb or {}).get("version")
            if va != vb:
                mismatched.append(f"{task}: prompt version {va} in A, {vb} in B")
            j = joined[task] = _join(run_a, run_b, ma, mb, task, cmp.warnings)
            level = "subject" if task in member_of else "task"
            first_binary: str | None = None
            sample_metrics = _metric_names(None, [*j.a.values(), *j.b.values()])
            for metric in _metric_names(ra, []) + [m for m in sample_metrics if m not in (ra or {}).get("metrics", {})]:
                if metric in sample_metrics and j.ids:
                    xa, xb = _values(j.a, j.ids, metric), _values(j.b, j.ids, metric)
                    if xa is None or xb is None:
                        cmp.warnings.append(f"{task}: metric {metric} missing on some docs; not compared")
                        continue
                    binary = is_binary(xa) and is_binary(xb)
                    if binary:
                        binary_metrics.setdefault(task, set()).add(metric)
                        first_binary = first_binary or metric
                    stats = paired(xa, xb, binary)
                    cmp.rows.append(
                        Row(level, task, metric, ma, mb, stats.mean_a, stats.mean_b, stats, member_of.get(task))
                    )
                    cmp.rows[-1].n_a, cmp.rows[-1].n_b = len(j.a), len(j.b)
                else:  # a task-level statistic (corpus perplexity): both values, no paired interval
                    ma_val = ((ra or {}).get("metrics", {}).get(metric) or {}).get("value")
                    mb_val = ((rb or {}).get("metrics", {}).get(metric) or {}).get("value")
                    cmp.rows.append(
                        Row(level, task, metric, ma, mb, ma_val, mb_val, None, member_of.get(task), len(j.a), len(j.b))
                    )
            if first_binary:
                flips = [_flipped(ma, mb, task, first_binary, j.a[d], j.b[d]) for d in j.ids]
                cmp.flipped.extend(f for f in flips if f is not None)
            cmp.timing.append(_timing(ma, mb, task, ra, rb))
        for group, ga in groups_a.items():
            if group not in groups_b:
                continue
            members = [m for m in ga.get("members", []) if m in joined]
            by_category: dict[str, list[str]] = {}
            for m in members:
                cat = (run_a.result(ma, m) or {}).get("category")
                if cat:
                    by_category.setdefault(cat, []).append(m)
            metrics = sorted(set.intersection(*(binary_metrics.get(m, set()) for m in members))) if members else []
            for level, name, tasks in [("group", group, members)] + [
                ("category", f"{group}_{c}", ts) for c, ts in sorted(by_category.items())
            ]:
                for metric in metrics:
                    xa = [v for m in tasks for v in _values(joined[m].a, joined[m].ids, metric) or []]
                    xb = [v for m in tasks for v in _values(joined[m].b, joined[m].ids, metric) or []]
                    if not xa:
                        continue
                    stats = paired(xa, xb, True)
                    cmp.rows.append(
                        Row(level, name, f"{metric} (micro)", ma, mb, stats.mean_a, stats.mean_b, stats, group)
                    )
                    cmp.rows[-1].n_a = cmp.rows[-1].n_b = stats.n
    if mismatched:
        msg = "prompt versions differ, so these are different prompts: " + "; ".join(mismatched)
        if cmp.config_diff:
            msg += ". Config differences: " + "; ".join(cmp.config_diff)
        if strict:
            raise CompareRefused(msg)
        cmp.warnings.insert(0, msg)
    cmp.flipped.sort(key=lambda f: (f.direction != "right_to_wrong", f.task, f.doc_id))
    return cmp


def _timing(ma: str, mb: str, task: str, ra: dict[str, Any] | None, rb: dict[str, Any] | None) -> TaskTiming:
    def seconds(r: dict[str, Any] | None) -> float | None:
        v = ((r or {}).get("timing") or {}).get("model_s")
        return float(v) if v else None

    def tps(r: dict[str, Any] | None) -> float | None:
        s, toks = seconds(r), ((r or {}).get("tokens") or {}).get("forwarded")
        return toks / s if s and toks else None

    return TaskTiming(ma, mb, task, seconds(ra), seconds(rb), tps(ra), tps(rb))
