"""OpenCompass' summary (summary/summary_<time>.{txt,csv,md}) of runs of OpenCompass configs: the
stock MMLU and C-Eval dataset configs and summary groups of the installed opencompass wheel (data
only, never imported), results written as lmgauge writes them, the numbers computed by hand."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lmgauge.config import ConfigError, read_config_file
from lmgauge.opencompass.imports import installed_configs_dir
from lmgauge.opencompass.summary import DefaultSummarizer, OCDataset, render, write_run_summary
from lmgauge.runs.rundir import RunDir

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

HEADER = "from mmengine.config import read_base\nfrom opencompass.models import HuggingFaceBaseModel\n"
MODELS = (
    "models = [dict(type=HuggingFaceBaseModel, abbr='m1', path='/models/a', max_out_len=8),\n"
    "          dict(type=HuggingFaceBaseModel, abbr='m2', path='/models/b', max_out_len=8)]\n"
)
# the eight C-Eval subjects of the stock `ceval-hard` group (all of them in `ceval-stem`, 20 subjects)
HARD = [
    "advanced_mathematics",
    "discrete_mathematics",
    "probability_and_statistics",
    "college_chemistry",
    "college_physics",
    "high_school_mathematics",
    "high_school_chemistry",
    "high_school_physics",
]


def write_config(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "eval_summary.py"
    p.write_text(HEADER + textwrap.dedent(body) + MODELS, encoding="utf-8")
    return p


def make_run(tmp_path: Path, cfg: dict, correct: dict[str, dict[str, tuple[int, int]]]) -> RunDir:
    """A run directory as lmgauge leaves it: run.json's config and results/<model>/<dataset>.json
    with each accuracy as the mean of per-question 0/1 scores over n questions."""
    rd = RunDir.create(tmp_path / "work", "r")
    rd.write_manifest({"format": 2, "run_id": "r", "started": "2026-01-01T00:00:00", "config": cfg})
    for model, per_dataset in correct.items():
        for ds, (k, n) in per_dataset.items():
            value = sum([1.0] * k + [0.0] * (n - k)) / n
            rd.write_results(model, ds, {"task": ds, "n": n, "metrics": {"accuracy": {"value": value, "n": n}}})
    return rd


STOCK = """
with read_base():
    from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets
    from opencompass.configs.datasets.ceval.ceval_gen_5f30c7 import ceval_datasets
    from opencompass.configs.summarizers.groups.mmlu import mmlu_summary_groups
    from opencompass.configs.summarizers.groups.ceval import ceval_summary_groups
