"""OpenCompass configs read without OpenCompass: stock files of the installed opencompass wheel
(data only, never imported), a user's own config, prompts rebuilt as OpenCompass builds them,
and every unsupported feature refused by key and class before any work."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from lmgauge.config import ConfigError, read_config_file
from lmgauge.opencompass.config_reader import build_task
from lmgauge.opencompass.imports import installed_configs_dir
from lmgauge.opencompass.task import UnsupportedConfig

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

HEADER = "from mmengine.config import read_base\nfrom opencompass.models import HuggingFaceBaseModel\n"
MODEL = "models = [dict(type=HuggingFaceBaseModel, abbr='m', path='/models/x', max_out_len=32, batch_size=4)]\n"


def write(tmp_path: Path, body: str, name: str = "eval_x.py") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return p


def task_of(cfg: dict, i: int = 0):
    d = cfg["datasets"][i]
    return build_task(d["name"], d["opencompass"])


def test_stock_eval_config_reads_through_read_base(tmp_path):
    cfg_file = write(
        tmp_path,
        """
        with read_base():
            from opencompass.configs.datasets.mmlu.mmlu_ppl import mmlu_datasets
            from opencompass.configs.datasets.mmlu.mmlu_gen_4d595a import mmlu_datasets as mmlu_gen
            from opencompass.configs.datasets.gsm8k.gsm8k_gen_1d7fe4 import gsm8k_datasets
            from opencompass.configs.datasets.ceval.ceval_gen import ceval_datasets
            from .datasets.ceval.ceval_ppl import ceval_datasets as ceval_ppl  # relative: falls back to the wheel
        datasets = mmlu_datasets + [dict(d, abbr=d['abbr'] + '_gen') for d in mmlu_gen] + gsm8k_datasets
        datasets += ceval_datasets + [dict(d, abbr=d['abbr'] + '_ppl') for d in ceval_ppl]
        work_dir = 'outputs/oc'
        infer = dict(runner=dict(type='SlurmRunner', partition='llm', quotatype='auto', max_num_workers=32, retry=3))
        """
        + MODEL,
    )
    cfg = read_config_file(cfg_file)
    names = [d["name"] for d in cfg["datasets"]]
    assert len(names) == 57 + 57 + 1 + 52 + 52
    assert names[0] == "lukaemon_mmlu_college_biology" and "gsm8k" in names and "ceval-computer_network" in names
    assert cfg["work_dir"] == "outputs/oc"
    run = cfg["opencompass_run"]
    assert run["slurm"] and run["partition"] == "llm" and run["qos"] == "auto" and run["max_num_workers"] == 32
    assert run["retry"] == 3
    assert cfg["models"][0]["path"] == "/models/x" and cfg["models"][0]["bos"] == "tokenizer"
    gsm8k = task_of(cfg, names.index("gsm8k"))
    assert gsm8k.inferencer == "GenInferencer" and gsm8k.max_out_len == 512 and gsm8k.evaluator == "Gsm8kEvaluator"
    mmlu_gen = task_of(cfg, names.index("lukaemon_mmlu_college_biology_gen"))
    assert mmlu_gen.max_out_len == 32  # the model's, as OpenCompass' infer task sets it
    json.dumps(cfg["datasets"])  # plain data: what run.json and the workers get
    assert not [m for m in sys.modules if m.split(".")[0] in ("opencompass", "mmengine", "_lmgauge_occfg")]


def test_relative_import_prefers_the_config_folder(tmp_path):
    (tmp_path / "datasets" / "mine").mkdir(parents=True)
    (tmp_path / "datasets" / "mine" / "mine_gen.py").write_text(
        "from mmengine.config import read_base\nwith read_base():\n    from .inner import mine_datasets\n"
    )
    (tmp_path / "datasets" / "mine" / "inner.py").write_text(
        textwrap.dedent(
            """
            from opencompass.datasets import CustomDataset
            from opencompass.openicl.icl_prompt_template import PromptTemplate
            from opencompass.openicl.icl_retriever import ZeroRetriever
            from opencompass.openicl.icl_inferencer import GenInferencer
            from opencompass.openicl.icl_evaluator import EMEvaluator
            mine_datasets = [dict(abbr='mine', type=CustomDataset, path='mine.jsonl',
                reader_cfg=dict(input_columns=['q'], output_column='a'),
                infer_cfg=dict(prompt_template=dict(type=PromptTemplate, template='Q: {q}\\nA:'),
                               retriever=dict(type=ZeroRetriever), inferencer=dict(type=GenInferencer)),
                eval_cfg=dict(evaluator=dict(type=EMEvaluator)))]
            """
        )
    )
    cfg = read_config_file(
        write(
            tmp_path,
            "with read_base():\n    from .datasets.mine.mine_gen import mine_datasets\ndatasets = mine_datasets\n"
            + MODEL,
        )
    )
    assert [d["name"] for d in cfg["datasets"]] == ["mine"]


def _mmlu_files(root: Path) -> None:
    rows = {
        "dev": [[f"Q{i}?", f"a{i}", f"b{i}", f"c{i}", f"d{i}", "ABCD"[i % 4]] for i in range(5)],
        "test": [["What is {B}?", "one", "two", "three", "four", "B"]],
    }
    for split, lines in rows.items():
        f = root / "mmlu" / split / f"astronomy_{split}.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(",".join(r) + "\n" for r in lines), encoding="utf-8")


def test_mmlu_prompts_are_opencompass_text(tmp_path, monkeypatch):
    """The label prompt of mmlu_ppl_ac766d and the generation prompt of mmlu_gen_4d595a, written out
    by hand from OpenCompass' template code (ice joined by "\\n" plus a final "\\n"; a base model
    joins round items with "\\n"; `{B}` in a question is substituted too, as safe_format does)."""
    from lmgauge.data.sources import set_data_dir

    _mmlu_files(tmp_path / "data")
    set_data_dir(tmp_path / "data")
    try:
        cfg = read_config_file(
            write(
                tmp_path,
                """
                with read_base():
                    from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets
                    from opencompass.configs.datasets.mmlu.mmlu_gen_4d595a import mmlu_datasets as gen
                datasets = [d for d in mmlu_datasets if d['name'] == 'astronomy']
                datasets += [dict(d, abbr='gen') for d in gen if d['name'] == 'astronomy']
                """
                + MODEL,
            )
        )
        ppl, gen = task_of(cfg, 0), task_of(cfg, 1)
        docs, where = ppl.load()
        assert where.endswith("mmlu")
        shots = "".join(f"Q{i}?\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\nAnswer: {'ABCD'[i % 4]}\n\n" for i in range(5))
        prompts = dict(ppl.label_prompts(docs[0], 0))
        expected = (
            "The following are multiple choice questions (with answers) about  astronomy.\n\n"
            + shots
            + "What is two?\nA. one\nB. two\nC. three\nD. four\nAnswer: C"
        )
        assert prompts["C"] == expected
        reqs = ppl.requests(docs[0], 0)
        assert [r.style for r in reqs] == ["whole"] * 4
        gen.load()
        hint = "There is a single choice question about astronomy. Answer the question by replying A, B, C or D."
        shot_text = "".join(
            f"{hint}\nQuestion: Q{i}?\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\nAnswer: \n{'ABCD'[i % 4]}\n\n"
            for i in range(5)
        )
        greq = gen.requests(docs[0], 0)[0]
        assert greq.prompt == shot_text + f"{hint}\nQuestion: What is two?\nA. one\nB. two\nC. three\nD. four\nAnswer: "
        assert greq.max_new_tokens == 32 and greq.stop == ()
    finally:
        set_data_dir(None)


def test_ppl_scoring_is_mean_loss_over_all_tokens(tmp_path):
    """PPL = -sum(logprob of tokens 2..n) / n; the lowest wins; AccwithDetails compares letters."""
    from lmgauge.data.sources import set_data_dir
    from lmgauge.requests import RollingResult

    _mmlu_files(tmp_path / "data")
    set_data_dir(tmp_path / "data")
    try:
        cfg = read_config_file(
            write(
                tmp_path,
                "with read_base():\n    from opencompass.configs.datasets.mmlu.mmlu_ppl_ac766d import mmlu_datasets\n"
                "datasets = [d for d in mmlu_datasets if d['name'] == 'astronomy']\n" + MODEL,
            )
        )
        t = task_of(cfg)
        docs, _ = t.load()
        results = [RollingResult(-10.0, 9), RollingResult(-9.0, 9), RollingResult(-12.0, 11), RollingResult(-9.0, 8)]
        rec = t.score(docs[0], 0, results)
        assert rec["ppl"] == {"A": 1.0, "B": 0.9, "C": 1.0, "D": 1.0}
        assert rec["pred"] == "B" and rec["gold"] == "B" and rec["metrics"] == {"accuracy": 1.0}
    finally:
        set_data_dir(None)


def test_user_jsonl_custom_dataset_end_to_end(tmp_path, tiny_llama_dir, monkeypatch):
    """A user's own config: a CustomDataset JSONL, a FixK ice template, PPL over two labels, run
    by `lmgauge run CONFIG.py` on a real (tiny) model; the samples hold OpenCompass' PPLs."""
    from lmgauge.cli import main

    monkeypatch.chdir(tmp_path)
    rows = [{"text": f"sentence {i}", "label": "yes" if i % 2 else "no"} for i in range(6)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg_file = tmp_path / "eval_mine.py"
    cfg_file.write_text(
        textwrap.dedent(
            f"""
            from opencompass.models import HuggingFaceBaseModel
            from opencompass.datasets import CustomDataset
            from opencompass.openicl.icl_prompt_template import PromptTemplate
            from opencompass.openicl.icl_retriever import FixKRetriever
            from opencompass.openicl.icl_inferencer import PPLInferencer
            from opencompass.openicl.icl_evaluator import AccEvaluator
            datasets = [dict(abbr='mine', type=CustomDataset, path='mine.jsonl',
                reader_cfg=dict(input_columns=['text'], output_column='label', test_range='[2:6]'),
                infer_cfg=dict(
                    ice_template=dict(type=PromptTemplate, template={{l: '{{text}} -> ' + l for l in ('no', 'yes')}}),
                    prompt_template=dict(type=PromptTemplate, template={{l: '</E>{{text}} -> ' + l for l in ('no', 'yes')}},
                                         ice_token='</E>'),
                    retriever=dict(type=FixKRetriever, fix_id_list=[0, 1]),
                    inferencer=dict(type=PPLInferencer)),
                eval_cfg=dict(evaluator=dict(type=AccEvaluator)))]
            models = [dict(type=HuggingFaceBaseModel, abbr='tiny', path={str(tiny_llama_dir)!r}, batch_size=4,
                           model_kwargs=dict(torch_dtype='torch.float32', device_map='cpu'))]
            work_dir = 'outputs'
            """
        ),
        encoding="utf-8",
    )
    assert main(["run", str(cfg_file), "--run-id", "r"]) == 0
    samples = [
        json.loads(x) for x in (tmp_path / "outputs" / "r" / "samples" / "tiny" / "mine.jsonl").read_text().splitlines()
    ]
    assert [s["doc_id"] for s in samples] == [0, 1, 2, 3]
    assert samples[0]["label_prompts"]["yes"] == "sentence 0 -> no\nsentence 1 -> yes\nsentence 2 -> yes"
    assert all(s["pred"] == min(s["ppl"], key=s["ppl"].get) for s in samples)
    result = json.loads((tmp_path / "outputs" / "r" / "results" / "tiny" / "mine.json").read_text())
    assert result["metrics"]["accuracy"]["n"] == 4
    # the same PPL from the model directly, OpenCompass' way: mean loss over every token
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    ids = tok(samples[1]["label_prompts"]["no"], return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item() / ids.shape[1]
    assert samples[1]["ppl"]["no"] == pytest.approx(loss, rel=1e-4)


UNSUPPORTED = [
    (
        "inferencer=dict(type=CLPInferencer)",
        "datasets[0].infer_cfg.inferencer.type: CLPInferencer is not supported (supported: PPLInferencer, GenInferencer)",
    ),
    (
        "retriever=dict(type=TopkRetriever, ice_num=4)",
        "datasets[0].infer_cfg.retriever.type: TopkRetriever is not supported",
    ),
    ("evaluator=dict(type=BleuEvaluator)", "datasets[0].eval_cfg.evaluator.type: BleuEvaluator is not supported"),
    ("type=XsumDataset", "datasets[0].type: XsumDataset is not supported"),
    (
        "pred_postprocessor=dict(type=ceval_postprocess)",
        "datasets[0].eval_cfg.pred_postprocessor.type: ceval_postprocess is not supported",
    ),
]


@pytest.mark.parametrize("change,message", UNSUPPORTED)
def test_unsupported_features_fail_naming_key_and_class(tmp_path, change, message):
    base = dict(
        type="type=CustomDataset",
        inferencer="inferencer=dict(type=GenInferencer)",
        retriever="retriever=dict(type=ZeroRetriever)",
        evaluator="evaluator=dict(type=AccEvaluator)",
        pred_postprocessor="pred_postprocessor=dict(type=first_capital_postprocess)",
    )
    key = change.split("=", 1)[0]
    base[key] = change
    body = f"""
    from opencompass.openicl.icl_inferencer import GenInferencer, CLPInferencer
    from opencompass.openicl.icl_retriever import ZeroRetriever, TopkRetriever
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.openicl.icl_evaluator import AccEvaluator, BleuEvaluator
    from opencompass.datasets import CustomDataset, XsumDataset, ceval_postprocess
    from opencompass.utils.text_postprocessors import first_capital_postprocess
    datasets = [dict(abbr='d', {base["type"]}, path='x.jsonl', reader_cfg=dict(input_columns=['q'], output_column='a'),
        infer_cfg=dict(prompt_template=dict(type=PromptTemplate, template='{{q}}'), {base["retriever"]},
                       {base["inferencer"]}),
        eval_cfg=dict({base["evaluator"]}, {base["pred_postprocessor"]}))]
    """
    with pytest.raises(ConfigError) as e:
        read_config_file(write(tmp_path, body + MODEL))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            "infer = dict(runner=dict(type='DLCRunner'))",
            "infer.runner.type: DLCRunner is not supported (supported: LocalRunner, SlurmRunner",
        ),
        ("models[0]['type'] = 'opencompass.models.Claude'", "models[0].type: Claude is not supported"),
        ("models[0]['generation_kwargs'] = dict(do_sample=True, temperature=0.7)", "models[0].generation_kwargs"),
    ],
)
def test_unsupported_run_and_model_settings(tmp_path, extra, message):
    body = "with read_base():\n    from opencompass.configs.datasets.gsm8k.gsm8k_gen_1d7fe4 import gsm8k_datasets\n"
    body += "datasets = gsm8k_datasets\n" + MODEL + extra + "\n"
    with pytest.raises(ConfigError) as e:
        read_config_file(write(tmp_path, body))
    assert message in str(e.value)


