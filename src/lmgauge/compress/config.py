"""The YAML compression users already write (llmc's keys), validated at the edge.

    model: {type, path, torch_dtype}
    eval: {eval_pos: [pretrain, fake_quant], name: wikitext2 | [wikitext2, c4] | a text path, path, bs, seq_len}
    quant: {method: RTN, weight: {bit, symmetric, granularity, group_size}, act: {bit, symmetric, granularity}}
    save: {save_trans, save_fake, save_path}
    opencompass: {cfg_path, output_path}      # the datasets of an OpenCompass config, at every position
    tasks: [mmlu_astronomy, {name: mmlu_anatomy, num_fewshot: 5}]   # lmgauge's own task list

A file is a compression config when its top level has `quant` or `eval` with `eval_pos`
(`is_compression_config`). Unknown keys are refused with their key path.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmgauge.config import ConfigError, RunConfig, validate
from lmgauge.models.quant import QuantError, QuantScheme, QuantSpec

log = logging.getLogger(__name__)

POSITIONS = ("pretrain", "transformed", "fake_quant", "fake_quant_wo_kv")
# What each position's numbers come from (the label the report shows).
POSITION_KIND = {
    "pretrain": "float",
    "transformed": "float",
    "fake_quant": "fake-quant",
    "fake_quant_wo_kv": "fake-quant",
}
# llmc's eval names that are perplexity corpora; anything else in `eval.name` is a path to text.
CORPORA = ("wikitext2", "c4", "ptb")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseSection(_Strict):
    seed: int = 42


class ModelSection(_Strict):
    type: str | None = None  # llmc's model class (Llama, Qwen2, ...); transformers reads the folder's config
    path: str
    torch_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    tokenizer_path: str | None = None
    abbr: str | None = None  # lmgauge: the model's name in the run directory (default: the folder name)
    device: str = "auto"
    trust_remote_code: bool = False


class EvalSection(_Strict):
    eval_pos: list[str] = Field(min_length=1)
    name: str | list[str] | None = None
    path: str | None = None
    bs: int = Field(default=1, gt=0)
    seq_len: int = Field(default=2048, gt=1)
    download: bool = False
    inference_per_block: bool = False  # llmc's memory option for 70B models; one process here, whole model
    eval_token_consist: bool | None = None  # llmc's token consistency: what "same top token" measures here
    type: str | None = None  # llmc: ppl (the default) or other evaluators; only ppl here

    @field_validator("eval_pos")
    @classmethod
    def _known_positions(cls, v: list[str]) -> list[str]:
        for p in v:
            if p not in POSITIONS:
                raise ValueError(f"eval_pos {p!r} is not one of {', '.join(POSITIONS)}")
        if len(set(v)) != len(v):
            raise ValueError("eval_pos lists a position twice")
        return v

    @field_validator("type")
    @classmethod
    def _ppl_only(cls, v: str | None) -> str | None:
        if v not in (None, "ppl"):
            raise ValueError(f"eval type {v!r}: only ppl is evaluated from `eval`; put other tasks under `tasks`")
        return v

    @model_validator(mode="after")
    def _no_download(self) -> EvalSection:
        if self.download:
            raise ValueError("download: true is not supported (no hub here): give `path` to the data")
        return self

    def names(self) -> list[str]:
        if self.name is None:
            return []
        return [self.name] if isinstance(self.name, str) else list(self.name)


class WeightSection(_Strict):
    bit: int
    symmetric: bool = False
    granularity: Literal["per_channel", "per_group", "per_tensor"] = "per_channel"
    group_size: int = -1  # llmc writes -1 for "no groups"
    calib_algo: Literal["minmax"] = "minmax"  # RTN's; mse/learnable/hqq are other methods

    def spec(self) -> QuantSpec:
        group = self.group_size if self.granularity == "per_group" else None
        return QuantSpec(self.bit, self.symmetric, self.granularity, group)


class ActSection(_Strict):
    bit: int
    symmetric: bool = False
    granularity: Literal["per_token", "per_tensor"] = "per_token"
    calib_algo: Literal["minmax"] = "minmax"
    static: bool = False

    @model_validator(mode="after")
    def _dynamic_only(self) -> ActSection:
        if self.static:
            raise ValueError("static activation quant needs calibration data: only dynamic (static: false) is done")
        return self

    def spec(self) -> QuantSpec:
        return QuantSpec(self.bit, self.symmetric, self.granularity)


class QuantSection(_Strict):
    method: Literal["RTN"]
    weight: WeightSection
    act: ActSection | None = None
    skip_layers: list[str] = Field(default_factory=lambda: ["lm_head"])  # lmgauge: Linear layers kept float

    @model_validator(mode="after")
    def _valid_scheme(self) -> QuantSection:
        self.scheme()  # bits, granularity and group size checked now, before any model loads
        return self

    def scheme(self) -> QuantScheme:
        try:
            return QuantScheme(self.weight.spec(), self.act.spec() if self.act else None, tuple(self.skip_layers))
        except QuantError as e:
            raise ValueError(str(e)) from None


class SaveSection(_Strict):
    save_trans: bool = False
    save_fake: bool = False
    save_path: str | None = None

    @model_validator(mode="after")
    def _path_when_saving(self) -> SaveSection:
        if (self.save_trans or self.save_fake) and not self.save_path:
            raise ValueError("save_trans / save_fake need save_path")
        return self


class OpenCompassSection(_Strict):
    """llmc's block: run the datasets of the OpenCompass config `cfg_path` (relative to the YAML file)
    on the model at each position; `output_path` is OpenCompass' work dir (llmc passes it as
    `-w`): an OpenCompass-layout copy of the results goes to output_path/<time>/."""

    cfg_path: str
    output_path: str | None = None
    max_out_len: int | None = Field(default=None, gt=0)  # lmgauge: for gen datasets without their own


class ServedEndpoint(_Strict):
    api_url: str
    api_model: str | None = None  # default: the one model the server lists
    api_key_env: str | None = None  # the variable holding the key (never the key itself)
    kind: Literal["float", "fake-quant", "real-kernel"] | None = None  # default: pretrain float, others real-kernel


class ServedSection(_Strict):
    """lmgauge's: each position served over HTTP (compress/served_pair.py) instead of in-process."""

    topk: int = Field(default=20, ge=2)  # prompt logprobs per position for the KL bound (vLLM's --max-logprobs)
    pretrain: ServedEndpoint | None = None
    transformed: ServedEndpoint | None = None
    fake_quant: ServedEndpoint | None = None
    fake_quant_wo_kv: ServedEndpoint | None = None

    def endpoint(self, pos: str) -> ServedEndpoint:
        ep = getattr(self, pos)
        assert ep is not None, pos  # checked by CompressConfig
        return ep


