"""Run model-written Python programs in a sandbox and say whether each ran to its very end.

Each program runs in a fresh subprocess with its own temporary directory (also its cwd and HOME),
an environment built from scratch (PATH, LANG, HOME, TMPDIR: no API keys or tokens of ours),
``python -I -S`` (no user site, no site-packages, no PYTHON* variables), stdin from /dev/null, and
these limits, set by a trusted runner before the program's first line:

- wall clock ``timeout_s``; then the whole sandbox is killed (status "timeout");
- rlimits: address space (``memory_mb``), CPU seconds (``cpu_s``, default the wall timeout;
  SIGXCPU is status "timeout" too), processes+threads (``max_processes``), file size
  (``max_file_mb``), open files, core dumps 0.

Isolation (policy.py): bubblewrap (bwrap.py), or nothing unless the weaker rlimit fallback
(fallback.py) is asked for explicitly; every result records what its run really had.

"Ran to its end": the harness (harness.py) makes a random per-run token and hands it to the runner
(runner_script.py) through an inherited pipe. The runner reads it and closes the pipe before the
program starts, runs the program as ``__main__``, and only when its last statement has returned
writes ``END <token>`` to a result file outside the program's directory. Status "passed" needs that
line and exit code 0, so ``os._exit(0)``, ``sys.exit(0)`` or ``exit()`` before the end fail. (Limit:
code in the same interpreter could dig the token out of the runner's frame by introspection; that
takes a program written against this runner, not a model's early exit.)
"""

from lmgauge.scoring.sandbox.harness import OUTPUT_TAIL_CHARS, ExecResult, run_program, run_programs
from lmgauge.scoring.sandbox.policy import (
    ISOLATION_MODES,
    SandboxUnavailable,
    allow_weak_isolation,
    isolation_available,
    isolation_label,
    require_isolation,
)

__all__ = [
    "ISOLATION_MODES",
    "OUTPUT_TAIL_CHARS",
    "ExecResult",
    "SandboxUnavailable",
    "allow_weak_isolation",
    "isolation_available",
    "isolation_label",
    "require_isolation",
    "run_program",
    "run_programs",
]
