"""The run directory's records: what each file holds, typed and versioned (docs/run-directory.md).

One model per kind of file: the manifest (run.json), the plan (plan.json), shard markers
(shards/<id>.json), sample records (one journal line per doc, with the answers per request kind),
task and group results (results/<model>/<task>.json). Writers build these and readers get them
back, so a field has one name and one meaning everywhere.

Compatibility rule: a record carries `format` (FORMAT for what this code writes; files without the
key were written by format-1 code). Format 2 adds the key and nothing else, so every format-1
field reads as it was written. Every record keeps keys it does not know (`extra="allow"`), so an
older reader passes through what a newer writer added and nothing on disk is lost on a rewrite.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

FORMAT = 2  # what this code writes

Mode = Literal["all", "infer", "eval"]  # --mode: answer and score, answer only, re-score saved answers


class Record(BaseModel):
    """Keys a later format adds are kept (and written back), never dropped.

    Written: every field the record was built or assigned with, its extra keys, and its
    collections (a dict or list filled in place later is never left out)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    _write_empty_collections: ClassVar[bool] = True

    @model_validator(mode="after")
    def _collections_are_written(self) -> Record:
        if self._write_empty_collections:
            fields = type(self).model_fields
            self.__pydantic_fields_set__.update(n for n, f in fields.items() if f.default_factory is not None)
        return self

    def to_json(self) -> dict[str, Any]:
        """The dict written to disk."""
        return self.model_dump(mode="python", exclude_unset=True)


class Versioned(Record):
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, **super().to_json()}


def with_format(raw: dict[str, Any]) -> dict[str, Any]:
    """A file without `format` was written by format-1 code."""
    return raw if "format" in raw else {**raw, "format": 1}


# ---------------------------------------------------------------- counts shared by several files


class TokenCounts(Record):
    """What went through the model: `per_request_baseline` is what a per-request run (lm-eval's)
    would forward for the same requests."""

    forwarded: int = 0
    computed: int = 0  # positions computed: forwarded plus the padding of padded batches
    per_request_baseline: int = 0
    scored: int = 0
    requests: int = 0


class MetricValue(Record):
    """One aggregated metric: a fraction for accuracies; stderr None where none is defined."""

    value: float | None
    stderr: float | None = None
    n: int = 0


class GroupMetric(Record):
    micro: MetricValue  # mean over all questions pooled (lm-eval's number for a group)
    macro: MetricValue  # mean of member means


# ---------------------------------------------------------------- plan and shards


class ShardRecord(Record):
    """One model, one task, docs [start, stop) of its split after --limit (stop None: to the end)."""

    id: str
    model: str
    task: str
    start: int
    stop: int | None
    whole: bool  # the task's only shard: it journals straight into samples/<model>/<task>.jsonl
    est_tokens: int | None = None
    n_docs: int | None = None


class PlanRecord(Versioned):
    """plan.json: what `lmgauge worker` processes and Slurm jobs read."""

    config: dict[str, Any]
    mode: Mode = "all"
    max_partition_size: int | None = None
    shards: list[ShardRecord]


class ShardMarker(Versioned):
    """shards/<shard-id>.json, written when a shard ends: done, or failed with the task's error."""

    status: Literal["done", "failed"]
    shard: ShardRecord
    error: str | None = None
    n_docs: int | None = None
    limit: int | None = None
    n_available: int | None = None
    data_source: str | None = None
    computed: int = 0
    reused: int = 0
    errors: int = 0
    timing: dict[str, float] | None = None  # done markers: as in results, for this shard
    tokens: TokenCounts | None = None
    host: str | None = None
    pid: int | None = None
    devices: str | None = None
    slurm_job_id: str | None = None
    wall_s: float | None = None  # the shard from start to marker
    peak_memory: dict[str, float] | None = None  # of the worker process so far (rss_mb, cuda_allocated_mb)
    # the model as its worker loaded it (describe() and load_s), on the first shard a worker ran;
    # {"status": "failed", "error": ...} on every shard of a model that did not load
    model_info: dict[str, Any] | None = None


# ---------------------------------------------------------------- run.json


