"""Config files (OpenCompass-style Python, and YAML) and their errors, which name the file and the key."""

from __future__ import annotations

import textwrap

import pytest

from lmgauge.config import ConfigError, ModelConfig, read_config_file, validate

PY_CONFIG = """\
models = [
    dict(
        abbr='tiny-llama-fp16',
        path='/models/tiny-llama',
        max_seq_len=2048,
        batch_size=8,
        model_kwargs=dict(device_map='auto', torch_dtype='torch.float16', trust_remote_code=True),
        tokenizer_kwargs=dict(padding_side='left'),
        run_cfg=dict(num_gpus=1),
        type='HuggingFaceCausalLM',
        max_out_len=100,
    )
]
datasets = ['mmlu_astronomy', dict(abbr='arc_easy', split='validation', limit=5)]
work_dir = 'outputs/py'
helper_not_a_config_key = 42
"""

YAML_CONFIG = """\
models:
  - abbr: tiny-llama-fp16
    path: /models/tiny-llama
    max_seq_len: 2048
    batch_size: 8
    model_kwargs:
      device_map: auto
      torch_dtype: torch.float16
      trust_remote_code: true
    tokenizer_kwargs:
      padding_side: left
    run_cfg:
      num_gpus: 1
    type: HuggingFaceCausalLM
    max_out_len: 100
datasets:
  - mmlu_astronomy
  - abbr: arc_easy
    split: validation
    limit: 5
work_dir: outputs/py
"""


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def check_resolved(cfg) -> None:
    assert len(cfg.models) == 1
    m = cfg.models[0]
    assert m.name == "tiny-llama-fp16" and m.path == "/models/tiny-llama"
    assert m.dtype == "float16"
    assert m.device == "auto"
    assert m.trust_remote_code is True
    assert (m.max_seq_len, m.batch_size, m.max_out_len) == (2048, 8, 100)
    # moved out of model_kwargs / dropped from tokenizer_kwargs: nothing is passed twice
    assert m.model_kwargs == {} and m.tokenizer_kwargs == {}
    assert m.run_cfg == {"num_gpus": 1}
    assert [d.name for d in cfg.datasets] == ["mmlu_astronomy", "arc_easy"]
    assert cfg.datasets[0].options == {} and cfg.datasets[0].limit is None
    assert cfg.datasets[1].options == {"split": "validation"} and cfg.datasets[1].limit == 5
    assert cfg.work_dir == "outputs/py"


def test_python_config_opencompass_style(tmp_path):
    p = write(tmp_path, "cfg.py", PY_CONFIG)
    raw = read_config_file(p)
    assert set(raw) == {"models", "datasets", "work_dir"}  # helpers of the file are not config keys
    check_resolved(validate(raw, str(p)))


def test_yaml_config_same_result(tmp_path):
    p = write(tmp_path, "cfg.yaml", YAML_CONFIG)
    cfg = validate(read_config_file(p), str(p))
    check_resolved(cfg)
    py = validate(read_config_file(write(tmp_path, "cfg.py", PY_CONFIG)))
    assert cfg.model_dump() == py.model_dump()


def test_yml_suffix_and_real_torch_dtype_object(tmp_path):
    assert read_config_file(write(tmp_path, "c.yml", YAML_CONFIG))["work_dir"] == "outputs/py"
    p = write(
        tmp_path,
        "c.py",
        "import torch\nmodels=[dict(path='/m', model_kwargs=dict(torch_dtype=torch.bfloat16))]\ndatasets=['piqa']\n",
    )
    assert validate(read_config_file(p)).models[0].dtype == "bfloat16"


def test_wrong_type_names_file_and_key_path(tmp_path):
    p = write(tmp_path, "bad.yaml", YAML_CONFIG.replace("batch_size: 8", 'batch_size: "eight"'))
    with pytest.raises(ConfigError) as ei:
        validate(read_config_file(p), str(p))
    msg = str(ei.value)
    assert str(p) in msg
    assert "models[0].batch_size" in msg
    assert "integer" in msg


def test_error_key_path_in_second_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets\[1\]\.limit"):
        validate({"models": [{"path": "/m"}], "datasets": ["piqa", {"abbr": "boolq", "limit": 0}]})


