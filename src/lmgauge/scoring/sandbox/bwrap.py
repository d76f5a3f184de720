"""The bubblewrap sandbox: finding bwrap, what of the interpreter to show, the command line, the probe.

Inside, only /usr (and the /bin, /lib... that point into it), a few /etc files and the interpreter's
own directories are visible, all read-only; ``/sandbox`` (the program's directory) and ``/tmp`` are
small tmpfs mounts, the only writable places. The interpreter's directories are bound after the
tmpfs mounts, so a venv that lives under /tmp stays visible (a tmpfs mounted later would hide it).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from lmgauge.scoring.sandbox.io import base_env, readable

SANDBOX_DIR = "/sandbox"  # where the program's own directory appears inside bwrap
TMPFS_BYTES = 64 * 1024 * 1024  # /tmp inside bwrap: RAM-backed, so small
BWRAP_ENV = "LMGAUGE_BWRAP"  # a bwrap binary to use; "" or a missing path means: none here

# /etc is not bound whole (it may hold credentials); these are what a Python program may read.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
    "/etc/mime.types",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # shown whole
NOT_BINDABLE = ("/proc", "/dev", SANDBOX_DIR)  # made by bwrap itself

# bwrap variants, best first. "drop-uid" (we are root): bwrap itself as root, no user namespace,
# every capability dropped but setuid/setgid, which the runner spends at once to become a uid that
# no one else has. Mapping to root in a user namespace would not do: the kernel never applies
# RLIMIT_NPROC to uid 0, so a fork bomb would run free. "userns" (we are not root): bwrap's user
# namespace; RLIMIT_NPROC then counts this run's processes alone.
BWRAP_VARIANTS_ROOT = ("drop-uid", "userns", "userns-nested-allowed")
BWRAP_VARIANTS_USER = ("userns", "userns-nested-allowed")
RUN_UID_RANGE = (1_000_000_000, 2_000_000_000)  # random per run; no such user exists


def locate_bwrap() -> tuple[str | None, str]:
    """(path, "") of the bwrap to use, or (None, why there is none)."""
    configured = os.environ.get(BWRAP_ENV)
    if configured is not None:
        if configured and os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured, ""
        return None, f"{BWRAP_ENV}={configured!r} is not an executable file"
    found = shutil.which("bwrap")
    if found is None:
        return None, "bwrap not found on PATH"
    return found, ""


# What the interpreter says about itself. With -I but not -S: its site module is what moves
# sys.prefix to a venv (3.11 and older). Not its sys.path: .pth files there may add any folder
# (an editable install's source tree), and the sandbox runs with -S, on the standard library.
_QUERY = (
    "import sys, sysconfig, json\n"
    "paths = sysconfig.get_paths()\n"
    "print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,"
    " sysconfig.get_config_var('LIBDIR') or '',"
    " *(paths.get(k, '') for k in ('stdlib', 'platstdlib', 'purelib', 'platlib'))]))"
)


def _symlink_hops(path: str) -> list[str]:
    """`path` and every path its symlinks lead through, each absolute (a venv's python is a link
    to the base interpreter, which may itself be a link)."""
    hops = [os.path.abspath(path)]
    for _ in range(40):  # the kernel's own limit on nested links
        current = hops[-1]
        if not os.path.islink(current):
            break
        hops.append(os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current))))
    return hops


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@functools.cache
def interpreter_mounts(python: str) -> tuple[tuple[str, str], ...]:
    """(host source, path inside) pairs to bind read-only so that `python` starts inside and finds
    its standard library: its prefix and base prefix, site-packages, the executable's directories
    along its symlinks. Each is bound at the path the interpreter knows it by and at its resolved
    path, so links inside the bound trees resolve too. Sorted, without paths that a bound parent
    already shows."""
    wanted = [os.path.dirname(hop) for hop in _symlink_hops(python)]
    try:
        out = subprocess.run(
            [python, "-I", "-c", _QUERY],
            capture_output=True,
            text=True,
            timeout=30,
            env=base_env("/"),
            stdin=subprocess.DEVNULL,
        )
        reported = json.loads(out.stdout)
        wanted += [os.path.dirname(reported[0])] + [p for p in reported[1:] if p]
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        pass  # the probe then says why the interpreter does not start
    pairs: set[tuple[str, str]] = set()
    for path in wanted:
        path = os.path.normpath(os.path.abspath(path))
        if not os.path.exists(path):  # e.g. python311.zip, which only some builds have
            continue
        real = os.path.realpath(path)
        for dest in {path, real}:
            if dest != "/" and not _under(dest, SYSTEM_DIRS) and not _under(dest, NOT_BINDABLE):
                pairs.add((real, dest))
    mounts: list[tuple[str, str]] = []
    for source, dest in sorted(pairs, key=lambda p: p[1]):  # a parent sorts before what it holds
        if not any(_under(dest, [d]) for _, d in mounts):
            mounts.append((source, dest))
    return tuple(mounts)


def bwrap_args(bwrap: str, main_file: str | None, python: str, variant: str, work_dir_mb: int = 64) -> list[str]:
    """The bwrap command line up to ``--``. The program's directory is a tmpfs of its own (a full
    disk is not its to cause) with the program file bound read-only into it."""
    args = [
        bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if variant == "drop-uid":
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
        if variant == "userns":
            args.append("--disable-userns")  # no nested user namespace: no way back to capabilities
    args += ["--ro-bind", "/usr", "/usr"]
    for top in SYSTEM_DIRS[1:]:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(TMPFS_BYTES),
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--size",
        str(work_dir_mb * 2**20),
        "--tmpfs",
        SANDBOX_DIR,
    ]
    if main_file is not None:
        args += ["--ro-bind", main_file, f"{SANDBOX_DIR}/main.py"]
    # After the tmpfs mounts: a venv under /tmp is bound onto the sandbox's /tmp, not hidden by it.
    made = {"/", "/tmp", SANDBOX_DIR, "/etc"}
    for source, dest in interpreter_mounts(python):
        # bwrap would copy the host's mode for the parents it makes (/root: 0700); the
        # unprivileged program must be able to walk through them
        ancestors = []
        parent = os.path.dirname(dest)
        while parent not in made and parent not in ("/", ""):
            ancestors.append(parent)
            parent = os.path.dirname(parent)
        for ancestor in reversed(ancestors):
            args += ["--perms", "0755", "--dir", ancestor]
            made.add(ancestor)
        args += ["--ro-bind", source, dest]
        made.add(dest)
    args += ["--chdir", SANDBOX_DIR]
    return args


def _drop_uid_snippet(uid: int) -> str:
    return f"import os; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); "


def probe_bwrap(python: str) -> dict[str, Any]:
    """Can bwrap start this interpreter here, with the options run_program uses? Which variant?
    {"ok": True, "path", "version", "variant"} or {"ok": False, "reason"}."""
    bwrap, why = locate_bwrap()
    if bwrap is None:
        return {"ok": False, "reason": why}
    variants = BWRAP_VARIANTS_ROOT if os.geteuid() == 0 else BWRAP_VARIANTS_USER
    return _probe(bwrap, python, variants)


@functools.cache
def _probe(bwrap: str, python: str, variants: tuple[str, ...]) -> dict[str, Any]:
    reasons = []
    with tempfile.TemporaryDirectory(prefix="lmgauge-sbx-probe-") as tmp:
        uid = RUN_UID_RANGE[0]
        os.chmod(tmp, 0o777)
        for variant in variants:
            check = "import math, json; print('ok')"  # stdlib modules load from disk
            if variant == "drop-uid":
                check = _drop_uid_snippet(uid) + check
            cmd = bwrap_args(bwrap, None, python, variant) + ["--", python, "-I", "-S", "-c", check]
            try:
                out = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=base_env(SANDBOX_DIR),
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.SubprocessError) as e:
                reasons.append(f"{variant}: {e}")
                continue
            if out.returncode == 0 and out.stdout.strip() == "ok":
                version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout
                return {"ok": True, "path": bwrap, "version": version.strip(), "variant": variant}
            reasons.append(f"{variant}: exit {out.returncode}: {out.stderr.strip()[-300:]}")
    return {"ok": False, "reason": f"{bwrap} failed to start {python}: " + "; ".join(reasons)}


def bwrap_isolation(probe: dict[str, Any]) -> dict[str, Any]:
    """What a run under this probe's variant has (for the result and run.json)."""
    variant = probe["variant"]
    return {
        "tool": "bwrap",
        "version": probe["version"],
        "variant": variant,
        "user_ns": variant != "drop-uid",
        "pid_ns": True,
        "net_ns": True,
        "mount_ns": True,
        "ipc_ns": True,
        "uts_ns": True,
        "readonly_root": True,
        "user": (
            "a random unprivileged uid per run, no capabilities"
            if variant == "drop-uid"
            else "uid 65534 in its own user namespace, no capabilities"
        ),
        "nested_userns_disabled": variant == "userns",
        # the kernel never applies RLIMIT_NPROC to uid 0, user namespace or not
        "nproc_enforced": variant == "drop-uid" or os.geteuid() != 0,
        "writable": [f"{SANDBOX_DIR} (tmpfs)", f"/tmp (tmpfs {TMPFS_BYTES // 2**20} MiB)"],
        "clean_env": True,
        "new_session": True,
    }


