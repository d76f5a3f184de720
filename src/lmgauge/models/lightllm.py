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
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from lmgauge.models.base import ModelError, OnResult
from lmgauge.models.http_client import BadAnswer, RequestFailed, Session
from lmgauge.models.served import PROBE_TEXT, Generated, ServedModel
from lmgauge.models.served_prompts import ScoredPrompt, move_trailing_spaces
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, LoglikelihoodResult

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


class LightLLMModel(ServedModel):
    backend = "lightllm"

    def __init__(self, api_url: str, **kwargs: Any) -> None:
        self._warned_greedy = False
        self._context_lengths: dict[str, asyncio.Future] = {}  # text scoring: shared by a question's choices
        super().__init__(api_url, **kwargs)

    @classmethod
    def normalize_url(cls, url: str) -> str:
        return lightllm_base_url(url)

    def _payload(self, inputs: str | list[int], max_new_tokens: int, r: GenerateRequest | None = None) -> dict:
        params: dict[str, Any] = {"do_sample": False, "ignore_eos": False, "max_new_tokens": max_new_tokens}
        if r is not None and r.stop:
            params["stop_sequences"] = list(r.stop)
        if r is not None and r.temperature > 0:  # sampled generation (lightllm's SamplingParams names)
            params.update(do_sample=True, temperature=r.temperature, top_p=r.top_p)  # lightllm takes no seed
        if r is not None and r.min_new_tokens:
            params["min_new_tokens"] = r.min_new_tokens
        return {"inputs": inputs, "parameters": params}

    async def _prompt_logprobs(self, session: Session, inputs: str | list[int]) -> tuple[list[int], list[float]]:
        size = len(inputs) if isinstance(inputs, list) else len(inputs) / 4
        reply = await session.json("POST", f"{self.base_url}/generate", self._payload(inputs, 1), _prompt_scores, size)
        return reply.value

    async def probe(self, session: Session) -> str | None:
        inputs: str | list[int] = self.tokenizer.encode(PROBE_TEXT) if self.tokenizer else PROBE_TEXT
        try:
            ids, values = await self._prompt_logprobs(session, inputs)
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
        super()._require_logprobs()
        if not self._warned_greedy:
            self._warned_greedy = True
            log.warning("%s: lightllm returns no top tokens: is_greedy is reported False for every request", self.name)

    # --- log-likelihood ------------------------------------------------------------------------

    async def score_ids(self, session: Session, p: ScoredPrompt) -> tuple[float, bool]:
        ids, values = await self._prompt_logprobs(session, p.ids)
        if ids != p.ids:
            raise RequestFailed(
                f"the server scored other tokens than sent ({len(ids)} for {len(p.ids)}): is it truncating prompts?"
            )
        return float(sum(values[p.first - 1 :])), False  # values[k-1] scores token k

    async def _context_length(self, session: Session, context: str) -> int:
        fut = self._context_lengths.get(context)
        if fut is None:
            fut = self._context_lengths[context] = asyncio.get_running_loop().create_future()
            try:
                ids, _ = await self._prompt_logprobs(session, context)
                self.count_tokens(len(ids), 0)
                fut.set_result(len(ids))
            except Exception as e:
                fut.set_exception(e)
                self._context_lengths.pop(context, None)  # the next choice tries again
        return await asyncio.shield(fut)

    async def score_text(self, session: Session, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        # no tokenizer: lm-eval's split by the server's own tokens: whole[len(encode(context)):]
        context, continuation = move_trailing_spaces(r.context, r.continuation)
        if not context:
            raise RequestFailed("an empty context can only be scored with a tokenizer (tokenizer_path)")
        n_ctx = await self._context_length(session, context)
        ids, values = await self._prompt_logprobs(session, context + continuation)
        first = max(1, n_ctx)
        if first >= len(ids):
            raise RequestFailed("the continuation adds no tokens to the context's")
        self.count_tokens(len(ids), len(ids) - first)
        return LoglikelihoodResult(float(sum(values[first - 1 :])), False, len(ids) - first)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        try:
            return super().loglikelihood(requests, on_result)
        finally:
            self._context_lengths.clear()  # futures belong to the event loop that made them

    # --- generation ----------------------------------------------------------------------------

    def generation_call(self, r: GenerateRequest, prompt: str | list[int] | None) -> tuple[str, dict]:
        assert prompt is not None  # supports_chat is False: the base refuses chat requests first
        route = "/generate_stream" if self.stream else "/generate"
        return f"{self.base_url}{route}", self._payload(prompt, r.max_new_tokens, r)

    def parse_generation(self, answer: Any, r: GenerateRequest) -> Generated:
        try:
            texts = answer["generated_text"]
            text = texts[0] if isinstance(texts, list) else texts
        except (KeyError, TypeError, IndexError):
            raise BadAnswer(f"no generated_text in {answer!r:.200}") from None
        if not isinstance(text, str):
            raise BadAnswer("generated_text is not text")
        n = answer.get("count_output_tokens")
        return Generated(text, n if isinstance(n, int) else 0, _finish(answer.get("finish_reason")))

    def fold_generation(self, events: list[Any], r: GenerateRequest) -> Generated:
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
        return Generated("".join(pieces), n, _finish(finish))

    def describe_extra(self) -> dict:
        ok = "ok (is_greedy unavailable)"
        return {"loglikelihood": ok if not self.logprobs_problem else f"unavailable: {self.logprobs_problem}"}


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "eos"