class CompressConfig(_Strict):
    base: BaseSection = Field(default_factory=BaseSection)
    model: ModelSection
    eval: EvalSection
    quant: QuantSection | None = None
    save: SaveSection = Field(default_factory=SaveSection)
    opencompass: OpenCompassSection | None = None
    served: ServedSection | None = None
    tasks: list[str | dict] = Field(default_factory=list)
    limit: int | None = Field(default=None, gt=0)
    num_fewshot: int | None = Field(default=None, ge=0)
    work_dir: str = "outputs"
    data_dir: str | None = None
    # the `opencompass:` block's datasets as lmgauge entries (read by load_compression_config)
    oc_datasets: list[dict] = Field(default_factory=list, exclude=True)
    oc_summarizer: dict | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> CompressConfig:
        if self.served is not None:
            missing = [p for p in self.eval.eval_pos if getattr(self.served, p) is None]
            if missing:
                raise ValueError(f"served: eval_pos {missing[0]} has no served.{missing[0]}: {{api_url: ...}}")
            extra = [p for p in POSITIONS if getattr(self.served, p) is not None and p not in self.eval.eval_pos]
            if extra:
                raise ValueError(f"served.{extra[0]}: not in eval_pos")
            if self.quant is not None or self.save.save_fake or self.save.save_trans:
                raise ValueError(
                    "served: the positions are the servers' models; quant / save apply to in-process runs "
                    "(make the folder to serve with save_fake in a run without `served`)"
                )
            return self._something_to_do()
        fq = [p for p in self.eval.eval_pos if p.startswith("fake_quant")]
        if fq and self.quant is None and not self.save.save_path:
            raise ValueError(
                f"eval_pos {fq[0]}: needs a `quant` block, or save.save_path holding llmc's fake_quant_model/"
            )
        if self.save.save_fake and self.quant is None:
            raise ValueError("save_fake needs a `quant` block to make the fake-quant model")
        if self.save.save_trans:
            raise ValueError("save_trans: RTN has no transformation to save (transformed == pretrain)")
        return self._something_to_do()

    def _something_to_do(self) -> CompressConfig:
        if not self.eval.names() and not self.tasks and self.opencompass is None:
            raise ValueError("nothing to evaluate: give eval.name (a perplexity corpus), tasks and/or opencompass")
        return self

    @property
    def abbr(self) -> str:
        p = Path(self.model.path).expanduser()
        return self.model.abbr or (p.stem if p.suffix.lower() == ".gguf" else p.name) or "model"

    def position_name(self, position: str) -> str:
        """The model name of a position in the run directory (its own results/<name>/ folder)."""
        return f"{self.abbr}@{position}"

    def ppl_datasets(self) -> list[dict]:
        """`eval.name` as lmgauge dataset entries: windows of seq_len (GPTQ/llmc convention)."""
        out = []
        for name in self.eval.names():
            common = {"seq_len": self.eval.seq_len, "bs": self.eval.bs}
            if name == "wikitext2":
                out.append({"name": "wikitext2", "path": _corpus_path(self.eval.path, name), **common})
            elif name in CORPORA:
                where = _corpus_path(self.eval.path, name)
                if where is None:
                    raise ValueError(f"eval.name {name}: give eval.path (a text/jsonl/parquet file or folder)")
                out.append({"name": "ppl", "path": where, "style": "windows", **common})
            else:  # a path to any text lmgauge reads
                out.append({"name": "ppl", "path": name, "style": "windows", **common})
        return out

    def run_config(self) -> RunConfig:
        """The model and every task (perplexity corpora first) as a validated lmgauge RunConfig."""
        tasks = [t if isinstance(t, dict) else {"name": t} for t in self.tasks]
        datasets = self.ppl_datasets() + tasks + list(self.oc_datasets)
        if sum(1 for d in datasets if d["name"] == "ppl") > 1:
            raise ValueError("more than one text corpus besides wikitext2: one `ppl` corpus per run for now")
        raw: dict[str, Any] = {
            "models": [
                {
                    "path": self.model.path,
                    "abbr": self.abbr,
                    "dtype": self.model.torch_dtype,
                    "device": self.model.device,
                    "tokenizer_path": self.model.tokenizer_path,
                    "trust_remote_code": self.model.trust_remote_code,
                }
            ],
            "datasets": datasets,
            "work_dir": self.work_dir,
            "data_dir": self.data_dir,
            "seed": self.base.seed,
        }
        if self.limit is not None:
            raw["limit"] = self.limit
        if self.num_fewshot is not None:
            raw["num_fewshot"] = self.num_fewshot
        if self.oc_summarizer is not None:
            raw["summarizer"] = self.oc_summarizer
        return validate(raw, "compression config (tasks / eval.name)")


