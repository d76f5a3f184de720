"""What every HTTP backend shares: retries with backoff, bounded concurrency, streamed answers.

A request is retried on connection errors, timeouts, 429 and 5xx (honouring Retry-After), and on
answers that are not the JSON the protocol promises; a 4xx other than 429 is the request's own
fault and is not retried. A request that still fails becomes a RequestFailed, which the backends
turn into a result with `error` set: nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from lmgauge.models.base import ModelError

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
    timeout: float = 120.0  # seconds per try

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


async def _with_retries(attempt_once: Callable[[], Awaitable[Any]], what: str, policy: RetryPolicy) -> Any:
    last, status = "no try made", None
    for attempt in range(policy.retries + 1):
        wait: float | None = None
        try:
            return await attempt_once()
        except _Retry as r:
            last, wait, status = r.message, r.wait, r.status
        except BadAnswer as e:
            last, status = f"malformed answer: {e}", 200
        except httpx.TransportError as e:  # connect refused/reset, timeouts, broken streams
            last, status = _transport_message(e), None
        if attempt < policy.retries:
            delay = wait if wait is not None else policy.delay(attempt)
            log.debug("%s: %s; retry %d/%d in %.2fs", what, last, attempt + 1, policy.retries, delay)
            await asyncio.sleep(delay)
    raise RequestFailed(f"{last} (after {policy.retries + 1} tries)", status)


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


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    policy: RetryPolicy,
    payload: dict | None = None,
    parse: Callable[[Any], Any] = lambda x: x,
) -> Any:
    """One JSON request, retried; `parse` turns the answer into a value or raises BadAnswer."""

    async def once() -> Any:
        resp = await client.request(method, url, json=payload, timeout=policy.timeout)
        body = resp.text
        _check_status(resp, body)
        return parse(_json_of(body))

    return await _with_retries(once, f"{method} {url}", policy)


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


async def stream_json(
    client: httpx.AsyncClient,
    url: str,
    policy: RetryPolicy,
    payload: dict,
    fold: Callable[[list[Any]], Any],
) -> Any:
    """A streamed request, retried whole; `fold` turns the list of events into a value."""

    async def once() -> Any:
        async with client.stream("POST", url, json=payload, timeout=policy.timeout) as resp:
            if resp.status_code >= 400:
                body = (await resp.aread()).decode("utf-8", "replace")
                _check_status(resp, body)
            events = [e async for e in _sse_events(resp)]
        return fold(events)

    return await _with_retries(once, f"POST {url} (stream)", policy)


def new_client(headers: dict[str, str], concurrency: int) -> httpx.AsyncClient:
    # one connection per request in flight: a continuously batching server sees them all at once
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(headers=headers, limits=limits, trust_env=False)


def run_all(
    n: int,
    answer: Callable[[httpx.AsyncClient, int], Awaitable[Any]],
    failed: Callable[[int, str], Any],
    on_result: Callable[[int, Any], None] | None,
    headers: dict[str, str],
    concurrency: int,
) -> list[Any]:
    """Answer requests 0..n-1 with at most `concurrency` in flight; each result goes to on_result
    as soon as it exists. A request whose answer failed gets `failed(i, message)` instead."""
    results: list[Any] = [None] * n

    async def main() -> None:
        async with new_client(headers, concurrency) as client:
            todo = iter(range(n))

            async def worker() -> None:
                for i in todo:  # the shared iterator hands each index to exactly one worker
                    try:
                        result = await answer(client, i)
                    except (RequestFailed, BadAnswer) as e:
                        result = failed(i, str(e))
                    except Exception as e:  # a bug or an odd answer costs this request, never the run
                        log.debug("request %d", i, exc_info=True)
                        result = failed(i, f"{type(e).__name__}: {e}")
                    results[i] = result
                    if on_result is not None:
                        on_result(i, result)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))

    if n:
        run_sync(main())
    return results


def run_sync(coro: Awaitable[Any]) -> Any:
    """Run a coroutine from synchronous code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
