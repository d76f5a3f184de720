"""Export MMLU / C-Eval results in the inference-SDK precision-test layout (Ascend atb_speed_sdk).

    DIR/<model>/test_result/cache.csv                no header; columns task_name, question_id,
                                                     truth_answer (C), predict_answer (D)
    DIR/<model>/test_result/result_subject_acc.json  {subject: accuracy (fraction)}
    DIR/<model>/test_result/result_classes_acc.json  {category: accuracy, ..., "Avg": over all questions}

This is the layout the SDK's precision guide documents ("cache.csv: column C the expected answer,
column D the model's"), and the one its metric script reads back with
`pd.read_csv(cache, names=['task_name', 'question_id', 'truth_answer', 'predict_answer'])`.
Subjects are written without the family prefix (`astronomy`, `computer_network`). C-Eval categories are
the official subject_mapping.json names the SDK reads (STEM, Social Science, Humanities, Other) and its
classes file also has "Avg(Hard)" over the eight hard subjects, as the SDK's script computes it; MMLU
categories keep the run's names (stem, humanities, social_sciences, other). Answers are choice letters.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from lmgauge.report.export_common import letter
from lmgauge.report.load import LoadedRun
from lmgauge.runs.rundir import safe_name

FAMILIES = ("mmlu", "ceval")
CEVAL_CLASSES = {"stem": "STEM", "social_science": "Social Science", "humanities": "Humanities", "other": "Other"}
CEVAL_HARD = (
    "advanced_mathematics",
    "discrete_mathematics",
    "probability_and_statistics",
    "college_chemistry",
    "college_physics",
    "high_school_mathematics",
    "high_school_chemistry",
    "high_school_physics",
)


class NothingToExport(ValueError):
    """The run has no task this format covers."""


def _subject(task: str, result: dict[str, Any]) -> str | None:
    family = task.split("_", 1)[0]
    if family not in FAMILIES or "_" not in task:
        return None
    return str(result.get("subject") or task.split("_", 1)[1])


def export_sdk(run: LoadedRun, out: Path) -> list[Path]:
    written = []
    for model in run.models():
        rows: list[list[Any]] = []
        subject_acc: dict[str, float] = {}
        classes: dict[str, list[int]] = {}
        hard = [0, 0]
        for task in run.tasks(model):
            res = run.result(model, task)
            subject = _subject(task, res or {}) if res else None
            if subject is None:
                continue
            samples = run.answered(model, task)
            correct = 0
            for s in samples:
                conts = s.get("continuations")
                truth = letter(s.get("gold"), conts)
                extracted = s.get("extracted")
                pred_value = (
                    s.get("pred") if "logprobs" in s else (extracted if isinstance(extracted, str) else s.get("pred"))
                )
                pred = letter(pred_value, conts)
                rows.append([subject, s["doc_id"], truth, pred])
                correct += truth == pred
            if not samples:
                continue
            subject_acc[subject] = correct / len(samples)
            cat = str((res or {}).get("category") or "other")
            if task.startswith("ceval_"):
                cat = CEVAL_CLASSES.get(cat, cat)
                if subject in CEVAL_HARD:
                    hard[0] += correct
                    hard[1] += len(samples)
            c = classes.setdefault(cat, [0, 0])
            c[0] += correct
            c[1] += len(samples)
        if not rows:
            continue
        folder = out / safe_name(model) / "test_result"
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        (folder / "cache.csv").write_text(buf.getvalue(), encoding="utf-8")
        classes_acc: dict[str, float] = {k: v[0] / v[1] for k, v in classes.items()}
        classes_acc["Avg"] = sum(v[0] for v in classes.values()) / sum(v[1] for v in classes.values())
        if hard[1]:
            classes_acc["Avg(Hard)"] = hard[0] / hard[1]
        (folder / "result_subject_acc.json").write_text(json.dumps(subject_acc, indent=2) + "\n", encoding="utf-8")
        (folder / "result_classes_acc.json").write_text(json.dumps(classes_acc, indent=2) + "\n", encoding="utf-8")
        written += [folder / "cache.csv", folder / "result_subject_acc.json", folder / "result_classes_acc.json"]
    if not written:
        raise NothingToExport(f"{run.root}: no MMLU or C-Eval task with samples; the sdk format covers only those")
    return written