def _corpus_path(root: str | None, name: str) -> str | None:
    """Where under eval.path a corpus is: llmc keeps each under eval.path/<name>; wikitext2 may be the
    raw release's folder (wikitext-2-raw/) or HF's (wikitext-2-raw-v1/); else eval.path is the corpus."""
    if root is None:
        return None
    p = Path(root).expanduser()
    subs = [name] + (["wikitext-2-raw", "wikitext-2-raw-v1"] if name == "wikitext2" else [])
    for sub in subs:
        if (p / sub).exists():
            return str(p / sub)
    return str(p)


def is_compression_config(data: dict) -> bool:
    ev = data.get("eval")
    return "quant" in data or (isinstance(ev, dict) and "eval_pos" in ev)


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid compression config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            owner = _owner(e["loc"][:-1])
            close = difflib.get_close_matches(key, list(owner.model_fields), n=1) if owner else []
            msg = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _owner(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = CompressConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        model = candidates[0]
    return model


def load_compression_config(data: dict, source: str = "config") -> CompressConfig:
    """The validated config; an `opencompass:` block's config file is read now (cfg_path relative
    to the YAML file, as llmc's configs are written), so its errors come before any model loads."""
    if "oc_datasets" in data or "oc_summarizer" in data:
        raise ConfigError(f"{source}: unknown key 'oc_datasets' / 'oc_summarizer'")
    try:
        cc = CompressConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None
    if cc.opencompass is not None:
        read_opencompass_block(cc, Path(source).parent if Path(source).is_file() else Path.cwd(), source)
    return cc


def read_opencompass_block(cc: CompressConfig, base: Path, source: str) -> None:
    from lmgauge.opencompass.config_reader import read_datasets_only
    from lmgauge.opencompass.task import UnsupportedConfig

    oc = cc.opencompass
    assert oc is not None
    cfg = Path(oc.cfg_path).expanduser()
    cfg = cfg if cfg.is_absolute() else base / cfg
    if not cfg.is_file():
        raise ConfigError(f"{source}: opencompass.cfg_path {oc.cfg_path!r}: no such file ({cfg})")
    try:
        read = read_datasets_only(cfg, oc.max_out_len)
    except UnsupportedConfig as e:
        hint = " (give opencompass.max_out_len: N here)" if "max_out_len: not given" in str(e) else ""
        raise ConfigError(f"{source}: opencompass.cfg_path {oc.cfg_path!r}: {e}{hint}") from None
    ignored = read["ignored"]
    if "models" in ignored:
        log.warning(
            "%s: opencompass.cfg_path %s defines models (%s): not used; the model evaluated is this config's, "
            "at each position (llmc overrides the OpenCompass model the same way)",
            source,
            oc.cfg_path,
            ", ".join(ignored["models"]),
        )
    for key in ("work_dir", "infer", "eval"):
        if key in ignored:
            log.warning(
                "%s: opencompass.cfg_path %s sets %s: not used here (%s)",
                source,
                oc.cfg_path,
                key,
                "opencompass.output_path is the work dir" if key == "work_dir" else "one process runs every position",
            )
    taken = {d["name"] for d in cc.ppl_datasets()} | {t if isinstance(t, str) else t.get("name") for t in cc.tasks}
    for d in read["datasets"]:
        if d["name"] in taken:
            raise ConfigError(f"{source}: opencompass.cfg_path {oc.cfg_path!r}: dataset {d['name']!r} is also in tasks")
    cc.oc_datasets = read["datasets"]
    cc.oc_summarizer = read["summarizer"]
    cc.opencompass = oc.model_copy(update={"cfg_path": str(cfg)})
