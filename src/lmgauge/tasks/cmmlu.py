"""CMMLU: 67 subjects of Chinese-language knowledge, five categories (one subject may also be
"China specific").

Official layout: cmmlu/{dev,test}/<subject>.csv with a header row (,Question,A,B,C,D,Answer). Shots:
the first n of dev; scored on test. The prompt is lm-evaluation-harness' cmmlu: a header naming the
subject in Chinese, then "Question\nA. ..\nB. ..\nC. ..\nD. ..\n答案：".
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lmgauge.data import CsvSource, HubSource, data_roots
from lmgauge.tasks.base import DocSet, Task
from lmgauge.tasks.exam import ExamGenOptions, ExamOptions, exam_prompt, exam_task
from lmgauge.tasks.registry import REGISTRY, Variant, register_variants

# subject -> (Chinese name, subcategories) as CMMLU's own categories.py lists them
CMMLU_SUBJECTS = {
    "agronomy": ("农学", ["other"]),
    "anatomy": ("解剖学", ["biology"]),
    "ancient_chinese": ("古汉语", ["linguistics", "china specific"]),
    "arts": ("艺术学", ["arts"]),
    "astronomy": ("天文学", ["physics"]),
    "business_ethics": ("商业伦理", ["business"]),
    "chinese_civil_service_exam": ("中国公务员考试", ["politics", "china specific"]),
    "chinese_driving_rule": ("中国驾驶规则", ["other", "china specific"]),
    "chinese_food_culture": ("中国饮食文化", ["culture", "china specific"]),
    "chinese_foreign_policy": ("中国外交政策", ["politics", "china specific"]),
    "chinese_history": ("中国历史", ["history", "china specific"]),
    "chinese_literature": ("中国文学", ["literature", "china specific"]),
    "chinese_teacher_qualification": ("中国教师资格", ["education", "china specific"]),
    "clinical_knowledge": ("临床知识", ["other"]),
    "college_actuarial_science": ("大学精算学", ["math"]),
    "college_education": ("大学教育学", ["education"]),
    "college_engineering_hydrology": ("大学工程水文学", ["engineering"]),
    "college_law": ("大学法律", ["law"]),
    "college_mathematics": ("大学数学", ["math"]),
    "college_medical_statistics": ("大学医学统计", ["statistics"]),
    "college_medicine": ("大学医学", ["other"]),
    "computer_science": ("计算机科学", ["computer science"]),
    "computer_security": ("计算机安全", ["other"]),
    "conceptual_physics": ("概念物理学", ["physics"]),
    "construction_project_management": ("建设工程管理", ["other", "china specific"]),
    "economics": ("经济学", ["economics"]),
    "education": ("教育学", ["education"]),
    "electrical_engineering": ("电气工程", ["engineering"]),
    "elementary_chinese": ("小学语文", ["linguistics", "china specific"]),
    "elementary_commonsense": ("小学常识", ["other", "china specific"]),
    "elementary_information_and_technology": ("小学信息技术", ["other"]),
    "elementary_mathematics": ("初等数学", ["math"]),
    "ethnology": ("民族学", ["culture", "china specific"]),
    "food_science": ("食品科学", ["other"]),
    "genetics": ("遗传学", ["biology"]),
    "global_facts": ("全球事实", ["global"]),
    "high_school_biology": ("高中生物", ["biology"]),
    "high_school_chemistry": ("高中化学", ["chemistry"]),
    "high_school_geography": ("高中地理", ["geography"]),
    "high_school_mathematics": ("高中数学", ["math"]),
    "high_school_physics": ("高中物理学", ["physics"]),
    "high_school_politics": ("高中政治", ["politics", "china specific"]),
    "human_sexuality": ("人类性行为", ["other"]),
    "international_law": ("国际法学", ["law"]),
    "journalism": ("新闻学", ["sociology"]),
    "jurisprudence": ("法理学", ["law"]),
    "legal_and_moral_basis": ("法律与道德基础", ["other"]),
    "logical": ("逻辑学", ["philosophy"]),
    "machine_learning": ("机器学习", ["computer science"]),
    "management": ("管理学", ["business"]),
    "marketing": ("市场营销", ["business"]),
    "marxist_theory": ("马克思主义理论", ["philosophy"]),
    "modern_chinese": ("现代汉语", ["linguistics", "china specific"]),
    "nutrition": ("营养学", ["other"]),
    "philosophy": ("哲学", ["philosophy"]),
    "professional_accounting": ("专业会计", ["business"]),
    "professional_law": ("专业法学", ["law"]),
    "professional_medicine": ("专业医学", ["other"]),
    "professional_psychology": ("专业心理学", ["psychology"]),
    "public_relations": ("公共关系", ["politics"]),
    "security_study": ("安全研究", ["politics"]),
    "sociology": ("社会学", ["culture"]),
    "sports_science": ("体育学", ["other"]),
    "traditional_chinese_medicine": ("中医中药", ["other", "china specific"]),
    "virology": ("病毒学", ["biology"]),
    "world_history": ("世界历史", ["history"]),
    "world_religions": ("世界宗教", ["global"]),
}
CATEGORIES = {
    "stem": ["physics", "chemistry", "biology", "computer science", "math", "engineering", "statistics"],
    "humanities": ["history", "philosophy", "law", "arts", "literature", "global"],
    "social_science": [
        "linguistics",
        "business",
        "politics",
        "culture",
        "economics",
        "geography",
        "psychology",
        "education",
        "sociology",
    ],
    "other": ["other"],
}
COLUMNS = ("Question", "A", "B", "C", "D", "Answer")
HINT = (
    "CMMLU is not packaged: download it from https://huggingface.co/datasets/haonan-li/cmmlu (or the "
    "official zip) and put it under <data root>/cmmlu/{dev,test}/<subject>.csv, or give the dataset a "
    "`path` to that cmmlu folder"
)


def category_of(subject: str) -> str:
    """The subject's first subcategory's category (the one CMMLU reports it under besides
    'China specific', which is a group of its own here)."""
    sub = CMMLU_SUBJECTS[subject][1][0]
    return next(cat for cat, subs in CATEGORIES.items() if sub in subs)


def cmmlu_docs(subject: str, split: str, path: str | None = None) -> DocSet:
    def candidates():
        roots = ([Path(path).expanduser()] if path else []) + [root / "cmmlu" for root in data_roots()]
        out = [CsvSource(root / split / f"{subject}.csv", COLUMNS, named=True) for root in roots]
        return out + [HubSource("haonan-li/cmmlu", subject, split)]

    def convert(row: dict) -> dict:
        answer = row["Answer"].strip().upper()
        if answer not in ("A", "B", "C", "D"):
            raise ValueError(f"Answer {row['Answer']!r} is not one of A, B, C, D")
        return {"question": row["Question"], "options": [row[k] for k in "ABCD"], "answer": answer}

    return DocSet(f"cmmlu {subject} {split}", candidates, HINT, convert, required=COLUMNS)


class CmmluOptions(ExamOptions):
    split: str = "test"


class CmmluGenOptions(ExamGenOptions):
    split: str = "test"


def make_cmmlu(subject: str, o: CmmluOptions | CmmluGenOptions) -> Task:
    zh, _ = CMMLU_SUBJECTS[subject]
    return exam_task(
        o,
        name=f"cmmlu_{subject}",
        group="cmmlu",
        docs=cmmlu_docs(subject, o.split, o.path),
        shots=cmmlu_docs(subject, "dev", o.path),
        header=f"以下是关于{zh}的单项选择题，请直接给出正确答案的选项。\n\n",
        prompt=lambda d: exam_prompt(d["question"], d["options"], "答案："),
        options=lambda d: d["options"],
        gold=lambda d: "ABCD".index(d["answer"]),
        subject=subject,
        category=category_of(subject),
    )


for _subject in CMMLU_SUBJECTS:
    register_variants(
        f"cmmlu_{_subject}",
        {
            "ppl": Variant(partial(make_cmmlu, _subject), CmmluOptions),
            "gen": Variant(partial(make_cmmlu, _subject), CmmluGenOptions),
        },
        family="cmmlu",
        description="CMMLU 5-shot, lm-eval prompt",
    )
REGISTRY.add_group("cmmlu", [f"cmmlu_{s}" for s in CMMLU_SUBJECTS])
REGISTRY.add_group(
    "cmmlu_china_specific", [f"cmmlu_{s}" for s, (_, subs) in CMMLU_SUBJECTS.items() if "china specific" in subs]
)
for _cat in CATEGORIES:
    REGISTRY.add_group(f"cmmlu_{_cat}", [f"cmmlu_{s}" for s in CMMLU_SUBJECTS if category_of(s) == _cat])
