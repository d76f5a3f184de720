"""What a task is: data, a prompt, requests per doc, a scorer. A task never sees a backend."""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmgauge.data import DataError, Source, locate
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, RollingRequest
from lmgauge.scoring.aggregate import metric_summary
from lmgauge.scoring.metrics import acc_norm_pred, acc_pred

Doc = dict
Request = LoglikelihoodRequest | RollingRequest | GenerateRequest


def _stable(value: Any) -> Any:
    """A JSON-able form of prompt settings; functions count by their source code."""
    if callable(value):
        try:
            return inspect.getsource(value).strip()
        except (OSError, TypeError):
            return getattr(value, "__qualname__", repr(value))
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


def settings_hash(settings: dict) -> str:
    blob = json.dumps(_stable(settings), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass
class DocSet:
    """Where a split of a dataset may be found (tried in order), and how to turn rows into docs."""

    what: str  # e.g. "mmlu astronomy test"
    candidates: Callable[[], list[Source]]
    hint: str = ""
    convert: Callable[[dict], Doc] | None = None
    required: Sequence[str] = ()

    def load(self) -> tuple[list[Doc], str]:
        rows, where = locate(self.what, self.candidates(), self.hint)
        if not rows:
            raise DataError(f"{where}: the {self.what} split is empty")
        docs = []
        for i, row in enumerate(rows):
            # CSV rows know their line in the file; other formats are numbered from 1
            at = f"line {row['_source_line']}" if isinstance(row, dict) and "_source_line" in row else f"row {i + 1}"
            if not isinstance(row, dict):
                raise DataError(f"{where}: {at}: expected a mapping of columns, got {type(row).__name__}")
            missing = [k for k in self.required if k not in row]
            if missing:
                raise DataError(f"{where}: {at}: missing {', '.join(missing)}")
            try:
                docs.append(self.convert(row) if self.convert else row)
            except (KeyError, ValueError, IndexError, TypeError) as e:
                raise DataError(f"{where}: {at}: {type(e).__name__}: {e}") from e
        return docs, where


class Task(ABC):
    name: str
    docs: DocSet
    group: str | None = None
    subject: str | None = None
    category: str | None = None
    output_type: str = "loglikelihood"

    @abstractmethod
    def settings(self) -> dict:
        """Everything that shapes the prompt; its hash is the task's version."""

    @property
    def version(self) -> str:
        return settings_hash(self.settings())

    @abstractmethod
    def load(self) -> tuple[list[Doc], str]:
        """The docs to evaluate (the whole split) and where they came from."""

    @abstractmethod
    def requests(self, doc: Doc, doc_id: int) -> list[Request]: ...

    @abstractmethod
    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        """The per-sample record: at least gold, pred, correct and each metric's value."""

    @abstractmethod
    def metric_names(self) -> list[str]: ...

    def aggregate(self, samples: list[dict]) -> dict:
        """Metric name -> {value, stderr, n}; default: the mean of per-sample values."""
        return {m: metric_summary([float(s["metrics"][m]) for s in samples]) for m in self.metric_names()}

    def result_extras(self, samples: list[dict]) -> dict:
        """Task-specific entries of its results file besides the metrics (code tasks: `sandbox`)."""
        return {}


@dataclass
class ChoiceTask(Task):
    """Multiple choice by log-likelihood: one request per choice, the same context for each.

    The context is lm-eval's: header + (shot prompt + delimiter + shot answer + "\\n\\n") * k + prompt.
    """

    name: str
    docs: DocSet
    prompt: Callable[[Doc], str]
    choices: Callable[[Doc], list[str]]
    gold: Callable[[Doc], int]
    header: str = ""
    shots: DocSet | None = None
    num_fewshot: int = 0
    shot_sampler: str = "first_n"  # or "random": seeded by (seed, doc_id), so shards agree
    seed: int = 1234
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    acc_norm: bool = True
    group: str | None = None
    subject: str | None = None
    category: str | None = None
    extra_settings: dict = field(default_factory=dict)
    _shot_docs: list[Doc] | None = field(default=None, init=False, repr=False)

    def settings(self) -> dict:
        return {
            "kind": "choice",
            "header": self.header,
            "prompt": self.prompt,
            "choices": self.choices,
            "gold": self.gold,
            "num_fewshot": self.num_fewshot,
            "shot_sampler": self.shot_sampler if self.num_fewshot else None,
            "seed": self.seed if self.num_fewshot and self.shot_sampler == "random" else None,
            "target_delimiter": self.target_delimiter,
            "fewshot_delimiter": self.fewshot_delimiter,
            "convert": self.docs.convert,
            **self.extra_settings,
        }

    def metric_names(self) -> list[str]:
        return ["acc", "acc_norm"] if self.acc_norm else ["acc"]

    def load(self) -> tuple[list[Doc], str]:
        docs, where = self.docs.load()
        if self.num_fewshot:
            source = self.shots or self.docs
            shot_docs = docs if source is self.docs else source.load()[0]
            if len(shot_docs) < self.num_fewshot:
                raise DataError(
                    f"{self.name}: {self.num_fewshot} shots asked for, the few-shot split has {len(shot_docs)}"
                )
            self._shot_docs = shot_docs
        return docs, where

    def shots_for(self, doc_id: int) -> list[Doc]:
        if not self.num_fewshot:
            return []
        assert self._shot_docs is not None, "load() first"
        if self.shot_sampler == "first_n":
            return self._shot_docs[: self.num_fewshot]
        rnd = random.Random(f"{self.seed}:{doc_id}")
        pool = [d for i, d in enumerate(self._shot_docs) if not (self.shots is None and i == doc_id)]
        return rnd.sample(pool, self.num_fewshot)

    def shot_text(self, shot: Doc) -> str:
        return self.prompt(shot) + self.target_delimiter + self.choices(shot)[self.gold(shot)]

    def context(self, doc: Doc, doc_id: int) -> str:
        block = "".join(self.shot_text(s) + self.fewshot_delimiter for s in self.shots_for(doc_id))
        return self.header + block + self.prompt(doc)

    def requests(self, doc: Doc, doc_id: int) -> list[Request]:
        ctx = self.context(doc, doc_id)
        return [LoglikelihoodRequest(ctx, self.target_delimiter + c) for c in self.choices(doc)]

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        logprobs = [r.logprob for r in results]
        choices = self.choices(doc)
        gold = self.gold(doc)
        pred = acc_pred(logprobs)
        record: dict[str, Any] = {
            "gold": gold,
            "pred": pred,
            "correct": pred == gold,
            "logprobs": logprobs,
            "is_greedy": [r.is_greedy for r in results],
            "metrics": {"acc": float(pred == gold)},
        }
        if self.acc_norm:
            pred_norm = acc_norm_pred(logprobs, choices)
            record["pred_norm"] = pred_norm
            record["metrics"]["acc_norm"] = float(pred_norm == gold)
        return record


@dataclass
class ContextChoiceTask(ChoiceTask):
    """Choices differ in the context and share the continuation (Winogrande's partial scoring):
    the score is log P(rest of sentence | sentence up to the blank filled with option i)."""

    contexts: Callable[[Doc], list[str]] = field(kw_only=True)
    continuation: Callable[[Doc], str] = field(kw_only=True)
    acc_norm: bool = False

    def settings(self) -> dict:
        return {**super().settings(), "contexts": self.contexts, "continuation": self.continuation}

    def shot_text(self, shot: Doc) -> str:
        return self.contexts(shot)[self.gold(shot)] + self.target_delimiter + self.continuation(shot)

    def requests(self, doc: Doc, doc_id: int) -> list[Request]:
        block = "".join(self.shot_text(s) + self.fewshot_delimiter for s in self.shots_for(doc_id))
        cont = self.target_delimiter + self.continuation(doc)
        return [LoglikelihoodRequest(self.header + block + c, cont) for c in self.contexts(doc)]
