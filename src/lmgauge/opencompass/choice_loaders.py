"""ARC, HellaSwag, Winogrande, PIQA, BoolQ, CMMLU, LAMBADA and TriviaQA from OpenCompass' on-disk layout, as its loaders read
them (opencompass/datasets/{arc,hellaswag,winogrande,piqa,boolq,cmmlu,lambada,triviaqa}.py, 0.5.4): the same columns in
the same order, the same rows (ARC drops questions without exactly four choices), the same label
mappings. A loader that returns one Dataset in OpenCompass gives it as both train and test here,
as its DatasetReader does. A file that is not in the layout fails naming the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmgauge.data import DataError, DataNotFound
from lmgauge.opencompass.loaders import Rows, Splits, candidate_folders
from lmgauge.opencompass.loaders import jsonl_lines as _lines


def _find(path: str, what: str, probe: Callable[[Path], bool], layout: str) -> Path:
    folders = candidate_folders(path)
    for f in folders:
        if probe(f):
            return f
    raise DataNotFound(what, [str(f) for f in folders], f"OpenCompass' layout: {layout}")


def _get(row: dict, key: str, file: Path, n: int, layout: str) -> Any:
    if key not in row:
        raise DataError(f"{file}: line {n}: no {key!r} key ({layout})")
    return row[key]


def _one(rows: Rows) -> Splits:
    """A loader returning one Dataset: DatasetReader uses it as both train and test."""
    return {"train": rows, "test": rows}


# --- ARC ---

ARC_LAYOUT = 'one JSON object a line: {"id", "question": {"stem", "choices": [{"text", "label"}, ...]}, "answerKey"}'


def load_arc(path: str, name: str | None = None, **_: object) -> tuple[Splits, str]:
    """ARCDataset: AI2's jsonl (ARC-Challenge-Dev.jsonl ...); questions without exactly 4 choices
    are skipped; answerKey becomes the letter of the answer's position (a "1"-"4" key too)."""
    file = _find(path, f"OpenCompass ARC {name or path}", Path.is_file, ARC_LAYOUT)
    rows = []
    for n, item in _lines(file, errors="ignore"):  # OpenCompass opens it with errors='ignore'
        q = _get(item, "question", file, n, ARC_LAYOUT)
        if not isinstance(q, dict) or "stem" not in q or not isinstance(q.get("choices"), list):
            raise DataError(f"{file}: line {n}: 'question' must hold 'stem' and a 'choices' list ({ARC_LAYOUT})")
        choices = q["choices"]
        if len(choices) != 4:
            continue
        labels = [c["label"] for c in choices]
        key = _get(item, "answerKey", file, n, ARC_LAYOUT)
        if key not in labels:
            raise DataError(f"{file}: line {n}: answerKey {key!r} is not one of the choice labels {labels}")
        rows.append(
            {
                "question": q["stem"],
                "answerKey": "ABCD"[labels.index(key)],
                **{f"text{letter}": c["text"] for letter, c in zip("ABCD", choices)},
            }
        )
    return _one(rows), str(file)


# --- HellaSwag ---

HELLASWAG_LAYOUT = 'hellaswag.jsonl, one {"query", "choices": [4 endings], "gold": index} a line'


def _hellaswag_items(path: str) -> tuple[list[tuple[int, dict]], Path]:
    file = _find(path, "OpenCompass HellaSwag", Path.is_file, HELLASWAG_LAYOUT)
    items = _lines(file)
    for n, d in items:
        for key in ("query", "choices", "gold"):
            _get(d, key, file, n, HELLASWAG_LAYOUT)
        if not isinstance(d["choices"], list) or len(d["choices"]) < 4:
            raise DataError(f"{file}: line {n}: 'choices' must be a list of 4 endings ({HELLASWAG_LAYOUT})")
    return items, file


def load_hellaswag(path: str, **_: object) -> tuple[Splits, str]:
    """HellaswagDataset: ctx = query.split(': ', 2)[-1] (sic: up to two ': ' cut), label the gold index."""
    items, file = _hellaswag_items(path)
    rows = [
        {"ctx": d["query"].split(": ", 2)[-1], **dict(zip("ABCD", d["choices"])), "label": d["gold"]} for _, d in items
    ]
    return _one(rows), str(file)


def load_hellaswag_v2(path: str, **_: object) -> tuple[Splits, str]:
    """HellaswagDataset_V2: ctx = query.split(': ', 1)[-1], label the gold letter."""
    items, file = _hellaswag_items(path)
    rows = [
        {"ctx": d["query"].split(": ", 1)[-1], **dict(zip("ABCD", d["choices"])), "label": "ABCD"[d["gold"]]}
        for _, d in items
    ]
    return _one(rows), str(file)


