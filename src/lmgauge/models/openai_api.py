"""A model served behind an OpenAI-compatible HTTP API (vLLM, SGLang, llama.cpp, TGI).

Log-likelihoods come from /v1/completions with `echo` and `logprobs` (the request lm-eval's
local-completions sends: max_tokens 1, temperature 0, logprobs 1, echo true); the continuation's
tokens are found by position when the prompt is sent as token ids (a local tokenizer gives the
hf backend's exact tokens), else by `logprobs.text_offset`. Generation goes through
/v1/completions or, with `chat`, /v1/chat/completions (the server applies its chat template).
A probe at start checks that the server returns prompt logprobs and that they are scored
against the right position; when not, log-likelihood requests fail at once with the reason.

A question whose choices are one token each is answered by one completion of its context with
`max_tokens: 1, logprobs: k, return_tokens_as_token_ids: true` (vLLM's extension: top-k keys as
"token_id:N", so tokens that decode alike stay apart); served_choices.py says when that is exact.
Its probe checks the keys and that the values are the prompt path's logprobs (vLLM's default
--logprobs-mode raw_logprobs; processed ones or logits would differ), and takes the server's cap
(--max-logprobs, 20 by default) from its 400 when k is over it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

from lmgauge.models.base import ModelError
from lmgauge.models.http_client import BadAnswer, RequestFailed, Session
from lmgauge.models.served import PROBE_TEXT, Generated, ServedModel
from lmgauge.models.served_prompts import ScoredPrompt, loglikelihood_prompts, move_trailing_spaces
from lmgauge.requests import GenerateRequest, LoglikelihoodRequest, LoglikelihoodResult

log = logging.getLogger(__name__)

TOKEN_ID_KEY = "token_id:"  # vLLM's key for a token with return_tokens_as_token_ids
LOGPROBS_CAP = re.compile(r"logprobs of \d+, which is greater than max allowed: (\d+)")  # vLLM's 400


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


def _next_token_by_id(answer: Any) -> dict[int, float]:
    """The generated token's logprob and its top_logprobs, keyed by token id (vLLM's
    return_tokens_as_token_ids): the top-k and the greedy token at temperature 0."""
    lp: Any = _first_choice(answer).get("logprobs")
    try:
        pairs = list(lp["top_logprobs"][0].items()) + [(lp["tokens"][0], lp["token_logprobs"][0])]
        out = {int(key.removeprefix(TOKEN_ID_KEY)): float(v) for key, v in pairs if key.startswith(TOKEN_ID_KEY)}
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        raise BadAnswer(f"no next-token top_logprobs by token id ({type(e).__name__}: {e})") from None
    if len(out) < len(pairs) - 1:  # one key may repeat: the greedy token is among the top-k
        raise BadAnswer(f"top_logprobs not keyed by token id: {list(lp['top_logprobs'][0])[:3]}")
    return out


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


class OpenAIModel(ServedModel):
    """Answers the three request kinds over an OpenAI-compatible HTTP API."""

    backend = "openai"
    supports_chat = True

    @classmethod
    def normalize_url(cls, url: str) -> str:
        return openai_base_url(url)

    # --- start: which model, and can it score prompts ------------------------------------------

    async def discover(self, session: Session, wanted: str | None) -> tuple[str | None, int | None]:
        """The served model's id (from /v1/models when not given) and its context length."""
        try:
            listing = (await session.json("GET", f"{self.base_url}/models")).value
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

    async def probe(self, session: Session) -> str | None:
        """None when the server returns sane prompt logprobs; else why log-likelihood is unavailable.

        The greedy next token g of a short text, echoed as part of the prompt, must be the top
        token at its own position. A server that scores each prompt token against the position
        after it (llama-cpp-python for models without a BOS token, its issue 1983: each token's
        logprob of repeating itself) fails this."""
        tok = self.tokenizer
        url = f"{self.base_url}/completions"

        async def next_token(prompt: str | list[int]) -> dict:
            try:
                return (
                    await session.json("POST", url, self._completion_payload(prompt, echo=False), _first_choice)
                ).value
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
                        "%s: the server refuses token-id prompts (%s); sending text, which the server tokenizes itself",
                        self.base_url,
                        e,
                    )
                    self.token_prompts, tok = False, None
            if not tok:
                gen = await next_token(PROBE_TEXT)
        except RequestFailed as e:
            return f"the server refuses a one-token completion: {e}"  # a chat-only server
        g = gen.get("text") or ""
        prompt2: str | list[int]
        if tok:
            g_ids = tok.encode(g)
            if len(g_ids) != 1:
                log.warning("%s: prompt-logprob check inconclusive (next token %r)", self.base_url, g)
                return None
            prompt2 = tok.bos_ids + tok.encode(PROBE_TEXT) + g_ids
        else:
            prompt2 = PROBE_TEXT + g
        try:
            lp = (await session.json("POST", url, self._completion_payload(prompt2, echo=True), _echo_logprobs)).value
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
            found = next((k for k, o in enumerate(offsets) if o == len(PROBE_TEXT)), None)
            if found is None or found >= n_prompt or (tokens and tokens[found] != g):
                log.warning("%s: prompt-logprob check inconclusive (next token %r)", self.base_url, g)
                return None
            at = found
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

    # --- one request per question ---------------------------------------------------------------

    def _topk_payload(self, ids: list[int], k: int) -> dict:
        body = self._completion_payload(ids, echo=False)
        body.update(logprobs=k, return_tokens_as_token_ids=True)
        return body

    async def probe_topk(self, session: Session, k: int) -> tuple[int, str | None]:
        """Next-token top-k of the probe text: keyed by token id, log-probabilities, and equal to
        the greedy token's prompt logprob; k lowered to the server's cap when it names one."""
        tok = self.tokenizer
        assert tok is not None
        ids = tok.bos_ids + tok.encode(PROBE_TEXT)
        url = f"{self.base_url}/completions"
        while True:
            try:
                raw = (await session.json("POST", url, self._topk_payload(ids, k))).value
                break
            except RequestFailed as e:
                cap = LOGPROBS_CAP.search(str(e)) if e.status == 400 else None
                if cap is None or not 1 < int(cap.group(1)) < k:
                    return 0, f"the server refuses logprobs {k} on a completion: {e}"
                log.info("%s: the server gives at most %s logprobs per token", self.base_url, cap.group(1))
                k = int(cap.group(1))
        try:
            top = _next_token_by_id(raw)
        except BadAnswer as e:
            return 0, f"the server does not key next-token logprobs by token id (return_tokens_as_token_ids): {e}"
        if any(v > 1e-4 or math.isnan(v) for v in top.values()):
            return 0, f"the next-token logprobs are not log-probabilities (logits?): {sorted(top.values())[-3:]}"
        greedy = max(top, key=top.__getitem__)
        try:
            echo = (
                await session.json("POST", url, self._completion_payload(ids + [greedy], echo=True), _echo_logprobs)
            ).value
            prompt_lp = float(echo["token_logprobs"][len(ids)])
        except (RequestFailed, BadAnswer, IndexError, TypeError, ValueError) as e:
            return 0, f"could not compare the next-token logprobs with the prompt's: {e}"
        if abs(prompt_lp - top[greedy]) > 1e-3:  # vLLM with --logprobs-mode processed_logprobs, say
            return 0, (
                f"the next-token logprob of the greedy token ({top[greedy]:.4f}) differs from its prompt logprob "
                f"({prompt_lp:.4f}): not the same numbers"
            )
        if len(top) < min(k, 2):
            return 0, f"the server returned {len(top)} next-token logprobs for logprobs {k}"
        return k, None

    async def next_token_logprobs(self, session: Session, ids: list[int], k: int, work: int) -> dict[int, float]:
        reply = await session.json(
            "POST", f"{self.base_url}/completions", self._topk_payload(ids, k), _next_token_by_id, work
        )
        return reply.value

    # --- log-likelihood ------------------------------------------------------------------------

    async def score_ids(self, session: Session, p: ScoredPrompt) -> tuple[float, bool]:
        def parse(answer: Any) -> tuple[float, bool]:
            return _sum_positions(_echo_logprobs(answer), p.first, len(p.ids))

        body = self._completion_payload(p.ids, echo=True)
        return (await session.json("POST", f"{self.base_url}/completions", body, parse, len(p.ids))).value

    async def score_text(self, session: Session, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        context, continuation = move_trailing_spaces(r.context, r.continuation)
        if not context:
            raise RequestFailed("an empty context can only be scored with a tokenizer (tokenizer_path)")
        boundary = len(context)

        def parse(answer: Any) -> tuple[LoglikelihoodResult, int]:
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
            return LoglikelihoodResult(logprob, greedy, n_prompt - first), n_prompt

        text = context + continuation
        body = self._completion_payload(text, echo=True)
        reply = await session.json("POST", f"{self.base_url}/completions", body, parse, lambda v: v[1])
        result, n_prompt = reply.value
        self.count_tokens(n_prompt, result.n_tokens)
        return result

    def loglikelihood_bodies(self, requests: Sequence[LoglikelihoodRequest]) -> list[dict]:
        """The JSON bodies `loglikelihood` posts to /v1/completions (benchmarks replay them)."""
        tok = self.tokenizer
        if tok is None or not self.token_prompts:
            return [
                self._completion_payload("".join(move_trailing_spaces(r.context, r.continuation)), echo=True)
                for r in requests
            ]
        prompts = loglikelihood_prompts(tok, [(r.context, r.continuation) for r in requests])
        return [self._completion_payload(p.ids, echo=True) for p in prompts]

    # --- generation ----------------------------------------------------------------------------

    def generation_call(self, r: GenerateRequest, prompt: str | list[int] | None) -> tuple[str, dict]:
        body: dict[str, Any] = {"model": self.api_model, "max_tokens": r.max_new_tokens, "temperature": r.temperature}
        if r.stop:
            body["stop"] = list(r.stop)
        if r.top_p < 1.0:
            body["top_p"] = r.top_p
        if r.seed is not None:
            body["seed"] = r.seed
        if r.min_new_tokens:
            body["min_tokens"] = r.min_new_tokens  # vLLM's and SGLang's extension
        if prompt is None:
            url = f"{self.base_url}/chat/completions"
            turns = r.messages or (("user", r.prompt),)
            body["messages"] = [{"role": role, "content": content} for role, content in turns]
        else:
            url = f"{self.base_url}/completions"
            body["prompt"] = prompt
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return url, body

    def parse_generation(self, answer: Any, r: GenerateRequest) -> Generated:
        choice = _first_choice(answer)
        text = (choice.get("message") or {}).get("content") if self.uses_chat(r) else choice.get("text")
        if not isinstance(text, str):
            raise BadAnswer("the choice carries no text")
        usage = answer.get("usage") or {}
        return _generated(text, choice.get("finish_reason"), choice.get("stop_reason", "?"), usage)

    def fold_generation(self, events: list[Any], r: GenerateRequest) -> Generated:
        pieces: list[str] = []
        finish: str | None = None
        stop_reason: Any = "?"  # "?": the server never said
        usage: dict = {}
        chat = self.uses_chat(r)
        for e in events:
            if not isinstance(e, dict):
                raise BadAnswer(f"a stream event is not an object: {e!r}")
            usage = e.get("usage") or usage
            for c in e.get("choices") or []:
                piece = (c.get("delta") or {}).get("content") if chat else c.get("text")
                pieces.append(piece or "")
                finish = c.get("finish_reason") or finish
                if c.get("finish_reason"):
                    stop_reason = c.get("stop_reason", stop_reason)
        if finish is None:
            raise BadAnswer("the stream ended without a finish_reason")
        return _generated("".join(pieces), finish, stop_reason, usage)

    def describe_extra(self) -> dict:
        return {"generation": "chat/completions" if self.chat else "completions"}


def _generated(text: str, finish: str | None, stop_reason: Any, usage: dict) -> Generated:
    if isinstance(stop_reason, str) and stop_reason != "?":  # vLLM names the stop string it met
        reason = "stop"
    elif finish == "length":
        reason = "length"
    elif finish == "stop" and stop_reason is None:  # vLLM's stop_reason is null at end-of-sequence
        reason = "eos"
    else:  # "?": the server does not say why
        reason = finish or "stop"
    return Generated(text, int((usage or {}).get("completion_tokens") or 0), reason)
