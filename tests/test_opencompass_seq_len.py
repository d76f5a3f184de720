"""In-context examples dropped at the model's max_seq_len, as OpenCompass 0.5.4's inferencers do:
PPLInferencer drops the last example while a label's prompt has more tokens than max_seq_len, label by
label, the shortened list carried over to the next labels (it shortens ice_idx_list[idx] in place);
GenInferencer does the same once per prompt. Tokens are counted only with the worker model's tokenizer
(tokenizer(text, add_special_tokens=True), OpenCompass' HuggingFaceBaseModel.get_token_len)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lmgauge.config import read_config_file
from lmgauge.opencompass.config_reader import build_task
from lmgauge.opencompass.imports import installed_configs_dir

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")

SHOTS = ["a b", "the quick brown fox jumps over the lazy dog " * 3, "c d e", "hello world again and again " * 2]
# "long" first: the shots it drops are gone for "no" too, which would fit with all four
LABELS = {"long": "a much longer answer that takes many more tokens than the other one does", "no": "no"}


def config(tmp_path: Path, model: str, inferencer: str, max_seq_len: int | None) -> Path:
    rows = [{"text": t, "label": "no"} for t in SHOTS] + [{"text": f"question {i}", "label": "long"} for i in range(3)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if inferencer == "PPLInferencer":
        ice = f"{{l: '{{text}} -> ' + v for l, v in {LABELS!r}.items()}}"
        prompt = f"{{l: '</E>{{text}} -> ' + v for l, v in {LABELS!r}.items()}}"
    else:
        ice, prompt = "'{text} -> {label}'", "'</E>{text} -> '"
    seq = f", max_seq_len={max_seq_len}" if max_seq_len else ""
    out_len = ", max_out_len=2" if inferencer == "GenInferencer" else ""
    cfg = tmp_path / "eval_seq.py"
    cfg.write_text(
        textwrap.dedent(
            f"""
            from opencompass.models import HuggingFaceBaseModel
            from opencompass.datasets import CustomDataset
            from opencompass.openicl.icl_prompt_template import PromptTemplate
            from opencompass.openicl.icl_retriever import FixKRetriever
            from opencompass.openicl.icl_inferencer import {inferencer}
            from opencompass.openicl.icl_evaluator import AccEvaluator
            datasets = [dict(abbr='seq', type=CustomDataset, path={str(tmp_path / "rows.jsonl")!r},
                reader_cfg=dict(input_columns=['text'], output_column='label', test_range='[4:7]'),
                infer_cfg=dict(
                    ice_template=dict(type=PromptTemplate, template={ice}),
                    prompt_template=dict(type=PromptTemplate, template={prompt}, ice_token='</E>'),
                    retriever=dict(type=FixKRetriever, fix_id_list=[0, 1, 2, 3]),
                    inferencer=dict(type={inferencer}{out_len})),
                eval_cfg=dict(evaluator=dict(type=AccEvaluator)))]
            models = [dict(type=HuggingFaceBaseModel, abbr='tiny', path={model!r}, batch_size=4{seq},
                           model_kwargs=dict(torch_dtype='torch.float32', device_map='cpu'))]
            work_dir = 'outputs'
            """
        ),
        encoding="utf-8",
    )
    return cfg


class Tokenized:
    """A stand-in worker model: only its tokenizer is read."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.name = "stand-in"


def opencompass_ppl_loop(task, doc, doc_id, tok, max_seq_len):
    """icl_ppl_inferencer.py step 5.1 written out again: the shots each label's prompt keeps."""
    from lmgauge.opencompass.prompts import lm_parse

    ice_idx = list(task._ice_ids[doc_id])
    kept = {}
    for label in task.labels():

        def n_tokens(ids, label=label):
            p = task._template_for_prompt().generate_label_prompt_item(doc, task._ice(doc_id, ids), label)
            return len(tok(lm_parse(p), add_special_tokens=True)["input_ids"])

        while len(ice_idx) > 0 and n_tokens(ice_idx) > max_seq_len:
            ice_idx = ice_idx[:-1]
        kept[label] = list(ice_idx)
    return kept


