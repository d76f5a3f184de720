"""What every HTTP backend shares: retries with backoff, an adaptive in-flight limit, streams.

A request is retried on connection errors, timeouts, 429 and 5xx (honouring Retry-After), and on
answers that are not the JSON the protocol promises; a 4xx other than 429 is the request's own
fault and is not retried. A request that still fails becomes a RequestFailed, which the backends
turn into a result with `error` set: nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from lmgauge.models.base import ModelError
from lmgauge.models.concurrency import AdaptiveLimit
from lmgauge.requests import RequestLatency

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is treated as this
BODY_IN_ERRORS = 300  # characters of a server's answer quoted in error messages


class RequestFailed(Exception):
    """A request that got no usable answer; the message says why (never contains the API key)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the last HTTP status (200: an answer of the wrong shape); None: no answer at all


class BadAnswer(Exception):
    """An answer that does not have the protocol's shape; retried like a transport error."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # tries after the first
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    max_backoff: float = 30.0
    timeout: float = 120.0  # seconds the server may deliver nothing before a try is given up

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2**attempt)
        return base * (0.5 + random.random() / 2)  # jitter: many clients do not retry in lockstep


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def read_api_key(env_var: str | None) -> str | None:
    """The key lives in the environment only; the config names the variable."""
    if not env_var:
        return None
    key = os.environ.get(env_var)
    if not key:
        raise ModelError(f"api_key_env names the environment variable {env_var!r}, which is not set")
    return key


def _short(text: str) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= BODY_IN_ERRORS else text[:BODY_IN_ERRORS] + "..."


def _transport_message(e: Exception) -> str:
    # httpx messages name the URL at most, never headers: safe to keep
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Retry(Exception):
    def __init__(self, message: str, wait: float | None, status: int) -> None:
        super().__init__(message)
        self.message, self.wait, self.status = message, wait, status


def _check_status(resp: httpx.Response, body: str) -> None:
    code = resp.status_code
    if code == 429 or code >= 500:
        wait = retry_after_seconds(resp.headers.get("retry-after"))
        raise _Retry(f"HTTP {code}: {_short(body)}", None if wait is None else min(wait, MAX_RETRY_AFTER_S), code)
    if code >= 400:
        raise RequestFailed(f"HTTP {code}: {_short(body)}", code)


def _json_of(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise BadAnswer(f"not JSON ({e}): {_short(text)}") from None


# --- one request's timing ---------------------------------------------------------------------------


@dataclass
class RequestTiming:
    """When a request's answering try was sent and answered (monotonic seconds): where latency
    figures are read (end-to-end latency; time to first event for streams)."""

    sent: float
    done: float
    tries: int  # 1 unless earlier tries failed
    first_event: float | None = None  # streams only: the first server-sent event (TTFT)

    @property
    def latency(self) -> float:
        return self.done - self.sent

    @property
    def ttft(self) -> float | None:
        return None if self.first_event is None else self.first_event - self.sent


def latency_of(timings: list[RequestTiming]) -> RequestLatency:
    """One request's latency from the timings of its calls, in the order they were answered."""
    first = timings[0].ttft
    return RequestLatency(
        e2el_s=round(sum(t.latency for t in timings), 6),  # microseconds: enough, and short lines
        ttft_s=None if first is None else round(first, 6),
        calls=len(timings),
        tries=sum(t.tries for t in timings),
    )


@dataclass
class Reply:
    """A parsed answer and how it came."""

    value: Any
    timing: RequestTiming


@dataclass
class ClientCounts:
    """What the client did over a model's life (run.json's model entry, logs, tests)."""

    requests: int = 0  # requests answered or failed (a rolling document's windows count each)
    tries: int = 0
    retries: int = 0  # tries after a request's first
    stalls: int = 0  # tries given up: the server delivered nothing for `timeout` seconds
    overloads: int = 0  # tries answered 429 / 5xx
    failed: int = 0  # requests that got no usable answer after every try


# The index (in run_all's list) of the request a coroutine is answering; None outside run_all.
current_request: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_request", default=None)