class JobAttempt(Record):
    """One attempt at running shards: a pool worker (pid, devices, log) or a Slurm job (job_id)."""

    state: str | None = None  # RUNNING, COMPLETED, FAILED (exit N), TIMEOUT, CANCELLED, ...
    attempt: int = 1
    pid: int | None = None
    devices: list[str] | None = None
    log: str | None = None
    job_id: str | None = None


class ShardEntry(Record):
    """run.json's view of a shard: the plan's fields and every attempt at running it."""

    model: str | None = None
    task: str | None = None
    start: int | None = None
    stop: int | None = None
    whole: bool | None = None
    est_tokens: int | None = None
    n_docs: int | None = None
    jobs: list[JobAttempt] = Field(default_factory=list)  # none for inline runs

    _write_empty_collections: ClassVar[bool] = False


class LatencySummary(Record):
    """results' `latency`: the served requests behind a task's samples, with `lmgauge perf`'s (and
    vLLM's) key names; in ms. Only where a server answered: in-process runs have no `latency`."""

    requests: int  # requests with a latency (the samples' answers)
    calls: int  # HTTP calls (a rolling document makes one per window)
    retried: int = 0  # requests that needed more than one try
    streamed: int = 0  # requests with a TTFT
    output_tokens: int | None = None  # generation tasks: tokens generated over those requests
    mean_e2el_ms: float
    median_e2el_ms: float
    p90_e2el_ms: float
    p99_e2el_ms: float
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    p90_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None


class ModelInfo(Record):
    """What the backend says about itself (`describe()`; its keys vary by backend), and what the run
    measured: load time, evaluation time, tokens, peak memory. `status: failed` when it did not load."""

    backend: str | None = None
    path: str | None = None
    status: str | None = None
    error: str | None = None
    load_s: float | None = None
    eval_s: float | None = None
    tokens: TokenCounts | None = None
    peak_memory: dict[str, float] | None = None
    latency: LatencySummary | None = None  # served backends: every request of the model's finished tasks


class TaskStatus(Record):
    """run.json's line for one (model, task)."""

    status: Literal["done", "failed", "incomplete", "inferred"]
    version: str | None = None
    n: int | None = None
    error: str | None = None
    timing: dict[str, float] | None = None
    tokens: TokenCounts | None = None
    computed: int | None = None
    reused: int | None = None
    shards_done: int | None = None  # incomplete: shards with a marker, of `shards`
    shards: int | None = None
    missing_docs: int | None = None
    latency: LatencySummary | None = None  # served backends: the task result's `latency`


class RunManifest(Versioned):
    """run.json: what ran, with which code and data, where, and how long it took."""

    run_id: str
    started: str
    finished: str | None = None
    status: str = "running"  # running, done, interrupted, incomplete, or "... (N task(s) failed)"
    argv: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, ModelInfo] = Field(default_factory=dict)
    tasks: dict[str, dict[str, TaskStatus]] = Field(default_factory=dict)
    executor: str | None = None
    executor_error: str | None = None
    shards: dict[str, ShardEntry] = Field(default_factory=dict)
    resumed: list[str] | None = None  # times the run was continued with -r
    versions: dict[str, str | None] = Field(default_factory=dict)
    git_sha: str | None = None
    host: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)


# ---------------------------------------------------------------- journal lines


class AnswerLatency(Record):
    """An answer's `latency` (served backends only): the request's HTTP call(s), timed from the send
    of each call's answering try (lmgauge.requests.RequestLatency)."""

    e2el_s: float
    ttft_s: float | None = None  # streamed requests: to the first server-sent event
    calls: int = 1
    tries: int = 1


class LoglikelihoodAnswer(Record):
    """A LoglikelihoodResult as written: log P(continuation | context)."""

    kind: Literal["loglikelihood"] = Field("loglikelihood", exclude=True)
    logprob: float | None  # null where the backend failed (error set)
    is_greedy: bool
    n_tokens: int = 0
    truncated: int = 0
    error: str | None = None
    latency: AnswerLatency | None = None  # absent for in-process backends and runs before it existed
    scored_from: str | None = None  # served models only: "prompt_logprobs" or "next_token_topk"


class RollingAnswer(Record):
    """A RollingResult as written: the log-likelihood of a whole text."""

    kind: Literal["rolling"] = Field("rolling", exclude=True)
    logprob: float | None
    n_tokens: int
    n_windows: int = 0
    error: str | None = None
    latency: AnswerLatency | None = None  # absent for in-process backends and runs before it existed


