"""A worker runs shards: docs of its range -> requests of the docs not yet answered -> the model ->
one journal line per doc as its answers arrive.

The same code runs inline (`--debug`, one worker), in a local pool process and in a Slurm job
(`python -m lmgauge worker RUN_DIR SHARD_ID...`). When a shard ends, its marker
`shards/<shard-id>.json` says so (done, or failed with the task's error); a shard without a marker
after its process is gone was cut short (killed, timed out) and is retried.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmgauge.config import ModelConfig
from lmgauge.models.base import LanguageModel
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest
from lmgauge.runs.journal import JournalWriter, TaskJournal, answers_of
from lmgauge.runs.plan import Shard, TaskSpec
from lmgauge.runs.reader import read_record
from lmgauge.runs.records import PlanRecord, SampleRecord, ShardMarker, TokenCounts
from lmgauge.runs.rundir import RunDir, write_json_atomic
from lmgauge.tasks.base import Task

log = logging.getLogger(__name__)


class Progress:
    """Progress bars with ETA; a no-op stand-in keeps the runner free of UI decisions."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def stop(self) -> None: ...


def read_marker(rundir: RunDir, shard_id: str) -> ShardMarker | None:
    """The shard's marker; None while it has none (not run yet, running, or cut short)."""
    path = rundir.marker(shard_id)
    return read_record(path, ShardMarker) if path.is_file() else None


def write_marker(rundir: RunDir, marker: ShardMarker) -> None:
    write_json_atomic(rundir.marker(marker.shard.id), marker.to_json())


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process so far, and of the CUDA allocator where there is one."""
    import resource

    out = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return out


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


def sample_record(
    task: Task, doc: dict, doc_id: int, requests: list, results: list, score: bool = True
) -> SampleRecord:
    """The journal line of a doc from its requests and results: scored (or only answered, for
    `--mode infer`), or the backend's error; with the raw answers and the prompt(s) either way."""
    failed = [r.error for r in results if getattr(r, "error", None)]
    record: dict[str, Any] = {"doc_id": doc_id}
    if failed:  # no answer to score: kept on disk as an error, left out of the metrics
        record.update(error=failed[0], failed_requests=len(failed))
    elif score:
        record.update(task.score(doc, doc_id, results))
        record["truncated"] = max((getattr(r, "truncated", 0) for r in results), default=0)
    record["answers"] = answers_of(results)
    record.update(prompt_fields(requests))
    return SampleRecord.model_validate(record)


def run_shard(
    model: LanguageModel,
    task: Task,
    spec: TaskSpec,
    shard: Shard,
    rundir: RunDir,
    progress: Progress,
    score: bool = True,
) -> ShardMarker:
    """Answers the docs of the shard that the journal lacks; returns the shard's marker."""
    t0 = time.perf_counter()
    docs, where = task.load()
    bind = getattr(task, "count_tokens_with", None)  # OpenCompass tasks: prompts fitted to max_seq_len
    if bind is not None:
        bind(model)
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
    before = _counts(model)
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
                record = sample_record(
                    task, docs[d], d, requests[first_of[d] : first_of[d] + len(results)], results, score
                )
                n_errors += record.error is not None
                writer.append(record)
                progress.advance()

            _answer(model, requests, on_result)
    t_model = time.perf_counter() - t1
    progress.stop()
    if n_errors:
        log.warning(
            "%s: %d doc(s) got no answer from the model; recorded as errors, retried on resume", task.name, n_errors
        )
    after = _counts(model)
    return ShardMarker(
        status="done",
        shard=shard.record(),
        n_docs=len(docs),
        limit=spec.limit,
        n_available=n_available,
        data_source=where,
        computed=len(todo),
        reused=stop - shard.start - len(todo),
        errors=n_errors,
        timing={"load_data_s": round(t_load, 3), "build_requests_s": round(t_build, 3), "model_s": round(t_model, 3)},
        tokens=TokenCounts(**{k: getattr(after, k) - getattr(before, k) for k in TokenCounts.model_fields}),
        **_where(),
    )


def _counts(model: LanguageModel) -> TokenCounts:
    s = model.stats
    return TokenCounts(
        forwarded=s.forwarded, computed=s.computed, per_request_baseline=s.naive, scored=s.scored, requests=s.requests
    )


