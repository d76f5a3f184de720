"""Which isolation a program gets, and the rule that it is never weaker than asked for.

Modes (``isolation=`` of run_program; None means this process's default):

- ``"bwrap"``: bubblewrap or nothing; without it a run is status "error", the reason naming how to
  install bubblewrap and how to accept the fallback. The default.
- ``"allow-weak"``: bwrap where it starts, else the rlimit fallback (fallback.py). What
  ``lmgauge run --allow-weak-sandbox`` / config ``allow_weak_sandbox: true`` set for the process.
- ``"rlimit"``: the fallback, forced (tests, development).
"""

from __future__ import annotations

import sys
from typing import Any

from lmgauge.scoring.sandbox.bwrap import bwrap_isolation, probe_bwrap
from lmgauge.scoring.sandbox.fallback import fallback_isolation

ISOLATION_MODES = ("bwrap", "allow-weak", "rlimit")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap)"
OPT_IN_HINT = (
    "or accept the weaker rlimit fallback explicitly: `lmgauge run --allow-weak-sandbox`, "
    "`allow_weak_sandbox: true` in the config (run_program: isolation='allow-weak'); "
    "under it a program can write wherever this user can (docs/sandbox.md)"
)

_weak_allowed = False  # this process's default; set once from the run's config


class SandboxUnavailable(RuntimeError):
    """bwrap cannot start here and the weaker fallback was not asked for."""


def allow_weak_isolation(allowed: bool) -> None:
    """Set this process's default: may programs fall back to the rlimit isolation? (The run's
    ``allow_weak_sandbox``; workers set it from the plan they read.)"""
    global _weak_allowed
    _weak_allowed = bool(allowed)


def default_mode() -> str:
    return "allow-weak" if _weak_allowed else "bwrap"


def refusal(reason: str) -> str:
    """Why a program will not run, and the two ways out."""
    return f"the code sandbox needs bubblewrap, which cannot run here ({reason}): {INSTALL_HINT}, {OPT_IN_HINT}"


def isolation_available(python: str = sys.executable, mode: str | None = None) -> dict[str, Any]:
    """What run_program will use here with this mode: bwrap's description, the fallback's (with
    the reason bwrap was not used) or {"tool": "none", "error": why, and what to do}."""
    mode = default_mode() if mode is None else mode
    if mode not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, not {mode!r}")
    if mode == "rlimit":
        return fallback_isolation("forced (isolation='rlimit')")
    probe = probe_bwrap(python)
    if probe["ok"]:
        return bwrap_isolation(probe)
    if mode == "bwrap":
        return {"tool": "none", "error": refusal(probe["reason"]), "reason": probe["reason"]}
    return fallback_isolation(f"{probe['reason']}; the weaker fallback was allowed (allow-weak)")


def require_isolation(python: str = sys.executable, mode: str | None = None) -> dict[str, Any]:
    """isolation_available, or SandboxUnavailable (with what to do) when programs may not run."""
    iso = isolation_available(python, mode)
    if iso["tool"] == "none":
        raise SandboxUnavailable(iso["error"])
    return iso


def isolation_label(iso: dict[str, Any]) -> str:
    """One word or two for a record and a log: "bwrap (drop-uid)", "rlimit", "none"."""
    tool = str(iso.get("tool", "none"))
    return f"{tool} ({iso['variant']})" if tool == "bwrap" and iso.get("variant") else tool