class NamespaceInit:
    """bwrap's process that is PID 1 of the sandbox; everything inside dies with it.

    bwrap names it on --info-fd before it runs the program. A pidfd taken then keeps pointing at
    that very process, even once it is gone and its number is reused.
    """

    def __init__(self, info_fd: int, timeout_s: float) -> None:
        self.pid: int | None = None
        self.pidfd: int | None = None
        data = b""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            chunk = os.read(info_fd, 4096) if readable(info_fd, left) else b""
            if not chunk:
                break
            data += chunk
            try:
                self.pid = int(json.loads(data)["child-pid"])
                break
            except (ValueError, KeyError):
                continue  # not all of it yet
        if self.pid is not None:
            try:
                self.pidfd = os.pidfd_open(self.pid)
            except (AttributeError, OSError):
                pass

    def kill_and_wait(self, timeout_s: float = 5.0) -> None:
        """SIGKILL it; return when it has exited, which the kernel allows only once every other
        process in its PID namespace has been killed and reaped."""
        if self.pid is None:
            return
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass  # already gone
            readable(self.pidfd, timeout_s)  # readable once it has exited
            os.close(self.pidfd)
            self.pidfd = None
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self._poll_gone(self.pid, timeout_s)

    @staticmethod
    def _poll_gone(pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if state in ("Z", "X"):
                return
            time.sleep(0.01)
