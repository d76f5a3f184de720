"""The seam between tasks and backends: a model answers the three request kinds, nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenStats,
)

# Called once per request, with its index in the list given, as soon as its answer exists.
OnResult = Callable[[int, object], None]


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]: ...

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], on_result: OnResult | None = None
    ) -> list[RollingResult]: ...

    def generate(
        self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None
    ) -> list[GenerateResult]: ...

    def describe(self) -> dict:
        """What run.json records about this model (never secrets)."""
        ...

    @property
    def stats(self) -> TokenStats: ...


class ModelError(RuntimeError):
    """A model could not be loaded or answered badly; the message says what to fix."""
