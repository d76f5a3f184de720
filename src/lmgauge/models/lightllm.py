"""A model served by lightllm's own API: POST /generate.

Request: {"inputs": <text or token ids>, "parameters": {"do_sample": false, "ignore_eos": false,
"max_new_tokens": N, "stop_sequences": [...]}}; answer: {"generated_text": [text],
"count_output_tokens": n, "finish_reason": "stop"|"length", "prompt_tokens": n}. A server started
with --return_all_prompt_logprobs adds "prompt_token_ids" (the whole prompt) and
"prompt_logprobs": [[token_id[k], {"token_id[k+1]": logprob}] for k in 0..n-2], the logprob of
each prompt token after the first given its prefix (lightllm's Req.get_all_prompt_metadata;
OpenCompass' LightllmAPI.get_ppl reads it the same way). Errors answer HTTP 417 {"message": ...}.

lightllm gives only each prompt token's own logprob, not the top tokens, so `is_greedy` cannot be
known and is reported False (tasks that score it, LAMBADA's accuracy, need the openai backend).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from lmgauge.engine.generate import cut_at_stop
from lmgauge.models.api_tokens import (
    LocalTokenizer,
    ScoredPrompt,
    configured_context_length,
    loglikelihood_prompt,
    move_trailing_spaces,
    rolling_prompts,
)
from lmgauge.models.base import ModelError, OnResult
from lmgauge.models.http_client import (
    BadAnswer,
    RequestFailed,
    RetryPolicy,
    new_client,
    read_api_key,
    request_json,
    run_all,
    run_sync,
    stream_json,
)
from lmgauge.models.openai_api import GEN_VARIANT_HINT, PROBE_TEXT
from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenStats,
)

log = logging.getLogger(__name__)


def lightllm_base_url(url: str) -> str:
    """http://host:port[/generate] -> http://host:port"""
    url = url.strip().rstrip("/")
    for tail in ("/generate_stream", "/generate"):
        if url.endswith(tail):
            url = url[: -len(tail)]
            break
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelError(f"api_url {url!r} is not an http(s) URL such as http://localhost:8080/generate")
    return url


class _NoPromptLogprobs(RequestFailed):
    """Not retried: a server started without the flag answers the same every time."""

    def __init__(self) -> None:
        super().__init__("the answer has no prompt_logprobs: start lightllm with --return_all_prompt_logprobs", 200)


