"""What the three export formats share: metric names, answer letters, the shot count of a task."""

from __future__ import annotations

from typing import Any

from lmgauge.report.load import LoadedRun

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity")


def split_metric(name: str) -> tuple[str, str]:
    """lm-eval's "metric,filter" convention: "exact_match,strict-match" -> (exact_match, strict-match)."""
    base, _, filt = name.partition(",")
    return base, filt or "none"


def num_fewshot(run: LoadedRun, task: str) -> int | None:
    """The shot count the run's config asked for (the task's own default is not in the run directory)."""
    config = run.manifest.get("config") or {}
    for entry in config.get("datasets") or []:
        if isinstance(entry, dict) and entry.get("name") == task and entry.get("num_fewshot") is not None:
            return int(entry["num_fewshot"])
    value = config.get("num_fewshot")
    return int(value) if value is not None else None


def letter(value: Any, continuations: list[str] | None) -> str:
    """A choice index as the letter the prompt shows (" B" -> "B"); other answers as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        if continuations and 0 <= value < len(continuations):
            text = continuations[value].strip()
            if len(text) == 1:
                return text
        return LETTERS[value] if 0 <= value < len(LETTERS) else str(value)
    return str(value).strip()


def output_type(sample: dict[str, Any]) -> str:
    """lm-eval's output_type for a task, from one of its samples."""
    if "output" in sample:
        return "generate_until"
    if "logprobs" in sample:
        return "multiple_choice"
    if "continuations" in sample:
        return "loglikelihood"
    return "loglikelihood_rolling"