def load_hellaswag_v3(path: str, **_: object) -> tuple[Splits, str]:
    """HellaswagDataset_V3: the query as it is, gold the index."""
    items, file = _hellaswag_items(path)
    rows = [{"query": d["query"], **dict(zip("ABCD", d["choices"])), "gold": d["gold"]} for _, d in items]
    return _one(rows), str(file)


def load_hellaswag_ice(path: str, **_: object) -> tuple[Splits, str]:
    """HellaswagDatasetwithICE: a folder; train from hellaswag_train_sampled25.jsonl, val from
    hellaswag.jsonl, both as _V2 (ctx after the first ': ', label the gold letter)."""
    names = {"train": "hellaswag_train_sampled25.jsonl", "val": "hellaswag.jsonl"}
    folder = _find(
        path,
        "OpenCompass HellaSwag (with ICE)",
        lambda f: all((f / x).is_file() for x in names.values()),
        "a folder with hellaswag_train_sampled25.jsonl and hellaswag.jsonl, {query, choices, gold} a line",
    )
    splits: Splits = {}
    for split, name in names.items():
        splits[split] = load_hellaswag_v2(str(folder / name))[0]["test"]
    return splits, str(folder)


# --- Winogrande ---

WINOGRANDE_LAYOUT = (
    'a folder with dev.jsonl (V3: and train_xs.jsonl), {"sentence" with one "_", "option1", "option2", "answer"} a line'
)


def _winogrande_rows(file: Path, letters: bool) -> Rows:
    rows = []
    for n, line in _lines(file):
        prompt = _get(line, "sentence", file, n, WINOGRANDE_LAYOUT)
        o1 = _get(line, "option1", file, n, WINOGRANDE_LAYOUT)
        o2 = _get(line, "option2", file, n, WINOGRANDE_LAYOUT)
        answer = _get(line, "answer", file, n, WINOGRANDE_LAYOUT)
        parts = prompt.split("_")
        if len(parts) < 2:
            raise DataError(f"{file}: line {n}: the sentence has no '_' blank")
        if letters:  # V2/V3: ' AB'[int(answer)], 'NULL' for an unlabelled row
            if answer != "" and str(answer) not in ("1", "2"):
                raise DataError(f"{file}: line {n}: answer {answer!r} is not '1', '2' or ''")
            answer = " AB"[int(answer)] if answer != "" else "NULL"
        rows.append(
            {
                "prompt": prompt,
                "only_option1": o1,
                "only_option2": o2,
                "opt1": prompt.replace("_", o1),
                "opt2": prompt.replace("_", o2),
                "answer": answer,
                "cont": parts[1],
            }
        )
    return rows


def _winogrande_folder(path: str, files: tuple[str, ...]) -> Path:
    return _find(path, "OpenCompass Winogrande", lambda f: all((f / x).is_file() for x in files), WINOGRANDE_LAYOUT)


def load_winogrande(path: str, **_: object) -> tuple[Splits, str]:
    """WinograndeDataset: <path>/dev.jsonl; opt1/opt2 the sentence with the blank filled, answer as written."""
    folder = _winogrande_folder(path, ("dev.jsonl",))
    return _one(_winogrande_rows(folder / "dev.jsonl", letters=False)), str(folder)


def load_winogrande_v2(path: str, **_: object) -> tuple[Splits, str]:
    """WinograndeDatasetV2: as WinograndeDataset, answer 'A'/'B' ('NULL' when empty)."""
    folder = _winogrande_folder(path, ("dev.jsonl",))
    return _one(_winogrande_rows(folder / "dev.jsonl", letters=True)), str(folder)


def load_winogrande_v3(path: str, **_: object) -> tuple[Splits, str]:
    """WinograndeDatasetV3: splits train_xs and dev, answers as V2."""
    folder = _winogrande_folder(path, ("train_xs.jsonl", "dev.jsonl"))
    return {s: _winogrande_rows(folder / f"{s}.jsonl", letters=True) for s in ("train_xs", "dev")}, str(folder)


# --- PIQA ---

PIQA_LAYOUT = "a folder with train.jsonl + train-labels.lst and dev.jsonl + dev-labels.lst ({id, goal, sol1, sol2}; one 0/1 a line)"