HARD = {hard!r}
datasets = mmlu_datasets + [d for d in ceval_datasets if d['name'] in HARD]
summarizer = dict(
    dataset_abbrs=['mmlu', 'mmlu-weighted', 'mmlu-stem', ['mmlu-humanities', 'naive_average'], 'ceval-hard',
                   'ceval-stem', 'ceval-humanities', '--------- Exam ---------', 'lukaemon_mmlu_astronomy',
                   'ceval-college_physics', ['ceval-college_physics', 'score']],
    summary_groups=sum([v for k, v in locals().items() if k.endswith('_summary_groups')], []),
)
"""


@pytest.fixture()
def stock_run(tmp_path):
    cfg = read_config_file(write_config(tmp_path, STOCK.format(hard=HARD)))
    cfg["summarizer"] = cfg.pop("opencompass_run")["summarizer"]  # what cli_hooks.apply does
    mmlu = [d["name"] for d in cfg["datasets"] if d["name"].startswith("lukaemon_mmlu_")]
    assert len(mmlu) == 57
    # every MMLU subject 2 of 4 right (50.00) but astronomy 4 of 4 (100.00); C-Eval hard: 0..4 of 4
    m1 = {name: (4 if name == "lukaemon_mmlu_astronomy" else 2, 4) for name in mmlu}
    m1.update({f"ceval-{s}": (i % 5, 4) for i, s in enumerate(HARD)})
    # m2: astronomy did not finish (no results file); C-Eval as m1 less college_physics
    m2 = {k: v for k, v in m1.items() if k not in ("lukaemon_mmlu_astronomy", "ceval-college_physics")}
    return make_run(tmp_path, cfg, {"m1": m1, "m2": m2})


def test_stock_groups_weighted_naive_and_missing(stock_run):
    paths = write_run_summary(stock_run, "20260101_120000")
    assert [p.relative_to(stock_run.root).as_posix() for p in paths] == [
        f"summary/summary_20260101_120000.{e}" for e in ("txt", "csv", "md")
    ]
    rows = [line.split(",") for line in paths[1].read_text().splitlines()]
    assert rows[0] == ["dataset", "version", "metric", "mode", "m1", "m2"]
    got = {(r[0], r[2]): r for r in rows[1:]}
    # mmlu: the naive average of the 57 subjects: m1 (56 * 50 + 100) / 57 = 50.8772; m2 lacks astronomy: '-'
    assert [r[0] for r in rows[1:]] == [
        "mmlu",
        "mmlu-weighted",
        "mmlu-stem",
        "mmlu-humanities",
        "ceval-hard",
        "ceval-stem",
        "ceval-humanities",
        "--------- Exam ---------",
        "lukaemon_mmlu_astronomy",
        "ceval-college_physics",
        "ceval-college_physics",
    ]
    assert got[("mmlu", "accuracy")] == ["mmlu", "-", "accuracy", "ppl", "50.88", "-"]
    # the stock weights are the subjects' test sizes (14042 in all, astronomy 152):
    # (50 * (14042 - 152) + 100 * 152) / 14042 = 50.5412
    assert got[("mmlu-weighted", "accuracy")] == ["mmlu-weighted", "-", "accuracy", "ppl", "50.54", "-"]
    assert got[("mmlu-stem", "accuracy")][4:] == ["52.63", "-"]  # 19 subjects, astronomy among them: (18*50+100)/19
    assert got[("mmlu-humanities", "naive_average")] == [
        "mmlu-humanities",
        "-",
        "naive_average",
        "ppl",
        "50.00",
        "50.00",
    ]
    # ceval-hard, m1: 0, 1, 2, 3, 4, 0, 1, 2 of 4 -> (0+25+50+75+100+0+25+50)/8 = 40.625 -> '40.62' (round half even
    # of the binary 40.625: Python's format); m2 lacks college_physics -> '-'
    assert got[("ceval-hard", "accuracy")] == ["ceval-hard", "-", "accuracy", "gen", "40.62", "-"]
    # ceval-stem: 12 of its 20 subjects were not run -> '-' for both; ceval-humanities: none run -> a row of '-'
    assert got[("ceval-stem", "-")] == ["ceval-stem", "-", "-", "-", "-", "-"]
    assert got[("ceval-humanities", "-")] == ["ceval-humanities", "-", "-", "-", "-", "-"]
    assert got[("--------- Exam ---------", "-")][1:] == ["-"] * 5
    # a dataset's version is its own entry's prompt hash; the config name's suffix (ac766d, 5f30c7) is the
    # hash of the comma-joined hashes of all its entries, asserted in test_opencompass_config.py
    assert got[("lukaemon_mmlu_astronomy", "accuracy")] == [
        "lukaemon_mmlu_astronomy",
        "69352a",
        "accuracy",
        "ppl",
        "100.00",
        "-",
    ]
    # a metric the dataset does not have is a row of '-'
    assert rows[10][1:] == ["963fa8", "accuracy", "gen", "100.00", "-"]
    assert rows[11] == ["ceval-college_physics", "-", "-", "-", "-", "-"]

    txt = paths[0].read_text()
    raw = txt.split("raw format\n" + "^" * 128 + "\n")[1].splitlines()
    m1_lines = raw[1 : raw.index("-------------------------------", 1)]
    assert m1_lines[0] == "Model: m1"
    assert "lukaemon_mmlu_astronomy: {'accuracy': 100.0}" in m1_lines
    assert "ceval-hard: {'accuracy': 40.625, 'naive_average': 40.625}" in m1_lines
    stem = next(line for line in m1_lines if line.startswith("ceval-stem: "))
    assert stem.startswith("ceval-stem: {'error': \"missing metrics: ['ceval-computer_network', ")
    assert not any(line.startswith("ceval-humanities:") for line in raw)  # no subset ran: the group is omitted
    m2_lines = raw[raw.index("Model: m2") :]
    assert "lukaemon_mmlu_astronomy: {}" in m2_lines  # in m1's results, not m2's
    assert "ceval-hard: {'error': \"missing metrics: ['ceval-college_physics']\"}" in m2_lines
    md = paths[2].read_text()
    assert md.splitlines()[:2] == [
        "| dataset | version | metric | mode | m1 | m2 |",
        "|----- | ----- | ----- | ----- | ----- | -----|",
    ]
    assert txt.startswith("20260101_120000\ntabulate format\n" + "^" * 128 + "\n")
    assert "\nmarkdown format\n" + "^" * 128 + "\n" + md + "\n" + "$" * 128 + "\n" in txt


def test_default_rows_and_tabulate_layout():
    """No dataset_abbrs: every dataset (config order), then each group metric; tabulate's layout
    (headers padded by two, numbers right-aligned, a text column left-aligned) as OpenCompass prints it."""
    datasets = [OCDataset("a", "111aaa", "x.PPLInferencer"), OCDataset("b", "222bbb", "x.GenInferencer")]
    datasets.append(OCDataset("c", "333ccc", "x.GenInferencer"))
    results = {"m": {"a": {"accuracy": 62.5}, "b": {"accuracy": 12.5}}}
    groups = [
        {"name": "g", "subsets": ["a", "b"], "weights": {"a": 3, "b": 1}},
        {"name": "pair", "subsets": [["a", "accuracy"], ["b", "accuracy"]]},
    ]
    table, raw = DefaultSummarizer(["m"], datasets, results, None, groups).summarize()
    assert table == [
        ["dataset", "version", "metric", "mode", "m"],
        ["a", "111aaa", "accuracy", "ppl", "62.50"],
        ["b", "222bbb", "accuracy", "gen", "12.50"],
        ["c", "-", "-", "-", "-"],
        ["g", "-", "accuracy", "mixed", "50.00"],  # (62.5 * 3 + 12.5 * 1) / 4
        ["g", "-", "weighted_average", "mixed", "50.00"],
        ["pair", "-", "naive_average", "mixed", "37.50"],
    ]
    assert raw.splitlines()[-2:] == [
        "g: {'accuracy': 50.0, 'weighted_average': 50.0}",
        "pair: {'naive_average': 37.5}",
    ]
    text = render(table, raw, "t")["txt"].split("\n")
    # tabulate: each column as wide as its header + 2; the '-' of `c` makes the model column text (left-aligned)
    assert text[3:12] == [
        "dataset    version    metric            mode    m",
        "---------  ---------  ----------------  ------  -----",
        "a          111aaa     accuracy          ppl     62.50",
        "b          222bbb     accuracy          gen     12.50",
        "c          -          -                 -       -",
        "g          -          accuracy          mixed   50.00",
        "g          -          weighted_average  mixed   50.00",
        "pair       -          naive_average     mixed   37.50",
        "$" * 128,
    ]
    numeric = render([table[0], table[1]], raw, "t")["txt"].split("\n")[3:6]
    assert numeric == [  # all numbers: right-aligned
        "dataset    version    metric    mode        m",
        "---------  ---------  --------  ------  -----",
        "a          111aaa     accuracy  ppl     62.50",
    ]


@pytest.mark.parametrize(
    "summarizer,message",
    [
        (
            "dict(summary_groups=[dict(name='x', subsets=['a', ['b', 'accuracy']])])",
            "summarizer.summary_groups[0].subsets: names mixed with [name, metric] pairs",
        ),
        (
            "dict(summary_groups=[dict(name='x', subsets=['a', 'b'], weights=dict(a=1, c=2))])",
            "summarizer.summary_groups[0].weights: 'c' is not one of the group's subsets",
        ),
        ("dict(summary_groups=[dict(name='x')])", "summarizer.summary_groups[0].subsets: missing"),
        ("dict(type=SubjectiveSummarizer)", "summarizer.type: SubjectiveSummarizer is not supported"),
        ("dict(dataset_abbr=['a'])", "summarizer: unknown key(s) ['dataset_abbr']"),
    ],
)
def test_summarizer_problems_fail_when_read(tmp_path, summarizer, message):
    body = (
        "from opencompass.summarizers import SubjectiveSummarizer\n"
        "with read_base():\n    from opencompass.configs.datasets.gsm8k.gsm8k_gen_1d7fe4 import gsm8k_datasets\n"
        f"datasets = gsm8k_datasets\nsummarizer = {summarizer}\n"
    )
    with pytest.raises(ConfigError) as e:
        read_config_file(write_config(tmp_path, body))
    assert message in str(e.value) and "eval_summary.py" in str(e.value)


def test_run_writes_both_summaries(tmp_path, tiny_llama_dir, monkeypatch):
    """`lmgauge run CONFIG.py` on a tiny model: lmgauge's summary.* and OpenCompass'
    summary/summary_<time>.* with the config's group; `lmgauge summary` writes it again."""
    from lmgauge.cli import main

    monkeypatch.chdir(tmp_path)
    rows = [{"text": f"sentence {i}", "label": "yes" if i % 2 else "no"} for i in range(4)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    entry = (
        "dict(abbr='{}', type=CustomDataset, path='mine.jsonl', reader_cfg=dict(input_columns=['text'], "
        "output_column='label'), infer_cfg=dict(prompt_template=dict(type=PromptTemplate, "
        "template={{l: '{{text}} -> ' + l for l in ('no', 'yes')}}), retriever=dict(type=ZeroRetriever), "
        "inferencer=dict(type=PPLInferencer)), eval_cfg=dict(evaluator=dict(type=AccEvaluator)))"
    )
    (tmp_path / "eval_mine.py").write_text(
        "from opencompass.models import HuggingFaceBaseModel\n"
        "from opencompass.datasets import CustomDataset\n"
        "from opencompass.openicl.icl_prompt_template import PromptTemplate\n"
        "from opencompass.openicl.icl_retriever import ZeroRetriever\n"
        "from opencompass.openicl.icl_inferencer import PPLInferencer\n"
        "from opencompass.openicl.icl_evaluator import AccEvaluator\n"
        f"datasets = [{entry.format('one')}, {entry.format('two')}]\n"
        f"models = [dict(type=HuggingFaceBaseModel, abbr='tiny', path={str(tiny_llama_dir)!r}, batch_size=4)]\n"
        "summarizer = dict(summary_groups=[dict(name='both', subsets=['one', 'two'])])\n"
        "work_dir = 'outputs'\n",
        encoding="utf-8",
    )
    assert main(["run", "eval_mine.py", "--run-id", "r"]) == 0
    run = tmp_path / "outputs" / "r"
    assert (run / "summary.txt").is_file() and (run / "summary.csv").is_file()  # lmgauge's stays
    (csv_file,) = (run / "summary").glob("summary_*.csv")
    rows = [line.split(",") for line in csv_file.read_text().splitlines()]
    acc = json.loads((run / "results" / "tiny" / "one.json").read_text())["metrics"]["accuracy"]["value"]
    assert rows[0] == ["dataset", "version", "metric", "mode", "tiny"]
    assert rows[1][:4] == ["one", rows[2][1], "accuracy", "ppl"] and rows[1][4] == f"{acc * 100:.2f}"
    assert rows[3:] == [["both", "-", "accuracy", "ppl", rows[1][4]], ["both", "-", "naive_average", "ppl", rows[1][4]]]
    assert json.loads((run / "run.json").read_text())["config"]["summarizer"]["summary_groups"][0]["name"] == "both"
    for f in (run / "summary").iterdir():
        f.unlink()
    assert main(["summary", str(run)]) == 0
    assert len(list((run / "summary").glob("summary_*.txt"))) == 1


def test_entry_without_abbr_named_as_opencompass_names_it(tmp_path):
    """dataset_abbr_from_cfg: the path with '/' as '_', plus '_' + name; a summary group finds it."""
    body = """
    from opencompass.datasets import CustomDataset
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.openicl.icl_retriever import ZeroRetriever
    from opencompass.openicl.icl_inferencer import GenInferencer
    from opencompass.openicl.icl_evaluator import EMEvaluator
    entry = dict(type=CustomDataset, path='data/mine/q.jsonl', reader_cfg=dict(input_columns=['q'], output_column='a'),
        infer_cfg=dict(prompt_template=dict(type=PromptTemplate, template='Q: {q}\\nA:'), retriever=dict(type=ZeroRetriever),
                       inferencer=dict(type=GenInferencer)), eval_cfg=dict(evaluator=dict(type=EMEvaluator)))
    datasets = [entry, dict(entry, name='hard')]
    summarizer = dict(summary_groups=[dict(name='mine', subsets=['data_mine_q.jsonl', 'data_mine_q.jsonl_hard'])])
    """
    cfg = read_config_file(write_config(tmp_path, body))
    assert [d["name"] for d in cfg["datasets"]] == ["data_mine_q.jsonl", "data_mine_q.jsonl_hard"]
    cfg["summarizer"] = cfg.pop("opencompass_run")["summarizer"]
    rd = make_run(tmp_path, cfg, {"m1": {}, "m2": {}})
    for name, k in (("data_mine_q.jsonl", 1), ("data_mine_q.jsonl_hard", 2)):  # EMEvaluator: `score`
        rd.write_results("m1", name, {"task": name, "n": 4, "metrics": {"score": {"value": k / 4, "n": 4}}})
    rows = [line.split(",") for line in write_run_summary(rd, "t")[1].read_text().splitlines()]
    assert rows[1:] == [
        ["data_mine_q.jsonl", rows[1][1], "score", "gen", "25.00", "-"],
        ["data_mine_q.jsonl_hard", rows[1][1], "score", "gen", "50.00", "-"],
        ["mine", "-", "score", "gen", "37.50", "-"],
        ["mine", "-", "naive_average", "gen", "37.50", "-"],
    ]


def test_stock_summarizer_file_with_wide_characters(tmp_path):
    """`from opencompass.configs.summarizers.medium import summarizer` (its groups, its
    dataset_abbrs with '--------- 考试 Exam ---------' separators): read as it is; in the tabulate
    section a CJK character takes two columns (wcwidth), so every line has the header's width."""
    from wcwidth import wcswidth

    body = """
    with read_base():
        from opencompass.configs.datasets.ceval.ceval_gen_5f30c7 import ceval_datasets
        from opencompass.configs.summarizers.medium import summarizer
    datasets = ceval_datasets
    """
    cfg = read_config_file(write_config(tmp_path, body))
    cfg["summarizer"] = cfg.pop("opencompass_run")["summarizer"]
    assert cfg["summarizer"]["dataset_abbrs"][:2] == ["--------- 考试 Exam ---------", "ceval"]
    names = [d["name"] for d in cfg["datasets"]]
    rd = make_run(tmp_path, cfg, {"m1": {n: (3, 4) for n in names}, "m2": {n: (1, 4) for n in names}})
    txt = write_run_summary(rd, "t")[0].read_text()
    table = txt.split("^" * 128 + "\n")[1].split("\n" + "$" * 128)[0].splitlines()
    assert table[2].split() == [
        "--------- 考试 Exam ---------"[:9],
        "考试",
        "Exam",
        "---------",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]
    assert table[3].split() == ["ceval", "-", "accuracy", "gen", "75.00", "25.00"]  # all 52 subjects: a group
    first = len(table[1].split("  ")[0])  # the dashes under the first header: the first column's width

    def second_column_at(line: str) -> int:
        cell = line.split("  ")[0]
        rest = line[len(cell) :]
        return wcswidth(cell) + len(rest) - len(rest.lstrip(" "))

    assert {second_column_at(line) for line in table} == {first + 2}
    assert first == wcswidth("--------- 理解 Understanding ---------")  # the widest row, its CJK as two columns


def test_summarizer_abbr_names_the_column(tmp_path):
    """model_abbr_from_cfg_used_in_summarizer: a model's summarizer_abbr is its column (else its abbr);
    two models with one summarizer_abbr share the column, the later one's results winning."""
    cfg = read_config_file(
        _write_models(
            tmp_path,
            "dict(type=HuggingFaceBaseModel, abbr='m1', summarizer_abbr='Model One', path='/models/a'),"
            "dict(type=HuggingFaceBaseModel, abbr='m2', path='/models/b'),"
            "dict(type=HuggingFaceBaseModel, abbr='m3', summarizer_abbr='Model One', path='/models/c')",
        )
    )
    assert [m.get("summarizer_abbr") for m in cfg["models"]] == ["Model One", None, "Model One"]
    cfg["summarizer"] = cfg.pop("opencompass_run")["summarizer"]
    a, b = (d["name"] for d in cfg["datasets"])
    run = make_run(tmp_path, cfg, {"m1": {a: (1, 4), b: (2, 4)}, "m2": {a: (3, 4)}, "m3": {b: (4, 4)}})
    (csv_path,) = (p for p in write_run_summary(run, "20260101_120000") if p.suffix == ".csv")
    rows = [line.split(",") for line in csv_path.read_text().splitlines()]
    assert rows[0] == ["dataset", "version", "metric", "mode", "Model One", "m2"]
    assert [r[4:] for r in rows[1:]] == [["25.00", "75.00"], ["100.00", "-"]]


def _write_models(tmp_path: Path, models: str) -> Path:
    p = tmp_path / "eval_abbr.py"
    p.write_text(
        HEADER + "with read_base():\n    from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets\n"
        f"datasets = mmlu_datasets[:2]\nmodels = [{models}]\n",
        encoding="utf-8",
    )
    return p


def test_mbpp_counts_and_score_as_opencompass_reports_them(tmp_path):
    """MBPPEvaluator's result: pass / timeout / failed / wrong_answer counts and score = pass / n * 100;
    the summary's row is `score` (METRIC_WHITELIST), the raw section the dict in its order."""
    p = tmp_path / "eval_mbpp.py"
    p.write_text(
        HEADER + "with read_base():\n    from opencompass.configs.datasets.mbpp.mbpp_gen import mbpp_datasets\n"
        "datasets = mbpp_datasets\n" + MODELS,
        encoding="utf-8",
    )
    cfg = read_config_file(p)
    cfg["summarizer"] = cfg.pop("opencompass_run")["summarizer"]
    rd = RunDir.create(tmp_path / "work", "r")
    rd.write_manifest({"format": 2, "run_id": "r", "started": "2026-01-01T00:00:00", "config": cfg})
    outcomes = ["pass", "pass", "wrong_answer", "failed", "timeout", "failed", "pass"]
    n = len(outcomes)
    metrics = {k: {"value": outcomes.count(k) / n, "n": n} for k in ("pass", "timeout", "failed", "wrong_answer")}
    metrics["score"] = metrics["pass"]
    rd.write_results("m1", "mbpp", {"task": "mbpp", "n": n, "metrics": metrics})
    (txt,) = (p for p in write_run_summary(rd, "20260101_120000") if p.suffix == ".txt")
    text = txt.read_text()
    assert f"mbpp: {{'pass': 3, 'timeout': 1, 'failed': 2, 'wrong_answer': 1, 'score': {3 / 7 * 100!r}}}" in text
    (csv_path,) = (rd.root / "summary").glob("*.csv")
    rows = [line.split(",") for line in csv_path.read_text().splitlines()]
    assert rows[1][2:] == ["score", "gen", f"{3 / 7 * 100:.2f}", "-"]
