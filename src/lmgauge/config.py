"""Run configuration: plain data validated at the edge, with key paths in every error.

Model entries take the keys OpenCompass users already write (abbr, path, tokenizer_path,
max_seq_len, max_out_len, batch_size, model_kwargs, tokenizer_kwargs, run_cfg), so their configs
port with little change. Config files are Python (defining `models` and `datasets`) or YAML.
"""

from __future__ import annotations

import difflib
import runpy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmgauge.tasks.options import DEFAULT_MAX_OUT_LEN

# OpenCompass model keys that do not change what lmgauge computes; accepted and ignored.
OPENCOMPASS_IGNORED_KEYS = {
    "type",
    "meta_template",
    "batch_padding",
    "pad_token_id",
    "end_str",
    "generation_kwargs",
    "min_out_len",
    "max_num_workers",
    "use_fastchat_template",
    "peft_path",
    "peft_kwargs",
    "stop_words",
    "drop_middle",
    "mode",
    "sync_rank",
}
DTYPE_ALIASES = {
    "torch.float32": "float32",
    "torch.float16": "float16",
    "torch.bfloat16": "bfloat16",
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "bfloat16",
    "half": "float16",
    "float": "float32",
}


class ConfigError(ValueError):
    pass


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "openai", "lightllm"] = "hf"
    abbr: str | None = None
    # an OpenCompass model's summarizer_abbr: its column in OpenCompass' summary (else its name)
    summarizer_abbr: str | None = None
    path: str  # hf: model folder or .gguf; served backends: defaults to api_url
    tokenizer_path: str | None = None
    gguf_file: str | None = None
    max_seq_len: int | None = Field(default=None, gt=1)
    # tokens to generate where neither the dataset entry nor its benchmark sets a budget (OpenCompass' meaning)
    max_out_len: int = Field(default=DEFAULT_MAX_OUT_LEN, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    token_budget: int | None = Field(default=None, gt=0)
    # how suffix rows attend to a shared prefix's KV cache (models/prefix_attention.py); auto:
    # packed where it is exact, else copies
    prefix_attention: Literal["auto", "packed", "cascade", "copies"] = "auto"
    # how generation decodes after a shared prefix (models/slot_decoding.py); auto: slots where exact
    decode_way: Literal["auto", "slots", "batches"] = "auto"
    dtype: str = "auto"
    device: str = "auto"
    bos: Literal["never", "always", "tokenizer"] = "never"
    chat_template: bool = False  # generation prompts through the tokenizer's chat template (instruct models)
    trust_remote_code: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    tokenizer_kwargs: dict[str, Any] = Field(default_factory=dict)
    run_cfg: dict[str, Any] = Field(default_factory=dict)
    # served models (backend openai / lightllm); see docs/api-backends.md
    api_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None  # the key is read from this environment variable, never from a file
    api_type: Literal["openai", "lightllm"] | None = None
    api_chat: bool = False  # generation through /v1/chat/completions
    api_stream: bool = False
    # a question's one-token choices from one request's next-token top-k (0: one request per choice)
    api_topk: int = Field(default=20, ge=0)
    concurrency: int = Field(default=64, gt=0)  # requests in flight
    timeout: float = Field(default=120.0, gt=0)  # seconds per try
    retries: int = Field(default=5, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_opencompass(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k not in OPENCOMPASS_IGNORED_KEYS}
        if data.get("api_url") and "backend" not in data:  # a served model: its URL says which API
            url = str(data["api_url"]).rstrip("/")
            data["backend"] = data.get("api_type") or (
                "lightllm" if url.endswith(("/generate", "/generate_stream")) else "openai"
            )
        if data.get("backend") in ("openai", "lightllm"):
            if "api_tokenizer" in data:
                data.setdefault("tokenizer_path", data.pop("api_tokenizer"))
            data.setdefault("path", data.get("api_url") or "")  # a missing api_url is named below
        mk = dict(data.get("model_kwargs") or {})
        # OpenCompass puts these in model_kwargs; they are first-class here
        for key, field in (("torch_dtype", "dtype"), ("dtype", "dtype"), ("trust_remote_code", "trust_remote_code")):
            if key in mk:
                data.setdefault(field, mk.pop(key))
        if "device_map" in mk:
            dm = mk.pop("device_map")
            data.setdefault("device", dm if isinstance(dm, str) else "auto")
        data["model_kwargs"] = mk
        tk = dict(data.get("tokenizer_kwargs") or {})
        if "trust_remote_code" in tk:
            data.setdefault("trust_remote_code", tk.pop("trust_remote_code"))
        for key in ("padding_side", "truncation_side", "use_fast"):
            tk.pop(key, None)  # the engine pads and truncates itself
        data["tokenizer_kwargs"] = tk
        return data

    @field_validator("dtype", mode="before")  # before: a Python config may give torch.float16 itself
    @classmethod
    def _dtype(cls, v: Any) -> str:
        v = DTYPE_ALIASES.get(str(v), str(v))
        if v not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype {v!r} is not one of auto, float32, float16, bfloat16")
        return v

    @model_validator(mode="after")
    def _served_models_have_a_url(self) -> ModelConfig:
        if self.backend != "hf" and not self.api_url:
            raise ValueError(f"backend {self.backend!r} needs `api_url` (e.g. http://localhost:8000/v1)")
        return self

    @property
    def name(self) -> str:
        if self.backend != "hf":  # the served model's name, else host_port
            from urllib.parse import urlsplit

            return self.abbr or self.api_model or urlsplit(self.api_url or "").netloc.replace(":", "_") or "served"
        p = (
            Path(self.path).expanduser().resolve()
        )  # a folder's dots are part of its name (Llama-3.1-8B); a file's suffix is not
        return self.abbr or (p.stem if p.suffix.lower() == ".gguf" else p.name)


class DatasetConfig(BaseModel):
    """A task or group by name, the docs to take (`limit`), and the options its task takes: each
    task declares those (lmgauge.tasks.options); `validate` checks them against it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(alias="abbr")
    limit: int | None = Field(default=None, gt=0)
    opencompass: dict | None = None  # an OpenCompass dataset entry, checked (lmgauge.opencompass)

    @property
    def options(self) -> dict[str, Any]:
        """The task options this entry sets, as written."""
        return dict(self.model_extra or {})

    def option_problems(self) -> list[tuple[str, str]]:
        """(key, message) for each option the entry's tasks do not take or get with a wrong type;
        an unknown task name is the planner's to report, an OpenCompass entry lmgauge.opencompass's."""
        if self.opencompass is not None:
            return []
        from lmgauge.tasks.options import OptionError
        from lmgauge.tasks.registry import UnknownTask, expand, parse_task_options

        try:
            members = expand(self.name)
            problems: list[tuple[str, str]] = []
            for name, mode in members:
                try:
                    parse_task_options(name, mode, self.options, owner=self.name)
                except OptionError as e:
                    problems += [p for p in e.problems if p not in problems]  # a group's members agree
            return problems
        except UnknownTask:
            return []


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelConfig] = Field(min_length=1)
    datasets: list[DatasetConfig] = Field(min_length=1)
    work_dir: str = "outputs"
    data_dir: str | None = None
    limit: int | None = Field(default=None, gt=0)
    num_fewshot: int | None = Field(default=None, ge=0)
    seed: int = 1234
    allow_weak_sandbox: bool = False  # code tasks may run programs under the rlimit fallback without bwrap
    # an OpenCompass config's summarizer (dataset_abbrs, summary_groups), checked when it was read;
    # what summary/summary_<time>.* is made with (lmgauge.opencompass.summary)
    summarizer: dict | None = None

    @field_validator("datasets", mode="before")
    @classmethod
    def _names_as_strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _unique_model_names(self) -> RunConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two models share the name {dupes[0]!r}: give them distinct `abbr`")
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            field = str(e["loc"][-1])
            owner = ModelConfig if e["loc"][0] == "models" else RunConfig  # dataset entries: option_problems
            close = difflib.get_close_matches(field, list(owner.model_fields), n=1)
            msg = f"unknown key {field!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        lines.append(f"  {loc or '(top)'}: {msg}")
    return "\n".join(lines)


def validate(data: dict, source: str = "config") -> RunConfig:
    """The run configuration, or ConfigError naming `source` and the key path of every problem,
    task options included."""
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    problems = [
        f"  datasets[{i}]" + (f".{key}" if key else "") + f": {msg}"
        for i, ds in enumerate(cfg.datasets)
        for key, msg in ds.option_problems()
    ]
    if problems:
        raise ConfigError("\n".join([f"{source}: invalid configuration", *problems]))
    return cfg


def read_config_file(path: str | Path, oc_root: str | None = None) -> dict:
    """The raw dict of a .py or .yaml config (models, datasets, and optional run keys)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.suffix == ".py":
        from lmgauge.opencompass.config_reader import is_opencompass_config, read_opencompass_config

        if is_opencompass_config(p):  # imports mmengine / opencompass: read as OpenCompass does
            try:
                return read_opencompass_config(p, oc_root)
            except (ValueError, FileNotFoundError) as e:
                raise ConfigError(f"{p}: {e}") from e
        try:
            ns = runpy.run_path(str(p))
        except Exception as e:
            raise ConfigError(f"{p}: error while executing the config: {type(e).__name__}: {e}") from e
        keys = ("models", "datasets", "work_dir", "data_dir", "limit", "num_fewshot", "seed", "allow_weak_sandbox")
        return {k: ns[k] for k in keys if k in ns}
    if p.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping with `models` and `datasets`")
        return data
    raise ConfigError(f"{p}: config files are .py or .yaml")
