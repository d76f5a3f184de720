"""Compression configs (llmc's keys), the fidelity statistics, and a whole compression run on the tiny
random Llama: one run directory with both positions, the paired perplexity equal to the plain path,
save_fake loadable by transformers with the same logits, a refused scheme keeping pretrain's results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lmgauge.cli import main
from lmgauge.compress.config import is_compression_config, load_compression_config
from lmgauge.compress.fidelity import PairedWindowScorer, TokenFidelity, mean_and_uncertainty, summarize
from lmgauge.compress.report import llamacpp_kld
from lmgauge.config import ConfigError

# llmc's configs/quantization/methods/RTN/rtn_w_only.yml and rtn_w_a.yml, paths filled in
LLMC_W_ONLY = """
base:
    seed: &seed 42
model:
    type: Llama
    path: MODEL
    torch_dtype: auto
eval:
    eval_pos: [pretrain, fake_quant]
    name: wikitext2
    download: False
    path: DATA
    seq_len: 2048
    bs: 1
    inference_per_block: False
quant:
    method: RTN
    weight:
        bit: 4
        symmetric: False
        granularity: per_group
        group_size: 128
save:
    save_fake: False
    save_path: /path/to/save/
"""
LLMC_W_A = """
model: {type: Llama, path: MODEL, torch_dtype: auto}
eval: {eval_pos: [pretrain, fake_quant], name: wikitext2, download: False, path: DATA, seq_len: 2048, bs: 1,
       inference_per_block: False, eval_token_consist: True}
quant:
    method: RTN
    weight: {bit: 8, symmetric: True, granularity: per_channel, group_size: -1}
    act: {bit: 8, symmetric: True, granularity: per_token}
