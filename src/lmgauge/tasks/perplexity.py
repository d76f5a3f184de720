"""Perplexity of text, in the two conventions people compare against.

- "windows" (GPTQ, llmc and most compression papers, e.g. wikitext2 with seq_len 2048): join the
  documents with "\\n\\n", tokenize once (with the tokenizer's own special tokens), cut into
  non-overlapping seq_len windows, drop the remainder, ppl = exp(mean NLL of every predicted token).
- "rolling" (lm-evaluation-harness): each document alone, rolling windows of the model's length in
  which every token is predicted once; word_perplexity, byte_perplexity and bits_per_byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lmgauge.requests import RollingRequest
from lmgauge.scoring.metrics import bits_per_byte, weighted_perplexity
from lmgauge.tasks.base import Doc, DocSet, Task

STYLES = ("windows", "rolling")


def word_count(text: str) -> int:
    return len(re.split(r"\s+", text))  # lm-eval's count, which counts edges as words too


@dataclass
class PerplexityTask(Task):
    name: str
    docs: DocSet
    style: str = "windows"
    seq_len: int = 2048
    bs: int = 1  # windows per forward (llmc's eval bs); changes speed and memory, never the result
    text_field: str = "text"
    output_type: str = "perplexity"

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"{self.name}: style {self.style!r} is not one of {', '.join(STYLES)}")

    def settings(self) -> dict:
        s: dict[str, Any] = {
            "kind": "perplexity",
            "style": self.style,
            "text_field": self.text_field,
            "convert": self.docs.convert,
        }
        if self.style == "windows":
            s["seq_len"] = self.seq_len
        return s

    def metric_names(self) -> list[str]:
        if self.style == "windows":
            return ["perplexity"]
        return ["word_perplexity", "byte_perplexity", "bits_per_byte"]

    def load(self):
        docs, where = self.docs.load()
        if self.style == "windows":
            # the whole corpus is one sample: windows cross document boundaries by definition
            joined = "\n\n".join(d[self.text_field] for d in docs)
            return [{self.text_field: joined, "n_docs": len(docs)}], where
        return docs, where

    def requests(self, doc: Doc, doc_id: int):
        text = doc[self.text_field]
        if self.style == "windows":
            return [RollingRequest(text, window=self.seq_len, style="disjoint", rows_per_batch=self.bs)]
        return [RollingRequest(text)]

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        r = results[0]
        text = doc[self.text_field]
        rec = {"gold": None, "pred": None, "correct": None, "logprob": r.logprob, "tokens": r.n_tokens}
        if self.style == "windows":
            rec["metrics"] = {"logprob": r.logprob, "tokens": r.n_tokens}
            rec["windows"] = r.n_windows
        else:
            rec["metrics"] = {"logprob": r.logprob, "words": word_count(text), "bytes": len(text.encode("utf-8"))}
        return rec

    def aggregate(self, samples: list[dict]) -> dict:
        nan = float("nan")
        lps = [s["metrics"]["logprob"] for s in samples]
        if self.style == "windows":
            toks = [s["metrics"]["tokens"] for s in samples]
            ppl = weighted_perplexity(lps, toks) if sum(toks) else nan
            return {"perplexity": {"value": ppl, "stderr": nan, "n": int(sum(toks))}}
        words = [s["metrics"]["words"] for s in samples]
        nbytes = [s["metrics"]["bytes"] for s in samples]
        return {
            "word_perplexity": {"value": weighted_perplexity(lps, words), "stderr": nan, "n": len(samples)},
            "byte_perplexity": {"value": weighted_perplexity(lps, nbytes), "stderr": nan, "n": len(samples)},
            "bits_per_byte": {"value": bits_per_byte(lps, nbytes), "stderr": nan, "n": len(samples)},
        }
