"""C-Eval: 52 subjects of Chinese exams in four categories, and the hard subset.

Official layout: ceval/{dev,val,test}/<subject>_{dev,val,test}.csv with a header row
(id,question,A,B,C,D,answer[,explanation]). Shots: the first n of dev; scored on val (test has no
labels). The prompt is lm-evaluation-harness' ceval-valid: a header naming the subject in Chinese,
then "question\nA. ..\nB. ..\nC. ..\nD. ..\n答案：".
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lmgauge.data import CsvSource, HubSource, data_roots
from lmgauge.tasks.base import DocSet, Task
from lmgauge.tasks.exam import ExamGenOptions, ExamOptions, exam_prompt, exam_task
from lmgauge.tasks.registry import REGISTRY, Variant, register_variants

# subject -> (Chinese name, category), in the official subject_mapping.json order
CEVAL_SUBJECTS = {
    "computer_network": ("计算机网络", "stem"),
    "operating_system": ("操作系统", "stem"),
    "computer_architecture": ("计算机组成", "stem"),
    "college_programming": ("大学编程", "stem"),
    "college_physics": ("大学物理", "stem"),
    "college_chemistry": ("大学化学", "stem"),
    "advanced_mathematics": ("高等数学", "stem"),
    "probability_and_statistics": ("概率统计", "stem"),
    "discrete_mathematics": ("离散数学", "stem"),
    "electrical_engineer": ("注册电气工程师", "stem"),
    "metrology_engineer": ("注册计量师", "stem"),
    "high_school_mathematics": ("高中数学", "stem"),
    "high_school_physics": ("高中物理", "stem"),
    "high_school_chemistry": ("高中化学", "stem"),
    "high_school_biology": ("高中生物", "stem"),
    "middle_school_mathematics": ("初中数学", "stem"),
    "middle_school_biology": ("初中生物", "stem"),
    "middle_school_physics": ("初中物理", "stem"),
    "middle_school_chemistry": ("初中化学", "stem"),
    "veterinary_medicine": ("兽医学", "stem"),
    "college_economics": ("大学经济学", "social_science"),
    "business_administration": ("工商管理", "social_science"),
    "marxism": ("马克思主义基本原理", "social_science"),
    "mao_zedong_thought": ("毛泽东思想和中国特色社会主义理论体系概论", "social_science"),
    "education_science": ("教育学", "social_science"),
    "teacher_qualification": ("教师资格", "social_science"),
    "high_school_politics": ("高中政治", "social_science"),
    "high_school_geography": ("高中地理", "social_science"),
    "middle_school_politics": ("初中政治", "social_science"),
    "middle_school_geography": ("初中地理", "social_science"),
    "modern_chinese_history": ("近代史纲要", "humanities"),
    "ideological_and_moral_cultivation": ("思想道德修养与法律基础", "humanities"),
    "logic": ("逻辑学", "humanities"),
    "law": ("法学", "humanities"),
    "chinese_language_and_literature": ("中国语言文学", "humanities"),
    "art_studies": ("艺术学", "humanities"),
    "professional_tour_guide": ("导游资格", "humanities"),
    "legal_professional": ("法律职业资格", "humanities"),
    "high_school_chinese": ("高中语文", "humanities"),
    "high_school_history": ("高中历史", "humanities"),
    "middle_school_history": ("初中历史", "humanities"),
    "civil_servant": ("公务员", "other"),
    "sports_science": ("体育学", "other"),
    "plant_protection": ("植物保护", "other"),
    "basic_medicine": ("基础医学", "other"),
    "clinical_medicine": ("临床医学", "other"),
    "urban_and_rural_planner": ("注册城乡规划师", "other"),
    "accountant": ("注册会计师", "other"),
    "fire_engineer": ("注册消防工程师", "other"),
    "environmental_impact_assessment_engineer": ("环境影响评价工程师", "other"),
    "tax_accountant": ("税务师", "other"),
    "physician": ("医师资格", "other"),
}
CEVAL_HARD = [
    "advanced_mathematics",
    "discrete_mathematics",
    "probability_and_statistics",
    "college_chemistry",
    "college_physics",
    "high_school_mathematics",
    "high_school_chemistry",
    "high_school_physics",
]
COLUMNS = ("question", "A", "B", "C", "D", "answer")
HINT = (
    "C-Eval is not packaged: download it from https://huggingface.co/datasets/ceval/ceval-exam (or the "
    "official zip) and put it under <data root>/ceval/{dev,val,test}/<subject>_<split>.csv, or give the "
    "dataset a `path` to that ceval folder"
)


def ceval_docs(subject: str, split: str, path: str | None = None) -> DocSet:
    def candidates():
        rel = f"{split}/{subject}_{split}.csv"
        roots = ([Path(path).expanduser()] if path else []) + [root / "ceval" for root in data_roots()]
        out = [CsvSource(root / rel, COLUMNS, named=True) for root in roots]
        return out + [HubSource("ceval/ceval-exam", subject, split)]

    def convert(row: dict) -> dict:
        answer = row["answer"].strip().upper()
        if answer not in ("A", "B", "C", "D"):
            raise ValueError(f"answer {row['answer']!r} is not one of A, B, C, D")
        return {"question": row["question"], "options": [row[k] for k in "ABCD"], "answer": answer}

    return DocSet(f"ceval {subject} {split}", candidates, HINT, convert, required=COLUMNS)


class CevalOptions(ExamOptions):
    split: str = "val"  # test has no labels


class CevalGenOptions(ExamGenOptions):
    split: str = "val"


def make_ceval(subject: str, o: CevalOptions | CevalGenOptions) -> Task:
    zh, category = CEVAL_SUBJECTS[subject]
    return exam_task(
        o,
        name=f"ceval_{subject}",
        group="ceval",
        docs=ceval_docs(subject, o.split, o.path),
        shots=ceval_docs(subject, "dev", o.path),
        header=f"以下是中国关于{zh}的单项选择题，请选出其中的正确答案。\n\n",
        prompt=lambda d: exam_prompt(d["question"], d["options"], "答案："),
        options=lambda d: d["options"],
        gold=lambda d: "ABCD".index(d["answer"]),
        subject=subject,
        category=category,
    )


for _subject in CEVAL_SUBJECTS:
    register_variants(
        f"ceval_{_subject}",
        {
            "ppl": Variant(partial(make_ceval, _subject), CevalOptions),
            "gen": Variant(partial(make_ceval, _subject), CevalGenOptions),
        },
        family="ceval",
        description="C-Eval 5-shot (val), lm-eval prompt",
    )
REGISTRY.add_group("ceval", [f"ceval_{s}" for s in CEVAL_SUBJECTS])
REGISTRY.add_group("ceval_hard", [f"ceval_{s}" for s in CEVAL_HARD])
for _cat in ("stem", "social_science", "humanities", "other"):
    REGISTRY.add_group(f"ceval_{_cat}", [f"ceval_{s}" for s, (_, c) in CEVAL_SUBJECTS.items() if c == _cat])