class GenerateAnswer(Record):
    """A GenerateResult as written: the raw generated text, before any answer extraction."""

    kind: Literal["generate"] = Field("generate", exclude=True)
    text: str
    n_tokens: int = 0
    truncated: int = 0
    finish_reason: str = "length"
    error: str | None = None
    prompt: str | None = None  # the text the model saw, where it differs from the request's (chat template)
    latency: AnswerLatency | None = None  # absent for in-process backends and runs before it existed


def _answer_kind(v: Any) -> str:
    """Which request kind an answer is for, from its keys (the lines do not name it)."""
    keys = v if isinstance(v, dict) else v.__dict__
    if "text" in keys:
        return "generate"
    if "is_greedy" in keys:
        return "loglikelihood"
    return "rolling"


Answer = Annotated[
    Annotated[LoglikelihoodAnswer, Tag("loglikelihood")]
    | Annotated[RollingAnswer, Tag("rolling")]
    | Annotated[GenerateAnswer, Tag("generate")],
    Discriminator(_answer_kind),
]


class SampleRecord(Record):
    """One journal line: a doc, its prompt(s), the backend's raw answers, and its scores.

    A line with `error` (the backend could not answer) has no scores; a `--mode infer` line has
    answers and prompts but no scores. Keys a task adds (e.g. a code task's `executions`) are kept
    and listed by `extras`. Lines carry no `format` of their own: they have the shape of their
    run's format (1 and 2 have the same lines).
    """

    doc_id: int
    error: str | None = None
    failed_requests: int | None = None
    gold: Any = None
    pred: Any = None
    pred_norm: Any = None
    correct: bool | None = None
    extracted: dict[str, Any] | None = None  # generation tasks: each filter's extracted answer
    metrics: dict[str, float | None] = Field(default_factory=dict)
    truncated: int = 0
    logprobs: list[float | None] | None = None  # choice tasks: one per choice, in choice order
    is_greedy: list[bool] | None = None
    answers: list[Answer] = Field(default_factory=list)
    prompt: str | None = None
    prompts: list[str] | None = None  # choice tasks whose contexts differ per choice (Winogrande)
    continuations: list[str] | None = None
    text_chars: int | None = None  # perplexity tasks: the text's length instead of the text

    _write_empty_collections: ClassVar[bool] = False  # a line has the keys its task gave it, no more

    @property
    def is_answer(self) -> bool:
        """The model answered (an `error` line is a failure to retry, not an answer)."""
        return self.error is None and "answers" in self.model_fields_set

    @property
    def extras(self) -> dict[str, Any]:
        """Task-specific keys not named above."""
        return dict(self.model_extra or {})


# ---------------------------------------------------------------- results


class ResultBase(Versioned):
    task: str
    version: str | None = None  # hash of what shapes the prompt: equal versions, equal prompts
    model: str | None = None
    n: int = 0


class TaskResult(ResultBase):
    """results/<model>/<task>.json for one task."""

    is_group: Literal[False] = False
    group: str | None = None
    subject: str | None = None
    category: str | None = None
    output_type: str | None = None
    data_source: str | None = None
    n_errors: int = 0
    n_available: int | None = None
    limit: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    truncated_samples: int = 0
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    shards: int | None = None  # set when the task ran as several shards
    latency: LatencySummary | None = None  # served backends only


class GroupResult(ResultBase):
    """results/<model>/<group>.json (e.g. mmlu.json): micro and macro per metric, per subject and
    per category (with micro and macro within the category)."""

    is_group: Literal[True] = True
    members: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, GroupMetric] = Field(default_factory=dict)
    subjects: dict[str, dict[str, MetricValue]] = Field(default_factory=dict)
    categories: dict[str, dict[str, GroupMetric]] = Field(default_factory=dict)
    latency: LatencySummary | None = None  # served backends: the members' requests pooled

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "is_group": True}  # what tells a reader it is a group


Result = TaskResult | GroupResult


def parse_result(raw: dict[str, Any]) -> Result:
    raw = with_format(raw)
    return GroupResult.model_validate(raw) if raw.get("is_group") else TaskResult.model_validate(raw)
