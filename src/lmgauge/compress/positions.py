"""The model at one evaluation position, answering like any backend.

A position's model wraps the loaded hf model (it is not loaded again): `pretrain` is the float model,
`fake_quant` the same model with its Linear weights replaced in place by RTN fake-quant values, and
`transformed` / llmc's `fake_quant_model/` a folder llmc saved, loaded beside the float one. Every
position but pretrain answers GPTQ-window perplexity requests through the paired pass
(`fidelity.PairedWindowScorer`), so KL, top-token agreement and Δp against the float model come with
its perplexity at the cost of one extra forward per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmgauge.compress.fidelity import Logits, PairedWindowScorer, TokenFidelity
from lmgauge.engine.loglikelihood import _document_windows  # the windowing the ppl tasks use
from lmgauge.models.base import OnResult
from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenStats,
)


def logits_of(hf: Any) -> Logits:
    """Full logits [B, L, V] of an HFModel for input ids [B, L]."""

    def run(ids: Any) -> Any:
        return hf.model(input_ids=ids.to(hf.device), use_cache=False).logits

    return run


def window_ids(hf: Any):
    def windows(r: RollingRequest) -> list[list[int]]:
        pairs, _ = _document_windows(hf, r)
        return [ctx + cont for ctx, cont in pairs]

    return windows


class PositionModel:
    """A LanguageModel named `<abbr>@<position>`; GPTQ-window perplexity through the paired pass
    when a reference is given and `sink` is set (the runner sets it per perplexity task)."""

    def __init__(self, hf: Any, name: str, info: dict, reference: Logits | None = None) -> None:
        self.hf = hf
        self.name = name
        self.info = info
        self.sink: TokenFidelity | None = None
        self._scorer = PairedWindowScorer(window_ids(hf), reference, logits_of(hf)) if reference else None

    @property
    def stats(self) -> TokenStats:
        return self.hf.stats

    @property
    def paired(self) -> bool:
        return self._scorer is not None

    def new_sink(self) -> TokenFidelity:
        return TokenFidelity()

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        return self.hf.loglikelihood(requests, on_result)

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], on_result: OnResult | None = None
    ) -> list[RollingResult]:
        if self._scorer is not None and self.sink is not None and all(r.style == "disjoint" for r in requests):
            return self._scorer.score(requests, self.sink, on_result, self.hf.stats)
        return self.hf.loglikelihood_rolling(requests, on_result)

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        return self.hf.generate(requests, on_result)

    def describe(self) -> dict:
        return {**self.hf.describe(), "name": self.name, **self.info}