@dataclass
class ServerLink:
    """Everything a model keeps about its server between calls: headers, the retry policy, the
    in-flight limit it has learnt, and the counts. `on_timing(index, timing)` hears every answer's
    timing (index: the request it answers, None for the probe)."""

    headers: dict[str, str]
    policy: RetryPolicy
    limit: AdaptiveLimit
    counts: ClientCounts = field(default_factory=ClientCounts)
    on_timing: Callable[[int | None, RequestTiming], None] | None = None


class _Stalled(Exception):
    pass


class Session:
    """One event loop's connection pool to the server, with the in-flight gate.

    A try is given up only when the server has delivered nothing at all (to any request) for
    `policy.timeout` seconds: time a request spends waiting behind others in the server's queue
    while the server answers them is not a failure and never costs a try. A try waits at most
    `timeout` for each request in flight while it waited (the most at once), so a server that
    answers others but never this one still fails it. Counting only those in flight when it was
    sent is not enough: requests sent just after it can reach the server first (connections open
    in parallel) and queue ahead of it.
    """

    def __init__(self, client: httpx.AsyncClient, link: ServerLink) -> None:
        self.client, self.link = client, link
        self.policy, self.limit, self.counts = link.policy, link.limit, link.counts
        self.in_flight = 0
        self.last_progress = time.monotonic()  # the last answer or stream event from the server
        self._gate = asyncio.Condition()
        # per request being watched: the most requests in flight at once since it was sent
        self._peaks: dict[int, int] = {}
        # reads are watched by _watched, not by httpx: a queued request may wait long
        self._timeout = httpx.Timeout(None, connect=self.policy.timeout)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the in-flight places for the duration of a request."""
        async with self._gate:
            await self._gate.wait_for(lambda: self.in_flight < self.limit.current)
            self.in_flight += 1
            for key, peak in self._peaks.items():
                self._peaks[key] = max(peak, self.in_flight)
        try:
            yield
        finally:
            async with self._gate:
                self.in_flight -= 1
                self._gate.notify_all()

    def _progress(self) -> None:
        self.last_progress = time.monotonic()

    async def _watched(self, coro: Awaitable[Any], started: Callable[[], bool]) -> Any:
        task = asyncio.ensure_future(coro)
        sent = time.monotonic()
        patience = self.policy.timeout
        key = id(task)
        self._peaks[key] = max(1, self.in_flight)  # in_flight counts this request too
        try:
            while True:
                now = time.monotonic()
                hard = sent + patience * self._peaks[key]
                deadline = max(sent, self.last_progress) + patience
                if not started():  # still waiting for its turn: bounded by the queue ahead of it
                    deadline = min(deadline, hard)
                if now >= deadline:
                    waited = now - sent
                    raise _Stalled(
                        f"Timeout: no answer in {waited:.0f} s, the server delivering nothing for {patience:g} s"
                    )
                done, _ = await asyncio.wait({task}, timeout=deadline - now)
                if done:
                    return task.result()
        finally:
            del self._peaks[key]
            if not task.done():
                task.cancel()  # closes the connection: vLLM and SGLang abort the request
                with contextlib.suppress(BaseException):
                    await task

    async def _tries(self, attempt_once: Callable[[int], Awaitable[Reply]], what: str) -> Reply:
        policy, counts = self.policy, self.counts
        last, status = "no try made", None
        for attempt in range(policy.retries + 1):
            counts.tries += 1
            counts.retries += attempt > 0
            wait: float | None = None
            try:
                return await attempt_once(attempt + 1)
            except _Retry as r:
                last, wait, status = r.message, r.wait, r.status
                counts.overloads += 1
                self.limit.backoff()
            except BadAnswer as e:
                last, status = f"malformed answer: {e}", 200
            except _Stalled as e:
                last, status = str(e), None
                counts.stalls += 1
                self.limit.backoff()
            except httpx.TransportError as e:  # connect refused/reset, broken streams
                last, status = _transport_message(e), None
                self.limit.backoff()
            if attempt < policy.retries:
                delay = wait if wait is not None else policy.delay(attempt)
                log.debug("%s: %s; retry %d/%d in %.2fs", what, last, attempt + 1, policy.retries, delay)
                await asyncio.sleep(delay)
        raise RequestFailed(f"{last} (after {policy.retries + 1} tries)", status)

    def _observe(self, reply: Reply, tokens: float | Callable[[Any], float]) -> Reply:
        work = tokens(reply.value) if callable(tokens) else tokens
        self.limit.observe(reply.timing.latency, work, self.in_flight)
        if self.link.on_timing is not None:
            self.link.on_timing(current_request.get(), reply.timing)
        return reply

    async def json(
        self,
        method: str,
        url: str,
        payload: dict | None = None,
        parse: Callable[[Any], Any] = lambda x: x,
        tokens: float | Callable[[Any], float] = 0,
    ) -> Reply:
        """One JSON request, retried; `parse` turns the answer into a value or raises BadAnswer;
        `tokens` is the request's work (sent + generated) for the in-flight limit."""

        async def once(tries: int) -> Reply:
            t0 = time.monotonic()
            request = self.client.request(method, url, json=payload, timeout=self._timeout)
            resp = await self._watched(request, lambda: False)
            self._progress()
            body = resp.text
            _check_status(resp, body)
            return Reply(parse(_json_of(body)), RequestTiming(t0, time.monotonic(), tries))

        return self._observe(await self._tries(once, f"{method} {url}"), tokens)

    async def stream(
        self,
        url: str,
        payload: dict,
        fold: Callable[[list[Any]], Any],
        tokens: float | Callable[[Any], float] = 0,
    ) -> Reply:
        """A streamed request, retried whole; `fold` turns the list of events into a value."""

        async def once(tries: int) -> Reply:
            t0 = time.monotonic()
            first: list[float] = []

            async def events() -> list[Any]:
                async with self.client.stream("POST", url, json=payload, timeout=self._timeout) as resp:
                    if resp.status_code >= 400:
                        body = (await resp.aread()).decode("utf-8", "replace")
                        self._progress()
                        _check_status(resp, body)
                    out = []
                    async for event in _sse_events(resp):
                        if not first:
                            first.append(time.monotonic())
                        self._progress()
                        out.append(event)
                return out

            got = await self._watched(events(), lambda: bool(first))
            return Reply(fold(got), RequestTiming(t0, time.monotonic(), tries, first[0] if first else None))

        return self._observe(await self._tries(once, f"POST {url} (stream)"), tokens)


