"""Generation benchmarks: exact prompts, scoring from outputs, C-Eval / CMMLU in their official
layouts (fixture files written here), HumanEval / MBPP scored in the sandbox, pass@k."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import lmgauge.tasks  # noqa: F401
from lmgauge.data import DataError, DataNotFound
from lmgauge.data.sources import set_data_dir
from lmgauge.requests import GenerateResult
from lmgauge.tasks.code import pass_at_k
from lmgauge.tasks.registry import build, expand


def _results(*texts: str) -> list[GenerateResult]:
    return [GenerateResult(t, finish_reason="stop") for t in texts]


# --- GSM8K ---------------------------------------------------------------------------------------


def test_gsm8k_cot_prompt_is_lm_evals():
    task = build("gsm8k_cot")
    docs, _ = task.load()
    prompt = task.requests(docs[0], 0)[0].prompt
    blocks = prompt.split("\n\n")
    assert len(blocks) == 9  # eight exemplars, then the question
    assert blocks[0].startswith("Q: There are 15 trees in the grove.") and blocks[0].endswith("The answer is 6.")
    assert "\nA: There are 15 trees originally." in blocks[0]
    assert blocks[-1] == f"Q: {docs[0]['question']}\nA:"
    req = task.requests(docs[0], 0)[0]
    assert req.stop == ("Q:", "</s>", "<|im_end|>") and req.max_new_tokens == 256 and req.temperature == 0


@pytest.mark.parametrize(
    "output, strict, flexible",
    [
        (" She sells 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. The answer is 18.\n\n", 1.0, 1.0),
        (" 9 * 2 = $18 a day. So the answer is 18 dollars", 0.0, 1.0),  # flexible: the last number-like run
        (" The answer is $18.", 0.0, 1.0),  # strict needs a bare number
        (" The answer is 20.", 0.0, 0.0),
        (" 18 eggs, then 9 * 2 = 17", 0.0, 0.0),  # flexible takes the last one, not the right one
    ],
)
def test_gsm8k_cot_scoring(output, strict, flexible):
    task = build("gsm8k_cot")
    doc = {"question": "q", "answer": "Janet sells 9 eggs.\n#### 18"}
    rec = task.score(doc, 0, _results(output))
    assert rec["metrics"]["exact_match,strict-match"] == strict
    assert rec["metrics"]["exact_match,flexible-extract"] == flexible
    assert rec["output"] == output and set(rec["extracted"]) == {"strict-match", "flexible-extract"}


def test_gsm8k_train_split_variant_from_a_file(tmp_path):
    """The 5-shot gsm8k variant takes its shots from the train split: here, a file written in the
    openai/grade-school-math layout (question, answer with '#### N')."""
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}.\n#### {i + 1}"}) + "\n"
            for i in range(6)
        )
    )
    task = build("gsm8k", train_path=str(train))
    docs, _ = task.load()
    prompt = task.requests(docs[0], 0)[0].prompt
    assert prompt.startswith("Question: What is 0 + 1?\nAnswer: 0 + 1 = 1.\n#### 1\n\nQuestion: What is 1 + 1?")
    assert prompt.count("Question:") == 6 and prompt.endswith(f"Question: {docs[0]['question']}\nAnswer:")
    rec = task.score({"question": "q", "answer": "x\n#### 1,234"}, 0, _results(" so 1234.\n#### 1234"))
    assert rec["metrics"]["exact_match,strict-match"] == 1.0


def test_gsm8k_train_split_missing_says_where_it_looked(tmp_path):
    task = build("gsm8k", train_path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataNotFound) as e:
        task.load()
    assert "nope.jsonl" in str(e.value) and "train_path" in str(e.value)


# --- C-Eval and CMMLU in their official layouts ----------------------------------------------------

CEVAL_ROWS = [
    ["1", "下列哪个是质数？", "4", "6", "7", "9", "C", "7只能被1和它本身整除"],
    ["2", "1+1等于几？", "1", "2", "3", "4", "B", ""],
    ["3", "水的化学式是？", "H2O", "CO2", "O2", "NaCl", "A", ""],
]


def _write_ceval(root: Path, subject: str) -> None:
    for split in ("dev", "val", "test"):
        d = root / "ceval" / split
        d.mkdir(parents=True, exist_ok=True)
        header = ["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if split == "dev" else [])
        with (d / f"{subject}_{split}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for row in CEVAL_ROWS:
                w.writerow(row[: len(header)] if split != "test" else row[:6] + [""])


def _write_cmmlu(root: Path, subject: str) -> None:
    for split in ("dev", "test"):
        d = root / "cmmlu" / split
        d.mkdir(parents=True, exist_ok=True)
        with (d / f"{subject}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
            for i, row in enumerate(CEVAL_ROWS):
                w.writerow([i, row[1], *row[2:6], row[6]])


@pytest.fixture
def exam_root(tmp_path):
    for s in ("computer_network", "law"):
        _write_ceval(tmp_path, s)
    for s in ("agronomy", "chinese_history"):
        _write_cmmlu(tmp_path, s)
    set_data_dir(str(tmp_path))
    yield tmp_path
    set_data_dir(None)


def test_ceval_prompt_and_both_variants(exam_root):
    task = build("ceval_computer_network", "ppl", num_fewshot=2)
    docs, where = task.load()
    assert where.endswith("ceval/val/computer_network_val.csv (csv)") and len(docs) == 3
    reqs = task.requests(docs[2], 2)
    assert reqs[0].context == (
        "以下是中国关于计算机网络的单项选择题，请选出其中的正确答案。\n\n"
        "下列哪个是质数？\nA. 4\nB. 6\nC. 7\nD. 9\n答案： C\n\n"
        "1+1等于几？\nA. 1\nB. 2\nC. 3\nD. 4\n答案： B\n\n"
        "水的化学式是？\nA. H2O\nB. CO2\nC. O2\nD. NaCl\n答案："
    )
    assert [r.continuation for r in reqs] == [" A", " B", " C", " D"]
    gen = build("ceval_computer_network", "gen", num_fewshot=2)
    gen.load()
    assert gen.name == "ceval_computer_network_gen" and gen.group == "ceval_gen" and gen.category == "stem"
    assert gen.requests(docs[2], 2)[0].prompt == reqs[0].context
    for out, ok in ((" A", 1.0), ("答案：A", 1.0), ("Ｃ．O2", 0.0), (" H2O", 1.0), ("不知道", 0.0)):
        assert gen.score(docs[2], 2, _results(out))["metrics"]["acc"] == ok, out
    assert build("ceval_law").category == "humanities"


def test_ceval_groups_and_hard_subset():
    assert len(expand("ceval")) == 52
    assert len(expand("ceval_hard")) == 8
    assert {len(expand(f"ceval_{c}")) for c in ("stem", "social_science", "humanities", "other")} == {20, 10, 11}


def test_ceval_bad_answer_names_file_and_line(exam_root):
    path = exam_root / "ceval" / "val" / "law_val.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",B\n", ",E\n"), encoding="utf-8")
    with pytest.raises(DataError) as e:
        build("ceval_law").load()
    assert "law_val.csv" in str(e.value) and "line 3" in str(e.value) and "'E'" in str(e.value)


def test_ceval_header_without_answer_column(exam_root):
    path = exam_root / "ceval" / "val" / "law_val.csv"
    path.write_text("id,question,A,B,C,D\n1,q,a,b,c,d\n", encoding="utf-8")
    with pytest.raises(DataError, match="header has no column answer"):
        build("ceval_law").load()


def test_cmmlu_layout_prompt_and_categories(exam_root):
    task = build("cmmlu_chinese_history", "ppl", num_fewshot=1)
    docs, where = task.load()
    assert where.endswith("cmmlu/test/chinese_history.csv (csv)")
    ctx = task.requests(docs[1], 1)[0].context
    assert ctx.startswith("以下是关于中国历史的单项选择题，请直接给出正确答案的选项。\n\n下列哪个是质数？")
    assert ctx.endswith("1+1等于几？\nA. 1\nB. 2\nC. 3\nD. 4\n答案：")
    assert task.category == "humanities" and build("cmmlu_agronomy").category == "other"
    assert len(expand("cmmlu")) == 67 and "cmmlu_chinese_history" in [t for t, _ in expand("cmmlu_china_specific")]
    gen = build("cmmlu_agronomy", "gen", num_fewshot=1)
    gen.load()
    assert gen.score(docs[1], 1, _results("答案是B"))["metrics"]["acc"] == 1.0


def test_mmlu_gen_variant_shares_the_ppl_prompt():
    ppl, gen = build("mmlu_astronomy", "ppl"), build("mmlu_astronomy", "gen")
    docs, _ = ppl.load()
    gen.load()
    assert gen.requests(docs[0], 0)[0].prompt == ppl.requests(docs[0], 0)[0].context
    assert gen.requests(docs[0], 0)[0].stop == ("\n", "</s>")
    gold = "ABCD"[docs[0]["answer"]]
    assert gen.score(docs[0], 0, _results(f" {gold}"))["correct"] is True


def test_triviaqa_any_alias_case_and_punctuation():
    task = build("triviaqa")
    docs, _ = task.load()
    req = task.requests(docs[0], 0)[0]
    assert req.prompt == f"Question: {docs[0]['question']}?\nAnswer:" and req.stop == ("\n", ".", ",")
    alias = docs[0]["aliases"][-1]
    assert task.score(docs[0], 0, _results(f" {alias.upper()}"))["metrics"]["exact_match,remove_whitespace"] == 1.0
    assert task.score(docs[0], 0, _results(" certainly not this"))["metrics"]["exact_match,remove_whitespace"] == 0.0


# --- code ----------------------------------------------------------------------------------------


def test_pass_at_k_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)


def test_humaneval_canonical_passes_and_wrong_fails():
    task = build("humaneval")
    docs, _ = task.load()
    assert len(docs) == 164
    for i in (0, 1, 32):
        good = task.score(docs[i], i, _results(docs[i]["canonical_solution"]))
        bad = task.score(docs[i], i, _results("    return None\n"))
        assert good["metrics"]["pass@1"] == 1.0, good["executions"]
        assert bad["metrics"]["pass@1"] == 0.0 and bad["pred"] == "failed"
    assert task.requests(docs[0], 0)[0].stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def test_humaneval_pass_at_k_from_samples():
    task = build("humaneval", n_samples=4, temperature=0.8)
    docs, _ = task.load()
    reqs = task.requests(docs[0], 0)
    assert len(reqs) == 4 and len({r.seed for r in reqs}) == 4 and all(r.temperature == 0.8 for r in reqs)
    rec = task.score(
        docs[0],
        0,
        _results(
            docs[0]["canonical_solution"], "    return None\n", "    return None\n", docs[0]["canonical_solution"]
        ),
    )
    assert rec["metrics"]["pass@1"] == pytest.approx(0.5) and len(rec["outputs"]) == 4


def test_humaneval_strip_prompt_option():
    task = build("humaneval", strip_prompt=True)
    docs, _ = task.load()
    prompt = task.requests(docs[0], 0)[0].prompt
    assert prompt == docs[0]["prompt"].rstrip()
    # the program is built from the prompt the model saw, so the model's own indentation counts
    assert task.score(docs[0], 0, _results("\n" + docs[0]["canonical_solution"]))["metrics"]["pass@1"] == 1.0


def test_mbpp_prompt_and_execution():
    task = build("mbpp")
    docs, _ = task.load()
    assert len(docs) == 500 and docs[0]["task_id"] == 11
    prompt = task.requests(docs[0], 0)[0].prompt
    assert prompt.count("[BEGIN]\n") == 4 and prompt.count("\n[DONE]\n\n") == 3
    assert prompt.endswith('assert remove_Occ("PHP","P") == "H"\n[BEGIN]\n')
    good = task.score(docs[0], 0, _results(docs[0]["code"]))
    assert good["metrics"]["pass@1"] == 1.0, good["executions"]
    assert task.score(docs[0], 0, _results("def remove_Occ(s, c):\n    return s\n"))["metrics"]["pass@1"] == 0.0
