"""The base of every model served over HTTP: a backend gives its payloads and parsing, nothing else.

Held here, once: the URL, the API key (read from the environment only), retries and the adaptive
in-flight limit (through http_client), the local tokenizer and the prompts built with it, the
server's context length, the start-up probe's plumbing, rolling scoring, generation prompts and
their truncation, token counts and `describe`. A backend (openai_api.py, lightllm.py) subclasses
ServedModel and implements:

- `normalize_url(url)`: the base URL its routes hang off;
- `probe(session)`: why log-likelihood is unavailable from this server, or None;
- `score_ids(session, prompt)`: (log-likelihood, is_greedy) of prompt.ids[prompt.first:];
- optionally `probe_topk(session, k)` and `next_token_logprobs(session, ids, k, work)`: the next
  token's top-k logprobs, which answer a question's one-token choices with one request
  (served_choices.py);
- `generation_call(r, prompt)`: the (url, body) of one generation, and
  `parse_generation` / `fold_generation`: its answer (or stream events) as a Generated;

and may override `discover` (the served model's id and context length), `score_text` (scoring
without a tokenizer) and `describe_extra`. Every request goes through `Session.json` or
`Session.stream`, whose Reply carries the request's timing (RequestTiming: latency, TTFT); each
reaches `on_timing(index, timing)` with the index of the request it answers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from lmgauge.engine.generate import cut_at_stop
from lmgauge.models.base import ModelError, OnResult
from lmgauge.models.concurrency import AdaptiveLimit
from lmgauge.models.http_client import (
    ClientCounts,
    RequestFailed,
    RequestTiming,
    RetryPolicy,
    ServerLink,
    Session,
    latency_of,
    new_client,
    read_api_key,
    run_all,
    run_sync,
)
from lmgauge.models.served_choices import PROMPT, Question, answer_question, find_questions
from lmgauge.models.served_prompts import ScoredPrompt, generation_prompt, loglikelihood_prompts, rolling_prompts
from lmgauge.models.tokenizer import ModelTokenizer, configured_context_length
from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RequestLatency,
    RollingRequest,
    RollingResult,
    TokenStats,
    all_answered,
)

log = logging.getLogger(__name__)

PROBE_TEXT = "The capital of France is"
GEN_VARIANT_HINT = "run the task's generation variant instead (e.g. mmlu_gen for mmlu)"
CHARS_PER_TOKEN = 4  # a text prompt's size in tokens, for the in-flight limit only
TOPK_QUESTIONS = "next_token_topk questions"  # scored_from's count of questions answered by one request
DEFAULT_TOPK = 20  # next-token logprobs asked for per question (vLLM's --max-logprobs default is 20)

T = TypeVar("T")


@dataclass(frozen=True)
class Generated:
    """A generation as the server gave it, before the client cuts at stop strings."""

    text: str
    n_tokens: int
    finish: str  # "stop" (a stop string) | "length" | "eos"


def _with_latency(result: Any, latency: RequestLatency) -> Any:
    """A result with its request's latency. A question's choices (a list: one request answered them
    all) carry it on the first: results' latency summary counts requests. A question sent back to
    per-choice requests (a str) keeps none."""
    if isinstance(result, list):
        return [replace(result[0], latency=latency), *result[1:]] if result else result
    return result if isinstance(result, str) else replace(result, latency=latency)


def _text_tokens(text: str) -> float:
    return len(text) / CHARS_PER_TOKEN


class ServedModel:
    """Answers the three request kinds through a server; subclasses speak its protocol."""

    backend: ClassVar[str]
    supports_chat: ClassVar[bool] = False

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
        adaptive: bool = True,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_seq_len: int | None = None,
        bos: str = "never",
        trust_remote_code: bool = False,
        tokenizer_kwargs: dict | None = None,
        topk: int = DEFAULT_TOPK,
    ) -> None:
        t0 = time.perf_counter()
        self._timings: dict[int, list[RequestTiming]] = {}  # per request of the list being run
        self.base_url = self.normalize_url(api_url)
        self.api_key_env = api_key_env
        key = read_api_key(api_key_env)
        self.link = ServerLink(
            {"Authorization": f"Bearer {key}"} if key else {},
            RetryPolicy(retries=retries, backoff=backoff, timeout=timeout),
            AdaptiveLimit(concurrency, adaptive=adaptive),
            on_timing=self.on_timing,
        )
        self.chat, self.stream = chat, stream
        self.api_model, self.server_max_len = self._call(lambda s: self.discover(s, api_model))
        # the forward the hf path runs holds max_length tokens; a served prompt holds one more and
        # the one generated token (max_tokens 1) must fit as well
        limit = self.server_max_len or (configured_context_length(tokenizer_path) if tokenizer_path else None)
        self.max_length: int | None = max_seq_len or (limit - 2 if limit else None)
        self.tokenizer = (
            ModelTokenizer.load(
                tokenizer_path,
                bos=bos,
                max_length=self.max_length,
                trust_remote_code=trust_remote_code,
                tokenizer_kwargs=tokenizer_kwargs,
            )
            if tokenizer_path
            else None
        )
        self.name = name or self.api_model or urlsplit(self.base_url).netloc.replace(":", "_")
        self._stats = TokenStats()
        self.token_prompts = self.tokenizer is not None  # prompts as the hf path's token ids; the probe may say no
        self.logprobs_problem: str | None = self._call(self.probe)
        if self.logprobs_problem:
            log.warning("%s: log-likelihood unavailable: %s", self.name, self.logprobs_problem)
        # one request per question (served_choices.py): the k the server gives, or why not used
        self.topk: int = 0
        self.topk_problem: str | None = "api_topk 0"
        if topk > 0 and not self.logprobs_problem:
            if self.tokenizer is None or not self.token_prompts:
                self.topk_problem = "needs token-id prompts (a tokenizer)"
            else:
                self.topk, self.topk_problem = self._call(lambda s: self.probe_topk(s, topk))
            if self.topk_problem:
                log.info("%s: choices scored one request each: %s", self.name, self.topk_problem)
        self.scored_from: Counter[str] = Counter()  # questions and requests by the path that answered them
        self.load_seconds = time.perf_counter() - t0

    # --- what a backend gives ------------------------------------------------------------------

    @classmethod
    def normalize_url(cls, url: str) -> str:
        raise NotImplementedError

    async def discover(self, session: Session, wanted: str | None) -> tuple[str | None, int | None]:
        """The served model's id and its context length (None: the server does not say)."""
        return wanted, None

    async def probe(self, session: Session) -> str | None:
        raise NotImplementedError

    async def score_ids(self, session: Session, prompt: ScoredPrompt) -> tuple[float, bool]:
        raise NotImplementedError

    async def score_text(self, session: Session, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        raise RequestFailed("scoring text prompts needs the model's tokenizer (tokenizer_path)")

    async def probe_topk(self, session: Session, k: int) -> tuple[int, str | None]:
        """(the k to ask for, None) when next-token top-k logprobs answer questions; else (0, why not)."""
        return 0, f"the {self.backend} backend reads no next-token top-k"

    async def next_token_logprobs(self, session: Session, ids: list[int], k: int, work: int) -> dict[int, float]:
        """Log-probabilities of the token after ids, by token id: the top k and the greedy token.
        `work` is the tokens the server is expected to compute (for the in-flight limit)."""
        raise NotImplementedError

    def generation_call(self, r: GenerateRequest, prompt: str | list[int] | None) -> tuple[str, dict]:
        """(url, body) of one generation; prompt is None for a chat request (use r.messages)."""
        raise NotImplementedError

    def parse_generation(self, answer: Any, r: GenerateRequest) -> Generated:
        raise NotImplementedError

    def fold_generation(self, events: list[Any], r: GenerateRequest) -> Generated:
        raise NotImplementedError

    def describe_extra(self) -> dict:
        return {}

    def on_timing(self, index: int | None, timing: RequestTiming) -> None:
        """Every answer's timing (latency, TTFT for streams), with the index of the request it
        answers in the list being run; _run puts them on that request's result (`latency`)."""
        if index is not None:
            self._timings.setdefault(index, []).append(timing)

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def counts(self) -> ClientCounts:
        return self.link.counts

    @property
    def concurrency(self) -> int:
        return self.link.limit.maximum

    def _call(self, fn: Callable[[Session], Awaitable[T]]) -> T:
        """One coroutine over a one-connection session (discovery, the probe)."""

        async def main() -> T:
            async with new_client(self.link.headers, 1) as client:
                return await fn(Session(client, self.link))

        return run_sync(main())

    def _run(self, n: int, answer: Callable[[Session, int], Awaitable[Any]], failed, on_result) -> list[Any]:
        self._stats.requests += n
        self._timings = {}

        async def timed(session: Session, i: int) -> Any:
            result = await answer(session, i)
            calls = self._timings.pop(i, None)  # every call of request i has been answered by now
            return _with_latency(result, latency_of(calls)) if calls else result

        results = run_all(self.link, n, timed, failed, on_result)
        if n:
            snap, c = self.link.limit.snapshot(), self.counts
            log.info(
                "%s: %d requests; in flight: limit %d (peak %d, %d backoffs); %d retries, %d stalls, %d failed so far",
                self.name,
                n,
                snap.limit,
                snap.peak,
                snap.backoffs,
                c.retries,
                c.stalls,
                c.failed,
            )
        return results

    def _require_logprobs(self) -> None:
        if self.logprobs_problem:
            raise ModelError(
                f"log-likelihood is unavailable from {self.base_url}: {self.logprobs_problem}; {GEN_VARIANT_HINT}"
            )

    def count_tokens(self, forwarded: int, scored: int) -> None:
        """What a request made the server forward and what of it was read (TokenStats)."""
        self._stats.forwarded += forwarded
        self._stats.naive += forwarded
        self._stats.scored += scored

    async def _score(self, session: Session, p: ScoredPrompt) -> tuple[float, bool]:
        result = await self.score_ids(session, p)
        self.count_tokens(len(p.ids), p.n_scored)
        return result

    # --- LanguageModel -------------------------------------------------------------------------

    @property
    def stats(self) -> TokenStats:
        return self._stats

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        self._require_logprobs()
        tok = self.tokenizer if self.token_prompts else None
        prompts = loglikelihood_prompts(tok, [(r.context, r.continuation) for r in requests]) if tok else None
        results: list[LoglikelihoodResult | None] = [None] * len(requests)

        def deliver(i: int, result: LoglikelihoodResult) -> None:
            results[i] = result
            if on_result is not None:
                on_result(i, result)

        todo = list(range(len(requests)))
        if prompts is not None and self.topk:
            rounds, todo = find_questions(prompts)
            for questions in rounds:
                todo += self._answer_questions(questions, deliver)
            todo.sort()

        async def answer(session: Session, j: int) -> LoglikelihoodResult:
            i = todo[j]
            if prompts is None:
                result = await self.score_text(session, requests[i])
                return replace(result, scored_from=PROMPT)
            p = prompts[i]
            logprob, greedy = await self._score(session, p)
            return LoglikelihoodResult(logprob, greedy, p.n_scored, p.truncated, scored_from=PROMPT)

        self._run(
            len(todo),
            answer,
            lambda j, msg: LoglikelihoodResult(0.0, False, error=msg),
            lambda j, result: deliver(todo[j], result),
        )
        if todo:
            self.scored_from[PROMPT] += len(todo)
        if self.topk:
            log.info("%s: answered so far by %s", self.name, dict(self.scored_from))
        return all_answered(results)

    def _answer_questions(
        self, questions: list[Question], deliver: Callable[[int, LoglikelihoodResult], None]
    ) -> list[int]:
        """One request per question; the indices of the choices left to per-choice requests (a
        choice missing from the top-k, or the request refused)."""
        left: list[int] = []

        async def answer(session: Session, j: int) -> list[LoglikelihoodResult] | str:
            q = questions[j]
            try:
                logprobs = await self.next_token_logprobs(session, q.context, self.topk, q.work)
            except RequestFailed as e:  # e.g. a 400 for k: the per-choice requests may still work
                return f"request failed: {e}"
            self._stats.forwarded += len(q.context)  # what it sent; the server's prefix cache may spare part of it
            results = answer_question(q, logprobs)
            if results is None:  # its per-choice requests count themselves
                return "not in top-k: a choice's token is not among those returned"
            self._stats.naive += len(q.members) * (len(q.context) + 1)  # the per-choice prompts it stands for
            self._stats.scored += len(q.members)
            return results

        def got(j: int, outcome: list[LoglikelihoodResult] | str) -> None:
            q = questions[j]
            if isinstance(outcome, str):
                self.scored_from[f"fallback: {outcome.split(':')[0]}"] += 1
                log.debug("%s: question with requests %s goes per choice: %s", self.name, q.members, outcome)
                left.extend(q.members)
                return
            self.scored_from[TOPK_QUESTIONS] += 1
            for i, result in zip(q.members, outcome):
                deliver(i, result)

        self._run(len(questions), answer, lambda j, msg: f"request failed: {msg}", got)
        if left:
            log.info("%s: %d choices of questions go per choice after all (%s)", self.name, len(left), self.scored_from)
        return left

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

        async def answer(session: Session, i: int) -> RollingResult:
            prompts, n_tokens = windows[i]
            total = 0.0
            for p in prompts:  # a document's windows in order; documents run concurrently
                total += (await self._score(session, p))[0]
            return RollingResult(total, n_tokens, len(prompts))

        return self._run(len(requests), answer, lambda i, msg: RollingResult(0.0, 0, error=msg), on_result)

    def uses_chat(self, r: GenerateRequest) -> bool:
        """A request's own choice wins; else the model's (api_chat)."""
        return r.chat if r.chat is not None else self.chat

    def generation_prompt(self, r: GenerateRequest) -> tuple[str | list[int] | None, int]:
        """What a generation sends as its prompt (None: chat turns) and the tokens cut from it."""
        if self.uses_chat(r):
            if not self.supports_chat:
                raise RequestFailed(f"{self.backend}: chat requests need a chat endpoint (the openai backend)")
            return None, 0
        if self.tokenizer is not None and self.token_prompts:  # the hf path's prompt tokens and left truncation
            return generation_prompt(self.tokenizer, r.prompt, r.max_new_tokens)
        return r.prompt, 0

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        async def answer(session: Session, i: int) -> GenerateResult:
            r = requests[i]
            prompt, truncated = self.generation_prompt(r)
            url, body = self.generation_call(r, prompt)
            sent = len(prompt) if isinstance(prompt, list) else _text_tokens(prompt or r.prompt)

            def work(g: Generated) -> float:
                return sent + g.n_tokens

            if self.stream:
                reply = await session.stream(url, body, lambda events: self.fold_generation(events, r), work)
            else:
                reply = await session.json("POST", url, body, lambda a: self.parse_generation(a, r), work)
            g: Generated = reply.value
            text, hit = cut_at_stop(g.text, r.stop)  # servers differ in stripping stop strings
            self._stats.scored += g.n_tokens
            return GenerateResult(text, g.n_tokens, truncated, "stop" if hit else g.finish)

        return self._run(len(requests), answer, lambda i, msg: GenerateResult("", error=msg), on_result)

    def describe(self) -> dict:
        tok = self.tokenizer
        return {
            "backend": self.backend,
            "name": self.name,
            "api_url": self.base_url,
            "api_model": self.api_model,
            "api_key_env": self.api_key_env,  # the variable's name; the key itself is never recorded
            "tokenizer": tok.source if tok else None,
            "bos": tok.bos_policy if tok else None,
            "prompts": "token ids" if self.token_prompts else "text",
            "stream": self.stream,
            "server_max_len": self.server_max_len,
            "max_length": self.max_length,
            "loglikelihood": "ok" if not self.logprobs_problem else f"unavailable: {self.logprobs_problem}",
            # one request per question: k, or why choices go one request each; what answered so far
            "loglikelihood_topk": self.topk or f"off: {self.topk_problem}",
            "scored_from": dict(self.scored_from),
            "concurrency": self.concurrency,  # the most requests in flight; the limit adapts below it
            "adaptive_concurrency": self.link.limit.adaptive,
            "timeout_s": self.link.policy.timeout,
            "retries": self.link.policy.retries,
            "load_seconds": round(self.load_seconds, 3),
            **self.describe_extra(),
        }
