"""One continuation per doc: accuracy is whether it is the greedy one (LAMBADA)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lmgauge.requests import LoglikelihoodRequest
from lmgauge.scoring.aggregate import metric_summary
from lmgauge.scoring.metrics import perplexity
from lmgauge.tasks.base import Doc, DocSet, Task


@dataclass
class TargetTask(Task):
    name: str
    docs: DocSet
    context: Callable[[Doc], str]
    target: Callable[[Doc], str]
    group: str | None = None

    def settings(self) -> dict:
        return {"kind": "target", "context": self.context, "target": self.target, "convert": self.docs.convert}

    def metric_names(self) -> list[str]:
        return ["acc", "perplexity"]

    def load(self):
        return self.docs.load()

    def requests(self, doc: Doc, doc_id: int):
        return [LoglikelihoodRequest(self.context(doc), self.target(doc))]

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        r = results[0]
        return {
            "gold": self.target(doc),
            "pred": "greedy" if r.is_greedy else "other",
            "correct": bool(r.is_greedy),
            "logprob": r.logprob,
            "metrics": {"acc": float(r.is_greedy), "logprob": r.logprob},
        }

    def aggregate(self, samples: list[dict]) -> dict:
        lps = [s["metrics"]["logprob"] for s in samples]
        return {
            "acc": metric_summary([s["metrics"]["acc"] for s in samples]),
            # lm-eval reports no stderr for a corpus perplexity it computes this way either
            "perplexity": {"value": perplexity(lps), "stderr": float("nan"), "n": len(lps)},
        }
