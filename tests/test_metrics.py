"""Metrics and aggregation on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lmgauge.requests import LoglikelihoodResult, RollingResult
from lmgauge.scoring.aggregate import group_summary, metric_summary
from lmgauge.scoring.metrics import acc_norm_pred, acc_pred, bits_per_byte, mean_stderr, perplexity, weighted_perplexity
from lmgauge.tasks.base import ChoiceTask, DocSet
from lmgauge.tasks.perplexity import PerplexityTask, word_count
from lmgauge.tasks.target import TargetTask


def test_acc_and_acc_norm_disagree_where_length_matters():
    logprobs = [-4.0, -6.0]
    choices = ["ab", "abcdef"]  # per char: -2.0 vs -1.0
    assert acc_pred(logprobs) == 0
    assert acc_norm_pred(logprobs, choices) == 1


def test_ties_go_to_the_first_choice():
    assert acc_pred([-1.0, -1.0, -2.0]) == 0


def test_stderr_is_sample_stddev_over_sqrt_n():
    xs = [1.0, 0.0, 1.0, 1.0]  # mean .75, sample var = (3*.0625 + .5625)/3 = .25
    assert mean_stderr(xs) == pytest.approx(math.sqrt(0.25) / 2)
    assert math.isnan(mean_stderr([1.0]))


def test_perplexities():
    assert perplexity([-1.0, -3.0]) == pytest.approx(math.exp(2.0))
    assert weighted_perplexity([-6.0, -4.0], [2, 3]) == pytest.approx(math.exp(2.0))
    assert bits_per_byte([-math.log(2) * 8], [4]) == pytest.approx(2.0)


def test_group_micro_and_macro():
    per = {"a": [1.0, 1.0, 1.0, 0.0], "b": [0.0, 0.0]}  # micro 3/6, macro (.75 + 0)/2
    g = group_summary(per)
    assert g["micro"]["value"] == pytest.approx(0.5) and g["micro"]["n"] == 6
    assert g["macro"]["value"] == pytest.approx(0.375) and g["macro"]["n"] == 2
    assert g["micro"]["stderr"] == pytest.approx(mean_stderr([1, 1, 1, 0, 0, 0]))
    se_a, se_b = mean_stderr(per["a"]), mean_stderr(per["b"])
    assert g["macro"]["stderr"] == pytest.approx(math.sqrt(se_a**2 + se_b**2) / 2)


def _choice_task(**kw):
    return ChoiceTask(
        name="t",
        docs=DocSet("t", lambda: []),
        prompt=lambda d: d["q"],
        choices=lambda d: d["c"],
        gold=lambda d: d["g"],
        **kw,
    )


def test_choice_task_score_record():
    task = _choice_task()
    doc = {"q": "Q?", "c": ["xx", "xxxxxxxx"], "g": 1}
    rec = task.score(doc, 0, [LoglikelihoodResult(-3.0, False), LoglikelihoodResult(-4.0, True)])
    assert rec["gold"] == 1 and rec["pred"] == 0 and rec["correct"] is False
    assert rec["pred_norm"] == 1 and rec["metrics"] == {"acc": 0.0, "acc_norm": 1.0}
    assert rec["logprobs"] == [-3.0, -4.0]
    agg = task.aggregate([{"metrics": {"acc": 1.0, "acc_norm": 0.0}}, {"metrics": {"acc": 0.0, "acc_norm": 0.0}}])
    assert agg["acc"] == metric_summary([1.0, 0.0]) and agg["acc_norm"]["value"] == 0.0


def test_target_task_perplexity_and_acc():
    task = TargetTask(name="l", docs=DocSet("l", lambda: []), context=lambda d: "", target=lambda d: " x")
    s1 = task.score({}, 0, [LoglikelihoodResult(-1.0, True)])
    s2 = task.score({}, 1, [LoglikelihoodResult(-3.0, False)])
    agg = task.aggregate([s1, s2])
    assert agg["acc"]["value"] == 0.5
    assert agg["perplexity"]["value"] == pytest.approx(math.exp(2.0))


def test_rolling_perplexity_metrics():
    task = PerplexityTask(name="p", docs=DocSet("p", lambda: []), style="rolling")
    doc = {"text": "two words"}  # 2 words, 9 bytes
    s = task.score(doc, 0, [RollingResult(-9.0, 3)])
    agg = task.aggregate([s])
    assert agg["word_perplexity"]["value"] == pytest.approx(math.exp(9.0 / 2))
    assert agg["byte_perplexity"]["value"] == pytest.approx(math.exp(1.0))
    assert agg["bits_per_byte"]["value"] == pytest.approx(1.0 / math.log(2))
    assert word_count("a  b\nc") == 3


def test_windows_perplexity_is_token_mean():
    task = PerplexityTask(name="p", docs=DocSet("p", lambda: []), style="windows", seq_len=4)
    s = task.score({"text": "x"}, 0, [RollingResult(-6.0, 3, 1)])
    assert task.aggregate([s])["perplexity"]["value"] == pytest.approx(math.exp(2.0))
