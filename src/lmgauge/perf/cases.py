"""Which (input length, output length, batch size) cases an in-process run measures.

Three ways to say it, as inference SDKs do: explicit pairs (`[[256,256],[512,512]]`), powers of two
between two exponents (input = output = 2^k), or lists of input and output lengths (every input with
every output). An SDK's `sdk_config.ini` `[performance]` section says the same with its own keys.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from pathlib import Path


class CaseError(ValueError):
    """A case specification that cannot be measured; the message names the flag, key or file."""


@dataclass(frozen=True)
class Case:
    input_len: int
    output_len: int
    batch_size: int


def parse_case_pairs(text: str, where: str = "--case-pair") -> list[tuple[int, int]]:
    """`[[64,16],[128,16]]` -> [(64, 16), (128, 16)]."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(f"{where}: {text!r} is not a JSON list of [input, output] pairs ({e.msg})") from None
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in p)
        for p in value
    )
    if not ok or not value:
        raise CaseError(f"{where}: {text!r} must be a non-empty list of [input, output] integer pairs")
    return [(int(a), int(b)) for a, b in value]


def exponent_pairs(min_exp: int, max_exp: int, where: str = "--min-len-exp/--max-len-exp") -> list[tuple[int, int]]:
    """Input = output = 2^k for k = min_exp..max_exp (the SDK convention)."""
    if min_exp > max_exp:
        raise CaseError(f"{where}: min {min_exp} is above max {max_exp}")
    if min_exp < 0 or max_exp > 20:
        raise CaseError(f"{where}: exponents must lie in 0..20, got {min_exp}..{max_exp}")
    return [(2**k, 2**k) for k in range(min_exp, max_exp + 1)]


def build_cases(pairs: list[tuple[int, int]], batch_sizes: list[int]) -> list[Case]:
    """Every pair at every batch size, batch size outermost (one CSV per batch size)."""
    if not batch_sizes:
        raise CaseError("--batch-size: no batch size given")
    for b in batch_sizes:
        if b < 1:
            raise CaseError(f"--batch-size: {b} is not a positive integer")
    for n, m in pairs:
        if n < 1 or m < 1:
            raise CaseError(f"case [{n}, {m}]: input and output lengths must be at least 1 token")
    return [Case(n, m, b) for b in batch_sizes for n, m in pairs]


@dataclass
class SDKConfig:
    """The `[performance]` keys of an SDK's sdk_config.ini; None where the file leaves a key out."""

    model_name: str | None = None
    batch_size: list[int] | None = None
    min_len_exp: int | None = None
    max_len_exp: int | None = None
    case_pair: list[tuple[int, int]] | None = None


SDK_KEYS = ("model_name", "batch_size", "max_len_exp", "min_len_exp", "case_pair")


def read_sdk_config(path: str | Path) -> SDKConfig:
    """Read `[performance]` from an sdk_config.ini; unknown keys and bad values are errors naming the key."""
    p = Path(path)
    if not p.is_file():
        raise CaseError(f"--sdk-config: {str(p)!r} is not a file")
    parser = configparser.ConfigParser()
    try:
        parser.read(p, encoding="utf-8")
    except configparser.Error as e:
        raise CaseError(f"{p}: not an ini file ({e})") from None
    if not parser.has_section("performance"):
        raise CaseError(f"{p}: has no [performance] section (keys: {', '.join(SDK_KEYS)})")
    sec = parser["performance"]
    unknown = sorted(set(sec) - set(SDK_KEYS))
    if unknown:
        raise CaseError(f"{p}: [performance] has unknown key(s) {', '.join(unknown)} (known: {', '.join(SDK_KEYS)})")
    cfg = SDKConfig()

    def integer(key: str) -> int | None:
        raw = sec.get(key, "").strip()
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise CaseError(f"{p}: [performance] {key} = {raw!r} is not an integer") from None

    cfg.model_name = sec.get("model_name", "").strip() or None
    raw_bs = sec.get("batch_size", "").strip()
    if raw_bs:
        try:
            cfg.batch_size = [int(x) for x in raw_bs.strip("[]").replace(",", " ").split()]
        except ValueError:
            raise CaseError(
                f"{p}: [performance] batch_size = {raw_bs!r} is not an integer (or a list of them)"
            ) from None
    cfg.min_len_exp = integer("min_len_exp")
    cfg.max_len_exp = integer("max_len_exp")
    raw_pairs = sec.get("case_pair", "").strip()
    if raw_pairs and raw_pairs != "[]":
        cfg.case_pair = parse_case_pairs(raw_pairs, f"{p}: [performance] case_pair")
    return cfg