def _prompt_scores(answer: Any) -> tuple[list[int], list[float]]:
    """(prompt_token_ids, logprob of token k given tokens[:k] for k >= 1)."""
    if not isinstance(answer, dict):
        raise BadAnswer(f"the answer is not an object: {answer!r:.200}")
    ids, pairs = answer.get("prompt_token_ids"), answer.get("prompt_logprobs")
    if ids is None or pairs is None:
        raise _NoPromptLogprobs()
    if not isinstance(ids, list) or not isinstance(pairs, list) or len(pairs) != max(0, len(ids) - 1):
        raise BadAnswer(
            f"prompt_logprobs has {len(pairs) if isinstance(pairs, list) else '?'} entries for {len(ids) if isinstance(ids, list) else '?'} prompt tokens"
        )
    values = []
    for k, entry in enumerate(pairs):
        try:
            values.append(float(entry[1][str(ids[k + 1])]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise BadAnswer(f"prompt_logprobs[{k}] = {entry!r:.100} does not hold token {ids[k + 1]}") from None
    return ids, values


class LightLLMModel:
    backend = "lightllm"

    def __init__(
        self,
        api_url: str,
        *,
        name: str | None = None,
        api_model: str | None = None,
        api_key_env: str | None = None,
        tokenizer_path: str | None = None,
        stream: bool = False,
        concurrency: int = 64,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_seq_len: int | None = None,
        bos: str = "never",
        trust_remote_code: bool = False,
        tokenizer_kwargs: dict | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.base_url = lightllm_base_url(api_url)
        self.api_key_env = api_key_env
        key = read_api_key(api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.policy = RetryPolicy(retries=retries, backoff=backoff, timeout=timeout)
        self.concurrency = concurrency
        self.stream = stream
        # lightllm does not say its limit; the model's own, less the generated token, as for openai
        limit = configured_context_length(tokenizer_path) if tokenizer_path and not max_seq_len else None
        self.max_length = max_seq_len or (limit - 2 if limit else None)
        self.tokenizer = (
            LocalTokenizer(
                tokenizer_path,
                bos=bos,
                max_length=self.max_length,
                trust_remote_code=trust_remote_code,
                tokenizer_kwargs=tokenizer_kwargs,
            )
            if tokenizer_path
            else None
        )
        self.name = name or api_model or urlsplit(self.base_url).netloc.replace(":", "_")
        self._stats = TokenStats()
        self.logprobs_problem = run_sync(self._probe())
        if self.logprobs_problem:
            log.warning("%s: log-likelihood unavailable: %s", self.name, self.logprobs_problem)
        self._warned_greedy = False
        self.load_seconds = time.perf_counter() - t0

    def _payload(
        self, inputs: str | list[int], max_new_tokens: int, stop: Sequence[str] = (), r: GenerateRequest | None = None
    ) -> dict:
        params: dict[str, Any] = {"do_sample": False, "ignore_eos": False, "max_new_tokens": max_new_tokens}
        if stop:
            params["stop_sequences"] = list(stop)
        if r is not None and r.temperature > 0:  # sampled generation (lightllm's SamplingParams names)
            params.update(do_sample=True, temperature=r.temperature, top_p=r.top_p)  # lightllm takes no seed
        if r is not None and r.min_new_tokens:
            params["min_new_tokens"] = r.min_new_tokens
        return {"inputs": inputs, "parameters": params}

    async def _probe(self) -> str | None:
        inputs: str | list[int] = self.tokenizer.encode(PROBE_TEXT) if self.tokenizer else PROBE_TEXT
        async with new_client(self._headers, 1) as client:
            try:
                ids, values = await request_json(
                    client, "POST", f"{self.base_url}/generate", self.policy, self._payload(inputs, 1), _prompt_scores
                )
            except _NoPromptLogprobs as e:
                return str(e)
            except RequestFailed as e:
                if e.status is None or e.status in (401, 403):
                    raise ModelError(f"{self.base_url}/generate: no usable answer: {e}") from None
                return f"the server refuses a one-token request: {e}"
            except BadAnswer as e:
                return str(e)
        if any(v > 1e-4 for v in values):
            return f"the server's prompt_logprobs are not log-probabilities: {values[:5]}"
        return None

    def _require_logprobs(self) -> None:
        if self.logprobs_problem:
            raise ModelError(
                f"log-likelihood is unavailable from {self.base_url}: {self.logprobs_problem}; {GEN_VARIANT_HINT}"
            )
        if not self._warned_greedy:
            self._warned_greedy = True
            log.warning("%s: lightllm returns no top tokens: is_greedy is reported False for every request", self.name)

    # --- log-likelihood ------------------------------------------------------------------------

    async def _prompt_logprobs(
        self, client: httpx.AsyncClient, inputs: str | list[int]
    ) -> tuple[list[int], list[float]]:
        ids, values = await request_json(
            client, "POST", f"{self.base_url}/generate", self.policy, self._payload(inputs, 1), _prompt_scores
        )
        self._stats.forwarded += len(ids)
        self._stats.naive += len(ids)
        return ids, values

    async def _score_ids(self, client: httpx.AsyncClient, p: ScoredPrompt) -> float:
        ids, values = await self._prompt_logprobs(client, p.ids)
        if ids != p.ids:
            raise RequestFailed(
                f"the server scored other tokens than sent ({len(ids)} for {len(p.ids)}): is it truncating prompts?"
            )
        self._stats.scored += p.n_scored
        return float(sum(values[p.first - 1 :]))  # values[k-1] scores token k

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        self._require_logprobs()
        tok = self.tokenizer
        prompts = [loglikelihood_prompt(tok, r.context, r.continuation) for r in requests] if tok else None
        context_lengths: dict[str, asyncio.Future] = {}  # shared by a question's choices

        async def context_length(client: httpx.AsyncClient, context: str) -> int:
            fut = context_lengths.get(context)
            if fut is None:
                fut = context_lengths[context] = asyncio.get_running_loop().create_future()
                try:
                    fut.set_result(len((await self._prompt_logprobs(client, context))[0]))
                except Exception as e:
                    fut.set_exception(e)
                    context_lengths.pop(context, None)  # the next choice tries again
            return await asyncio.shield(fut)

        async def answer(client: httpx.AsyncClient, i: int) -> LoglikelihoodResult:
            if prompts is not None:
                p = prompts[i]
                return LoglikelihoodResult(await self._score_ids(client, p), False, p.n_scored, p.truncated)
            # no tokenizer: lm-eval's split by the server's own tokens: whole[len(encode(context)):]
            context, continuation = move_trailing_spaces(requests[i].context, requests[i].continuation)
            if not context:
                raise RequestFailed("an empty context can only be scored with a tokenizer (tokenizer_path)")
            n_ctx = await context_length(client, context)
            ids, values = await self._prompt_logprobs(client, context + continuation)
            first = max(1, n_ctx)
            if first >= len(ids):
                raise RequestFailed("the continuation adds no tokens to the context's")
            self._stats.scored += len(ids) - first
            return LoglikelihoodResult(float(sum(values[first - 1 :])), False, len(ids) - first)

        self._stats.requests += len(requests)
        return run_all(
            len(requests),
            answer,
            lambda i, msg: LoglikelihoodResult(0.0, False, error=msg),
            on_result,
            self._headers,
            self.concurrency,
        )

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], on_result: OnResult | None = None
    ) -> list[RollingResult]:
        self._require_logprobs()
        if self.tokenizer is None:
            raise ModelError(
                "rolling log-likelihood (perplexity) over HTTP needs the model's tokenizer: give tokenizer_path (--api-tokenizer)"
            )
        windows = [rolling_prompts(self.tokenizer, r) for r in requests]

        async def answer(client: httpx.AsyncClient, i: int) -> RollingResult:
            prompts, n_tokens = windows[i]
            total = 0.0
            for p in prompts:
                total += await self._score_ids(client, p)
            return RollingResult(total, n_tokens, len(prompts))

        self._stats.requests += len(requests)
        return run_all(
            len(requests),
            answer,
            lambda i, msg: RollingResult(0.0, 0, error=msg),
            on_result,
            self._headers,
            self.concurrency,
        )

    # --- generation ----------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        def result(text: str, n: int, finish: str | None, r: GenerateRequest, truncated: int) -> GenerateResult:
            text, hit = cut_at_stop(text, r.stop)
            reason = "stop" if hit else ("length" if finish == "length" else "eos")
            return GenerateResult(text, n, truncated, reason)

        async def answer(client: httpx.AsyncClient, i: int) -> GenerateResult:
            r = requests[i]
            truncated = 0
            inputs: str | list[int] = r.prompt
            if self.tokenizer is not None:
                ids = self.tokenizer.bos_ids + self.tokenizer.encode(r.prompt)
                if self.max_length:
                    room = max(1, self.max_length - r.max_new_tokens)
                    truncated, ids = max(0, len(ids) - room), ids[-room:]
                inputs = ids
            if r.chat:
                raise RequestFailed("lightllm's /generate takes a plain prompt: chat requests need the openai backend")
            body = self._payload(inputs, r.max_new_tokens, r.stop, r)

            def parse(answer: Any) -> GenerateResult:
                try:
                    texts = answer["generated_text"]
                    text = texts[0] if isinstance(texts, list) else texts
                except (KeyError, TypeError, IndexError):
                    raise BadAnswer(f"no generated_text in {answer!r:.200}") from None
                if not isinstance(text, str):
                    raise BadAnswer("generated_text is not text")
                n = answer.get("count_output_tokens")
                return result(text, n if isinstance(n, int) else 0, answer.get("finish_reason"), r, truncated)

            def fold(events: list[Any]) -> GenerateResult:
                # lightllm's stream: one {"token": {"text": ...}, "finished": bool, "finish_reason": ...} per token
                pieces, finish, n = [], None, 0
                for e in events:
                    try:
                        pieces.append(e["token"]["text"] or "")
                    except (KeyError, TypeError):
                        raise BadAnswer(f"a stream event has no token text: {e!r:.200}") from None
                    n = e["token"].get("count_output_tokens") or n
                    if e.get("finished"):
                        finish = e.get("finish_reason") or "stop"
                if finish is None:
                    raise BadAnswer("the stream ended before a finished event")
                return result("".join(pieces), n, finish, r, truncated)

            if self.stream:
                out = await stream_json(client, f"{self.base_url}/generate_stream", self.policy, body, fold)
            else:
                out = await request_json(client, "POST", f"{self.base_url}/generate", self.policy, body, parse)
            self._stats.scored += out.n_tokens
            return out

        self._stats.requests += len(requests)
        return run_all(
            len(requests),
            answer,
            lambda i, msg: GenerateResult("", error=msg),
            on_result,
            self._headers,
            self.concurrency,
        )

    # --- LanguageModel -------------------------------------------------------------------------

    @property
    def stats(self) -> TokenStats:
        return self._stats

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "name": self.name,
            "api_url": self.base_url,
            "api_key_env": self.api_key_env,  # the variable's name; the key itself is never recorded
            "tokenizer": self.tokenizer.source if self.tokenizer else None,
            "prompts": "token ids" if self.tokenizer else "text",
            "stream": self.stream,
            "max_length": self.max_length,
            "loglikelihood": "ok (is_greedy unavailable)"
            if not self.logprobs_problem
            else f"unavailable: {self.logprobs_problem}",
            "concurrency": self.concurrency,
            "timeout_s": self.policy.timeout,
            "retries": self.policy.retries,
            "load_seconds": round(self.load_seconds, 3),
        }