async def _sse_events(resp: httpx.Response) -> AsyncIterator[Any]:
    """JSON payloads of a server-sent event stream ("data: {...}" lines) up to [DONE]."""
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield _json_of(data)


def new_client(headers: dict[str, str], connections: int) -> httpx.AsyncClient:
    # one connection per request in flight: a continuously batching server sees them all at once
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(headers=headers, limits=limits, trust_env=False)


def run_all(
    link: ServerLink,
    n: int,
    answer: Callable[[Session, int], Awaitable[Any]],
    failed: Callable[[int, str], Any],
    on_result: Callable[[int, Any], None] | None,
) -> list[Any]:
    """Answer requests 0..n-1, as many in flight as the link's limit allows; each result goes to
    on_result as soon as it exists. A request whose answer failed gets `failed(i, message)`."""
    results: list[Any] = [None] * n
    counts = link.counts

    async def main() -> None:
        async with new_client(link.headers, link.limit.maximum) as client:
            session = Session(client, link)
            todo = iter(range(n))

            async def worker() -> None:
                for i in todo:  # the shared iterator hands each index to exactly one worker
                    async with session.slot():
                        current_request.set(i)  # each worker runs in its own context
                        try:
                            result = await answer(session, i)
                        except (RequestFailed, BadAnswer) as e:
                            result = failed(i, str(e))
                            counts.failed += 1
                        except Exception as e:  # a bug or an odd answer costs this request, never the run
                            log.debug("request %d", i, exc_info=True)
                            result = failed(i, f"{type(e).__name__}: {e}")
                            counts.failed += 1
                    counts.requests += 1
                    results[i] = result
                    if on_result is not None:
                        on_result(i, result)

            await asyncio.gather(*(worker() for _ in range(min(link.limit.maximum, n))))

    if n:
        link.limit.forget_latencies()
        run_sync(main())
    return results


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from synchronous code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
