"""Answers out of generated text: small named functions, each one shape of output.

The lm-eval ones (`regex_extract`, `exact_match`, `first_line`) follow lm-evaluation-harness 0.4.13
exactly (RegexFilter, exact_match_hf_evaluate, mmlu_generative's get_response filter), so scores
computed from the same generations are the same. The others read what models actually write:
"The answer is (B)", "答案：Ｂ", "$1,234.50", a fenced code block.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

INVALID = "[invalid]"  # lm-eval's fallback when a regex finds nothing

# --- lm-evaluation-harness semantics -------------------------------------------------------------


def regex_extract(text: str, pattern: str, group_select: int = 0, fallback: str = INVALID) -> str:
    """lm-eval's RegexFilter + take_first: the `group_select`-th match of `pattern` (a match with
    several groups gives its first non-empty group), stripped; `fallback` when nothing matches."""
    matches = re.findall(pattern, text if isinstance(text, str) else "")
    if not matches:
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), fallback)
    return match.strip()


def exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] = (),
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
) -> bool:
    """lm-eval's exact_match: drop each regex from both sides, then case and punctuation."""
    for pattern in regexes_to_ignore:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        prediction, reference = prediction.translate(table), reference.translate(table)
    return prediction == reference


def first_line(text: str) -> str:
    """mmlu_generative's get_response filter: up to the first line break, whitespace trimmed."""
    line = regex_extract(text, r"^(.*?)(?=\n|$)")
    line = line.strip()
    return regex_extract(line, r"^(.*?)\s*$")


# --- what models write ---------------------------------------------------------------------------

# full-width letters and punctuation (Chinese outputs) -> ASCII
_FULL_WIDTH = str.maketrans("ＡＢＣＤＥＦＧＨＩＪ（）：．，、", "ABCDEFGHIJ():.,,")


def choice_letter(text: str, letters: str = "ABCD", options: Sequence[str] | None = None) -> str | None:
    """The option a model chose, from the clearest signal to the weakest:
    an answer statement ("The answer is (B)", "答案：B", "选B"), a letter opening the reply ("B.",
    "(C) ..."), a letter in parentheses, the text of exactly one option, a lone capital letter.
    None when nothing points to one option."""
    t = text.translate(_FULL_WIDTH).strip()
    L = re.escape(letters) if len(letters) == 1 else f"[{letters}]"
    statements = [
        rf"(?i:answer)\s*(?i:is|:)?\s*(?:option\s*)?[\(\[]?({L})(?![A-Za-z])",
        rf"答案\s*(?:是|为|應為|应为|:)?\s*(?:选项)?\s*[\(\[]?({L})(?![A-Za-z])",
        rf"(?:选择?|選擇?)\s*[\(\[]?({L})(?![A-Za-z])",
    ]
    for pattern in statements:
        m = re.search(pattern, t)
        if m:
            return m.group(1)
    m = re.match(rf"[\(\[]?({L})(?:[\.\):：\]、,，]|$|\s+(?![a-z]))", t)  # "B. 12", not "A cat"
    if m:
        return m.group(1)
    m = re.search(rf"\(({L})\)", t)
    if m:
        return m.group(1)
    if options:
        low = t.lower()
        hits = [
            letters[i]
            for i, o in enumerate(options[: len(letters)])
            if str(o).strip() and str(o).strip().lower() in low
        ]
        if len(hits) == 1:
            return hits[0]
    # a lone capital letter, not the English article ("A cat") and not inside a word
    m = re.search(rf"(?<![A-Za-z])({L})(?![A-Za-z])(?!\s+[a-z])", t)
    return m.group(1) if m else None


_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")


def normalize_number(s: str) -> str:
    """'$1,234.50' -> '1234.5'; '12.0' -> '12'; '-3' -> '-3'."""
    s = s.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = float(s)
    except ValueError:
        return s
    if value.is_integer():
        return str(int(value))
    return repr(value).rstrip("0").rstrip(".") if "e" not in repr(value) else s


def last_number(text: str) -> str | None:
    """The final answer of a math solution: the number after the last '####' when there is one,
    otherwise the last number in the text; commas, dollar signs and units dropped."""
    if "####" in text:
        after = _NUMBER.search(text.rsplit("####", 1)[1])
        if after:
            return normalize_number(after.group(0))
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def code_block(text: str, language: str = "python") -> str:
    """The first fenced code block (preferring one tagged `language`); the text itself if none."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    tagged = [body for lang, body in blocks if lang.lower() in (language, language[:2])]
    return (tagged or [blocks[0][1]])[0].rstrip("\n") + "\n"