def test_missing_config_name_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match="no_such_config"):
        read_config_file(write(tmp_path, "with read_base():\n    from .datasets.no_such_config import x\n" + MODEL))


def test_cli_names_resolve_opencompass_configs(tmp_path, tiny_llama_dir):
    """`--datasets ceval_gen mmlu_ppl mmlu_astronomy`: the first two are OpenCompass config files
    (their entries, recorded with the file they came from), the last stays lmgauge's task."""
    import argparse

    from lmgauge.opencompass.names import resolve_cli

    args = argparse.Namespace(
        hf_path=str(tiny_llama_dir),
        models=None,
        hf_type=None,
        max_out_len=None,
        oc_root=None,
        datasets=["ceval_gen", "mmlu_ppl", "mmlu_astronomy"],
        max_seq_len=None,
        batch_size=None,
    )
    raw = resolve_cli({"models": [{"path": str(tiny_llama_dir)}], "datasets": list(args.datasets)}, args)
    ds = raw["datasets"]
    assert len(ds) == 52 + 57 + 1 and ds[-1] == "mmlu_astronomy"
    assert ds[0]["opencompass"]["source"].endswith("ceval/ceval_gen.py")
    assert ds[0]["name"] == "ceval-computer_network" and ds[52]["name"] == "lukaemon_mmlu_college_biology"
    assert build_task(ds[0]["name"], ds[0]["opencompass"]).max_out_len == 256  # OpenCompass' --max-out-len default


