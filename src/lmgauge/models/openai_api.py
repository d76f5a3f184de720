"""A model served behind an OpenAI-compatible HTTP API (vLLM, SGLang, llama.cpp, TGI).

Log-likelihoods come from /v1/completions with `echo` and `logprobs` (the request lm-eval's
local-completions sends: max_tokens 1, temperature 0, logprobs 1, echo true); the continuation's
tokens are found by position when the prompt is sent as token ids (a local tokenizer gives the
hf backend's exact tokens), else by `logprobs.text_offset`. Generation goes through
/v1/completions or, with `chat`, /v1/chat/completions (the server applies its chat template).
A probe at start checks that the server returns prompt logprobs and that they are scored
against the right position; when not, log-likelihood requests fail at once with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from operator import itemgetter
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

PROBE_TEXT = "The capital of France is"
GEN_VARIANT_HINT = "run the task's generation variant instead (e.g. mmlu_gen for mmlu)"


def openai_base_url(url: str) -> str:
    """http://host:port[/v1[/completions]] -> http://host:port/v1"""
    url = url.strip().rstrip("/")
    for tail in ("/chat/completions", "/completions", "/models"):
        if url.endswith(tail):
            url = url[: -len(tail)]
            break
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelError(f"api_url {url!r} is not an http(s) URL such as http://localhost:8000/v1")
    return url if parts.path.endswith("/v1") else url + "/v1"


def _first_choice(answer: Any) -> dict:
    try:
        return sorted(answer["choices"], key=itemgetter("index"))[0]
    except (KeyError, TypeError, IndexError) as e:
        raise BadAnswer(f"no choices in the answer ({type(e).__name__}: {e})") from None


def _echo_logprobs(answer: Any) -> dict:
    """The `logprobs` object of an echo answer: tokens, token_logprobs, top_logprobs, text_offset."""
    lp = _first_choice(answer).get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list):
        raise BadAnswer("the answer carries no logprobs.token_logprobs")
    return {**lp, "_usage": answer.get("usage") or {}, "_text": _first_choice(answer).get("text", "")}


def _sum_positions(lp: dict, first: int, end: int) -> tuple[float, bool]:
    """Sum of token_logprobs[first:end]; greedy when each is the best of its top_logprobs."""
    values = lp["token_logprobs"]
    if len(values) < end:
        raise BadAnswer(f"echo gave {len(values)} logprobs, the prompt has {end} tokens")
    part = values[first:end]
    if any(v is None or not isinstance(v, (int, float)) for v in part):
        raise BadAnswer(f"a scored position has no logprob: {part}")
    tops = (lp.get("top_logprobs") or [None] * end)[first:end]
    greedy = all(isinstance(t, dict) and t and v >= max(t.values()) for v, t in zip(part, tops))
    return float(sum(part)), greedy