def _piqa_split(folder: Path, data_name: str, label_name: str, version: int) -> Rows:
    data_file, label_file = folder / data_name, folder / label_name
    # OpenCompass reads all lines (readlines), so a blank line is a row
    data_lines = data_file.read_text(encoding="utf-8").splitlines(keepends=True)
    label_lines = label_file.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(data_lines) != len(label_lines):
        raise DataError(f"{data_file}: {len(data_lines)} lines but {label_file} has {len(label_lines)} labels")
    rows = []
    for n, (data, label) in enumerate(zip(data_lines, label_lines), 1):
        try:
            i = json.loads(data.strip())
        except json.JSONDecodeError as e:
            raise DataError(f"{data_file}: line {n}: not JSON: {e}") from e
        try:
            value = int(label.strip())
        except ValueError:
            raise DataError(f"{label_file}: line {n}: {label.strip()!r} is not an integer label") from None
        if not isinstance(i, dict) or "id" not in i:
            raise DataError(f"{data_file}: line {n}: expected an object with an 'id' ({PIQA_LAYOUT})")
        for key in ("goal", "sol1", "sol2"):
            _get(i, key, data_file, n, PIQA_LAYOUT)
        if version == 2:
            i["answer"] = "NULL" if value < 0 else "AB"[value]
        else:
            i["label"] = value
        if version == 3:  # its "some preprocessing": case of the first letters
            i["goal"] = i["goal"][0].upper() + i["goal"][1:]
            if i["goal"].endswith("?") or i["goal"].endswith("."):
                i["sol1"] = i["sol1"][0].upper() + i["sol1"][1:]
                i["sol2"] = i["sol2"][0].upper() + i["sol2"][1:]
            else:
                i["sol1"] = i["sol1"][0].lower() + i["sol1"][1:]
                i["sol2"] = i["sol2"][0].lower() + i["sol2"][1:]
        del i["id"]
        rows.append(i)
    return rows


def _load_piqa(path: str, version: int) -> tuple[Splits, str]:
    names = ("train.jsonl", "train-labels.lst", "dev.jsonl", "dev-labels.lst")
    folder = _find(path, "OpenCompass PIQA", lambda f: all((f / x).is_file() for x in names), PIQA_LAYOUT)
    splits = {
        "train": _piqa_split(folder, "train.jsonl", "train-labels.lst", version),
        "validation": _piqa_split(folder, "dev.jsonl", "dev-labels.lst", version),
    }
    return splits, str(folder)


def load_piqa(path: str, **_: object) -> tuple[Splits, str]:
    """PIQADataset: the row without its id, label the integer of the labels file."""
    return _load_piqa(path, 1)


def load_piqa_v2(path: str, **_: object) -> tuple[Splits, str]:
    """PIQADatasetV2: answer 'A'/'B' ('NULL' for a negative label) instead of label."""
    return _load_piqa(path, 2)


def load_piqa_v3(path: str, **_: object) -> tuple[Splits, str]:
    """PIQADatasetV3: label as PIQADataset, goal capitalized, solutions' first letter by the goal's end."""
    return _load_piqa(path, 3)


# --- BoolQ (SuperGLUE) ---

BOOLQ_LAYOUT = 'SuperGLUE/BoolQ/val.jsonl, one {"question", "passage", "idx", "label": "true"|"false"} a line'


def _boolq_items(path: str) -> tuple[list[tuple[int, dict]], Path]:
    file = _find(path, "OpenCompass BoolQ", Path.is_file, BOOLQ_LAYOUT)
    items = _lines(file)
    for n, d in items:
        label = _get(d, "label", file, n, BOOLQ_LAYOUT)
        if label not in ("true", "false"):
            # OpenCompass' files have strings; a JSON true would be scored 0 by BoolQDataset, a KeyError in V2
            raise DataError(f"{file}: line {n}: label {label!r} is not the string 'true' or 'false' ({BOOLQ_LAYOUT})")
        for key in ("question", "passage"):
            _get(d, key, file, n, BOOLQ_LAYOUT)
    return items, file


def load_boolq(path: str, data_files: str | None = None, split: str | None = None, **_: object) -> tuple[Splits, str]:
    """BoolQDataset: datasets.load_dataset(path='json', data_files=..., split=...) plus an `answer`
    column (1 for label 'true', else 0). With split='train' (the stock configs) one Dataset (train
    and test); without a split the DatasetDict of the json builder: a train split only."""
    if data_files is None:
        raise DataError(
            "BoolQDataset: data_files is missing (the stock config: path='json', data_files='opencompass/boolq')"
        )
    if path != "json":
        raise DataError(f"BoolQDataset: path {path!r}: only the 'json' builder is read (path='json', data_files=FILE)")
    if split not in (None, "train"):
        raise DataError(f"BoolQDataset: split {split!r}: the json builder has only the 'train' split")
    items, file = _boolq_items(data_files)
    rows = [{**d, "answer": 1 if d["label"] == "true" else 0} for _, d in items]
    return (_one(rows) if split else {"train": rows}), str(file)


def load_boolq_v2(path: str, **_: object) -> tuple[Splits, str]:
    """BoolQDatasetV2: label 'true' -> 'A', 'false' -> 'B'."""
    items, file = _boolq_items(path)
    return _one([{**d, "label": {"true": "A", "false": "B"}[d["label"]]} for _, d in items]), str(file)