def test_unknown_key_suggests_the_right_one(tmp_path):
    p = write(tmp_path, "bad.py", PY_CONFIG.replace("batch_size=8", "batchsize=8"))
    with pytest.raises(ConfigError) as ei:
        validate(read_config_file(p), str(p))
    msg = str(ei.value)
    assert str(p) in msg
    assert "models[0].batchsize" in msg
    assert "unknown key 'batchsize'" in msg and "did you mean 'batch_size'" in msg


def test_unknown_dataset_and_top_level_keys_suggest_too():
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.limt: piqa: unknown option 'limt' \(did you mean limit\?\)"):
        validate({"models": [{"path": "/m"}], "datasets": [{"abbr": "piqa", "limt": 3}]})
    with pytest.raises(ConfigError, match=r"work_dri: unknown key 'work_dri' \(did you mean 'work_dir'\?\)"):
        validate({"models": [{"path": "/m"}], "datasets": ["piqa"], "work_dri": "x"})


def test_missing_path(tmp_path):
    p = write(tmp_path, "nopath.yaml", YAML_CONFIG.replace("    path: /models/tiny-llama\n", ""))
    with pytest.raises(ConfigError) as ei:
        validate(read_config_file(p), str(p))
    msg = str(ei.value)
    assert str(p) in msg and "models[0].path" in msg and "required" in msg.lower()


def test_missing_models_and_datasets():
    with pytest.raises(ConfigError) as ei:
        validate({}, "empty.yaml")
    msg = str(ei.value)
    assert "empty.yaml" in msg and "models" in msg and "datasets" in msg


def test_duplicate_model_names():
    with pytest.raises(ConfigError, match="two models share the name 'same'"):
        validate({"models": [{"abbr": "same", "path": "/a"}, {"abbr": "same", "path": "/b"}], "datasets": ["piqa"]})
    # names from paths collide too when no abbr tells them apart
    with pytest.raises(ConfigError, match="share the name 'llama'"):
        validate({"models": [{"path": "/x/llama"}, {"path": "/y/llama"}], "datasets": ["piqa"]})


def test_model_name_from_path_keeps_dots_of_folder_names():
    # HF folder names carry versions: only a model file's suffix is not part of the name
    assert ModelConfig(path="/models/Llama-3.1-8B").name == "Llama-3.1-8B"
    assert ModelConfig(path="/models/Qwen2.5-0.5B/").name == "Qwen2.5-0.5B"
    assert ModelConfig(path="/m/SmolLM2-135M-Instruct.Q4_1.gguf").name == "SmolLM2-135M-Instruct.Q4_1"
    cfg = validate({"models": [{"path": "/m/Llama-3.1-8B"}, {"path": "/m/Llama-3.2-1B"}], "datasets": ["piqa"]})
    assert [m.name for m in cfg.models] == ["Llama-3.1-8B", "Llama-3.2-1B"]


@pytest.mark.parametrize("text", ["- models\n- datasets\n", "just a string\n", "42\n"])
def test_yaml_not_a_mapping(tmp_path, text):
    p = write(tmp_path, "list.yaml", text)
    with pytest.raises(ConfigError) as ei:
        read_config_file(p)
    assert str(p) in str(ei.value) and "mapping" in str(ei.value)


def test_yaml_syntax_error_names_file(tmp_path):
    p = write(tmp_path, "broken.yaml", "models: [\n  path: x\n")
    with pytest.raises(ConfigError) as ei:
        read_config_file(p)
    assert str(p) in str(ei.value) and "YAML" in str(ei.value)


def test_python_config_that_raises(tmp_path):
    p = write(
        tmp_path,
        "boom.py",
        textwrap.dedent("""\
        models = [dict(path='/m')]
        datasets = undefined_name
    """),
    )
    with pytest.raises(ConfigError) as ei:
        read_config_file(p)
    msg = str(ei.value)
    assert str(p) in msg and "NameError" in msg and "undefined_name" in msg


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.py")
    with pytest.raises(ConfigError, match=r"\.py or \.yaml"):
        read_config_file(write(tmp_path, "cfg.json", "{}"))


def test_bad_dtype_is_rejected_with_choices():
    with pytest.raises(ConfigError, match=r"models\[0\]\.dtype.*not one of auto, float32, float16, bfloat16"):
        validate({"models": [{"path": "/m", "model_kwargs": {"torch_dtype": "int8"}}], "datasets": ["piqa"]})
