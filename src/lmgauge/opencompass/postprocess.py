"""OpenCompass' answer postprocessors and evaluators (utils/text_postprocessors.py,
datasets/gsm8k.py, openicl/icl_evaluator/), as functions of one prediction and one reference.

Scores are per sample (1.0 / 0.0); OpenCompass reports the mean x 100, which is what the
OpenCompass summary prints. A name lmgauge does not implement is refused when the config is
read (config_reader), never applied as something else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def first_capital_postprocess(text: str) -> str:
    for t in text:
        if t.isupper():
            return t
    return ""


def last_capital_postprocess(text: str) -> str:
    for t in reversed(text):
        if t.isupper():
            return t
    return ""


def _option_patterns(options: str) -> list[str]:
    # verbatim from OpenCompass 0.5.4 first_option_postprocess, including its missing comma
    # after the "故选" pattern (two patterns concatenated into one)
    return [  # noqa: RUF001 - full-width punctuation is what the patterns match
        rf"答案是?\s*([{options}])",
        rf"答案是?\s*：\s*([{options}])",
        rf"答案是?\s*:\s*([{options}])",
        rf"答案选项应?该?是\s*([{options}])",
        rf"答案选项应?该?为\s*([{options}])",
        rf"答案应该?是\s*([{options}])",
        rf"答案应该?选\s*([{options}])",
        rf"答案选项为?\s*：\s*([{options}])",
        rf"答案选项为?\s+\(?\*?\*?([{options}])\*?\*?\)?",
        rf"答案选项是?\s*:\s*([{options}])",
        rf"答案为\s*([{options}])",
        rf"答案选\s*([{options}])",
        rf"选择?\s*([{options}])",
        rf"故选?\s*([{options}])"  # noqa: ISC001 - OpenCompass' missing comma, kept
        rf"只有选?项?\s?([{options}])\s?是?对",
        rf"只有选?项?\s?([{options}])\s?是?错",
        rf"只有选?项?\s?([{options}])\s?不?正确",
        rf"只有选?项?\s?([{options}])\s?错误",
        rf"说法不?对选?项?的?是\s?([{options}])",
        rf"说法不?正确选?项?的?是\s?([{options}])",
        rf"说法错误选?项?的?是\s?([{options}])",
        rf"([{options}])\s?是正确的",
        rf"([{options}])\s?是正确答案",
        rf"选项\s?([{options}])\s?正确",
        rf"所以答\s?([{options}])",
        rf"所以\s?([{options}][.。$]?$)",
        rf"所有\s?([{options}][.。$]?$)",
        rf"[\s，：:,]([{options}])[。，,\.]?$",
        rf"[\s，,：:][故即]([{options}])[。\.]?$",
        rf"[\s，,：:]因此([{options}])[。\.]?$",
        rf"[是为。]\s?([{options}])[。\.]?$",
        rf"因此\s?([{options}])[。\.]?$",
        rf"显然\s?([{options}])[。\.]?$",
        r"答案是\s?(\S+)(?:。|$)",
        r"答案应该是\s?(\S+)(?:。|$)",
        r"答案为\s?(\S+)(?:。|$)",
        rf"(?i)ANSWER\s*:\s*([{options}])",
        rf"[Tt]he answer is:?\s+\(?([{options}])\)?",
        rf"[Tt]he answer is:?\s+\(?\*?\*?([{options}])\*?\*?\)?",
        rf"[Tt]he answer is option:?\s+\(?([{options}])\)?",
        rf"[Tt]he correct answer is:?\s+\(?([{options}])\)?",
        rf"[Tt]he correct answer is option:?\s+\(?([{options}])\)?",
        rf"[Tt]he correct answer is:?.*?boxed{{([{options}])}}",
        rf"[Tt]he correct option is:?.*?boxed{{([{options}])}}",
        rf"[Tt]he correct answer option is:?.*?boxed{{([{options}])}}",
        rf"[Tt]he answer to the question is:?\s+\(?([{options}])\)?",
        rf"^选项\s?([{options}])",
        rf"^([{options}])\s?选?项",
        rf"(\s|^)[{options}][\s。，,：:\.$]",
        r"1.\s?(.*?)$",
        rf"1.\s?([{options}])[.。$]?$",
    ]


def first_option_postprocess(text: str, options: str, cushion: bool = True) -> str:
    patterns = _option_patterns(options)
    if cushion:
        patterns += [f"([{options}]):", f"([{options}])"]
    for pattern in patterns:
        text = text.strip()
        match = re.search(pattern, text, re.DOTALL)
        if match:
            outputs = match.group(1) if match.group(1) is not None and match.group(1) != "" else match.group(0)
            for i in options:
                if i in outputs:
                    return i
    return ""


def gsm8k_postprocess(text: str) -> str:
    text = text.split("Question:")[0]
    numbers = re.findall(r"\-?\d+\.\d+|\-?\d+", text)
    return numbers[-1] if numbers else "NULL"


def gsm8k_dataset_postprocess(text: str) -> str:
    return text.split("#### ")[1].replace(",", "")


def general_postprocess(text: str) -> str:
    truncated = re.split(r"[\n.,]", text, maxsplit=1)[0]
    no_punct = re.sub(r"[^\w\s]", "", truncated)
    no_articles = re.sub(r"\b(a|an|the)\b", "", no_punct, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", no_articles).strip()


def humaneval_postprocess_v2(text: str) -> str:
    """datasets/humaneval.py: the first fenced block's body (if any), left-stripped."""
    blocks = re.findall(r"```\w*\n(.*?)```", text, re.DOTALL)
    if len(blocks) >= 1:
        text = blocks[0]
    return text.lstrip()


