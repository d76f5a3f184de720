"""Run models x tasks inline: build requests, let the backend answer, write each doc as it finishes.

A task that fails is recorded in run.json with its error and the run goes on; what finished stays
on disk.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from lmgauge.models.base import LanguageModel
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest, TokenStats
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.rundir import RunDir, SampleWriter
from lmgauge.scoring.aggregate import group_summary, metric_summary
from lmgauge.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass
class TaskSpec:
    """One task to run, with the options it was built from (recorded in run.json)."""

    name: str
    mode: str | None
    options: dict
    limit: int | None
    build: Callable[[], Task]


@dataclass
class TaskOutcome:
    task: str
    ok: bool
    samples: list[dict] = field(default_factory=list)
    task_obj: Task | None = None
    error: str | None = None


class Progress:
    """Progress bars with ETA; a no-op stand-in keeps the runner free of UI decisions."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def stop(self) -> None: ...


def _answer(model: LanguageModel, requests: list, on_result) -> None:
    kinds = {type(r) for r in requests}
    if len(kinds) > 1:
        raise TypeError(f"a task mixed request kinds: {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop()
    if kind is LoglikelihoodRequest:
        model.loglikelihood(requests, on_result)
    elif kind is RollingRequest:
        model.loglikelihood_rolling(requests, on_result)
    elif kind is GenerateRequest:
        model.generate(requests, on_result)
    else:
        raise TypeError(f"unknown request kind {kind.__name__}")


def _prompt_fields(requests: list) -> dict:
    first = requests[0]
    if isinstance(first, LoglikelihoodRequest):
        contexts = [r.context for r in requests]
        if all(c == contexts[0] for c in contexts):
            return {"prompt": contexts[0], "continuations": [r.continuation for r in requests]}
        return {"prompts": contexts, "continuations": [r.continuation for r in requests]}
    if isinstance(first, RollingRequest):
        return {"text_chars": len(first.text)}
    return {"prompt": first.prompt}


def run_task(model: LanguageModel, task: Task, spec: TaskSpec, rundir: RunDir, progress: Progress) -> tuple[list[dict], dict]:
    t0 = time.perf_counter()
    docs, where = task.load()
    n_available = len(docs)
    if spec.limit is not None:
        docs = docs[: spec.limit]
    t_load = time.perf_counter() - t0

    t_build = time.perf_counter()
    requests: list = []
    owner: list[int] = []
    per_doc: list[list] = []
    for doc_id, doc in enumerate(docs):
        rs = task.requests(doc, doc_id)
        per_doc.append([None] * len(rs))
        requests.extend(rs)
        owner.extend([doc_id] * len(rs))
    first_of = {}
    for j, d in enumerate(owner):
        first_of.setdefault(d, j)
    remaining = [len(x) for x in per_doc]
    samples: list[dict] = []
    errored: list[dict] = []
    t_build = time.perf_counter() - t_build
    stats_before = TokenStats(**{k: getattr(model.stats, k) for k in ("forwarded", "naive", "scored", "requests")})

    progress.start(f"{model.name} | {task.name}", len(docs))
    t1 = time.perf_counter()
    with SampleWriter(rundir.samples_path(model.name, task.name)) as writer:

        def on_result(j: int, result) -> None:
            d = owner[j]
            per_doc[d][j - first_of[d]] = result
            remaining[d] -= 1
            if remaining[d]:
                return
            results = per_doc[d]
            failed = [r.error for r in results if getattr(r, "error", None)]
            if failed:  # no answer to score: kept on disk as an error, left out of the metrics
                record = {"doc_id": d, "error": failed[0], "failed_requests": len(failed)}
            else:
                record = {"doc_id": d, **task.score(docs[d], d, results)}
                record["truncated"] = max(getattr(r, "truncated", 0) for r in results)
            record.update(_prompt_fields(requests[first_of[d] : first_of[d] + len(results)]))
            writer.write(record)
            (errored if failed else samples).append(record)
            progress.advance()

        _answer(model, requests, on_result)
    t_model = time.perf_counter() - t1
    progress.stop()

    samples.sort(key=lambda s: s["doc_id"])
    stats = model.stats
    info = {
        "task": task.name,
        "version": task.version,
        "model": model.name,
        "group": task.group,
        "subject": task.subject,
        "category": task.category,
        "output_type": task.output_type,
        "data_source": where,
        "n": len(samples),
        "n_errors": len(errored),
        "n_available": n_available,
        "limit": spec.limit,
        "options": spec.options,
        "truncated_samples": sum(1 for s in samples if s.get("truncated")),
        "metrics": task.aggregate(samples) if samples else {},
        "timing": {"load_data_s": round(t_load, 3), "build_requests_s": round(t_build, 3), "model_s": round(t_model, 3)},
        "tokens": {
            "forwarded": stats.forwarded - stats_before.forwarded,
            "per_request_baseline": stats.naive - stats_before.naive,
            "scored": stats.scored - stats_before.scored,
            "requests": stats.requests - stats_before.requests,
        },
    }
    if errored:
        log.warning("%s: %d doc(s) got no answer from the model; recorded as errors in the samples, not scored", task.name, len(errored))
    if not samples and not errored:
        raise ValueError(f"{task.name}: no docs to evaluate ({where} has {n_available}, limit {spec.limit})")
    return samples, info


def group_results(model: str, outcomes: list[TaskOutcome]) -> dict[str, dict]:
    """Per group (e.g. mmlu): micro and macro averages, per subject and per category."""
    groups: dict[str, list[TaskOutcome]] = {}
    for o in outcomes:
        if o.ok and o.task_obj is not None and o.task_obj.group:
            groups.setdefault(o.task_obj.group, []).append(o)
    out = {}
    for group, members in groups.items():
        metric_names = [m for m in members[0].task_obj.metric_names() if all(m in o.task_obj.metric_names() for o in members)]
        per_metric, subjects, categories = {}, {}, {}
        for m in metric_names:
            per_member = {o.task: [s["metrics"][m] for s in o.samples] for o in members}
            per_metric[m] = group_summary(per_member)
            for o in members:
                subjects.setdefault(o.task, {})[m] = metric_summary(per_member[o.task])
            by_cat: dict[str, dict[str, list[float]]] = {}
            for o in members:
                if o.task_obj.category:
                    by_cat.setdefault(o.task_obj.category, {})[o.task] = per_member[o.task]
            for cat, cat_members in sorted(by_cat.items()):
                categories.setdefault(cat, {})[m] = group_summary(cat_members)
        out[group] = {
            "task": group,
            "is_group": True,
            "model": model,
            "members": [o.task for o in members],
            "versions": {o.task: o.task_obj.version for o in members},
            "version": _combined_version([o.task_obj.version for o in members]),
            "n": sum(len(o.samples) for o in members),
            "metrics": per_metric,
            "subjects": subjects,
            "categories": categories,
        }
    return out


def _combined_version(versions: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(sorted(versions)).encode()).hexdigest()[:8]


def run_model_tasks(
    model: LanguageModel, specs: list[TaskSpec], rundir: RunDir, manifest: Manifest, progress: Progress
) -> list[TaskOutcome]:
    outcomes = []
    for spec in specs:
        try:
            task = spec.build()
            samples, info = run_task(model, task, spec, rundir, progress)
        except KeyboardInterrupt:
            manifest.task_done(model.name, spec.name, {"status": "interrupted"})
            raise
        except Exception as e:  # one bad task must not take the finished ones with it
            progress.stop()
            msg = f"{type(e).__name__}: {e}"
            log.error("%s | %s failed: %s", model.name, spec.name, msg)
            log.debug("%s", traceback.format_exc())
            manifest.task_done(model.name, spec.name, {"status": "failed", "error": msg})
            outcomes.append(TaskOutcome(spec.name, False, error=msg))
            continue
        rundir.write_results(model.name, task.name, info)
        manifest.task_done(
            model.name,
            task.name,
            {"status": "done", "version": info["version"], "n": info["n"], "timing": info["timing"], "tokens": info["tokens"]},
        )
        outcomes.append(TaskOutcome(task.name, True, samples, task))
    for group, info in group_results(model.name, outcomes).items():
        rundir.write_results(model.name, group, info)
    return outcomes