class OpenAIModel:
    """Answers the three request kinds over an OpenAI-compatible HTTP API."""

    backend = "openai"

    def __init__(
        self,
        api_url: str,
        *,
        name: str | None = None,
        api_model: str | None = None,
        api_key_env: str | None = None,
        tokenizer_path: str | None = None,
        chat: bool = False,
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
        self.base_url = openai_base_url(api_url)
        self.api_key_env = api_key_env
        key = read_api_key(api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.policy = RetryPolicy(retries=retries, backoff=backoff, timeout=timeout)
        self.concurrency = concurrency
        self.chat, self.stream = chat, stream
        self.api_model, self.server_max_len = run_sync(self._discover(api_model))
        # the forward the hf path runs holds max_length tokens; a served prompt holds one more and
        # the one generated token (max_tokens 1) must fit as well
        limit = self.server_max_len or (configured_context_length(tokenizer_path) if tokenizer_path else None)
        max_length = max_seq_len or (limit - 2 if limit else None)
        self.max_length = max_length
        self.tokenizer = (
            LocalTokenizer(
                tokenizer_path,
                bos=bos,
                max_length=max_length,
                trust_remote_code=trust_remote_code,
                tokenizer_kwargs=tokenizer_kwargs,
            )
            if tokenizer_path
            else None
        )
        self.name = name or self.api_model
        self._stats = TokenStats()
        self.token_prompts = self.tokenizer is not None  # prompts as the hf path's token ids; the probe may say no
        self.logprobs_problem: str | None = run_sync(self._probe())
        if self.logprobs_problem:
            log.warning("%s: log-likelihood unavailable: %s", self.name, self.logprobs_problem)
        self.load_seconds = time.perf_counter() - t0

    # --- start: which model, and can it score prompts ------------------------------------------

    async def _discover(self, wanted: str | None) -> tuple[str, int | None]:
        """The served model's id (from /v1/models when not given) and its context length."""
        async with new_client(self._headers, 1) as client:
            try:
                listing = await request_json(client, "GET", f"{self.base_url}/models", self.policy)
                entries = [e for e in listing.get("data", []) if isinstance(e, dict) and "id" in e]
            except (RequestFailed, BadAnswer, AttributeError) as e:
                if getattr(e, "status", None) in (401, 403):
                    raise ModelError(f"{self.base_url}: the server refuses the API key ({e})") from None
                if wanted:
                    return wanted, None
                raise ModelError(f"could not list the models served at {self.base_url}/models: {e}") from None
        if wanted is None:
            if len(entries) != 1:
                ids = ", ".join(e["id"] for e in entries) or "none"
                raise ModelError(f"{self.base_url} serves {len(entries)} models ({ids}): choose one with api_model")
            wanted = entries[0]["id"]
        entry = next((e for e in entries if e["id"] == wanted), {})
        limit = entry.get("max_model_len")  # vLLM and SGLang say it; others do not
        return wanted, int(limit) if isinstance(limit, int) and limit > 2 else None

    def _completion_payload(self, prompt: str | list[int], *, echo: bool) -> dict:
        body: dict[str, Any] = {"model": self.api_model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        if echo:
            body.update(logprobs=1, echo=True)
        return body

    async def _probe(self) -> str | None:
        """None when the server returns sane prompt logprobs; else why log-likelihood is unavailable.

        The greedy next token g of a short text, echoed as part of the prompt, must be the top
        token at its own position. A server that scores each prompt token against the position
        after it (llama-cpp-python for models without a BOS token, its issue 1983: each token's
        logprob of repeating itself) fails this."""
        tok = self.tokenizer
        url = f"{self.base_url}/completions"
        async with new_client(self._headers, 1) as client:

            async def next_token(prompt: str | list[int]) -> dict:
                try:
                    return await request_json(
                        client, "POST", url, self.policy, self._completion_payload(prompt, echo=False), _first_choice
                    )
                except RequestFailed as e:
                    if e.status is None:  # nothing answers there: no use starting the run
                        raise ModelError(f"{url}: no answer: {e}") from None
                    if e.status in (401, 403):
                        raise ModelError(f"{url}: the server refuses the API key ({e})") from None
                    raise

            try:
                if tok:
                    try:
                        gen = await next_token(tok.bos_ids + tok.encode(PROBE_TEXT))
                    except RequestFailed as e:  # llama-cpp-python takes text prompts only
                        log.warning(
                            "%s: the server refuses token-id prompts (%s); sending text, which the "
                            "server tokenizes itself",
                            self.base_url,
                            e,
                        )
                        self.token_prompts, tok = False, None
                if not tok:
                    gen = await next_token(PROBE_TEXT)
            except RequestFailed as e:
                return f"the server refuses a one-token completion: {e}"  # a chat-only server
            prompt: str | list[int] = tok.bos_ids + tok.encode(PROBE_TEXT) if tok else PROBE_TEXT
            g = gen.get("text") or ""
            if tok:
                g_ids = tok.encode(g)
                if len(g_ids) != 1:
                    log.warning("%s: prompt-logprob check inconclusive (next token %r)", self.base_url, g)
                    return None
                prompt2: str | list[int] = list(prompt) + g_ids  # type: ignore[operator]
            else:
                prompt2 = PROBE_TEXT + g
            try:
                lp = await request_json(
                    client, "POST", url, self.policy, self._completion_payload(prompt2, echo=True), _echo_logprobs
                )
            except (RequestFailed, BadAnswer) as e:
                return f"the server does not return prompt logprobs (completions with echo and logprobs): {e}"
        values, tokens = lp["token_logprobs"], lp.get("tokens") or []
        n_prompt = len(prompt2) if tok else (lp["_usage"].get("prompt_tokens") or len(values) - 1)
        if len(values) < n_prompt:
            return (
                f"the server returned logprobs for {len(values)} tokens of a {n_prompt}-token prompt: "
                "it does not return prompt logprobs with echo"
            )
        bad = [v for v in values[1:n_prompt] if not isinstance(v, (int, float)) or v > 1e-4 or math.isnan(v)]
        if bad:
            return f"the server's prompt logprobs are not log-probabilities: {bad[:3]}"
        if tok:
            at = n_prompt - 1
        else:
            offsets = lp.get("text_offset") or []
            at = next((k for k, o in enumerate(offsets) if o == len(PROBE_TEXT)), None)
            if at is None or at >= n_prompt or (tokens and tokens[at] != g):
                log.warning("%s: prompt-logprob check inconclusive (next token %r)", self.base_url, g)
                return None
        top = (lp.get("top_logprobs") or [None] * (at + 1))[at]
        if isinstance(top, dict) and top and values[at] < max(top.values()) - 1e-3:
            return (
                f"the server scores prompt tokens against the wrong position: {g!r}, its own greedy "
                f"next token after {PROBE_TEXT!r}, gets logprob {values[at]:.3f} in the prompt while "
                f"another token there gets {max(top.values()):.3f} (llama-cpp-python returns each "
                "token's logprob of repeating itself for models without a BOS token, its issue 1983); "
                "its log-likelihoods would be wrong"
            )
        return None

    def _require_logprobs(self) -> None:
        if self.logprobs_problem:
            raise ModelError(
                f"log-likelihood is unavailable from {self.base_url}: {self.logprobs_problem}; {GEN_VARIANT_HINT}"
            )

    # --- log-likelihood ------------------------------------------------------------------------

    async def _score_ids(self, client: httpx.AsyncClient, p: ScoredPrompt) -> tuple[float, bool]:
        def parse(answer: Any) -> tuple[float, bool]:
            return _sum_positions(_echo_logprobs(answer), p.first, len(p.ids))

        result = await request_json(
            client,
            "POST",
            f"{self.base_url}/completions",
            self.policy,
            self._completion_payload(p.ids, echo=True),
            parse,
        )
        self._stats.forwarded += len(p.ids)
        self._stats.naive += len(p.ids)
        self._stats.scored += p.n_scored
        return result

    async def _score_text(self, client: httpx.AsyncClient, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        context, continuation = move_trailing_spaces(r.context, r.continuation)
        if not context:
            raise RequestFailed("an empty context can only be scored with a tokenizer (tokenizer_path)")
        boundary = len(context)

        def parse(answer: Any) -> LoglikelihoodResult:
            lp = _echo_logprobs(answer)
            offsets = lp.get("text_offset")
            if not isinstance(offsets, list) or not offsets:
                raise BadAnswer("the answer carries no logprobs.text_offset")
            n_prompt = lp["_usage"].get("prompt_tokens") or len(offsets) - 1
            # the first token that reaches past the context; a token straddling the boundary
            # carries continuation text, so it is scored too
            first = next((k for k in range(n_prompt) if k + 1 == n_prompt or offsets[k + 1] > boundary), n_prompt - 1)
            first = max(first, 1)
            logprob, greedy = _sum_positions(lp, first, n_prompt)
            self._stats.forwarded += n_prompt
            self._stats.naive += n_prompt
            self._stats.scored += n_prompt - first
            return LoglikelihoodResult(logprob, greedy, n_prompt - first)

        return await request_json(
            client,
            "POST",
            f"{self.base_url}/completions",
            self.policy,
            self._completion_payload(context + continuation, echo=True),
            parse,
        )

    def loglikelihood_bodies(self, requests: Sequence[LoglikelihoodRequest]) -> list[dict]:
        """The JSON bodies `loglikelihood` posts to /v1/completions (benchmarks replay them)."""
        if not self.token_prompts:
            return [
                self._completion_payload("".join(move_trailing_spaces(r.context, r.continuation)), echo=True)
                for r in requests
            ]
        return [
            self._completion_payload(loglikelihood_prompt(self.tokenizer, r.context, r.continuation).ids, echo=True)
            for r in requests
        ]

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        self._require_logprobs()
        tok = self.tokenizer if self.token_prompts else None
        prompts = [loglikelihood_prompt(tok, r.context, r.continuation) for r in requests] if tok else None

        async def answer(client: httpx.AsyncClient, i: int) -> LoglikelihoodResult:
            if prompts is None:
                return await self._score_text(client, requests[i])
            p = prompts[i]
            logprob, greedy = await self._score_ids(client, p)
            return LoglikelihoodResult(logprob, greedy, p.n_scored, p.truncated)

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
        if self.tokenizer is None or not self.token_prompts:
            raise ModelError(
                "rolling log-likelihood (perplexity) over HTTP needs the model's tokenizer (tokenizer_path, "
                "--api-tokenizer) and a server that takes token-id prompts"
            )
        windows = [rolling_prompts(self.tokenizer, r) for r in requests]

        async def answer(client: httpx.AsyncClient, i: int) -> RollingResult:
            prompts, n_tokens = windows[i]
            total = 0.0
            for p in prompts:  # a document's windows in order; documents run concurrently
                total += (await self._score_ids(client, p))[0]
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

    def _generation_payload(self, r: GenerateRequest) -> tuple[str, dict, int]:
        """(url, body, truncated) of one greedy generation."""
        body: dict[str, Any] = {"model": self.api_model, "max_tokens": r.max_new_tokens, "temperature": r.temperature}
        if r.stop:
            body["stop"] = list(r.stop)
        if r.top_p < 1.0:
            body["top_p"] = r.top_p
        if r.seed is not None:
            body["seed"] = r.seed
        if r.min_new_tokens:
            body["min_tokens"] = r.min_new_tokens  # vLLM's and SGLang's extension
        truncated = 0
        if self._uses_chat(r):
            url = f"{self.base_url}/chat/completions"
            turns = r.messages or (("user", r.prompt),)
            body["messages"] = [{"role": role, "content": content} for role, content in turns]
        else:
            url = f"{self.base_url}/completions"
            if self.tokenizer is not None and self.token_prompts:  # the hf path's prompt tokens and left truncation
                ids = self.tokenizer.bos_ids + self.tokenizer.encode(r.prompt)
                if self.max_length:
                    room = max(1, self.max_length - r.max_new_tokens)
                    truncated = max(0, len(ids) - room)
                    ids = ids[-room:]
                body["prompt"] = ids
            else:
                body["prompt"] = r.prompt
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return url, body, truncated

    def _uses_chat(self, r: GenerateRequest) -> bool:
        """A request's own choice wins; else the model's (api_chat)."""
        return r.chat if r.chat is not None else self.chat

    def _generated(
        self, text: str, finish: str | None, stop_reason: Any, usage: dict, r: GenerateRequest, truncated: int
    ) -> GenerateResult:
        text, hit = cut_at_stop(text, r.stop)
        if hit or isinstance(stop_reason, str):  # a stop string ("?": the server does not say why)
            reason = "stop"
        elif finish == "length":
            reason = "length"
        else:  # vLLM's stop_reason is null at end-of-sequence
            reason = "eos" if finish == "stop" and stop_reason is None else (finish or "stop")
        return GenerateResult(text, int((usage or {}).get("completion_tokens") or 0), truncated, reason)

    def _parse_generation(self, r: GenerateRequest, truncated: int):
        def parse(answer: Any) -> GenerateResult:
            choice = _first_choice(answer)
            if self._uses_chat(r):
                text = (choice.get("message") or {}).get("content")
            else:
                text = choice.get("text")
            if not isinstance(text, str):
                raise BadAnswer("the choice carries no text")
            return self._generated(
                text,
                choice.get("finish_reason"),
                choice.get("stop_reason", "?"),
                answer.get("usage") or {},
                r,
                truncated,
            )

        def fold(events: list[Any]) -> GenerateResult:
            pieces, finish, stop_reason, usage = [], None, "?", {}  # "?": the server never said
            for e in events:
                if not isinstance(e, dict):
                    raise BadAnswer(f"a stream event is not an object: {e!r}")
                usage = e.get("usage") or usage
                for c in e.get("choices") or []:
                    piece = (c.get("delta") or {}).get("content") if self._uses_chat(r) else c.get("text")
                    pieces.append(piece or "")
                    finish = c.get("finish_reason") or finish
                    if c.get("finish_reason"):
                        stop_reason = c.get("stop_reason", stop_reason)
            if finish is None:
                raise BadAnswer("the stream ended without a finish_reason")
            return self._generated("".join(pieces), finish, stop_reason, usage, r, truncated)

        return parse, fold

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        async def answer(client: httpx.AsyncClient, i: int) -> GenerateResult:
            r = requests[i]
            url, body, truncated = self._generation_payload(r)
            parse, fold = self._parse_generation(r, truncated)
            if self.stream:
                result = await stream_json(client, url, self.policy, body, fold)
            else:
                result = await request_json(client, "POST", url, self.policy, body, parse)
            self._stats.scored += result.n_tokens
            return result

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
            "api_model": self.api_model,
            "api_key_env": self.api_key_env,  # the variable's name; the key itself is never recorded
            "tokenizer": self.tokenizer.source if self.tokenizer else None,
            "prompts": "token ids" if self.token_prompts else "text",
            "generation": "chat/completions" if self.chat else "completions",
            "stream": self.stream,
            "server_max_len": self.server_max_len,
            "max_length": self.max_length,
            "loglikelihood": "ok" if not self.logprobs_problem else f"unavailable: {self.logprobs_problem}",
            "concurrency": self.concurrency,
            "timeout_s": self.policy.timeout,
            "retries": self.policy.retries,
            "load_seconds": round(self.load_seconds, 3),
        }
