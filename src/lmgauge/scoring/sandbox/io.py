"""Small process and file helpers shared by the bwrap sandbox, the fallback and the harness."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path


def base_env(home: str) -> dict[str, str]:
    """The sandbox's whole environment, built from scratch: nothing of ours (API keys, tokens,
    proxies) leaks in."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def readable(fd: int, timeout_s: float) -> bool:
    # poll, not select: in a big process our fds may be numbered above select's 1024
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


def wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, without reaping it; False if it is still running at timeout."""
    deadline = time.monotonic() + timeout_s
    try:  # Linux >= 5.3: a pidfd turns readable when the process exits, no polling needed
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            return readable(pidfd, timeout_s)
        finally:
            os.close(pidfd)
    pause = 0.001
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.02)


def tail(path: Path, chars: int) -> str:
    """The last `chars` characters of a file ("" if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""
