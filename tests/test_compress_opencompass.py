"""A compression config's `opencompass:` block (llmc's key): the datasets of an OpenCompass config run
at every position, in the same run directory, with flips against pretrain, OpenCompass' summary with
a column per position, and OpenCompass' work-dir layout under output_path; its errors come before
any model loads, naming the key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from lmgauge.cli import main
from lmgauge.opencompass.imports import installed_configs_dir

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

SUBJECTS = ("astronomy", "marketing")
N_TEST = 6


def _oc_config(folder: Path, body: str | None = None) -> Path:
    """A small OpenCompass config beside the YAML: the stock mmlu_ppl_ac766d cut to two subjects and
    6 questions each with test_range, and a model entry that must be reported as not used."""
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "eval_mmlu_small.py"
    f.write_text(
        textwrap.dedent(
            body
            or f"""
            from mmengine.config import read_base
            from opencompass.models import HuggingFaceBaseModel
            with read_base():
                from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets
            datasets = [dict(d, reader_cfg=dict(d['reader_cfg'], test_range='[0:{N_TEST}]'))
                        for d in mmlu_datasets if d['name'] in {SUBJECTS!r}]
            models = [dict(type=HuggingFaceBaseModel, abbr='some-other-model', path='/models/x')]
            work_dir = 'outputs/ignored'
            """
        ),
        encoding="utf-8",
    )
    return f


def _compress_yaml(tmp_path: Path, tiny_llama_dir: Path, opencompass: dict) -> Path:
    from opencompass_data import write_mmlu

    write_mmlu(tmp_path / "data", subjects=SUBJECTS)
    cfg = {
        "model": {"type": "Llama", "path": str(tiny_llama_dir), "torch_dtype": "float32", "abbr": "tiny"},
        "eval": {"eval_pos": ["pretrain", "fake_quant"], "seq_len": 64},
        "quant": {
            "method": "RTN",
            "weight": {"bit": 2, "symmetric": False, "granularity": "per_group", "group_size": 16},
        },
        "opencompass": opencompass,
        "work_dir": str(tmp_path / "out"),
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "cfg" / "compress.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_opencompass_block_runs_its_datasets_at_every_position(tmp_path, tiny_llama_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _oc_config(tmp_path / "cfg" / "oc")
    cfg = _compress_yaml(tmp_path, tiny_llama_dir, {"cfg_path": "oc/eval_mmlu_small.py", "output_path": "oc_out"})
    assert main(["run", str(cfg), "--run-id", "r", "--no-report"]) == 0
    said = capsys.readouterr().err
    assert "defines models (some-other-model): not used" in said and "sets work_dir: not used" in said
    root = tmp_path / "out" / "r"
    run = json.loads((root / "run.json").read_text())
    assert set(run["models"]) == {"tiny@pretrain", "tiny@fake_quant"}
    for subject in SUBJECTS:
        abbr = f"lukaemon_mmlu_{subject}"
        base = json.loads((root / "results" / "tiny_pretrain" / f"{abbr}.json").read_text())
        fq = json.loads((root / "results" / "tiny_fake_quant" / f"{abbr}.json").read_text())
        assert base["metrics"]["accuracy"]["n"] == N_TEST == fq["metrics"]["accuracy"]["n"]
        paired = fq["vs_pretrain"]["metrics"]["accuracy"]["paired"]
        assert sum(paired["flips"].values()) == N_TEST and "p_value" in paired
        # the flips are the samples' own: right->wrong counted from both positions' answers
        a = [json.loads(x) for x in (root / "samples" / "tiny_pretrain" / f"{abbr}.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (root / "samples" / "tiny_fake_quant" / f"{abbr}.jsonl").read_text().splitlines()]
        rw = sum(1 for x, y in zip(a, b) if x["correct"] and not y["correct"])
        assert paired["flips"]["right_to_wrong"] == rw
        assert all(set(s["ppl"]) == set("ABCD") for s in a + b)
    # OpenCompass' summary: a column per position, in the run directory and in output_path/<time>/
    (csv,) = (root / "summary").glob("summary_*.csv")
    header, *rows = csv.read_text().splitlines()
    assert header == "dataset,version,metric,mode,tiny@pretrain,tiny@fake_quant"
    assert [r.split(",")[0] for r in rows] == [f"lukaemon_mmlu_{s}" for s in SUBJECTS]
    (stamp,) = (tmp_path / "oc_out").iterdir()
    assert (stamp / "summary" / csv.name).read_text() == csv.read_text()
    res = json.loads((stamp / "results" / "tiny_fake_quant" / "lukaemon_mmlu_astronomy.json").read_text())
    fq = json.loads((root / "results" / "tiny_fake_quant" / "lukaemon_mmlu_astronomy.json").read_text())
    assert res == {"accuracy": pytest.approx(fq["metrics"]["accuracy"]["value"] * 100)}
    preds = json.loads((stamp / "predictions" / "tiny_fake_quant" / "lukaemon_mmlu_astronomy.json").read_text())
    assert list(preds) == [str(i) for i in range(N_TEST)] and set(preds["0"]) >= {"label: A", "prediction", "gold"}
    assert "compression" in (root / "summary.md").read_text().lower()


@pytest.mark.parametrize(
    "block, body, message",
    [
        ({"cfg_path": "oc/missing.py"}, None, r"opencompass\.cfg_path 'oc/missing.py': no such file"),
        (
            {"cfg_path": "oc/eval_mmlu_small.py"},
            """
            from opencompass.datasets import SomethingDataset
            datasets = [dict(abbr='x', type=SomethingDataset, path='x', reader_cfg=dict(input_columns=['q']),
                             infer_cfg=dict(), eval_cfg=dict())]
            """,
            r"opencompass\.cfg_path 'oc/eval_mmlu_small.py': .*datasets\[0\]\.type: SomethingDataset",
        ),
        ({"cfg_path": "oc/eval_mmlu_small.py", "ouput_path": "o"}, None, r"opencompass\.ouput_path: unknown key"),
        (
            {"cfg_path": "oc/eval_mmlu_small.py", "max_out_len": 8},
            """
            from opencompass.datasets import CustomDataset
            from opencompass.openicl.icl_prompt_template import PromptTemplate
            from opencompass.openicl.icl_retriever import ZeroRetriever
            from opencompass.openicl.icl_inferencer import GenInferencer
            from opencompass.openicl.icl_evaluator import EMEvaluator
            datasets = [dict(abbr='mine', type=CustomDataset, path='/nonexistent/mine.jsonl',
                reader_cfg=dict(input_columns=['q'], output_column='a'),
                infer_cfg=dict(prompt_template=dict(type=PromptTemplate, template='Q: {q}\\nA:'),
                               retriever=dict(type=ZeroRetriever), inferencer=dict(type=GenInferencer)),
                eval_cfg=dict(evaluator=dict(type=EMEvaluator)))]
            """,
            r"opencompass\.cfg_path .*eval_mmlu_small.py: datasets\[0\] \(mine\): .*mine.jsonl",
        ),
        (
            {"cfg_path": "oc/eval_mmlu_small.py"},
            """
            from opencompass.datasets import CustomDataset
            from opencompass.openicl.icl_prompt_template import PromptTemplate
            from opencompass.openicl.icl_retriever import ZeroRetriever
            from opencompass.openicl.icl_inferencer import GenInferencer
            from opencompass.openicl.icl_evaluator import EMEvaluator
            datasets = [dict(abbr='mine', type=CustomDataset, path='mine.jsonl',
                reader_cfg=dict(input_columns=['q'], output_column='a'),
                infer_cfg=dict(prompt_template=dict(type=PromptTemplate, template='Q: {q}\\nA:'),
                               retriever=dict(type=ZeroRetriever), inferencer=dict(type=GenInferencer)),
                eval_cfg=dict(evaluator=dict(type=EMEvaluator)))]
            """,
            r"datasets\[0\]\.infer_cfg\.inferencer\.max_out_len: not given by the dataset nor the model "
            r"\(give opencompass\.max_out_len",
        ),
    ],
)
def test_opencompass_block_errors_name_the_key_before_any_work(tmp_path, tiny_llama_dir, capsys, block, body, message):
    _oc_config(tmp_path / "cfg" / "oc", body)
    cfg = _compress_yaml(tmp_path, tiny_llama_dir, block)
    assert main(["run", str(cfg), "--run-id", "r"]) == 2
    import re

    assert re.search(message, capsys.readouterr().err), message
    assert not (tmp_path / "out" / "r").exists()
