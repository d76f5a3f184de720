"""Answer extraction on tables of real output shapes."""

from __future__ import annotations

import pytest

from lmgauge.scoring.extract import (
    INVALID,
    choice_letter,
    code_block,
    exact_match,
    first_line,
    last_number,
    regex_extract,
)

GSM8K_COT_STRICT = r"The answer is (\-?[0-9\.\,]+)."
GSM8K_STRICT = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
GSM8K_IGNORE = [",", r"\$", "(?s).*#### ", r"\.$"]


@pytest.mark.parametrize(
    "text, pattern, group, expected",
    [
        ("So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.", GSM8K_COT_STRICT, 0, "8"),
        ("The answer is 1,234.\n\nQ: next", GSM8K_COT_STRICT, 0, "1,234"),
        ("The answer is -3.5.", GSM8K_COT_STRICT, 0, "-3.5"),
        ("I think it is 8", GSM8K_COT_STRICT, 0, INVALID),
        ("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18", GSM8K_STRICT, 0, "18"),
        # flexible: the last number-like run; a tuple match gives its non-empty group
        ("16 - 3 - 4 = 9 duck eggs, 9 * 2 = $18.", FLEXIBLE, -1, "$18."),
        ("The answer is 7", FLEXIBLE, -1, "7"),
        ("no digits here", FLEXIBLE, -1, INVALID),
    ],
)
def test_regex_extract_like_lm_eval(text, pattern, group, expected):
    assert regex_extract(text, pattern, group) == expected


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("$18.", "18", True),  # flexible-extract output against a gsm8k target
        ("1,234", "1234", True),
        ("18", "18.5", False),
        ("[invalid]", "18", False),
        ("Janet ... #### 18", "18", True),  # everything up to '#### ' ignored
    ],
)
def test_exact_match_with_gsm8k_options(pred, ref, expected):
    assert exact_match(pred, ref, regexes_to_ignore=GSM8K_IGNORE, ignore_case=True) is expected


def test_exact_match_case_and_punctuation():
    assert exact_match("Paris.", "paris", ignore_case=True, ignore_punctuation=True)
    assert not exact_match("Paris.", "paris", ignore_case=True)
    assert not exact_match("Paris", "paris")


@pytest.mark.parametrize(
    "text, expected",
    [(" B\nC. 7", "B"), ("  A. 5  ", "A. 5"), ("", ""), ("\nB", "")],
)
def test_first_line_is_mmlu_generative_get_response(text, expected):
    assert first_line(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is (B)", "B"),
        ("The answer is B.", "B"),
        ("Answer: D", "D"),
        ("answer: c", None),  # lower-case letters are not options
        (" B. 12 apples", "B"),
        ("B", "B"),
        ("(C) because the others are wrong", "C"),
        ("I would choose (A) here", "A"),
        ("答案：B", "B"),
        ("答案是Ｃ", "C"),
        ("正确答案为（Ｄ）。", "D"),
        ("选B", "B"),
        ("Ｂ．北京", "B"),
        ("A cat is an animal, so the answer is C", "C"),
        ("A cat is an animal.", None),  # the article, not an option
        ("None of these", None),
    ],
)
def test_choice_letter(text, expected):
    assert choice_letter(text) == expected


def test_choice_letter_from_option_text():
    options = ["London", "Paris", "Berlin", "Rome"]
    assert choice_letter("It is paris, of course", options=options) == "B"
    assert choice_letter("paris or rome", options=options) is None  # two options named: no answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("16 - 3 - 4 = 9. 9 * 2 = 18. The answer is 18.", "18"),
        ("She makes $1,234.50 in total.", "1234.5"),
        ("The total is 1,000,000 dollars", "1000000"),
        ("So 12.0 cm", "12"),
        ("The temperature drops to -3 degrees.", "-3"),
        ("Work: 3 + 4 = 7\n#### 7\nQ: another 99", "7"),
        ("no number", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Here:\n```python\ndef f():\n    return 1\n```\nDone", "def f():\n    return 1\n"),
        ("```\nprint(1)\n```", "print(1)\n"),
        ("```bash\nls\n```\n```python\nx = 1\n```", "x = 1\n"),
        ("```python\ndef f():\n    return 2", "def f():\n    return 2\n"),  # cut off before the fence closed
        ("def f():\n    return 3\n", "def f():\n    return 3\n"),  # no fence: the text itself
    ],
)
def test_code_block(text, expected):
    assert code_block(text) == expected
