"""Generation tasks: a prompt (few-shot as lm-eval builds it, or as chat turns), a continuation
generated until a stop string, an answer extracted from it, and a scorer.

The context is lm-eval's: header + (shot prompt + target delimiter + shot target + few-shot
delimiter) * k + prompt. The same prompt is also given as chat turns, so a model configured for
chat (or a task that asks for it) sees it through its chat template; with `fewshot_as_multiturn`
each shot is a user turn and an assistant answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lmgauge.data import DataError
from lmgauge.requests import GenerateRequest
from lmgauge.tasks.base import Doc, DocSet, Request, Task

# output text -> {"extracted": {name: answer}, "metrics": {name: value}, "pred": primary answer}
Scorer = Callable[[Doc, str], dict]


@dataclass
class GenerationTask(Task):
    name: str
    docs: DocSet
    prompt: Callable[[Doc], str]  # lm-eval's doc_to_text
    target: Callable[[Doc], str | list[str]]  # the gold answer(s), as text
    metrics: tuple[str, ...]
    # each output -> its answer and metrics; None where a subclass scores the outputs together
    # (CodeTask runs them in the sandbox)
    scorer: Scorer | None = None
    header: str = ""
    shots: DocSet | None = None  # the split few-shot examples come from (first n)
    fixed_shots: tuple[Doc, ...] = ()  # or examples written in the task (gsm8k_cot's eight)
    shot_target: Callable[[Doc], str] | None = None  # a shot's answer text (default: its target)
    num_fewshot: int = 0
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    chat: bool | None = None  # None: as the model is configured
    fewshot_as_multiturn: bool = False
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 1234
    group: str | None = None
    subject: str | None = None
    category: str | None = None
    extra_settings: dict = field(default_factory=dict)
    output_type: str = "generate_until"
    _shot_docs: list[Doc] = field(default_factory=list, init=False, repr=False)

    def settings(self) -> dict:
        return {
            "kind": "generation",
            "header": self.header,
            "prompt": self.prompt,
            "target": self.target,
            "scorer": self.scorer,
            "shot_target": self.shot_target,
            "fixed_shots": list(self.fixed_shots),
            "num_fewshot": self.num_fewshot,
            "target_delimiter": self.target_delimiter,
            "fewshot_delimiter": self.fewshot_delimiter,
            "stop": list(self.stop),
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "chat": self.chat,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p if self.temperature > 0 else None,
            "seed": self.seed if self.temperature > 0 else None,
            "convert": self.docs.convert,
            **self.extra_settings,
        }

    def metric_names(self) -> list[str]:
        return list(self.metrics)

    def load(self) -> tuple[list[Doc], str]:
        docs, where = self.docs.load()
        if self.num_fewshot:
            pool = list(self.fixed_shots) if self.fixed_shots else (self.shots.load()[0] if self.shots else [])
            if len(pool) < self.num_fewshot:
                raise DataError(f"{self.name}: {self.num_fewshot} shots asked for, {len(pool)} available")
            self._shot_docs = pool[: self.num_fewshot]
        return docs, where

    def _shot_answer(self, shot: Doc) -> str:
        if self.shot_target is not None:
            return self.shot_target(shot)
        t = self.target(shot)
        return t[0] if isinstance(t, list) else t

    def context(self, doc: Doc) -> str:
        block = "".join(
            self.prompt(s) + self.target_delimiter + self._shot_answer(s) + self.fewshot_delimiter
            for s in self._shot_docs
        )
        return self.header + block + self.prompt(doc)

    def messages(self, doc: Doc) -> tuple[tuple[str, str], ...]:
        if not self.fewshot_as_multiturn or not self._shot_docs:
            return (("user", self.context(doc)),)
        turns: list[tuple[str, str]] = []
        for i, s in enumerate(self._shot_docs):
            turns.append(("user", (self.header if i == 0 else "") + self.prompt(s)))
            turns.append(("assistant", self._shot_answer(s)))
        turns.append(("user", self.prompt(doc)))
        return tuple(turns)

    def _sample_seed(self, doc_id: int, k: int) -> int:
        # per (seed, doc, sample): the same draw whatever the batch or shard
        return int(hashlib.sha256(f"{self.seed}:{doc_id}:{k}".encode()).hexdigest()[:8], 16)

    def requests(self, doc: Doc, doc_id: int) -> list[Request]:
        prompt, turns = self.context(doc), self.messages(doc)
        return [
            GenerateRequest(
                prompt=prompt,
                stop=self.stop,
                max_new_tokens=self.max_new_tokens,
                min_new_tokens=self.min_new_tokens,
                messages=turns,
                chat=self.chat,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self._sample_seed(doc_id, k) if self.temperature > 0 else None,
            )
            for k in range(self.n_samples)
        ]

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        if self.scorer is None:
            raise TypeError(f"{self.name}: a generation task needs a scorer or its own score()")
        outputs = [r.text for r in results]
        scored = [self.scorer(doc, out) for out in outputs]
        metrics = {m: sum(float(s["metrics"][m]) for s in scored) / len(scored) for m in self.metrics}
        primary = self.metrics[0]
        record = {
            "gold": self.target(doc),
            "pred": scored[0].get("pred"),
            "correct": bool(scored[0]["metrics"][primary]),
            "output": outputs[0],
            "extracted": scored[0].get("extracted", {}),
            "metrics": metrics,
            "finish_reason": results[0].finish_reason,
        }
        if len(outputs) > 1:
            record["outputs"] = outputs
            record["extracted_all"] = [s.get("extracted", {}) for s in scored]
        if results[0].prompt is not None:
            record["rendered_prompt"] = results[0].prompt
        for key in ("details",):
            if key in scored[0]:
                record[key] = scored[0][key]
        return record


def lm_eval_exact_match_scorer(
    filters: Sequence[tuple[str, Callable[[str], str]]],
    reference: Callable[[Doc], str | list[str]],
    **match_options,
) -> Scorer:
    """lm-eval's pattern: each named filter extracts an answer; exact_match against the reference
    (any of several references counts) with the task's options. Metric names: exact_match,<filter>."""
    from lmgauge.scoring.extract import exact_match

    def score(doc: Doc, output: str) -> dict:
        refs = reference(doc)
        refs = refs if isinstance(refs, list) else [refs]
        extracted, metrics = {}, {}
        for name, extract in filters:
            answer = extract(output)
            extracted[name] = answer
            metrics[f"exact_match,{name}"] = float(any(exact_match(answer, r, **match_options) for r in refs))
        return {"extracted": extracted, "metrics": metrics, "pred": extracted[filters[0][0]]}

    return score
