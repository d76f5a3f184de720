"""Run model-written Python programs in a sandbox and say whether each ran to its very end.

Each program runs in a fresh subprocess with its own temporary directory (also its cwd and HOME),
an environment built from scratch (PATH, LANG, HOME, TMPDIR: no API keys or tokens of ours),
``python -I -S`` (no user site, no site-packages, no PYTHON* variables), stdin from /dev/null, and
these limits, set by a trusted runner before the program's first line:

- wall clock ``timeout_s``; then the whole sandbox is killed (status "timeout");
- rlimits: address space (``memory_mb``), CPU seconds (``cpu_s``, default the wall timeout;
  SIGXCPU is status "timeout" too), processes+threads (``max_processes``), file size
  (``max_file_mb``), open files, core dumps 0.

Isolation, best available first (``isolation_available()`` says which this machine gets):

- ``bwrap`` (bubblewrap): new PID, network, IPC, UTS and mount namespaces; only /usr, the
  interpreter's prefixes (the venv and its base Python) and a few /etc files visible, all
  read-only; writable only its own directory (``/sandbox``, a tmpfs of ``work_dir_mb``) and a
  64 MiB tmpfs /tmp, so nothing it writes reaches the host;
  no capabilities, ``--new-session`` (no terminal injection), ``--die-with-parent``.
  As root ("drop-uid" variant) bwrap runs without a user namespace and the runner at once becomes
  a random uid no one else has: the kernel never applies RLIMIT_NPROC to uid 0, not even mapped
  in a user namespace, so this is what keeps a fork bomb to ``max_processes``. As another user
  ("userns" variant) bwrap's own user namespace does the same. The sandbox ends when bwrap's PID 1
  ends; the kernel then kills everything in the PID namespace, setsid() or not, and we wait for
  that before returning.
- ``rlimit`` (bwrap missing or not able to start here): the runner enters new user, network and
  PID namespaces itself where the kernel allows (unshare(2)), sets the same rlimits, and runs the
  program in a child, so that its parent is not us. At the end its process group is killed, and
  every process still carrying this run's marker in its environment. No read-only filesystem, and
  as root no process limit: ``isolation`` says what a run really had.

"Ran to its end": the harness makes a random per-run token and hands it to the runner through an
inherited pipe. The runner reads it and closes the pipe before the program starts, runs the program
(compiled and executed as ``__main__``), and only when its last statement has returned writes
``END <token>`` to a result file outside the program's directory. Status "passed" needs that line
and exit code 0, so ``os._exit(0)``, ``sys.exit(0)`` or ``exit()`` before the end fail. The token
is never in the program's source, files, argv or environment, so it cannot be written in advance.
(Limit: code in the same interpreter could dig it out of the runner's frame by introspection; that
takes a program written against this runner, not a model's early exit.)
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_TAIL_CHARS = 2000
SANDBOX_DIR = "/sandbox"  # where the program's own directory appears inside bwrap
TMPFS_BYTES = 64 * 1024 * 1024  # /tmp inside bwrap: RAM-backed, so small
MARKER_VAR = "LMGAUGE_SANDBOX_RUN"  # lets the fallback find a run's leftover processes
BWRAP_CANDIDATES = ("bwrap", "/usr/bin/bwrap")
ISOLATION_MODES = ("auto", "bwrap", "rlimit")
# Fallback only: try unshare(2) for user/net/PID namespaces. False runs it with rlimits alone, as on
# a kernel that refuses namespaces (tests use it to check that weakest case).
FALLBACK_NAMESPACES = True

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


@dataclass
class ExecResult:
    status: str  # "passed" | "failed" | "timeout" | "error" (error = the sandbox itself failed)
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

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# The trusted part that runs inside the sandbox before and after the program. Standard library
# only, and few imports (json, runpy would double its start-up time); its config comes as argv[1]
# (a Python literal: fds, limits, paths), never the token itself. It reports back as a literal too.
RUNNER = r'''
import os, sys

def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)

def _die_with_parent():
    # SIGKILL when the process that forked us ends (PR_SET_PDEATHSIG = 1)
    _libc().prctl(1, 9, 0, 0, 0)

def _write(path, text):
    with open(path, "w") as f:
        f.write(text)

def _enter_namespaces():
    """Fallback only: new user+network+PID namespaces where the kernel lets us, else less."""
    NEWUSER, NEWNET, NEWPID = 0x10000000, 0x40000000, 0x20000000
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    got = {"user_ns": False, "net_ns": False, "pid_ns": False}
    for flags in (NEWUSER | NEWNET | NEWPID, NEWNET | NEWPID, NEWUSER | NEWNET, NEWNET):
        if libc.unshare(flags) == 0:
            if flags & NEWUSER:
                try:
                    _write("/proc/self/setgroups", "deny")
                    _write("/proc/self/uid_map", "%d %d 1" % (uid, uid))
                    _write("/proc/self/gid_map", "%d %d 1" % (gid, gid))
                except OSError:
                    pass
            got = {"user_ns": bool(flags & NEWUSER), "net_ns": True, "pid_ns": bool(flags & NEWPID)}
            break
    return got

def _count_own_tasks():
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat("/proc/" + pid).st_uid == uid:
                    n += len(os.listdir("/proc/%s/task" % pid))
            except OSError:
                pass
    return n

def _set_limits(lim, nproc_shared):
    import resource as r
    mb = 1024 * 1024
    nproc = lim["max_processes"]
    if nproc_shared:  # RLIMIT_NPROC counts all our uid's tasks here, not just this run's
        nproc += _count_own_tasks()
    wanted = {
        "RLIMIT_AS": lim["memory_mb"] * mb,
        "RLIMIT_CPU": lim["cpu_s"],
        "RLIMIT_NPROC": nproc,
        "RLIMIT_FSIZE": lim["max_file_mb"] * mb,
        "RLIMIT_NOFILE": lim["max_open_files"],
        "RLIMIT_CORE": 0,
    }
    done = {}
    for name, value in wanted.items():
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL a second later
        try:
            r.setrlimit(getattr(r, name), (value, hard))
            done[name] = value
        except (ValueError, OSError) as e:
            done[name] = "not set: %s" % e
    return done

def _reap_until(pid):
    # PID 1 of the namespace: reap everything, return when the program itself has ended
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if got == pid:
            return os.waitstatus_to_exitcode(status)

def _exit_code(code):
    return 128 - code if code < 0 else code  # killed by signal N -> 128+N, as bwrap reports

def _run_program(cfg, token, result_fd):
    path = cfg["main"]
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    main = type(sys)("__main__")  # a fresh __main__, as `python main.py` would have
    main.__file__ = path
    main.__builtins__ = __builtins__
    runner = sys.modules["__main__"]
    sys.modules["__main__"] = main
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(path))
    exec(code, main.__dict__)
    # only reached when the program's last statement has returned
    os.write(result_fd, b"END " + token + b"\n")
    sys.modules["__main__"] = runner

def _main():
    cfg = eval(sys.argv[1], {"__builtins__": {}})  # written by the harness, not the program
    report = {}
    if cfg["drop_to_uid"] is not None:  # bwrap as root: become a uid of our own, caps go with it
        uid = cfg["drop_to_uid"]
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        report["uid"] = uid
    token = os.read(cfg["token_fd"], 256).strip()
    os.close(cfg["token_fd"])
    result_fd = cfg["result_fd"]
    os.set_inheritable(result_fd, False)  # the program's own children don't get it
    if cfg["own_namespaces"]:
        _die_with_parent()  # the harness is our parent: go when it goes
        if os.getppid() != cfg["harness_pid"]:
            os._exit(137)
        if cfg["try_namespaces"]:
            report.update(_enter_namespaces())
        else:
            report.update({"user_ns": False, "net_ns": False, "pid_ns": False})
        nproc_shared = not report["user_ns"]
    else:
        nproc_shared = False
    report["rlimits"] = _set_limits(cfg["limits"], nproc_shared)
    os.write(result_fd, ("READY " + repr(report) + "\n").encode())
    if not cfg["own_namespaces"]:
        _run_program(cfg, token, result_fd)
        return
    # Fallback: run the program in a child, so that getppid() is not the harness; with a PID
    # namespace the child is its init and the program runs under it, as under bwrap.
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent()
        if os.getppid() not in (parent, 0):  # 0: our parent is outside our new PID namespace
            os._exit(137)
        if report["pid_ns"]:
            program = os.fork()
            if program != 0:
                os._exit(_exit_code(_reap_until(program)))
            _die_with_parent()
        try:
            _run_program(cfg, token, result_fd)
        except SystemExit as e:
            code = e.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code & 0xFF)
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(1)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    os._exit(_exit_code(os.waitstatus_to_exitcode(status)))

_main()
'''


def _find_bwrap() -> str | None:
    for candidate in BWRAP_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@functools.cache
def _interpreter_dirs(python: str) -> tuple[str, ...]:
    """Directories the interpreter needs to start and import the standard library (read-only)."""
    dirs = {os.path.dirname(os.path.abspath(python)), os.path.dirname(os.path.realpath(python))}
    try:
        out = subprocess.run(
            [
                python,
                "-I",
                "-c",
                "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
                "sys.base_exec_prefix]))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=_base_env("/"),
        )
        dirs.update(json.loads(out.stdout))
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    # /usr is bound whole anyway; a prefix inside it needs no bind of its own
    return tuple(sorted(d for d in dirs if d and d != "/" and not (d + "/").startswith("/usr/")))


def _base_env(home: str) -> dict[str, str]:
    # Built from scratch: nothing of our environment (API keys, tokens, proxies) leaks in.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# bwrap variants, best first. "drop-uid" (we are root): bwrap itself as root, no user namespace,
# every capability dropped but setuid/setgid, which the runner spends at once to become a uid that
# no one else has. Mapping to root in a user namespace would not do: the kernel never applies
# RLIMIT_NPROC to uid 0, so a fork bomb would run free. "userns" (we are not root): bwrap's user
# namespace; RLIMIT_NPROC then counts this run's processes alone.
BWRAP_VARIANTS_ROOT = ("drop-uid", "userns", "userns-nested-allowed")
BWRAP_VARIANTS_USER = ("userns", "userns-nested-allowed")
RUN_UID_RANGE = (1_000_000_000, 2_000_000_000)  # random per run; no such user exists


def _bwrap_args(bwrap: str, main_file: str | None, python: str, variant: str, work_dir_mb: int = 64) -> list[str]:
    """The program's directory is a tmpfs of its own (a full disk is not its to cause), with the
    program file bound read-only into it; nothing it writes reaches the host."""
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
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    bound: list[str] = []
    for path in _interpreter_dirs(python):  # sorted: a parent comes before what it holds
        if not any((path + "/").startswith(b + "/") for b in bound):
            # bwrap would copy the host's mode for the parents it makes (/root: 0700); the
            # unprivileged program must be able to walk through them
            parent = os.path.dirname(path)
            ancestors = []
            while parent not in ("/", ""):
                ancestors.append(parent)
                parent = os.path.dirname(parent)
            for ancestor in reversed(ancestors):
                args += ["--perms", "0755", "--dir", ancestor]
        args += ["--ro-bind", path, path]
        bound.append(path)
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
    args += ["--chdir", SANDBOX_DIR]
    return args


def _drop_uid_snippet(uid: int) -> str:
    return f"import os; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); "


@functools.cache
def _probe_bwrap(python: str) -> dict[str, Any]:
    """Can bwrap start this interpreter here, with the options run_program uses? Which variant?"""
    bwrap = _find_bwrap()
    if bwrap is None:
        return {"ok": False, "reason": "bwrap not found"}
    variants = BWRAP_VARIANTS_ROOT if os.geteuid() == 0 else BWRAP_VARIANTS_USER
    reasons = []
    with tempfile.TemporaryDirectory(prefix="lmgauge-sbx-probe-") as tmp:
        uid = RUN_UID_RANGE[0]
        os.chmod(tmp, 0o777)
        for variant in variants:
            check = "import math, json; print('ok')"  # stdlib modules load from disk
            if variant == "drop-uid":
                check = _drop_uid_snippet(uid) + check
            cmd = _bwrap_args(bwrap, None, python, variant) + ["--", python, "-I", "-S", "-c", check]
            try:
                out = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=_base_env(SANDBOX_DIR),
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.SubprocessError) as e:
                reasons.append(f"{variant}: {e}")
                continue
            if out.returncode == 0 and out.stdout.strip() == "ok":
                version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout
                return {"ok": True, "path": bwrap, "version": version.strip(), "variant": variant}
            reasons.append(f"{variant}: exit {out.returncode}: {out.stderr.strip()[-300:]}")
    return {"ok": False, "reason": "bwrap failed to start: " + "; ".join(reasons)}


def _bwrap_isolation(probe: dict[str, Any]) -> dict[str, Any]:
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


def isolation_available(python: str = sys.executable, mode: str = "auto") -> dict[str, Any]:
    """What run_program will use on this machine (for run.json); limits come with each result."""
    if mode not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, not {mode!r}")
    fallback = {
        "tool": "rlimit",
        "readonly_root": False,
        "mount_ns": False,
        "clean_env": True,
        "new_session": True,
        "nproc_enforced": os.geteuid() != 0,
    }
    if mode == "rlimit":
        return {**fallback, "reason": "forced"}
    probe = _probe_bwrap(python)
    if probe["ok"]:
        return _bwrap_isolation(probe)
    if mode == "bwrap":
        return {"tool": "none", "error": probe["reason"]}
    return {**fallback, "reason": probe["reason"]}


def _tail(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


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


def _kill_everything(proc: subprocess.Popen[bytes], marker: str | None) -> None:
    """Kill the run's process group (bwrap: its PID namespace goes with it), then stragglers."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if marker is None:
        return
    # Fallback: processes that left the group (setsid) still carry the marker; stop, then kill,
    # until none is left (a fork bomb keeps forking while we look).
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


