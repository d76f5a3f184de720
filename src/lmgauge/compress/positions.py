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


class Position:
    """A LanguageModel named `<abbr>@<position>` answering through `inner`, the backend it wraps.
    When the position is paired with a reference and `sink` is set (the runner sets it per
    perplexity task), disjoint perplexity windows go through `_paired_rolling` instead, which also
    fills the sink; subclasses say how."""

    def __init__(self, inner: Any, name: str, info: dict) -> None:
        self.inner = inner
        self.name = name
        self.info = info
        self.sink: Any = None

    @property
    def stats(self) -> TokenStats:
        return self.inner.stats

    @property
    def paired(self) -> bool:
        return False

    def new_sink(self) -> TokenFidelity:
        raise NotImplementedError(f"{type(self).__name__} is not paired")

    def _paired_rolling(self, requests: Sequence[RollingRequest], on_result: OnResult | None) -> list[RollingResult]:
        raise NotImplementedError(f"{type(self).__name__} is not paired")

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        return self.inner.loglikelihood(requests, on_result)

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], on_result: OnResult | None = None
    ) -> list[RollingResult]:
        if self.paired and self.sink is not None and all(r.style == "disjoint" for r in requests):
            return self._paired_rolling(requests, on_result)
        return self.inner.loglikelihood_rolling(requests, on_result)

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        return self.inner.generate(requests, on_result)

    def describe(self) -> dict:
        return {**self.inner.describe(), "name": self.name, **self.info}


class PositionModel(Position):
    """An in-process position (`inner` is an HFModel); paired with the float model's logits
    through `fidelity.PairedWindowScorer` when a reference is given."""

    def __init__(self, hf: Any, name: str, info: dict, reference: Logits | None = None) -> None:
        super().__init__(hf, name, info)
        self._scorer = PairedWindowScorer(window_ids(hf), reference, logits_of(hf)) if reference else None

    @property
    def paired(self) -> bool:
        return self._scorer is not None

    def new_sink(self) -> TokenFidelity:
        return TokenFidelity()

    def _paired_rolling(self, requests: Sequence[RollingRequest], on_result: OnResult | None) -> list[RollingResult]:
        assert self._scorer is not None and self.sink is not None
        return self._scorer.score(requests, self.sink, on_result, self.inner.stats)
