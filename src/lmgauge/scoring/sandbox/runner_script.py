"""The trusted code that runs inside the sandbox before and after the model's program.

It drops to the run's uid (bwrap as root), reads the run's token from an inherited pipe and closes
it, enters namespaces (fallback only), sets the rlimits, reports ``READY {...}`` on the result fd,
runs the program as ``__main__`` and, only when its last statement has returned, writes
``END <token>``. Kept as text: it runs in the sandboxed interpreter with ``python -I -S -c``.
"""

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
