"""Tests that need a system tool (bubblewrap, Slurm, root for the test cluster): `missing_tool(why)`.

A missing tool is a test FAILURE, not a skip: the README's test command installs every tool the
tests use (scripts/ci/system_packages.sh), so a green run here means what a green CI run means.
Where a machine may lack one on purpose (a developer without root), LMGAUGE_TESTS_ALLOW_MISSING_TOOLS=1
turns these failures into skips, and the end of the pytest output counts them (conftest.py).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ALLOW_ENV = "LMGAUGE_TESTS_ALLOW_MISSING_TOOLS"
PREFIX = "missing system tool: "


def missing_tools_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "") not in ("", "0")


def missing_tool(why: str) -> NoReturn:
    msg = f"{PREFIX}{why} (scripts/ci/system_packages.sh installs it; the README's test command runs that)"
    if missing_tools_allowed():
        pytest.skip(msg)
    pytest.fail(f"{msg}; {ALLOW_ENV}=1 makes this a skip", pytrace=False)