def humaneval_postprocess_v3(text: str) -> str:
    """As v2 with the last fenced block."""
    blocks = re.findall(r"```\w*\n(.*?)```", text, re.DOTALL)
    if len(blocks) >= 1:
        text = blocks[-1]
    return text.lstrip()


def humaneval_internal_v2_postprocess(text: str) -> str:
    """datasets/humaneval.py: the indented body up to the first unindented line."""
    if text.startswith("   ") and not text.startswith("    "):
        text = " " + text
    prediction = text.split("\n\n\n")[0]
    prediction = prediction.split("\n```")[0]
    out = []
    for line in prediction.split("\n"):
        if line and line[0] != " ":
            break
        out.append(line)
    return "\n".join(out)


# MBPPEvaluator._process_answer's patterns, in its order (OpenCompass runs them with the `regex`
# module and a 10 s timeout; the patterns mean the same in `re`)
_MBPP_ANSWER_PATTERNS = [
    r"\[BEGIN\]\s*'(.*)'\s*\[DONE\]",
    r"BEGIN\s*'(.*)'\s*\[DONE\]",
    r"\[BEGIN\]\s*'(.*)'\s*DONE",
    r"BEGIN\s*'(.*)'\s*DONE",
    r"\[BEGIN\]\s*'(.*)\s*\[DONE\]",
    r"BEGIN\s*'(.*)\s*\[DONE\]",
    r"\[BEGIN\]\s*'(.*)\s*DONE",
    r"BEGIN\s*'(.*)\s*DONE",
    r"\[BEGIN\]\s*(.*)\s*\[DONE\]",
    r"BEGIN\s*(.*)\s*\[DONE\]",
    r"\[BEGIN\]\s*(.*)\s*DONE",
    r"BEGIN\s*(.*)\s*DONE",
    r"```python\s*(.*)\s*```",
    r"```\s*(.*)\s*```",
    r"```python\s*(.*)\s*$",
    r"```\s*(.*)\s*$",
    r"(.*)\s*```.*",
    r"\[BEGIN\]\s*'(.*)",
    r"\[BEGIN\](.*)",
    r"'(.*)'\s*\[DONE\]",
]


