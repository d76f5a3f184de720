"""The rlimit fallback: weaker isolation, used only when asked for explicitly.

The runner enters new user, network and PID namespaces itself where the kernel allows
(unshare(2)), sets the same rlimits as under bwrap, and runs the program in a child, so that its
parent is not us. At the end its process group is killed, then every process still carrying the
run's marker in its environment. No read-only filesystem (a program may write wherever our user
may), and as root no process limit: ``isolation`` says what a run really had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

MARKER_VAR = "LMGAUGE_SANDBOX_RUN"  # lets the fallback find a run's leftover processes
# Try unshare(2) for user/net/PID namespaces. False runs it with rlimits alone, as on a kernel
# that refuses namespaces (tests use it to check that weakest case).
FALLBACK_NAMESPACES = True
WEAKER = (
    "no read-only filesystem: a program may write wherever this user may; it may read /proc of our "
    "processes; as root, no process limit"
)


def fallback_isolation(reason: str) -> dict[str, Any]:
    """What a fallback run has before the runner says which namespaces it got."""
    return {
        "tool": "rlimit",
        "reason": reason,
        "weaker": WEAKER,
        "readonly_root": False,
        "mount_ns": False,
        "clean_env": True,
        "new_session": True,
        "nproc_enforced": os.geteuid() != 0,
    }


def net_ns_reason() -> str:
    if FALLBACK_NAMESPACES:
        return "unshare(CLONE_NEWNET) not permitted here"
    return "namespaces switched off (FALLBACK_NAMESPACES)"


def _processes_with_marker(marker: str) -> list[int]:
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            pass
    return found


def kill_everything(proc: subprocess.Popen[bytes], marker: str | None) -> None:
    """Kill the run's process group (bwrap: its PID namespace goes with it), then, for the fallback
    (`marker` given), processes that left the group (setsid) but still carry the marker: stop, then
    kill, until none is left (a fork bomb keeps forking while we look)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if marker is None:
        return
    for _ in range(50):
        pids = [p for p in _processes_with_marker(marker) if p != os.getpid()]
        if not pids:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        time.sleep(0.01)