def _where() -> dict[str, Any]:
    """Where a shard ran: host, process, devices, Slurm job."""
    return {
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
) -> ShardMarker:
    """run_shard, with the task's own errors (missing data, a scorer that raises) written to the
    marker as `failed`: retrying cannot fix them. A crash of the process leaves no marker."""
    t0 = time.perf_counter()
    try:
        marker = run_shard(model, spec.build(shard.model), spec, shard, rundir, progress, score)
    except Exception as e:  # one bad task must not take the others with it
        progress.stop()
        msg = f"{type(e).__name__}: {e}"
        log.error("%s | %s failed: %s", shard.model, shard.task, msg)
        log.debug("%s", traceback.format_exc())
        marker = ShardMarker(status="failed", shard=shard.record(), error=msg, **_where())
    marker.wall_s = round(time.perf_counter() - t0, 3)
    marker.peak_memory = peak_memory()
    if model_info is not None:
        marker.model_info = model_info
    write_marker(rundir, marker)
    return marker


def fail_shards(rundir: RunDir, shards: list[Shard], error: str) -> None:
    """Markers for shards that cannot run at all (the model does not load): failed, not retried."""
    for shard in shards:
        failed = {"status": "failed", "error": error}
        marker = ShardMarker(status="failed", shard=shard.record(), error=error, model_info=failed, **_where())
        write_marker(rundir, marker)


def run_job(
    rundir: RunDir,
    mcfg: ModelConfig,
    specs: dict[str, TaskSpec],
    shards: list[Shard],
    progress: Progress,
    score: bool = True,
    on_shard: Callable[[Shard, ShardMarker, float], None] | None = None,
) -> bool:
    """The shards of one model in this process: the model loaded once, a marker per shard (the
    first with the model's description). What inline runs and what a worker process runs.
    False when the model could not be built (every shard then has a failed marker)."""
    from lmgauge.models import ModelError, build_model

    t0 = time.perf_counter()
    try:
        model = build_model(mcfg)
    except (ModelError, OSError, ValueError) as e:
        log.error("model %s: %s", mcfg.name, e)
        fail_shards(rundir, shards, f"model {mcfg.name}: {e}")
        return False
    info: dict[str, Any] | None = {**model.describe(), "load_s": round(time.perf_counter() - t0, 3)}
    try:
        for shard in shards:
            t1 = time.perf_counter()
            marker = run_shard_safely(model, specs[shard.task], shard, rundir, progress, score, info)
            info = None
            if on_shard is not None:
                on_shard(shard, marker, time.perf_counter() - t1)
    finally:
        progress.stop()
        del model
    return True


def run_worker(run_dir: str | Path, shard_ids: list[str]) -> int:
    """Process entry: the shards of one model from the run's plan.json. 0 when every shard ran
    (done or failed by its task), 1 when the model could not be built."""
    from lmgauge.config import validate
    from lmgauge.data.sources import set_data_dir
    from lmgauge.runs.plan import plan_tasks
    from lmgauge.scoring.sandbox import SandboxUnavailable
    from lmgauge.tasks.code import prepare_sandbox

    rundir = RunDir(Path(run_dir))
    plan = read_record(rundir.plan, PlanRecord)
    shards = {s.id: Shard.from_json(s) for s in plan.shards}
    missing = [i for i in shard_ids if i not in shards]
    if missing:
        raise SystemExit(f"{rundir.plan} has no shard {missing[0]!r}")
    cfg = validate(plan.config, str(rundir.plan))
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
    mine = [shards[i] for i in shard_ids]
    models = {s.model for s in mine}
    if len(models) != 1:
        raise SystemExit(f"a worker runs the shards of one model, got {sorted(models)}")
    mcfg = next(m for m in cfg.models if m.name in models)
    score = plan.mode != "infer"
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

    def said(shard: Shard, marker: ShardMarker, seconds: float) -> None:
        log.info(
            "shard %s: %s in %.1f s (%s computed, %s reused)",
            shard.id,
            marker.status,
            seconds,
            marker.computed,
            marker.reused,
        )

    ok = run_job(rundir, mcfg, specs, mine, Progress(), score, said)
    return 0 if ok else 1
