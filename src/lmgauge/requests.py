"""The three request kinds a backend answers, and their results.

Plain dataclasses: tasks build them, backends answer them, the runner stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float
    is_greedy: bool  # every continuation token is the argmax given its prefix
    n_tokens: int = 0  # continuation length in tokens
    truncated: int = 0  # context tokens dropped on the left to fit max_seq_len


@dataclass(frozen=True)
class RollingRequest:
    """Log-likelihood of a whole text, in windows of the model's length (lm-eval convention)."""

    text: str


@dataclass(frozen=True)
class RollingResult:
    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class GenerateRequest:
    """Greedy continuation of a prompt, stopped at any of `stop` or after `max_new_tokens`."""

    prompt: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256


@dataclass(frozen=True)
class GenerateResult:
    text: str
    n_tokens: int = 0
    truncated: int = 0
    finish_reason: str = "length"  # "stop" | "length" | "eos"


@dataclass
class TokenStats:
    """What a run forwarded through the model; kept by the engine, reported in run.json."""

    forwarded: int = 0  # tokens actually run through the model
    scored: int = 0  # tokens whose logprob was read
    requests: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, other: "TokenStats") -> None:
        self.forwarded += other.forwarded
        self.scored += other.scored
        self.requests += other.requests
