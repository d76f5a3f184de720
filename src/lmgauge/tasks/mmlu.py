"""MMLU (Hendrycks et al.): 57 subjects, 5-shot from dev (first n), lm-eval's default prompt."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lmgauge.data import CsvSource, data_roots
from lmgauge.tasks.base import ChoiceTask, DocSet, Task
from lmgauge.tasks.exam import ExamGenOptions, ExamOptions, exam_task
from lmgauge.tasks.registry import REGISTRY, Variant, register_variants
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates

# subject -> category, as lm-evaluation-harness groups them (mmlu_stem, mmlu_humanities, ...)
MMLU_SUBJECTS: dict[str, str] = {
    "abstract_algebra": "stem",
    "anatomy": "stem",
    "astronomy": "stem",
    "business_ethics": "other",
    "clinical_knowledge": "other",
    "college_biology": "stem",
    "college_chemistry": "stem",
    "college_computer_science": "stem",
    "college_mathematics": "stem",
    "college_medicine": "other",
    "college_physics": "stem",
    "computer_security": "stem",
    "conceptual_physics": "stem",
    "econometrics": "social_sciences",
    "electrical_engineering": "stem",
    "elementary_mathematics": "stem",
    "formal_logic": "humanities",
    "global_facts": "other",
    "high_school_biology": "stem",
    "high_school_chemistry": "stem",
    "high_school_computer_science": "stem",
    "high_school_european_history": "humanities",
    "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences",
    "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem",
    "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem",
    "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem",
    "high_school_us_history": "humanities",
    "high_school_world_history": "humanities",
    "human_aging": "other",
    "human_sexuality": "social_sciences",
    "international_law": "humanities",
    "jurisprudence": "humanities",
    "logical_fallacies": "humanities",
    "machine_learning": "stem",
    "management": "other",
    "marketing": "other",
    "medical_genetics": "other",
    "miscellaneous": "other",
    "moral_disputes": "humanities",
    "moral_scenarios": "humanities",
    "nutrition": "other",
    "philosophy": "humanities",
    "prehistory": "humanities",
    "professional_accounting": "other",
    "professional_law": "humanities",
    "professional_medicine": "other",
    "professional_psychology": "social_sciences",
    "public_relations": "social_sciences",
    "security_studies": "social_sciences",
    "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences",
    "virology": "other",
    "world_religions": "humanities",
}

CSV_SPLIT = {"test": "test", "dev": "dev", "validation": "val"}  # Hendrycks' folder names
LETTERS = "ABCD"


def _from_csv(row: dict) -> dict:
    answer = row["answer"].strip()
    if answer not in LETTERS:
        raise ValueError(f"answer {answer!r} is not one of A, B, C, D")
    return {"question": row["question"], "choices": [row[x] for x in LETTERS], "answer": LETTERS.index(answer)}


def _from_hf(row: dict) -> dict:
    answer = row["answer"]
    if isinstance(answer, str):
        answer = LETTERS.index(answer.strip())
    if len(row["choices"]) != 4:
        raise ValueError(f"expected 4 choices, got {len(row['choices'])}")
    return {"question": row["question"], "choices": list(row["choices"]), "answer": int(answer)}


def _convert(row: dict) -> dict:
    return _from_csv(row) if "A" in row else _from_hf(row)


def mmlu_docs(subject: str, split: str, path: str | None = None) -> DocSet:
    def candidates():
        csv_name = f"{CSV_SPLIT[split]}/{subject}_{CSV_SPLIT[split]}.csv"
        cols = ["question", "A", "B", "C", "D", "answer"]
        out = []
        if path:  # a folder in the Hendrycks layout, or an HF save_to_disk root
            out.append(CsvSource(Path(path).expanduser() / csv_name, cols))
        out += [CsvSource(root / "mmlu" / csv_name, cols) for root in data_roots()]
        explicit = str(Path(path) / subject / split) if path else None
        return out + disk_candidates(f"hails/mmlu_no_train/{subject}/{split}", ("cais/mmlu", subject, split), explicit)

    return DocSet(f"mmlu {subject} {split}", candidates, INSTALL_HINT, _convert, required=())


def mmlu_prompt(doc: dict) -> str:
    c = doc["choices"]
    return f"{doc['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def mmlu_choices(doc: dict) -> list[str]:
    return ["A", "B", "C", "D"]


def mmlu_gold(doc: dict) -> int:
    return doc["answer"]


def mmlu_header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def make_mmlu_gen(subject: str, o: ExamGenOptions) -> Task:
    """The same prompt; the letter read from what the model writes."""
    return exam_task(
        o,
        name=f"mmlu_{subject}",
        group="mmlu",
        docs=mmlu_docs(subject, "test", o.path),
        shots=mmlu_docs(subject, "dev", o.path),
        header=mmlu_header(subject),
        prompt=mmlu_prompt,
        options=lambda d: d["choices"],
        gold=mmlu_gold,
        subject=subject,
        category=MMLU_SUBJECTS[subject],
        gen_stop=("\n", "</s>"),
    )


def make_mmlu(subject: str, o: ExamOptions) -> Task:
    path = o.path
    return ChoiceTask(
        name=f"mmlu_{subject}",
        docs=mmlu_docs(subject, "test", path),
        shots=mmlu_docs(subject, "dev", path),
        header=mmlu_header(subject),
        prompt=mmlu_prompt,
        choices=mmlu_choices,
        gold=mmlu_gold,
        num_fewshot=o.num_fewshot,
        shot_sampler="first_n",
        seed=o.seed,
        acc_norm=False,
        group="mmlu",
        subject=subject,
        category=MMLU_SUBJECTS[subject],
    )


for _subject in MMLU_SUBJECTS:
    register_variants(
        f"mmlu_{_subject}",
        {
            "ppl": Variant(partial(make_mmlu, _subject), ExamOptions),
            "gen": Variant(partial(make_mmlu_gen, _subject), ExamGenOptions),
        },
        family="mmlu",
        description="MMLU 5-shot, lm-eval default prompt",
    )
REGISTRY.add_group("mmlu", [f"mmlu_{s}" for s in MMLU_SUBJECTS])
for _cat in sorted(set(MMLU_SUBJECTS.values())):
    REGISTRY.add_group(f"mmlu_{_cat}", [f"mmlu_{s}" for s, c in MMLU_SUBJECTS.items() if c == _cat])

__all__ = ["MMLU_SUBJECTS", "make_mmlu", "make_mmlu_gen"]
