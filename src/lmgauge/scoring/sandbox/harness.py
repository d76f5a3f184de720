"""run_program: one program in a fresh sandbox, and whether it ran to its very end.

The harness side of a run: it writes the program into a directory of its own, hands the runner
(runner_script.py) its token and config, starts it under bwrap or the fallback, waits for the wall
clock, kills everything the run left, and classifies what happened.
"""

from __future__ import annotations

import ast
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmgauge.scoring.sandbox import fallback
from lmgauge.scoring.sandbox.bwrap import (
    RUN_UID_RANGE,
    SANDBOX_DIR,
    NamespaceInit,
    bwrap_args,
    probe_bwrap,
)
from lmgauge.scoring.sandbox.io import base_env, tail, wait_unreaped
from lmgauge.scoring.sandbox.policy import isolation_available
from lmgauge.scoring.sandbox.runner_script import RUNNER

OUTPUT_TAIL_CHARS = 2000


@dataclass
class ExecResult:
    status: str  # "passed" | "failed" | "timeout" | "error" (error = the sandbox itself failed or refused)
    returncode: int | None
    duration_s: float
    stdout: str  # tails, capped at OUTPUT_TAIL_CHARS
    stderr: str
    isolation: dict[str, Any]
    detail: str = ""  # why: "ran to its end", "exit code 1", "exited before its end", "wall timeout 10s"...
    reached_end: bool = False  # the runner wrote this run's token after the program's last statement
    run_id: str = ""  # also in the command line of every process of the run (ps, tests)


@dataclass
class _Limits:
    memory_mb: int
    cpu_s: int
    max_processes: int
    max_file_mb: int
    max_open_files: int


def _parse_result_file(path: Path, token: bytes) -> tuple[dict[str, Any] | None, bool]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return None, False
    report = None
    for line in lines:
        if line.startswith(b"READY ") and report is None:
            try:
                report = ast.literal_eval(line[6:].decode())
            except (ValueError, SyntaxError, UnicodeDecodeError):
                pass
    return report, (b"END " + token) in lines


