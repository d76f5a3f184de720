"""How many requests to keep in flight: as many as the server works on, found from latency.

A server works on some number of requests at once (vLLM on a GPU: dozens; vLLM on a CPU with long
prompt-logprob requests: about one) and queues the rest. A queued request only waits; sending
more than the server works on buys no throughput and makes every request slower. TCP Vegas'
estimate (as in Netflix' concurrency-limits VegasLimit) tells the two apart from latency alone:
the shortest latency seen is a request that waited for nothing, and a request that took r times
as long, answered while L were in flight, was one of about L * (1 - 1/r) waiting in the queue.

The limit grows while fewer than `alpha` wait (doubling at first, then about one per round of
answers; alpha and beta widen with log10 of the limit), shrinks when more than `beta` wait (in proportion to the excess, so a far too high limit
falls in one round), and halves on a timeout, HTTP 429 or 5xx (AIMD's loss signal; once a round). Latencies are
compared per token of work (tokens sent and generated, plus a fixed overhead), so a long prompt
is not mistaken for a queued short one. The logic is synchronous and clock-free: it is fed
latencies, which the tests make up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INITIAL_LIMIT = 4  # a guess that is safe for a one-at-a-time server and grows fast on a batching one
OVERHEAD_TOKENS = 32  # a request's fixed cost (HTTP, scheduling), in tokens of work


@dataclass
class LimitSnapshot:
    """What the limit did, for logs, run.json and tests."""

    limit: int
    peak: int
    increases: int
    decreases: int
    backoffs: int
    queued: float  # the last estimate of requests waiting in the server


class AdaptiveLimit:
    """The in-flight limit for one server; `observe` each answer, `backoff` on each overload."""

    def __init__(
        self,
        maximum: int,
        *,
        initial: int | None = None,
        minimum: int = 1,
        alpha: float = 2.0,
        beta: float = 4.0,
        adaptive: bool = True,
    ) -> None:
        if maximum < 1 or minimum < 1 or minimum > maximum:
            raise ValueError(f"in-flight limits must satisfy 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if not 0 < alpha < beta:
            raise ValueError(f"need 0 < alpha < beta, got {alpha}, {beta}")
        self.maximum, self.minimum = maximum, minimum
        self.alpha, self.beta = alpha, beta
        self.adaptive = adaptive  # False: a fixed limit of `maximum` (benchmarks replaying a fixed load)
        start = maximum if not adaptive else min(maximum, initial or INITIAL_LIMIT)
        self._limit = float(max(minimum, start))
        self.slow_start = True
        self._base = math.inf  # the shortest latency per token of work seen since forget_latencies
        self.peak = self.current
        self.increases = self.decreases = self.backoffs = 0
        self.queued = 0.0
        self._answers_since_backoff = math.inf  # one halving per round of answers, as TCP's

    @property
    def current(self) -> int:
        """Requests that may be in flight now."""
        return max(self.minimum, min(self.maximum, int(self._limit)))

    def observe(self, latency: float, tokens: float, in_flight: int) -> None:
        """One answered request: its latency (s), its work (tokens sent + generated) and how many
        requests were in flight when it was answered, itself included."""
        if not self.adaptive or latency <= 0:
            return
        self._answers_since_backoff += 1
        per_token = latency / (max(tokens, 0.0) + OVERHEAD_TOKENS)
        # the shortest ever, not of a recent window: while the server always has a queue, every
        # recent latency includes waiting, and a window's minimum would call that waiting normal.
        # A server that later slows only makes this conservative (a lower limit), never wrong.
        self._base = base = min(self._base, per_token)
        self.queued = queued = max(1, in_flight) * (1.0 - base / per_token)
        limit = self._limit
        # thresholds grow with the limit (VegasLimit's 3 and 6 * log10): at 64 in flight, a few
        # percent of latency noise reads as several requests queued
        alpha = max(self.alpha, 3 * math.log10(limit))
        beta = max(self.beta, 6 * math.log10(limit))
        if queued > beta:
            self.slow_start = False
            limit -= (queued - beta) / limit  # about (queued - beta) per round of `limit` answers
        elif queued < alpha:
            if in_flight >= self.current:  # only a limit that is used has shown it is not too low
                limit += 1.0 if self.slow_start else 1.0 / limit
        else:
            self.slow_start = False  # in the band: hold
        self._set(limit)

    def backoff(self) -> None:
        """The server said it is overloaded (timeout, 429, 5xx, refused connection): halve, once
        per round of answers (the requests in flight all meet the same overload)."""
        if not self.adaptive or self._answers_since_backoff < self.current:
            return
        self._answers_since_backoff = 0
        self.slow_start = False
        self.backoffs += 1
        self._set(self._limit / 2)

    def forget_latencies(self) -> None:
        """A new kind of request follows (generation after scoring): its latencies start afresh;
        the limit itself is kept, the server is the same."""
        self._base = math.inf

    def _set(self, value: float) -> None:
        before = self.current
        self._limit = max(float(self.minimum), min(float(self.maximum), value))
        after = self.current
        self.increases += after > before
        self.decreases += after < before
        self.peak = max(self.peak, after)

    def snapshot(self) -> LimitSnapshot:
        q = self.queued
        return LimitSnapshot(
            self.current,
            self.peak,
            self.increases,
            self.decreases,
            self.backoffs,
            round(q, 2) if math.isfinite(q) else 0.0,
        )
