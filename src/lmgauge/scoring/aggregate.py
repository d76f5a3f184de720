"""Group results: micro (every question weighs the same) and macro (every subject weighs the same)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lmgauge.scoring.metrics import mean, mean_stderr


def metric_summary(values: Sequence[float]) -> dict:
    return {"value": mean(values), "stderr": mean_stderr(values), "n": len(values)}


def group_summary(per_member: Mapping[str, Sequence[float]]) -> dict:
    """Micro and macro average of one metric over the members of a group (e.g. MMLU subjects).

    micro: mean over all questions pooled (what lm-eval reports for `mmlu`, weight_by_size);
    its stderr is that of the pooled samples. macro: unweighted mean of member means, its
    stderr from the members' stderrs (independent samples).
    """
    members = {k: list(v) for k, v in per_member.items() if len(v)}
    pooled = [x for v in members.values() for x in v]
    member_means = [mean(v) for v in members.values()]
    member_se = [mean_stderr(v) for v in members.values()]
    k = len(members)
    macro_se = (sum(s * s for s in member_se) ** 0.5) / k if k and all(s == s for s in member_se) else float("nan")
    return {
        "micro": {"value": mean(pooled), "stderr": mean_stderr(pooled), "n": len(pooled)},
        "macro": {"value": mean(member_means), "stderr": macro_se, "n": k},
    }
