"""The benchmark's own HTTP client: one request, timed chunk by chunk. It measures; it never retries.

Endpoints: OpenAI-compatible `/v1/completions` and `/v1/chat/completions` (streamed as server-sent
events, `stream_options.include_usage` asked for) and lightllm's `/generate` / `/generate_stream`.
The clock starts when the request is handed to the connection (after its concurrency slot is taken);
a chunk's time is when its event has been read. Following `vllm bench serve`: every event that carries
`choices` is a chunk (its text may be empty), TTFT is the first chunk, E2EL the last chunk, output
tokens come from the server's `usage` where it sends one. Where it does not (llama-cpp-python sends no
usage in streams), they come from token ids or logprobs in the chunks, else from re-tokenizing the
text (vLLM's fallback); each record says which. Unlike vLLM, a stream that ends without a
finish_reason is a failure, not a short success (llama-cpp-python cuts the running stream when a new
request arrives unless started with --interrupt_requests False).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

KINDS = ("completions", "chat", "lightllm")


@dataclass
class RequestSpec:
    index: int
    prompt: str
    prompt_len: int | None  # tokens, as built (None when not known before the server's usage)
    output_len: int


@dataclass
class RequestRecord:
    index: int
    prompt_len: int | None
    expected_output_len: int
    arrival_s: float = 0.0  # when it was ready to go (its scheduled arrival), since the benchmark began
    start_s: float = 0.0  # when it was sent (its slot taken), since the benchmark began
    ttft_s: float | None = None  # None: not streamed, or no chunk
    chunk_times_s: list[float] = field(default_factory=list)  # every chunk, since start_s
    chunk_tokens: list[int | None] = field(default_factory=list)  # tokens in each chunk, where the chunk says
    e2el_s: float | None = None
    output_tokens: int = 0
    output_tokens_source: str = "none"  # usage | chunks | retokenized | none
    usage: dict | None = None
    finish_reason: str | None = None
    text: str = ""
    streamed: bool = True
    http_status: int | None = None
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def queue_s(self) -> float:
        return self.start_s - self.arrival_s

    @property
    def itl_s(self) -> list[float]:
        t = self.chunk_times_s
        return [b - a for a, b in zip(t, t[1:])]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["success"] = self.success
        out["queue_s"] = self.queue_s
        return out


@dataclass
class Endpoint:
    url: str  # the full URL requests go to
    kind: str  # completions | chat | lightllm
    model: str | None
    stream: bool = True
    api_key: str | None = None
    force_output_len: bool = True  # ignore_eos + min_tokens: exactly output_len tokens
    extra_body: dict = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def payload(self, spec: RequestSpec) -> dict[str, Any]:
        m = spec.output_len
        if self.kind == "lightllm":
            params: dict[str, Any] = {"do_sample": False, "ignore_eos": self.force_output_len, "max_new_tokens": m}
            if self.force_output_len:
                params["min_new_tokens"] = m
            return {"inputs": spec.prompt, "parameters": {**params, **self.extra_body}}
        body: dict[str, Any] = {"model": self.model, "temperature": 0.0, "stream": self.stream}
        if self.kind == "chat":
            body["messages"] = [{"role": "user", "content": spec.prompt}]
            body["max_completion_tokens"] = m
            body["max_tokens"] = m  # servers that predate max_completion_tokens (llama-cpp-python)
        else:
            body["prompt"] = spec.prompt
            body["max_tokens"] = m
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        if self.force_output_len:
            body["ignore_eos"] = True  # vLLM, SGLang
            body["min_tokens"] = m  # vLLM, llama-cpp-python
        body.update(self.extra_body)
        return body


def _chunk_token_count(choice: dict[str, Any]) -> int | None:
    """Tokens in one streamed choice, where the chunk itself says (token ids or per-token logprobs)."""
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return len(ids)
    lp = choice.get("logprobs")
    if isinstance(lp, dict):
        if isinstance(lp.get("tokens"), list):
            return len(lp["tokens"])
        if isinstance(lp.get("content"), list):
            return len(lp["content"])
    return None


async def send(client: httpx.AsyncClient, ep: Endpoint, spec: RequestSpec, t0: float, timeout: float) -> RequestRecord:
    """Send one request, read it to the end, and time it; every failure is kept in the record."""
    rec = RequestRecord(spec.index, spec.prompt_len, spec.output_len)
    body = ep.payload(spec)
    url = ep.url
    if ep.kind == "lightllm" and ep.stream and url.endswith("/generate"):
        url += "_stream"
    st = time.perf_counter()
    rec.start_s = st - t0
    rec.streamed = ep.stream
    try:
        if ep.stream:
            await _read_stream(client, ep, url, body, rec, st, timeout)
        else:
            r = await client.post(url, json=body, headers=ep.headers(), timeout=timeout)
            rec.http_status = r.status_code
            end = time.perf_counter()
            if r.status_code != 200:
                rec.error = f"HTTP {r.status_code}: {r.text[:300]}"
            else:
                _parse_whole(ep, r.json(), rec)
                rec.e2el_s = end - st
    except (httpx.HTTPError, OSError) as e:
        rec.error = f"{type(e).__name__}: {e}"
    except (ValueError, KeyError, TypeError) as e:  # an answer that is not what the protocol says
        rec.error = f"bad answer: {type(e).__name__}: {e}"
    return rec


async def _read_stream(
    client: httpx.AsyncClient, ep: Endpoint, url: str, body: dict, rec: RequestRecord, st: float, timeout: float
) -> None:
    pieces: list[str] = []
    async with client.stream("POST", url, json=body, headers=ep.headers(), timeout=timeout) as r:
        rec.http_status = r.status_code
        if r.status_code != 200:
            rec.error = f"HTTP {r.status_code}: {(await r.aread()).decode(errors='replace')[:300]}"
            return
        async for line in r.aiter_lines():
            if not line.startswith("data:"):  # blank separators, SSE comments (": ping")
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            now = time.perf_counter()
            event = json.loads(data)
            if ep.kind == "lightllm":
                tok = event.get("token") or {}
                rec.chunk_times_s.append(now - st)
                rec.chunk_tokens.append(1)  # lightllm streams one event per token
                pieces.append(tok.get("text") or "")
                if event.get("finished"):
                    rec.finish_reason = event.get("finish_reason")
                    n = tok.get("count_output_tokens")
                    if isinstance(n, int):
                        rec.usage = {"completion_tokens": n}
                continue
            if "error" in event and not event.get("choices"):
                rec.error = f"server error in stream: {json.dumps(event['error'])[:300]}"
                return
            choices = event.get("choices")
            if choices:
                c = choices[0]
                text = (c.get("delta") or {}).get("content") if ep.kind == "chat" else c.get("text")
                rec.chunk_times_s.append(now - st)
                rec.chunk_tokens.append(_chunk_token_count(c))
                pieces.append(text or "")
                if c.get("finish_reason"):
                    rec.finish_reason = c["finish_reason"]
            if isinstance(event.get("usage"), dict):
                rec.usage = event["usage"]
    rec.text = "".join(pieces)
    if not rec.chunk_times_s:
        rec.error = "no chunk with a token came back (TTFT cannot be measured)"
        return
    if rec.finish_reason is None:  # llama-cpp-python cuts a stream when a new request comes in
        rec.error = (
            f"the stream ended after {len(rec.chunk_times_s)} chunk(s) without a finish_reason "
            "(interrupted by the server? llama-cpp-python: --interrupt_requests False)"
        )
        return
    rec.ttft_s = rec.chunk_times_s[0]
    rec.e2el_s = rec.chunk_times_s[-1]
    _count_from_usage(rec)
    if rec.output_tokens_source == "none" and rec.chunk_tokens and all(n is not None for n in rec.chunk_tokens):
        rec.output_tokens = sum(n for n in rec.chunk_tokens if n is not None)
        rec.output_tokens_source = "chunks"


def _count_from_usage(rec: RequestRecord) -> None:
    n = (rec.usage or {}).get("completion_tokens")
    if isinstance(n, int):
        rec.output_tokens, rec.output_tokens_source = n, "usage"
    p = (rec.usage or {}).get("prompt_tokens")
    if isinstance(p, int):
        rec.prompt_len = p


def _parse_whole(ep: Endpoint, answer: dict[str, Any], rec: RequestRecord) -> None:
    if ep.kind == "lightllm":
        texts = answer["generated_text"]
        rec.text = texts[0] if isinstance(texts, list) else texts
        rec.finish_reason = answer.get("finish_reason")
        usage = {}
        if isinstance(answer.get("count_output_tokens"), int):
            usage["completion_tokens"] = answer["count_output_tokens"]
        if isinstance(answer.get("prompt_tokens"), int):
            usage["prompt_tokens"] = answer["prompt_tokens"]
        rec.usage = usage or None
    else:
        c = answer["choices"][0]
        rec.text = c["message"]["content"] if ep.kind == "chat" else c["text"]
        rec.finish_reason = c.get("finish_reason")
        rec.usage = answer.get("usage")
    _count_from_usage(rec)


def retokenize_missing(records: list[RequestRecord], tokenizer: Any) -> None:
    """Output tokens of successful requests without usage or per-chunk counts: re-tokenize the text (vLLM's fallback)."""
    for r in records:
        if r.success and r.output_tokens_source == "none":
            if tokenizer is None:
                continue
            r.output_tokens = len(tokenizer(r.text, add_special_tokens=False).input_ids)
            r.output_tokens_source = "retokenized"