def _readable(fd: int, timeout_s: float) -> bool:
    # poll, not select: in a big process our fds may be numbered above select's 1024
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, without reaping it; False if it is still running at timeout."""
    deadline = time.monotonic() + timeout_s
    try:  # Linux >= 5.3: a pidfd turns readable when the process exits, no polling needed
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            return _readable(pidfd, timeout_s)
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


class _NamespaceInit:
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
            chunk = os.read(info_fd, 4096) if _readable(info_fd, left) else b""
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
            _readable(self.pidfd, timeout_s)  # readable once it has exited
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
    isolation: str = "auto",
) -> ExecResult:
    """Run `source` as a Python program; "passed" only if it ran to its very end and exited 0.

    isolation: "auto" (bwrap when it works here, else rlimits), "bwrap" (or status "error"),
    "rlimit" (force the fallback, e.g. to test it). work_dir_mb: size of the program's directory
    (a tmpfs) under bwrap; the fallback writes to a host temporary directory without a quota.
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

    probe = _probe_bwrap(python) if use_bwrap else {}
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
            "limits": limits.as_dict(),
            "main": f"{inside_work}/main.py",
            "own_namespaces": not use_bwrap,
            "drop_to_uid": None,
            "try_namespaces": FALLBACK_NAMESPACES,
            "harness_pid": os.getpid(),
        }
        if use_bwrap and probe["variant"] == "drop-uid":
            config["drop_to_uid"] = run_uid
        if use_bwrap:
            iso = {**iso, "writable": [f"{SANDBOX_DIR} (tmpfs {work_dir_mb} MiB)", iso["writable"][1]]}
        env = _base_env(inside_work)
        cmd = [python, "-I", "-S", "-c", RUNNER, repr(config)]
        pass_fds = [token_r, result_fd]
        info_r = info_w = -1
        if use_bwrap:
            info_r, info_w = os.pipe()
            pass_fds.append(info_w)
            cmd = (
                _bwrap_args(probe["path"], str(work / "main.py"), python, probe["variant"], work_dir_mb)
                + ["--info-fd", str(info_w), "--"]
                + cmd
            )
        else:
            env["TMPDIR"] = str(work)
            env[MARKER_VAR] = marker  # type: ignore[assignment]

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
            proc = None
            start_error = e
        finally:
            for fd in (token_r, result_fd, info_w):
                if fd >= 0:
                    os.close(fd)
        if proc is None:
            if info_r >= 0:
                os.close(info_r)
            return ExecResult(
                "error", None, time.monotonic() - start, "", "", iso, detail=f"could not start: {start_error}"
            )
        init = None
        if info_r >= 0:
            init = _NamespaceInit(info_r, timeout_s)
            os.close(info_r)
        # The leader stays unreaped (a zombie) until its group is killed: its pid, which is the
        # group's id, cannot be reused by someone else's process meanwhile.
        timed_out = not _wait_unreaped(proc.pid, max(0.0, timeout_s - (time.monotonic() - start)))
        _kill_everything(proc, marker)  # also leftovers that outlived a program that ended
        if init is not None:
            init.kill_and_wait()  # bwrap may report the exit before its namespace is empty
        returncode: int | None = proc.wait()
        duration = time.monotonic() - start

        report, reached_end = _parse_result_file(result_path, token)
        if report is not None:
            iso = {**iso, **{k: v for k, v in report.items() if k != "rlimits"}, "rlimits": report.get("rlimits", {})}
            if not use_bwrap and not report.get("net_ns"):
                iso["net_ns_reason"] = (
                    "unshare(CLONE_NEWNET) not permitted here"
                    if FALLBACK_NAMESPACES
                    else "namespaces switched off (FALLBACK_NAMESPACES)"
                )
        stdout = _tail(out_path, OUTPUT_TAIL_CHARS)
        stderr = _tail(err_path, OUTPUT_TAIL_CHARS)

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