def test_cli_models_names(tmp_path):
    from lmgauge.opencompass.names import model_configs

    path, models = model_configs("hf_internlm2_chat_1_8b")
    assert path.name == "hf_internlm2_chat_1_8b.py"
    assert models[0]["type"].endswith("HuggingFacewithChatTemplate") and models[0]["max_out_len"] == 1024
    with pytest.raises(UnsupportedConfig, match="not found"):
        model_configs("no_such_model_cfg")


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mmlu_ppl_ac766d", "ac766d"),
        ("mmlu_gen_4d595a", "4d595a"),
        ("gsm8k_gen_1d7fe4", "1d7fe4"),
        ("ceval_gen_5f30c7", "5f30c7"),
        ("ceval_ppl_578f8d", "578f8d"),
    ],
)
def test_opencompass_version_hash_reproduced(name, expected):
    """The suffix of each stock config name is OpenCompass' get_prompt_hash of its entries."""
    from lmgauge.opencompass.names import dataset_configs
    from lmgauge.opencompass.version import version

    _, entries = dataset_configs(name)
    assert version(entries) == expected


def test_run_with_opencompass_dataset_names_ceval_gen_and_mmlu_ppl(tmp_path, tiny_llama_dir, monkeypatch):
    """`lmgauge run --hf-path M --datasets ceval_gen mmlu_ppl --limit 5` (the issue's command): both
    names are OpenCompass' stock config files, read from their default ./data layout; every C-Eval
    and MMLU subject runs, with OpenCompass' prompts (gen and ppl) and its summary beside lmgauge's."""
    import csv

    from lmgauge.cli import main
    from lmgauge.tasks.ceval import CEVAL_SUBJECTS
    from lmgauge.tasks.mmlu import MMLU_SUBJECTS as MMLU_ALL
    from opencompass_data import CEVAL_HEADERS, write_mmlu

    monkeypatch.chdir(tmp_path)
    rows = json.loads((Path(__file__).parent / "fixtures" / "opencompass" / "ceval_rows.json").read_text("utf-8"))
    sample = rows["computer_network"]  # every subject gets these rows: the run, not the data, is under test
    for subject in CEVAL_SUBJECTS:
        for split, lines in sample.items():
            f = tmp_path / "data" / "ceval" / "formal_ceval" / split / f"{subject}_{split}.csv"
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "w", encoding="utf-8", newline="") as fh:
                csv.writer(fh).writerows([CEVAL_HEADERS[split], *lines])
    write_mmlu(tmp_path / "data", subjects=MMLU_ALL)
    argv = ["run", "--hf-path", str(tiny_llama_dir), "--datasets", "ceval_gen", "mmlu_ppl", "--limit", "5"]
    assert main([*argv, "--max-out-len", "4", "-w", "outputs", "--run-id", "r", "--no-report"]) == 0
    run = tmp_path / "outputs" / "r"
    manifest = json.loads((run / "run.json").read_text())
    names = [t for m in manifest["tasks"].values() for t in m]
    assert len(names) == len(CEVAL_SUBJECTS) + len(MMLU_ALL)
    (model_dir,) = (run / "samples").iterdir()
    ceval = [json.loads(x) for x in (model_dir / "ceval-computer_network.jsonl").read_text().splitlines()]
    assert len(ceval) == len(sample["val"]) and all(
        "以下是中国关于计算机网络考试的单项选择题" in s["prompt"] for s in ceval
    )
    mmlu = [json.loads(x) for x in (model_dir / "lukaemon_mmlu_astronomy.jsonl").read_text().splitlines()]
    assert len(mmlu) == 5 and all(set(s["ppl"]) == set("ABCD") for s in mmlu)
    assert list((run / "summary").glob("summary_*.csv"))  # OpenCompass' layout, beside lmgauge's summary
    assert (run / "summary.md").exists()