def mbpp_process_answer(text: str) -> str:
    """MBPPEvaluator._process_answer: the code between [BEGIN] and [DONE] (or in a fence)."""
    for p in _MBPP_ANSWER_PATTERNS:
        match = re.search(p, text, re.DOTALL)
        if match:
            text = match.group(1)
            break
    text = text.split("```")[0]
    text = re.split(r"'?\s*\[?DONE\]?", text)[0]
    text = text.replace("\\_", "_")
    return text.strip()


POSTPROCESSORS: dict[str, Callable[..., str]] = {
    "first_capital_postprocess": first_capital_postprocess,
    "first-capital": first_capital_postprocess,
    "last_capital_postprocess": last_capital_postprocess,
    "last-capital": last_capital_postprocess,
    "first_option_postprocess": first_option_postprocess,
    "first-option": first_option_postprocess,
    "gsm8k_postprocess": gsm8k_postprocess,
    "gsm8k": gsm8k_postprocess,
    "gsm8k_dataset_postprocess": gsm8k_dataset_postprocess,
    "gsm8k_dataset": gsm8k_dataset_postprocess,
    "general_postprocess": general_postprocess,
    "general": general_postprocess,
    "humaneval_postprocess_v2": humaneval_postprocess_v2,
    "humaneval_postprocess_v3": humaneval_postprocess_v3,
    "humaneval_internal_v2_postprocess": humaneval_internal_v2_postprocess,
}


def acc_correct(pred: Any, gold: Any) -> bool:
    """AccEvaluator (labels compared as strings) and AccwithDetailsEvaluator (pred == ref)."""
    return str(pred) == str(gold)


def gsm8k_correct(pred: Any, gold: Any) -> bool:
    """Gsm8kEvaluator.is_equal."""
    try:
        if pred == gold or abs(float(pred) - int(gold)) < 1e-6:
            return True
    except Exception:  # noqa: BLE001 - OpenCompass counts any failure to compare as wrong
        pass
    return False


def em_correct(pred: Any, gold: Any) -> bool:
    """EMEvaluator: the normalized prediction among the references (raw or normalized)."""
    refs = gold if isinstance(gold, list) else [gold]
    p = general_postprocess(str(pred))
    return p in [general_postprocess(str(r)) for r in refs] or p in refs


def lambada_correct(pred: Any, gold: Any) -> bool:
    """LambadaEvaluator: the prediction's first word, cut at its first punctuation mark, equal to
    the reference after general_postprocess."""
    import string

    word = str(pred).strip().split(" ")[0]
    word = re.split(f"[{string.punctuation}]", word)[0]
    return general_postprocess(word) == general_postprocess(str(gold))


def triviaqa_correct(pred: Any, gold: Any) -> bool:
    """TriviaQAEvaluator: the first line, lowercased, after the last 'answer is' / 'a:' / 'answer:',
    general_postprocess'ed; correct when any normalized answer is a substring of it (a string gold,
    the test split's, is iterated character by character, as OpenCompass does)."""
    p = str(pred).strip().split("\n")[0].lower()
    for marker in ("answer is", "a:", "answer:"):
        p = p.split(marker)[-1]
    p = general_postprocess(p.strip())
    return any(general_postprocess(str(c)).lower() in p for c in gold)


# evaluator -> (metric name OpenCompass reports, per-sample correctness)
EVALUATORS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "AccEvaluator": ("accuracy", acc_correct),
    "AccwithDetailsEvaluator": ("accuracy", acc_correct),
    "Gsm8kEvaluator": ("accuracy", gsm8k_correct),
    "EMEvaluator": ("score", em_correct),
    "LambadaEvaluator": ("accuracy", lambada_correct),
    "TriviaQAEvaluator": ("score", triviaqa_correct),
}
# evaluators that run the model's program in lmgauge's sandbox (opencompass/code_eval.py) -> the
# metrics OpenCompass' result dict holds, in its order
CODE_EVALUATORS: dict[str, tuple[str, ...]] = {
    "HumanEvalEvaluator": ("humaneval_pass@1",),
    "MBPPEvaluator": ("pass", "timeout", "failed", "wrong_answer", "score"),
}