def load_boolq_v3(path: str, **_: object) -> tuple[Splits, str]:
    """BoolQDatasetV3: the passage's title (before the first ' -- ') cut, the question capitalized."""
    items, file = _boolq_items(path)
    rows = []
    for _n, d in items:
        row = dict(d)
        row["passage"] = " -- ".join(row["passage"].split(" -- ")[1:])
        row["question"] = row["question"][0].upper() + row["question"][1:]
        rows.append(row)
    return _one(rows), str(file)


# --- CMMLU ---

CMMLU_LAYOUT = "<path>/{dev,test}/<name>.csv, a header row, then 7 columns: index, question, A, B, C, D, answer"


def load_cmmlu(path: str, name: str = "", **_: object) -> tuple[Splits, str]:
    """CMMLUDataset: splits dev and test from <path>/<split>/<name>.csv; the header row skipped,
    every row 7 columns (its assert), the index column dropped."""
    folder = _find(
        path,
        f"OpenCompass CMMLU {name}",
        lambda f: all((f / s / f"{name}.csv").is_file() for s in ("dev", "test")),
        CMMLU_LAYOUT,
    )
    splits: Splits = {}
    for split in ("dev", "test"):
        file = folder / split / f"{name}.csv"
        with open(file, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            if next(reader, None) is None:
                raise DataError(f"{file}: empty (no header row; {CMMLU_LAYOUT})")
            rows = []
            for n, row in enumerate(reader, 2):
                if len(row) != 7:
                    raise DataError(f"{file}: line {n}: expected 7 columns ({CMMLU_LAYOUT}), got {len(row)}")
                rows.append(dict(zip(("question", "A", "B", "C", "D", "answer"), row[1:])))
        splits[split] = rows
    return splits, str(folder)


# --- LAMBADA ---


def load_lambada(path: str, **_: object) -> tuple[Splits, str]:
    """lambadaDataset: each line of test.jsonl as it is (the stock config reads `prompt`, `label`),
    a DatasetDict with the test split only."""
    file = _find(path, "OpenCompass LAMBADA", Path.is_file, 'lambada/test.jsonl, one {"prompt", "label"} a line')
    return {"test": [d for _, d in _lines(file)]}, str(file)


# --- TriviaQA ---

TRIVIAQA_LAYOUT = "<path>/trivia-{dev,test}.qa.csv: tab-separated, a question and a Python list of answers a line"


def load_triviaqa(path: str, **_: object) -> tuple[Splits, str]:
    """TriviaQADataset: splits dev and test; `answer` the list of answers (test: its first answer
    only, a string, as OpenCompass keeps it). The list is read with ast.literal_eval where
    OpenCompass uses eval: a line that is not a literal fails naming it."""
    import ast

    names = ("trivia-dev.qa.csv", "trivia-test.qa.csv")
    folder = _find(path, "OpenCompass TriviaQA", lambda f: all((f / x).is_file() for x in names), TRIVIAQA_LAYOUT)
    splits: Splits = {}
    for split in ("dev", "test"):
        file = folder / f"trivia-{split}.qa.csv"
        rows = []
        with open(file, encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                if len(row) != 2:
                    raise DataError(
                        f"{file}: line {n}: expected 2 tab-separated columns ({TRIVIAQA_LAYOUT}), got {len(row)}"
                    )
                try:
                    answers = ast.literal_eval(row[1])
                except (ValueError, SyntaxError):
                    raise DataError(f"{file}: line {n}: the answers {row[1][:60]!r} are not a Python list") from None
                rows.append({"question": row[0], "answer": answers[0] if split == "test" else answers})
        splits[split] = rows
    return splits, str(folder)


CHOICE_LOADERS: dict[str, Callable[..., tuple[Splits, str]]] = {
    "ARCDataset": load_arc,
    "HellaswagDataset": load_hellaswag,
    "HellaswagDataset_V2": load_hellaswag_v2,
    "HellaswagDataset_V3": load_hellaswag_v3,
    "HellaswagDatasetwithICE": load_hellaswag_ice,
    "WinograndeDataset": load_winogrande,
    "WinograndeDatasetV2": load_winogrande_v2,
    "WinograndeDatasetV3": load_winogrande_v3,
    "PIQADataset": load_piqa,
    "PIQADatasetV2": load_piqa_v2,
    "PIQADatasetV3": load_piqa_v3,
    "BoolQDataset": load_boolq,
    "BoolQDatasetV2": load_boolq_v2,
    "BoolQDatasetV3": load_boolq_v3,
    "CMMLUDataset": load_cmmlu,
    "lambadaDataset": load_lambada,
    "TriviaQADataset": load_triviaqa,
}
CHOICE_LOADER_KEYS = {"ARCDataset": ("name",), "BoolQDataset": ("data_files", "split"), "CMMLUDataset": ("name",)}
