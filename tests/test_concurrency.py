"""The adaptive in-flight limit on synthetic latencies: a simulated server, a clock of our own.

`simulate` runs the client's loop against a server that works on `capacity` requests at once and
queues the rest first come first served (the way vLLM's scheduler takes them): each request takes
`service(size)` seconds of work once its turn comes. The client keeps `limit.current` requests in
flight and feeds every answer's latency to the limit, exactly as http_client.Session does.
"""

from __future__ import annotations

import heapq

import pytest

from lmgauge.models.concurrency import INITIAL_LIMIT, AdaptiveLimit


def simulate(limit: AdaptiveLimit, n: int, capacity: int, sizes=lambda i: 500, per_token=0.002, overhead=20):
    """Answer n requests; returns (latencies, the limit after each answer, throughput in requests/s).

    A request's work is its size plus a fixed overhead (HTTP, scheduling), in tokens."""
    now, sent, done = 0.0, 0, 0
    queue: list[tuple[int, float]] = []  # (request, sent at), waiting for a place in the server
    working: list[tuple[float, int, float]] = []  # heap of (finishes at, request, sent at)
    latencies, limits = [], []

    def start_waiting() -> None:
        while queue and len(working) < capacity:
            i, t_sent = queue.pop(0)
            heapq.heappush(working, (now + (sizes(i) + overhead) * per_token, i, t_sent))

    while done < n:
        while sent < n and (len(queue) + len(working)) < limit.current:
            queue.append((sent, now))
            sent += 1
        start_waiting()
        now, i, t_sent = heapq.heappop(working)
        in_flight = len(queue) + len(working) + 1  # itself included, as Session counts
        limit.observe(now - t_sent, sizes(i), in_flight)
        latencies.append(now - t_sent)
        limits.append(limit.current)
        done += 1
        start_waiting()
    return latencies, limits, n / now


def test_one_at_a_time_server_settles_low_and_loses_no_throughput():
    limit = AdaptiveLimit(64)
    latencies, limits, rate = simulate(limit, 400, capacity=1)
    service = (500 + 20) * 0.002
    assert max(limits) <= 6 and 3 <= limits[-1] <= 5  # a few queued: the server never idles
    assert rate == pytest.approx(1 / service, rel=0.01)  # as fast as the server goes
    # what a request waits: a few services, never 64 of them (the fixed limit of 64 waits ~64 s)
    assert max(latencies) <= 8 * service
    fixed = AdaptiveLimit(64, adaptive=False)
    fixed_latencies, _, fixed_rate = simulate(fixed, 400, capacity=1)
    assert fixed_rate == pytest.approx(rate, rel=0.01) and max(fixed_latencies) > 60 * service


def test_batching_server_grows_to_the_maximum():
    limit = AdaptiveLimit(64)
    _, limits, _ = simulate(limit, 600, capacity=256)  # latency holds however many are sent
    assert limits[-1] == 64 and limit.peak == 64
    assert limits.index(64) < 150  # slow start: about one more per answer, not per round


def test_partly_batching_server_stops_where_latency_starts_to_queue():
    limit = AdaptiveLimit(64)
    latencies, limits, _ = simulate(limit, 800, capacity=8)  # works on 8 at once, queues the rest
    assert 8 < limits[-1] <= 8 + 6  # its capacity plus the few queued that keep it busy


def test_a_too_high_start_falls_within_a_round_or_two():
    limit = AdaptiveLimit(64, initial=64)
    _, limits, _ = simulate(limit, 300, capacity=1)
    assert limits[0] == 64  # the first answer waited for nothing
    assert max(limits[128:]) <= 6  # two rounds of the first limit later it is down


def test_long_and_short_prompts_are_not_mistaken_for_queueing():
    limit = AdaptiveLimit(64)
    sizes = [300, 3000, 450, 2000, 350]  # MMLU subjects' 5-shot prompts, in tokens
    _, limits, _ = simulate(limit, 600, capacity=256, sizes=lambda i: sizes[i % len(sizes)])
    assert limits[-1] == 64


def test_overload_halves_once_per_round_and_never_below_the_minimum():
    limit = AdaptiveLimit(64, initial=32)
    limit.backoff()
    assert limit.current == 16
    for _ in range(10):  # the other requests in flight meet the same overload: one halving
        limit.backoff()
    assert limit.current == 16 and limit.backoffs == 1
    for _ in range(16):
        limit.observe(1.0, 500, 16)
    limit.backoff()
    assert limit.current <= 8
    one = AdaptiveLimit(1)
    one.backoff()
    assert one.current == 1


def test_fixed_limit_and_bad_settings():
    fixed = AdaptiveLimit(12, adaptive=False)
    fixed.observe(100.0, 10, 12)
    fixed.backoff()
    assert fixed.current == 12
    assert AdaptiveLimit(64).current == INITIAL_LIMIT and AdaptiveLimit(2).current == 2
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveLimit(0)
    with pytest.raises(ValueError, match="alpha"):
        AdaptiveLimit(8, alpha=4, beta=2)
