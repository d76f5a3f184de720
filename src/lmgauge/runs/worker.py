"""A worker runs shards: docs of its range -> requests of the docs not yet answered -> the model ->
one journal line per doc as its answers arrive.

The same code runs inline (`--debug`, one worker), in a local pool process and in a Slurm job
(`python -m lmgauge worker RUN_DIR SHARD_ID...`). When a shard ends, its marker
`shards/<shard-id>.json` says so (done, or failed with the task's error); a shard without a marker
after its process is gone was cut short (killed, timed out) and is retried.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from pathlib import Path

from lmgauge.models.base import LanguageModel
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest, TokenStats
from lmgauge.runs.journal import JournalWriter, TaskJournal, answers_of
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.records import FORMAT
from lmgauge.runs.rundir import RunDir, write_json_atomic
from lmgauge.tasks.base import Task

log = logging.getLogger(__name__)


class Progress:
    """Progress bars with ETA; a no-op stand-in keeps the runner free of UI decisions."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def stop(self) -> None: ...


def marker_path(rundir: RunDir, shard_id: str) -> Path:
    return rundir.root / "shards" / f"{shard_id}.json"


def read_marker(rundir: RunDir, shard_id: str) -> dict | None:
    try:
        return json.loads(marker_path(rundir, shard_id).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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


def prompt_fields(requests: list) -> dict:
    first = requests[0]
    if isinstance(first, LoglikelihoodRequest):
        contexts = [r.context for r in requests]
        if all(c == contexts[0] for c in contexts):
            return {"prompt": contexts[0], "continuations": [r.continuation for r in requests]}
        return {"prompts": contexts, "continuations": [r.continuation for r in requests]}
    if isinstance(first, RollingRequest):
        return {"text_chars": len(first.text)}
    return {"prompt": first.prompt}


def scored_record(task: Task, doc: dict, doc_id: int, results: list) -> dict:
    """The per-sample record of a doc from its results: scored, or the backend's error."""
    failed = [r.error for r in results if getattr(r, "error", None)]
    if failed:  # no answer to score: kept on disk as an error, left out of the metrics
        return {"doc_id": doc_id, "error": failed[0], "failed_requests": len(failed)}
    record = {"doc_id": doc_id, **task.score(doc, doc_id, results)}
    record["truncated"] = max((getattr(r, "truncated", 0) for r in results), default=0)
    return record


def run_shard(
    model: LanguageModel,
    task: Task,
    spec: TaskSpec,
    shard: Shard,
    rundir: RunDir,
    progress: Progress,
    score: bool = True,
) -> dict:
    """Answers the docs of the shard that the journal lacks; returns the shard's marker info."""
    t0 = time.perf_counter()
    docs, where = task.load()
    n_available = len(docs)
    if spec.limit is not None:
        docs = docs[: spec.limit]
    stop = len(docs) if shard.stop is None else min(shard.stop, len(docs))
    t_load = time.perf_counter() - t0

    journal = TaskJournal(rundir, shard.model, shard.task)
    answered = journal.answered()
    todo = [d for d in range(shard.start, stop) if d not in answered]
    t_build = time.perf_counter()
    requests: list = []
    owner: list[int] = []
    per_doc: dict[int, list] = {}
    first_of: dict[int, int] = {}
    for d in todo:
        rs = task.requests(docs[d], d)
        first_of[d] = len(requests)
        per_doc[d] = [None] * len(rs)
        requests.extend(rs)
        owner.extend([d] * len(rs))
    remaining = {d: len(x) for d, x in per_doc.items()}
    t_build = time.perf_counter() - t_build
    before = TokenStats(**{k: getattr(model.stats, k) for k in ("forwarded", "naive", "scored", "requests")})
    n_errors = 0

    progress.start(f"{model.name} | {task.name}" + ("" if shard.whole else f" [{shard.start}:{stop}]"), len(todo))
    t1 = time.perf_counter()
    if requests:
        with JournalWriter(journal.shard_path(shard.start, stop, shard.whole)) as writer:

            def on_result(j: int, result) -> None:
                nonlocal n_errors
                d = owner[j]
                per_doc[d][j - first_of[d]] = result
                remaining[d] -= 1
                if remaining[d]:
                    return
                results = per_doc.pop(d)
                if score:
                    record = scored_record(task, docs[d], d, results)
                else:
                    failed = [r.error for r in results if getattr(r, "error", None)]
                    record = {"doc_id": d, "error": failed[0]} if failed else {"doc_id": d}
                n_errors += "error" in record
                record["answers"] = answers_of(results)
                record.update(prompt_fields(requests[first_of[d] : first_of[d] + len(results)]))
                writer.append(record)
                progress.advance()

            _answer(model, requests, on_result)
    t_model = time.perf_counter() - t1
    progress.stop()
    if n_errors:
        log.warning(
            "%s: %d doc(s) got no answer from the model; recorded as errors, retried on resume", task.name, n_errors
        )
    stats = model.stats
    return {
        "format": FORMAT,
        "status": "done",
        "shard": shard.to_json(),
        "n_docs": len(docs),
        "limit": spec.limit,
        "n_available": n_available,
        "data_source": where,
        "computed": len(todo),
        "reused": stop - shard.start - len(todo),
        "errors": n_errors,
        "timing": {
            "load_data_s": round(t_load, 3),
            "build_requests_s": round(t_build, 3),
            "model_s": round(t_model, 3),
        },
        "tokens": {
            "forwarded": stats.forwarded - before.forwarded,
            "per_request_baseline": stats.naive - before.naive,
            "scored": stats.scored - before.scored,
            "requests": stats.requests - before.requests,
        },
        "host": platform.node(),
        "pid": os.getpid(),
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def run_shard_safely(
    model: LanguageModel,
    spec: TaskSpec,
    shard: Shard,
    rundir: RunDir,
    progress: Progress,
    score: bool = True,
    model_info: dict | None = None,
) -> dict:
    """run_shard, with the task's own errors (missing data, a scorer that raises) written to the
    marker as `failed`: retrying cannot fix them. A crash of the process leaves no marker."""
    try:
        info = run_shard(model, spec.build(shard.model), spec, shard, rundir, progress, score)
    except Exception as e:  # one bad task must not take the others with it
        progress.stop()
        msg = f"{type(e).__name__}: {e}"
        log.error("%s | %s failed: %s", shard.model, shard.task, msg)
        log.debug("%s", traceback.format_exc())
        info = {"format": FORMAT, "status": "failed", "shard": shard.to_json(), "error": msg}
    if model_info is not None:
        info["model_info"] = model_info
    write_json_atomic(marker_path(rundir, shard.id), info)
    return info


def fail_shards(rundir: RunDir, shards: list[Shard], error: str) -> None:
    """Markers for shards that cannot run at all (the model does not load): failed, not retried."""
    for shard in shards:
        write_json_atomic(
            marker_path(rundir, shard.id),
            {"format": FORMAT, "status": "failed", "shard": shard.to_json(), "error": error},
        )


def run_worker(run_dir: str | Path, shard_ids: list[str]) -> int:
    """Process entry: the shards of one model from the run's plan.json. 0 when every shard ran
    (done or failed by its task), 1 when the model could not be built."""
    from lmgauge.config import validate
    from lmgauge.data.sources import set_data_dir
    from lmgauge.models import ModelError, build_model
    from lmgauge.runs.plan import plan_tasks
    from lmgauge.scoring.sandbox import SandboxUnavailable
    from lmgauge.tasks.code import prepare_sandbox

    rundir = RunDir(Path(run_dir))
    plan = json.loads((rundir.root / "plan.json").read_text(encoding="utf-8"))
    shards = {s["id"]: Shard.from_json(s) for s in plan["shards"]}
    missing = [i for i in shard_ids if i not in shards]
    if missing:
        raise SystemExit(f"{rundir.root}/plan.json has no shard {missing[0]!r}")
    cfg = validate(plan["config"], f"{rundir.root}/plan.json")
    set_data_dir(cfg.data_dir)
    # the pool's share of the CPU, or what Slurm allocated to the job (torch would take every core)
    threads = (
        os.environ.get("LMGAUGE_NUM_THREADS")
        or os.environ.get("SLURM_CPUS_PER_TASK")
        or os.environ.get("SLURM_CPUS_ON_NODE")
    )
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    specs = {s.name: s for s in plan_tasks(cfg)}
    score = plan.get("mode", "all") != "infer"
    mine = [shards[i] for i in shard_ids]
    models = {s.model for s in mine}
    if len(models) != 1:
        raise SystemExit(f"a worker runs the shards of one model, got {sorted(models)}")
    mcfg = next(m for m in cfg.models if m.name in models)
    try:  # a node without bwrap refuses before the model loads, as the coordinator did
        prepare_sandbox([specs[s.task].build(s.model) for s in mine] if score else [], cfg.allow_weak_sandbox)
    except SandboxUnavailable as e:
        log.error("%s", e)
        fail_shards(rundir, mine, f"{type(e).__name__}: {e}")
        return 1
    log.info(
        "worker %d on %s: model %s, devices %s, shards %s",
        os.getpid(),
        platform.node(),
        mcfg.name,
        os.environ.get("CUDA_VISIBLE_DEVICES", "-"),
        ", ".join(shard_ids),
    )
    try:
        model = build_model(mcfg)
    except (ModelError, OSError, ValueError) as e:
        log.error("model %s: %s", mcfg.name, e)
        fail_shards(rundir, mine, f"model {mcfg.name}: {e}")
        return 1
    described = False
    for shard in mine:
        t0 = time.perf_counter()
        info = run_shard_safely(
            model, specs[shard.task], shard, rundir, Progress(), score, None if described else model.describe()
        )
        described = True
        log.info(
            "shard %s: %s in %.1f s (%s computed, %s reused)",
            shard.id,
            info["status"],
            time.perf_counter() - t0,
            info.get("computed", 0),
            info.get("reused", 0),
        )
    return 0