def test_ppl_drops_examples_label_by_label(tmp_path, tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    full = None
    d = read_config_file(config(tmp_path, str(tiny_llama_dir), "PPLInferencer", None))["datasets"][0]
    t = build_task(d["name"], d["opencompass"])
    docs, _ = t.load()
    full = {label: len(tok(p)["input_ids"]) for label, p in t.label_prompts(docs[0], 0)}
    # "no" fits with all four shots, "long" does not
    limit = full["no"]
    t = build_task(d["name"], d["opencompass"], max_seq_len=limit)
    docs, _ = t.load()
    t.count_tokens_with(Tokenized(tok))
    expected = opencompass_ppl_loop(t, docs[0], 0, tok, limit)
    # "long" dropped some; "no" starts from what "long" kept (OpenCompass' in-place shortening)
    assert 0 < len(expected["long"]) < 4 and expected["no"] == expected["long"]
    prompts = dict(t.label_prompts(docs[0], 0))
    for label, ids in expected.items():
        shots = "\n".join(f"{SHOTS[i]} -> no" for i in ids)
        assert prompts[label] == f"{shots}\n{docs[0]['text']} -> {LABELS[label]}"
    assert t.shots_used(0) == expected
    for label, text in prompts.items():  # what is left fits, or has no shot left to drop
        assert len(tok(text)["input_ids"]) <= limit or not expected[label]
    # without the worker's tokenizer (the prompt tests' case) nothing is counted or dropped
    plain = build_task(d["name"], d["opencompass"], max_seq_len=limit)
    docs, _ = plain.load()
    assert all(p.count(" -> no\n") == 4 for _, p in plain.label_prompts(docs[0], 0))


def test_gen_drops_examples_once_per_prompt(tmp_path, tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    d = read_config_file(config(tmp_path, str(tiny_llama_dir), "GenInferencer", None))["datasets"][0]
    t = build_task(d["name"], d["opencompass"], max_seq_len=30)
    docs, _ = t.load()
    t.count_tokens_with(Tokenized(tok))
    prompt = t.requests(docs[0], 0)[0].prompt
    ids = t.shots_used(0)
    ice = "\n".join(f"{SHOTS[i]} -> no" for i in ids)
    assert prompt == f"{ice}\n{docs[0]['text']} -> "
    assert len(tok(prompt)["input_ids"]) <= 30
    longer = "\n".join(f"{SHOTS[i]} -> no" for i in [0, 1, 2, 3][: len(ids) + 1]) + f"\n{docs[0]['text']} -> "
    assert len(tok(longer)["input_ids"]) > 30  # one more shot would not fit: the last is dropped first
    assert ids == [0, 1, 2, 3][: len(ids)]


def test_no_local_tokenizer_drops_nothing_and_says_so(tmp_path, tiny_llama_dir, caplog):
    d = read_config_file(config(tmp_path, str(tiny_llama_dir), "PPLInferencer", None))["datasets"][0]
    t = build_task(d["name"], d["opencompass"], max_seq_len=10)
    docs, _ = t.load()
    t.count_tokens_with(Tokenized(None))
    assert all(p.count(" -> no\n") == 4 for _, p in t.label_prompts(docs[0], 0))
    assert "has no local tokenizer: in-context examples are not dropped at max_seq_len=10" in caplog.text


def test_run_drops_examples_at_the_models_max_seq_len(tmp_path, tiny_llama_dir, monkeypatch):
    """`lmgauge run` with the model's max_seq_len: the worker's tokenizer counts, each sample keeps
    which shots each label kept, and its label prompts are the shortened ones."""
    from transformers import AutoTokenizer

    from lmgauge.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, str(tiny_llama_dir), "PPLInferencer", 60)
    assert main(["run", str(cfg), "--run-id", "r", "--no-report"]) == 0
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    samples = [
        json.loads(x) for x in (tmp_path / "outputs" / "r" / "samples" / "tiny" / "seq.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 3
    for s in samples:
        assert set(s["ice_ids"]) == {"no", "long"} and len(s["ice_ids"]["long"]) < 4
        for label, text in s["label_prompts"].items():
            assert text.count(" -> no\n") == len(s["ice_ids"][label])
            assert len(tok(text)["input_ids"]) <= 60 or not s["ice_ids"][label]