def run_program(
    source: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: float | None = None,
    python: str = sys.executable,
    max_processes: int = 64,
    max_file_mb: int = 64,
    max_open_files: int = 256,
    work_dir_mb: int = 64,
    isolation: str | None = None,
) -> ExecResult:
    """Run `source` as a Python program; "passed" only if it ran to its very end and exited 0.

    isolation: None (this process's default: "bwrap" unless the weaker fallback was allowed),
    "bwrap" (or status "error", saying what to do), "allow-weak" (bwrap, else the rlimit
    fallback), "rlimit" (force the fallback). work_dir_mb: size of the program's directory (a
    tmpfs) under bwrap; the fallback writes to a host temporary directory without a quota.
    """
    limits = _Limits(
        memory_mb=memory_mb,
        cpu_s=max(1, math.ceil(cpu_s if cpu_s is not None else timeout_s)),
        max_processes=max_processes,
        max_file_mb=max_file_mb,
        max_open_files=max_open_files,
    )
    iso = isolation_available(python, isolation)
    if iso["tool"] == "none":
        return ExecResult("error", None, 0.0, "", "", iso, detail=iso["error"])
    use_bwrap = iso["tool"] == "bwrap"
    probe = probe_bwrap(python) if use_bwrap else {}

    # a fallback program may leave files we cannot delete (chmod 000): not worth a crash
    with tempfile.TemporaryDirectory(prefix="lmgauge-sbx-", ignore_cleanup_errors=True) as root_dir:
        root = Path(root_dir)
        work = root / "work"  # the program's own directory; output files stay outside it
        work.mkdir()
        (work / "main.py").write_text(source, encoding="utf-8")
        token = secrets.token_hex(16).encode()
        run_id = secrets.token_hex(8)
        run_uid = RUN_UID_RANGE[0] + secrets.randbelow(RUN_UID_RANGE[1] - RUN_UID_RANGE[0])
        marker = None if use_bwrap else run_id
        inside_work = SANDBOX_DIR if use_bwrap else str(work)

        token_r, token_w = os.pipe()
        os.write(token_w, token + b"\n")  # 33 bytes: fits in the pipe buffer, no reader needed yet
        os.close(token_w)
        result_path, out_path, err_path = root / "result", root / "stdout", root / "stderr"
        result_fd = os.open(result_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        config = {
            "run_id": run_id,
            "token_fd": token_r,
            "result_fd": result_fd,
            "limits": asdict(limits),
            "main": f"{inside_work}/main.py",
            "own_namespaces": not use_bwrap,
            "drop_to_uid": run_uid if use_bwrap and probe["variant"] == "drop-uid" else None,
            "try_namespaces": fallback.FALLBACK_NAMESPACES,
            "harness_pid": os.getpid(),
        }
        env = base_env(inside_work)
        cmd = [python, "-I", "-S", "-c", RUNNER, repr(config)]
        pass_fds = [token_r, result_fd]
        info_r = info_w = -1
        if use_bwrap:
            iso = {**iso, "writable": [f"{SANDBOX_DIR} (tmpfs {work_dir_mb} MiB)", iso["writable"][1]]}
            info_r, info_w = os.pipe()
            pass_fds.append(info_w)
            cmd = (
                bwrap_args(probe["path"], str(work / "main.py"), python, probe["variant"], work_dir_mb)
                + ["--info-fd", str(info_w), "--"]
                + cmd
            )
        else:
            env["TMPDIR"] = str(work)
            env[fallback.MARKER_VAR] = run_id

        start = time.monotonic()
        try:
            with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                    env=env,
                    cwd=str(work),
                    pass_fds=pass_fds,
                    start_new_session=True,
                )
        except OSError as e:
            for fd in (token_r, result_fd, info_w, info_r):
                if fd >= 0:
                    os.close(fd)
            return ExecResult("error", None, time.monotonic() - start, "", "", iso, detail=f"could not start: {e}")
        for fd in (token_r, result_fd, info_w):
            if fd >= 0:
                os.close(fd)
        init = None
        if info_r >= 0:
            init = NamespaceInit(info_r, timeout_s)
            os.close(info_r)
        # The leader stays unreaped (a zombie) until its group is killed: its pid, which is the
        # group's id, cannot be reused by someone else's process meanwhile.
        timed_out = not wait_unreaped(proc.pid, max(0.0, timeout_s - (time.monotonic() - start)))
        fallback.kill_everything(proc, marker)  # also leftovers that outlived a program that ended
        if init is not None:
            init.kill_and_wait()  # bwrap may report the exit before its namespace is empty
        returncode: int | None = proc.wait()
        duration = time.monotonic() - start

        report, reached_end = _parse_result_file(result_path, token)
        if report is not None:
            iso = {**iso, **{k: v for k, v in report.items() if k != "rlimits"}, "rlimits": report.get("rlimits", {})}
            if not use_bwrap and not report.get("net_ns"):
                iso["net_ns_reason"] = fallback.net_ns_reason()
        stdout = tail(out_path, OUTPUT_TAIL_CHARS)
        stderr = tail(err_path, OUTPUT_TAIL_CHARS)

    status, detail = _classify(returncode, timed_out, reached_end, report is not None, timeout_s)
    return ExecResult(status, returncode, duration, stdout, stderr, iso, detail, reached_end, run_id)


def _classify(
    returncode: int | None, timed_out: bool, reached_end: bool, runner_started: bool, timeout_s: float
) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"wall timeout {timeout_s:g}s"
    if not runner_started:
        return "error", f"sandbox failed before the program started (exit {returncode})"
    if returncode is not None and (returncode > 128 or returncode < 0):
        sig = returncode - 128 if returncode > 128 else -returncode
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit"
        return "failed", f"killed by signal {sig} ({_signal_name(sig)})"
    if returncode != 0:
        return "failed", f"exit code {returncode}"
    if not reached_end:
        return "failed", "exited before its end"
    return "passed", "ran to its end"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "unknown"


def run_programs(sources: list[str], *, workers: int | None = None, **kw: Any) -> list[ExecResult]:
    """run_program on each source, in parallel across cores; results in input order."""
    if not sources:
        return []
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        return list(pool.map(lambda s: run_program(s, **kw), sources))
