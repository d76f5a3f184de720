"""Every prompt of the reference configs, rendered by lmgauge, equals OpenCompass 0.5.4's own
rendering (tests/fixtures/opencompass/reference_prompts.json, made by OpenCompass' code in its own
venv: benchmarks/reference/opencompass_prompts.py): PPL label prompts and generation prompts, for a
base model and for a model with a meta_template, with Zero/FixK/Random retrievers; the stock MMLU,
GSM8K, C-Eval, ARC, HellaSwag, Winogrande, PIQA and BoolQ configs and a user's CustomDataset."""

from __future__ import annotations

import json

import pytest

from lmgauge.config import read_config_file
from lmgauge.data.sources import set_data_dir
from lmgauge.opencompass.config_reader import build_task
from lmgauge.opencompass.imports import installed_configs_dir
from opencompass_data import FIXTURES, write_choice_data, write_reference_data

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

REFERENCE = json.loads((FIXTURES / "reference_prompts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oc-prompts")
    write_reference_data(tmp / "data")
    write_choice_data(tmp / "data", n=9)  # as benchmarks/reference/opencompass_reference.py writes it
    out = {}
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)  # the CustomDataset's relative path, as OpenCompass reads it
    set_data_dir(tmp / "data")
    try:
        for name in ("eval_reference.py", "eval_prompts_extra.py", "eval_prompts_choice.py"):
            cfg = FIXTURES / name
            extra = "" if "models" in cfg.read_text() else "models = [dict(abbr='m', path='/m', max_out_len=32)]\n"
            (tmp / name).write_text(cfg.read_text(encoding="utf-8") + extra, encoding="utf-8")
            for d in read_config_file(tmp / name)["datasets"]:
                out[d["name"]] = d["opencompass"]
        yield out
    finally:
        set_data_dir(None)
        mp.undo()


@pytest.mark.parametrize("dataset", sorted(REFERENCE["datasets"]))
@pytest.mark.parametrize("parser", ["base", "meta"])
def test_prompt_text_equals_opencompass(entries, dataset, parser, monkeypatch, tmp_path):
    spec = dict(entries[dataset])
    if parser == "meta":
        spec["model_prompt"] = {**spec["model_prompt"], "meta_template": REFERENCE["meta_template"]}
    task = build_task(dataset, spec)
    docs, _ = task.load()
    ref = REFERENCE["datasets"][dataset]
    assert len(docs) == len(ref["rows"])
    for i, (doc, row) in enumerate(zip(docs, ref["rows"])):
        assert task._ice_ids[i] == row["ice_ids"], f"{dataset}[{i}] in-context examples"
        if ref["inferencer"] == "PPLInferencer":
            assert dict(task.label_prompts(doc, i)) == row[parser], f"{dataset}[{i}]"
        else:
            assert task.requests(doc, i)[0].prompt == row[parser], f"{dataset}[{i}]"
