"""A config's `summarizer` checked when the config is read: what OpenCompass 0.5.4's DefaultSummarizer
takes (`dataset_abbrs`, `summary_groups`), so that a group it could not compute fails before any work,
naming the key, rather than after the run (OpenCompass raises NotImplementedError for a group mixing
names and [name, metric] pairs, and KeyError for a weight of a dataset not in its subsets).

Groups as opencompass/configs/summarizers/groups/*.py write them: `name`, `subsets` (dataset or group
names, or [name, metric] pairs), optional `weights` {name: weight}, `metric` (the group's metric name,
which also picks the computation), `std`, `sum`, `harmonic_mean`, `transforms` {name: expression of x}.
"""

from __future__ import annotations

import logging
from typing import Any

from lmgauge.opencompass.task import UnsupportedConfig, short

log = logging.getLogger(__name__)

SUMMARIZERS = ("DefaultSummarizer",)
SUMMARIZER_KEYS = {"type", "dataset_abbrs", "summary_groups", "prompt_db"}  # prompt_db: deprecated, ignored
GROUP_KEYS = {"name", "subsets", "weights", "metric", "std", "sum", "harmonic_mean", "transforms"}


def _is_pair(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item)


def _check_group(g: Any, where: str) -> dict:
    if not isinstance(g, dict):
        raise UnsupportedConfig(f"{where}: expected a dict with 'name' and 'subsets', got {type(g).__name__}")
    unknown = set(g) - GROUP_KEYS
    if unknown:  # OpenCompass ignores them too; a typo ('weight') would silently change the number
        log.warning("%s: key(s) %s are not DefaultSummarizer's and are ignored", where, sorted(unknown))
    if not isinstance(g.get("name"), str) or not g["name"]:
        raise UnsupportedConfig(f"{where}.name: missing or not a string")
    subsets = g.get("subsets")
    if not isinstance(subsets, list) or not subsets:
        raise UnsupportedConfig(f"{where}.subsets: missing or not a non-empty list")
    for i, s in enumerate(subsets):
        if not (isinstance(s, str) or _is_pair(s)):
            raise UnsupportedConfig(
                f"{where}.subsets[{i}]: expected a dataset name or a [name, metric] pair, got {s!r}"
            )
    kinds = {isinstance(s, str) for s in subsets}
    if len(kinds) > 1:
        raise UnsupportedConfig(
            f"{where}.subsets: names mixed with [name, metric] pairs (OpenCompass: 'mixed dataset_abbr type is "
            "not supported')"
        )
    weights = g.get("weights")
    if weights:
        if not isinstance(weights, dict):
            raise UnsupportedConfig(f"{where}.weights: expected a dict {{subset: weight}}")
        names = {s if isinstance(s, str) else s[0] for s in subsets}
        names |= {f"{s[0]}@{s[1]}" for s in subsets if not isinstance(s, str)}
        for k, v in weights.items():
            if k not in names:
                raise UnsupportedConfig(f"{where}.weights: {k!r} is not one of the group's subsets")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UnsupportedConfig(f"{where}.weights[{k!r}]: expected a number, got {v!r}")
        if not sum(weights.values()):
            raise UnsupportedConfig(f"{where}.weights: they sum to 0")
    if "metric" in g and not isinstance(g["metric"], str):
        raise UnsupportedConfig(f"{where}.metric: expected a string")
    transforms = g.get("transforms") or {}
    if not isinstance(transforms, dict) or not all(isinstance(v, str) for v in transforms.values()):
        raise UnsupportedConfig(f"{where}.transforms: expected {{subset: expression of x}}")
    for k, expr in transforms.items():
        try:
            compile(expr, f"{where}.transforms[{k!r}]", "eval")
        except SyntaxError as e:
            raise UnsupportedConfig(f"{where}.transforms[{k!r}]: {e.msg}: {expr!r}") from None
    return g


def check_summarizer(s: Any, where: str = "summarizer") -> dict:
    """The summarizer as plain data, or UnsupportedConfig naming the key."""
    if not isinstance(s, dict):
        raise UnsupportedConfig(f"{where}: expected a dict, got {type(s).__name__}")
    if s.get("type") is not None and short(s["type"]) not in SUMMARIZERS:
        raise UnsupportedConfig(
            f"{where}.type: {short(s['type'])} is not supported (supported: {', '.join(SUMMARIZERS)})"
        )
    unknown = set(s) - SUMMARIZER_KEYS
    if unknown:
        raise UnsupportedConfig(
            f"{where}: unknown key(s) {sorted(unknown)} (DefaultSummarizer takes {sorted(SUMMARIZER_KEYS)})"
        )
    abbrs = s.get("dataset_abbrs")
    if abbrs is not None:
        if not isinstance(abbrs, list):
            raise UnsupportedConfig(f"{where}.dataset_abbrs: expected a list")
        for i, a in enumerate(abbrs):
            if not (isinstance(a, str) or _is_pair(a)):
                raise UnsupportedConfig(
                    f"{where}.dataset_abbrs[{i}]: expected a name or a [name, metric] pair, got {a!r}"
                )
    groups = s.get("summary_groups") or []
    if not isinstance(groups, list):
        raise UnsupportedConfig(f"{where}.summary_groups: expected a list")
    out: dict[str, Any] = {
        "summary_groups": [_check_group(g, f"{where}.summary_groups[{i}]") for i, g in enumerate(groups)]
    }
    if abbrs is not None:
        out["dataset_abbrs"] = [a if isinstance(a, str) else list(a) for a in abbrs]
    return out
