"""From shards back to tasks: merge each task's journals into one samples file, score what is not
scored yet (or everything, for `--mode eval`), aggregate, write results; groups from their members.

A task whose shard failed is recorded in run.json with its error and the run goes on; a task with a
shard that never finished (interrupted) is left unmerged for `-r` to complete.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from lmgauge.models.base import LanguageModel
from lmgauge.runs.journal import TaskJournal, is_answer, results_from
from lmgauge.runs.latency import latency_summary
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.reader import read_record
from lmgauge.runs.records import GroupResult, ShardMarker, TaskResult, TaskStatus, TokenCounts
from lmgauge.runs.rundir import RunDir
from lmgauge.runs.worker import Progress, read_marker, run_shard_safely, sample_record
from lmgauge.scoring.aggregate import group_summary, metric_summary
from lmgauge.tasks.base import Task

log = logging.getLogger(__name__)

__all__ = ["Progress", "TaskSpec", "TaskOutcome", "finalize_task", "finalize_model", "group_results", "run_task"]


@dataclass
class TaskOutcome:
    task: str
    ok: bool
    samples: list[dict] = field(default_factory=list)
    task_obj: Task | None = None
    error: str | None = None
    complete: bool = True


def _sum_timing(markers: list[ShardMarker]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in markers:
        for k, v in (m.timing or {}).items():
            out[k] = round(out.get(k, 0) + v, 3)
    return out


def _sum_tokens(markers: list[ShardMarker]) -> TokenCounts:
    return TokenCounts(**{k: sum(getattr(m.tokens, k) for m in markers if m.tokens) for k in TokenCounts.model_fields})


def _rescored(task: Task, records: list[dict], rescore_all: bool) -> tuple[list[dict], bool]:
    """Score answered records that lack scores (an `--mode infer` run), or all of them (`--mode eval`),
    from the raw answers in the journal; the model is not needed."""
    todo = [r for r in records if is_answer(r) and (rescore_all or "metrics" not in r)]
    if not todo:
        return records, False
    docs, _ = task.load()
    by_id = {}
    for r in todo:
        d = r["doc_id"]
        requests = task.requests(docs[d], d)
        by_id[d] = sample_record(task, docs[d], d, requests, results_from(r["answers"], requests)).to_json()
    return [by_id.get(r["doc_id"], r) for r in records], True


def _done(manifest: Manifest | None, model: str, task: str, **status) -> None:
    if manifest is not None:
        manifest.task_done(model, task, TaskStatus(**status))


def finalize_task(
    rundir: RunDir, spec: TaskSpec, model: str, shards: list[Shard], manifest: Manifest | None, mode: str = "all"
) -> TaskOutcome:
    found = [read_marker(rundir, s.id) for s in shards]
    failed = [m for m in found if m and m.status == "failed"]
    if failed:
        msg = failed[0].error or "failed"
        _done(manifest, model, spec.name, status="failed", error=msg)
        return TaskOutcome(spec.name, False, error=msg)
    markers = [m for m in found if m is not None]
    if len(markers) < len(found):
        _done(manifest, model, spec.name, status="incomplete", shards_done=len(markers), shards=len(shards))
        return TaskOutcome(spec.name, False, error="incomplete", complete=False)
    task = spec.build(model)
    first = markers[0]
    n_docs = first.n_docs or 0
    journal = TaskJournal(rundir, model, spec.name)
    records = [rec for d, (rec, _) in sorted(journal.records().items()) if d < n_docs]
    if len(records) < n_docs:  # cannot happen unless journal files were removed by hand
        _done(manifest, model, spec.name, status="incomplete", missing_docs=n_docs - len(records))
        return TaskOutcome(spec.name, False, error="incomplete", complete=False)
    if mode == "infer":
        journal.merge()
        _done(manifest, model, spec.name, status="inferred", version=task.version, n=n_docs)
        return TaskOutcome(spec.name, False, error="inferred (no scores: --mode infer)", complete=False)
    records, changed = _rescored(task, records, rescore_all=(mode == "eval"))
    journal.merge(records if changed else None)
    samples = [r for r in records if "error" not in r]
    errored = [r for r in records if "error" in r]
    if not samples and not errored:
        msg = f"ValueError: {spec.name}: no docs to evaluate ({first.data_source} has {first.n_available}, limit {spec.limit})"
        _done(manifest, model, spec.name, status="failed", error=msg)
        return TaskOutcome(spec.name, False, error=msg)
    result = TaskResult(
        task=task.name,
        version=task.version,
        model=model,
        group=task.group,
        subject=task.subject,
        category=task.category,
        output_type=task.output_type,
        data_source=first.data_source,
        n=len(samples),
        n_errors=len(errored),
        n_available=first.n_available,
        limit=spec.limit,
        options=spec.options,
        truncated_samples=sum(1 for s in samples if s.get("truncated")),
        metrics=task.aggregate(samples) if samples else {},
        timing=_sum_timing(markers),
        tokens=_sum_tokens(markers),
        **task.result_extras(samples),  # e.g. a code task's sandbox summary
    )
    if len(shards) > 1:
        result.shards = len(shards)
    latency = latency_summary(samples)
    if latency is not None:  # served backends only: an in-process run has no such key
        result.latency = latency
    rundir.write_results(model, task.name, result)
    done: dict = {"latency": latency} if latency is not None else {}  # no key rather than null in run.json
    _done(
        manifest,
        model,
        task.name,
        status="done",
        version=result.version,
        n=result.n,
        timing=result.timing,
        tokens=result.tokens,
        computed=sum(m.computed for m in markers),
        reused=sum(m.reused for m in markers),
        **done,
    )
    return TaskOutcome(task.name, True, samples, task)


def finalize_model(
    rundir: RunDir, model: str, specs: list[TaskSpec], shards: list[Shard], manifest: Manifest, mode: str = "all"
) -> list[TaskOutcome]:
    """Results of every task of a model whose shards all finished, then its groups."""
    outcomes = []
    for spec in specs:
        mine = [s for s in shards if s.model == model and s.task == spec.name]
        try:
            outcomes.append(finalize_task(rundir, spec, model, mine, manifest, mode))
        except Exception as e:  # a scorer that fails on re-scoring: that task only
            msg = f"{type(e).__name__}: {e}"
            log.error("%s | %s failed: %s", model, spec.name, msg)
            _done(manifest, model, spec.name, status="failed", error=msg)
            outcomes.append(TaskOutcome(spec.name, False, error=msg))
    for group, info in group_results(model, outcomes).items():
        rundir.write_results(model, group, info)
    # run.json's model entry: every request the model answered in this run's finished tasks
    latency = latency_summary(s for o in outcomes if o.ok for s in o.samples)
    if manifest is not None and latency is not None:
        manifest.model_latency(model, latency)
    return outcomes


def group_results(model: str, outcomes: list[TaskOutcome]) -> dict[str, GroupResult]:
    """Per group (e.g. mmlu): micro and macro averages, per subject and per category."""
    groups: dict[str, list[tuple[TaskOutcome, Task]]] = {}
    for o in outcomes:
        if o.ok and o.task_obj is not None and o.task_obj.group:
            groups.setdefault(o.task_obj.group, []).append((o, o.task_obj))
    out = {}
    for group, members in groups.items():
        first = members[0][1]
        metric_names = [m for m in first.metric_names() if all(m in t.metric_names() for _, t in members)]
        per_metric: dict[str, dict] = {}
        subjects: dict[str, dict[str, dict]] = {}
        categories: dict[str, dict[str, dict]] = {}
        for m in metric_names:
            per_member = {o.task: [s["metrics"][m] for s in o.samples] for o, _ in members}
            per_metric[m] = group_summary(per_member)
            for o, _ in members:
                subjects.setdefault(o.task, {})[m] = metric_summary(per_member[o.task])
            by_cat: dict[str, dict[str, list[float]]] = {}
            for o, t in members:
                if t.category:
                    by_cat.setdefault(t.category, {})[o.task] = per_member[o.task]
            for cat, cat_members in sorted(by_cat.items()):
                categories.setdefault(cat, {})[m] = group_summary(cat_members)
        out[group] = GroupResult.model_validate(
            {
                "task": group,
                "model": model,
                "members": [o.task for o, _ in members],
                "versions": {o.task: t.version for o, t in members},
                "version": _combined_version([t.version for _, t in members]),
                "n": sum(len(o.samples) for o, _ in members),
                "metrics": per_metric,
                "subjects": subjects,
                "categories": categories,
            }
        )
        # the members' requests pooled (not a mean of the members' means): served backends only
        latency = latency_summary(s for o, _ in members for s in o.samples)
        if latency is not None:
            out[group].latency = latency
    return out


def _combined_version(versions: list[str]) -> str:
    return hashlib.sha256("".join(sorted(versions)).encode()).hexdigest()[:8]


def run_task(
    model: LanguageModel, task: Task, spec: TaskSpec, rundir: RunDir, progress: Progress
) -> tuple[list[dict], dict]:
    """One whole task in this process, results written: (samples, results info). For scripts."""
    shard = Shard(model.name, task.name, 0, None, True)
    built = TaskSpec(spec.name, spec.mode, spec.options, spec.limit, lambda _model: task)
    marker = run_shard_safely(model, built, shard, rundir, progress)
    if marker.status != "done":
        raise RuntimeError(marker.error)
    outcome = finalize_task(rundir, built, model.name, [shard], None)
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return outcome.samples, read_record(rundir.results(model.name, task.name), TaskResult).to_json()