save: {save_fake: False, save_path: /path/to/save/}
"""


def test_llmc_rtn_configs_validate_as_they_are():
    for text in (LLMC_W_ONLY, LLMC_W_A):
        data = yaml.safe_load(text)
        assert is_compression_config(data)
        cc = load_compression_config(data)
        assert cc.eval.eval_pos == ["pretrain", "fake_quant"]
    w4 = load_compression_config(yaml.safe_load(LLMC_W_ONLY)).quant.scheme()
    assert (w4.weight.bit, w4.weight.symmetric, w4.weight.group_size, w4.skip) == (4, False, 128, ("lm_head",))
    w8a8 = load_compression_config(yaml.safe_load(LLMC_W_A)).quant.scheme()
    assert (
        w8a8.weight.group_size is None
        and w8a8.act.granularity == "per_token"
        and w8a8.label() == "w8sym-per_channel-a8sym-per_token"
    )


def test_plain_configs_are_not_compression_configs():
    assert not is_compression_config({"models": [], "datasets": ["mmlu"], "eval": {"x": 1}})


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"quant": {"method": "RTN", "weight": {"bit": 4, "grp_size": 64}}},
            r"quant\.weight\.grp_size: unknown key 'grp_size' \(did you mean 'group_size'\?\)",
        ),
        ({"eval": {"eval_pos": ["pretrain", "fakequant"], "name": "wikitext2"}}, "eval_pos 'fakequant' is not one of"),
        ({"opencompass": {"cfg_path": "x.py", "output_path": "o"}}, r"opencompass\.cfg_path 'x.py': no such file"),
        ({"opencompass": {"output_path": "o"}}, r"opencompass\.cfg_path: Field required"),
        ({"quant": {"method": "GPTQ", "weight": {"bit": 4}}}, r"quant\.method"),
        ({"quant": {"method": "RTN", "weight": {"bit": 1}}}, "2..8 bits"),
        ({"eval": {"eval_pos": ["pretrain"], "name": "wikitext2", "download": True}}, "download: true"),
        ({"modle": {}}, "unknown key 'modle'"),
    ],
)
def test_bad_compression_configs_name_the_key(patch, message):
    data = yaml.safe_load(LLMC_W_ONLY)
    data.update(patch)
    with pytest.raises(ConfigError, match=message):
        load_compression_config(data, "c.yaml")


def test_kl_and_statistics_by_hand():
    # two windows of 3 positions over a vocabulary of 3: KL computed with numpy, term by term
    rng = np.random.default_rng(0)
    ref_logits = torch.tensor(rng.normal(size=(2, 4, 3)), dtype=torch.float32)
    cand_logits = ref_logits + torch.tensor(rng.normal(scale=0.5, size=(2, 4, 3)), dtype=torch.float32)
    ids = [[0, 1, 2, 1], [2, 2, 0, 1]]
    scorer = PairedWindowScorer(lambda r: ids, lambda x: ref_logits, lambda x: cand_logits)
    from lmgauge.requests import RollingRequest

    sink = TokenFidelity()
    (res,) = scorer.score([RollingRequest("t", window=4, style="disjoint", rows_per_batch=2)], sink)
    a = sink.arrays()
    p = torch.softmax(ref_logits[:, :-1].double(), -1).numpy()
    q = torch.softmax(cand_logits[:, :-1].double(), -1).numpy()
    kl = (p * (np.log(p) - np.log(q))).sum(-1).reshape(-1)
    assert a["kl"] == pytest.approx(kl, abs=1e-6)
    tgt = np.array(ids)[:, 1:]
    nll = -np.log(np.take_along_axis(q, tgt[..., None], -1)[..., 0]).reshape(-1)
    assert res.logprob == pytest.approx(-nll.sum(), abs=1e-5) and res.n_tokens == 6 and res.n_windows == 2
    assert a["same_top"].tolist() == (p.argmax(-1) == q.argmax(-1)).reshape(-1).tolist()
    s = summarize(a)
    assert s["kl"]["mean"] == pytest.approx(kl.mean(), abs=1e-6)
    assert s["kl"]["median"] == pytest.approx(np.median(kl), abs=1e-6)
    srt = np.sort(kl)  # llama.cpp's percentile: p = f * (n - 1), linear between neighbours
    f = 0.9 * (len(srt) - 1)
    assert s["kl"]["p90"] == pytest.approx(srt[int(f)] + (f - int(f)) * (srt[int(f) + 1] - srt[int(f)]), abs=1e-6)
    nll_ref = -np.log(np.take_along_axis(p, tgt[..., None], -1)[..., 0]).reshape(-1)
    assert s["ln_ppl_ratio"]["value"] == pytest.approx(nll.mean() - nll_ref.mean(), abs=1e-6)
    assert s["ppl"] == pytest.approx(math.exp(nll.mean()), rel=1e-6)


def test_identical_models_have_zero_kl():
    logits = torch.randn(1, 6, 10)
    scorer = PairedWindowScorer(lambda r: [[1, 2, 3, 4, 5, 6]], lambda x: logits, lambda x: logits.clone())
    from lmgauge.requests import RollingRequest

    sink = TokenFidelity()
    scorer.score([RollingRequest("t", window=6, style="disjoint")], sink)
    s = summarize(sink.arrays())
    assert s["kl"]["max"] == pytest.approx(0.0, abs=1e-7) and s["same_top"]["value"] == 1.0
    assert s["ln_ppl_ratio"]["value"] == pytest.approx(0.0, abs=1e-7)


def test_mean_and_uncertainty_is_llamacpps():
    x = np.arange(20, dtype=np.float64)
    m, u = mean_and_uncertainty(x)
    assert m == 9.5 and u == pytest.approx(math.sqrt(((x * x).mean() - 9.5**2) / 19))
    assert mean_and_uncertainty(np.ones(5))[1] == 0.0  # n <= 10: llama.cpp reports 0


def test_llamacpp_layout_scores_the_second_half_of_each_chunk():
    rng = np.random.default_rng(1)
    n_win, per = 2, 511
    arrays = {
        "kl": rng.exponential(0.01, n_win * per).astype(np.float32),
        "same_top": rng.random(n_win * per) < 0.9,
        "nll": rng.exponential(3.0, n_win * per).astype(np.float32),
        "nll_ref": rng.exponential(3.0, n_win * per).astype(np.float32),
        "offset": np.tile(np.arange(per), n_win),
    }
    text = llamacpp_kld(arrays, 512)
    lines = text.splitlines()
    kld = lines[lines.index("====== KL divergence statistics ======") + 1 :][:12]
    labels = [ln.split("KLD")[0] for ln in kld]
    assert labels == [
        "Mean    ",
        "Maximum ",
        "99.9%   ",
        "99.0%   ",
        "95.0%   ",
        "90.0%   ",
        "Median  ",
        "10.0%   ",
        " 5.0%   ",
        " 1.0%   ",
        " 0.1%   ",
        "Minimum ",
    ]
    kept = np.sort(arrays["kl"][arrays["offset"] >= 256].astype(np.float64))
    assert kept.size == n_win * 255  # llama.cpp: n_ctx - 1 - n_ctx/2 per chunk
    assert (
        kld[0]
        == f"Mean    KLD: {kept.mean():10.6f} ± {math.sqrt((np.mean(kept**2) - kept.mean() ** 2) / (kept.size - 1)):10.6f}"
    )
    assert kld[1] == f"Maximum KLD: {kept[-1]:10.6f}"
    assert lines[-1].startswith("Same top p: ")


def _tiny_config(tmp_path: Path, tiny_llama_dir: Path, **quant) -> Path:
    from conftest import CORPUS

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(CORPUS * 12), encoding="utf-8")
    cfg = {
        "model": {"type": "Llama", "path": str(tiny_llama_dir), "torch_dtype": "float32", "abbr": "tiny"},
        "eval": {"eval_pos": ["pretrain", "fake_quant"], "name": str(text), "bs": 2, "seq_len": 64},
        "quant": {
            "method": "RTN",
            "weight": {"bit": 3, "symmetric": False, "granularity": "per_group", "group_size": 16, **quant},
        },
        "save": {"save_fake": True, "save_path": str(tmp_path / "save")},
        "tasks": [{"name": "mmlu_astronomy", "limit": 6, "num_fewshot": 1}],
        "work_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "compress.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_compression_run_end_to_end_on_the_tiny_model(tmp_path, tiny_llama_dir, capsys):
    from transformers import AutoModelForCausalLM

    from lmgauge.models.hf import HFModel
    from lmgauge.models.quant import QuantScheme, QuantSpec, quantize_model
    from lmgauge.requests import RollingRequest

    cfg = _tiny_config(tmp_path, tiny_llama_dir)
    assert main(["run", str(cfg), "--run-id", "r", "--llamacpp-kld"]) == 0
    out = capsys.readouterr().out
    assert "====== KL divergence statistics ======" in out and "(chunks of seq_len 64" in out
    root = tmp_path / "out" / "r"
    run = json.loads((root / "run.json").read_text())
    positions = run["compression"]["positions"]
    assert positions["pretrain"]["kind"] == "float" and positions["fake_quant"]["kind"] == "fake-quant"
    assert positions["fake_quant"]["quant"]["scheme"] == "w3asym-g16"
    assert sorted(p.name for p in (root / "results").iterdir()) == ["tiny_fake_quant", "tiny_pretrain"]
    assert set(run["models"]) == {"tiny@pretrain", "tiny@fake_quant"}
    fq = json.loads((root / "results" / "tiny_fake_quant" / "ppl.json").read_text())
    base = json.loads((root / "results" / "tiny_pretrain" / "ppl.json").read_text())
    assert fq["position"] == {"name": "fake_quant", "kind": "fake-quant", "model": "tiny"}
    fid = fq["fidelity"]
    assert fid["n_positions"] == fq["metrics"]["perplexity"]["n"] and fid["kl"]["mean"] > 0
    assert fid["ppl_ref"] == pytest.approx(base["metrics"]["perplexity"]["value"], rel=1e-6)  # same windows, same pass
    vs = fq["vs_pretrain"]["metrics"]["perplexity"]
    assert vs["recovery"] == fq["metrics"]["perplexity"]["value"] / base["metrics"]["perplexity"]["value"]
    mmlu = json.loads((root / "results" / "tiny_fake_quant" / "mmlu_astronomy.json").read_text())
    flips = mmlu["vs_pretrain"]["metrics"]["acc"]["paired"]["flips"]
    assert sum(flips.values()) == 6 and "p_value" in mmlu["vs_pretrain"]["metrics"]["acc"]["paired"]
    assert (root / "fidelity" / "tiny_fake_quant" / "ppl.npz").is_file()
    summary = (root / "summary.md").read_text()
    assert "## Compression: each position against pretrain (worst first)" in summary and "right→wrong" in summary

    # the paired pass's perplexity is the plain engine path's on the quantized model
    plain = HFModel(str(tiny_llama_dir), device="cpu", dtype="float32", name="plain")
    quantize_model(plain.model, QuantScheme(QuantSpec(3, False, "per_group", 16)))
    text = (tmp_path / "corpus.txt").read_text(encoding="utf-8")
    (r,) = plain.loglikelihood_rolling([RollingRequest(text, window=64, style="disjoint", rows_per_batch=2)])
    assert math.exp(-r.logprob / r.n_tokens) == pytest.approx(fq["metrics"]["perplexity"]["value"], rel=1e-6)

    # save_fake: a normal HF folder with the same weights
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "save" / "fake_quant_model", dtype=torch.float32)
    ids = torch.tensor([plain.encode_document(text)[:32]])
    with torch.no_grad():
        assert torch.allclose(saved(ids).logits, plain.model(ids).logits, atol=1e-5)
    assert (
        json.loads((tmp_path / "save" / "fake_quant_model" / "lmgauge_quant.json").read_text())["kind"] == "fake-quant"
    )


def test_a_scheme_that_cannot_apply_is_refused_before_any_work(tmp_path, tiny_llama_dir, capsys):
    cfg = _tiny_config(tmp_path, tiny_llama_dir, group_size=36)
    assert main(["run", str(cfg), "--run-id", "r"]) == 2
    assert "q_proj: group_size 36 does not divide its input width 48" in capsys.readouterr().err
    assert not (tmp_path / "out" / "r" / "results" / "tiny_pretrain").exists()


def test_flags_of_plain_runs_are_refused(tmp_path, tiny_llama_dir, capsys):
    cfg = _tiny_config(tmp_path, tiny_llama_dir)
    assert main(["run", str(cfg), "--datasets", "mmlu"]) == 2
    assert "--datasets do not apply to a compression config" in capsys.readouterr().err
