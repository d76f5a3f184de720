"""An OpenCompass config (models, datasets, work_dir, infer, eval, summarizer) -> lmgauge's run.

The file is executed with lmgauge's stand-ins for mmengine and opencompass (imports.py); its
values are turned into plain data (a Ref becomes its dotted name, torch dtypes their names), each
dataset entry is checked by building its task (so what is not supported fails here, naming the
key), and the models are mapped onto lmgauge's backends. Everything is plain JSON afterwards: it
is what run.json records and what a worker process rebuilds the tasks from.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from lmgauge.opencompass.imports import Ref, configs_roots, run_config_file
from lmgauge.opencompass.summarizer import check_summarizer
from lmgauge.opencompass.task import ModelPrompt, OpenCompassTask, UnsupportedConfig, short
from lmgauge.opencompass.version import version

log = logging.getLogger(__name__)

BASE_MODELS = ("HuggingFaceBaseModel", "HuggingFace", "HuggingFaceCausalLM")
CHAT_MODELS = ("HuggingFacewithChatTemplate",)
# in-process engines whose answers the hf backend reproduces (greedy): run through it
LOCAL_ENGINES = ("VLLM", "VLLMwithChatTemplate", "TurboMindModel", "TurboMindModelwithChatTemplate")
SERVED = ("LightllmAPI", "OpenAI", "OpenAISDK")
MODEL_TYPES = BASE_MODELS + CHAT_MODELS + LOCAL_ENGINES + SERVED
RUNNERS = ("LocalRunner", "SlurmRunner", "SlurmSequentialRunner")
PARTITIONERS = ("NaivePartitioner", "SizePartitioner", "NumWorkerPartitioner")


def is_opencompass_config(path: Path) -> bool:
    text = path.read_text(encoding="utf-8", errors="replace")
    return bool(re.search(r"^\s*(from|import)\s+(mmengine|opencompass)\b", text, re.M))


def plain(value: Any, where: str) -> Any:
    """Config values -> JSON data; anything else is refused, naming where it is."""
    if isinstance(value, Ref):
        return value.dotted
    if isinstance(value, dict):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    mod = type(value).__module__
    if mod.startswith("torch"):  # torch.float16 in model_kwargs
        return str(value)
    if isinstance(value, type) or callable(value):
        name = getattr(value, "__qualname__", repr(value))
        raise UnsupportedConfig(
            f"{where}: {name} is defined in the config, not imported from opencompass; lmgauge maps "
            "OpenCompass' own names only"
        )
    raise UnsupportedConfig(f"{where}: a {type(value).__name__} value cannot be read ({value!r})")


def _model_prompt(models: list[dict], datasets_need_it: bool) -> ModelPrompt:
    """The one way every model of the run reads prompts (lmgauge builds a task once per dataset)."""
    kinds = []
    for m in models:
        t = short(m.get("type", "HuggingFaceBaseModel"))
        chat = t.endswith("withChatTemplate") or (t in ("OpenAI", "OpenAISDK"))
        # LightllmAPI posts its generation_kwargs as they are: their max_new_tokens, whatever the dataset's
        # max_out_len (models/lightllm_api.py)
        fixed = (m.get("generation_kwargs") or {}).get("max_new_tokens") if t == "LightllmAPI" else None
        kinds.append(
            (
                chat,
                m.get("meta_template") if not chat else None,
                m.get("max_out_len"),
                tuple(m.get("stop_words") or ()),
                fixed,
            )
        )
    first = kinds[0]
    for i, k in enumerate(kinds[1:], 1):
        if k[:2] != first[:2] or k[3:] != first[3:] or (datasets_need_it and k[2] != first[2]):
            raise UnsupportedConfig(
                f"models[{i}]: its prompt settings (chat template, meta_template, stop_words or max_out_len) differ "
                "from models[0]'s; lmgauge builds one prompt per dataset: run such models in separate runs"
            )
    return ModelPrompt(
        chat=first[0], meta_template=first[1], max_out_len=first[2], stop_words=first[3], max_new_tokens=first[4]
    )


def map_model(m: dict, where: str) -> dict:
    """An OpenCompass model entry -> lmgauge ModelConfig keys."""
    t = short(m.get("type", "HuggingFaceBaseModel"))
    if t not in MODEL_TYPES:
        raise UnsupportedConfig(f"{where}.type: {t} is not supported (supported: {', '.join(MODEL_TYPES)})")
    out: dict[str, Any] = {}
    for k in (
        "abbr",
        "summarizer_abbr",
        "path",
        "tokenizer_path",
        "max_seq_len",
        "max_out_len",
        "batch_size",
        "run_cfg",
    ):
        if m.get(k) is not None:
            out[k] = m[k]
    out["model_kwargs"] = dict(m.get("model_kwargs") or {})
    out["tokenizer_kwargs"] = dict(m.get("tokenizer_kwargs") or {})
    gk = dict(m.get("generation_kwargs") or {})
    greedy_defaults = {"do_sample": False, "num_beams": 1, "ignore_eos": False}
    sampling = {
        k: v
        for k, v in gk.items()
        if not (k in greedy_defaults and v == greedy_defaults[k]) and not (t == "LightllmAPI" and k == "max_new_tokens")
    }
    if sampling:
        raise UnsupportedConfig(f"{where}.generation_kwargs: {sampling} is not supported (greedy decoding only)")
    if t in SERVED:
        url = m.get("url") if t == "LightllmAPI" else m.get("openai_api_base")
        if not url:
            raise UnsupportedConfig(f"{where}: {t} needs {'url' if t == 'LightllmAPI' else 'openai_api_base'}")
        if t == "LightllmAPI" and not gk.get("max_new_tokens"):
            raise UnsupportedConfig(
                f"{where}.generation_kwargs.max_new_tokens: missing; OpenCompass' LightllmAPI posts generation_kwargs "
                "as they are (the dataset's max_out_len is not sent), so the server's own default would apply: give it"
            )
        if isinstance(url, list):
            url = url[0]
        out["api_url"] = url
        out["backend"] = "lightllm" if t == "LightllmAPI" else "openai"
        if t != "LightllmAPI":
            out["api_model"] = m.get("path")
            out["api_chat"] = True
            out.pop("path", None)
            key = m.get("key", "ENV")
            keys = key if isinstance(key, list) else [key]
            if keys and keys[0] and keys[0] != "ENV":
                # a key written in the config: handed on through this process' environment, never to run.json
                var = f"LMGAUGE_OC_KEY_{re.sub(r'[^A-Za-z0-9]', '_', str(m.get('abbr') or 'model')).upper()}"
                os.environ[var] = str(keys[0])
                out["api_key_env"] = var
            else:
                out["api_key_env"] = "OPENAI_API_KEY"
        out.setdefault("path", url)
        if m.get("tokenizer_path"):
            out["tokenizer_path"] = m["tokenizer_path"]
    else:
        if not m.get("path"):
            raise UnsupportedConfig(f"{where}.path: missing")
        out["bos"] = "tokenizer"  # OpenCompass tokenizes with add_special_tokens=True
        if t.endswith("withChatTemplate"):
            out["chat_template"] = True
        if t in LOCAL_ENGINES:
            log.info("%s: %s runs through lmgauge's hf backend (same greedy answers)", where, t)
    return out


def _runner_options(ns: dict) -> dict:
    """infer / eval sections -> execution options (CLI flags override them)."""
    opts: dict[str, Any] = {}
    infer = ns.get("infer") or {}
    part = infer.get("partitioner") or {}
    if part:
        pt = short(part.get("type"))
        if pt not in PARTITIONERS:
            raise UnsupportedConfig(
                f"infer.partitioner.type: {pt} is not supported (supported: {', '.join(PARTITIONERS)})"
            )
        if part.get("max_task_size"):
            # OpenCompass' size is in dataset "cost" units (~ prompt characters); lmgauge's in tokens
            opts["max_partition_size"] = int(part["max_task_size"])
    for section in ("infer", "eval"):
        runner = (ns.get(section) or {}).get("runner") or {}
        if not runner:
            continue
        rt = short(runner.get("type"))
        if rt not in RUNNERS:
            raise UnsupportedConfig(
                f"{section}.runner.type: {rt} is not supported (supported: {', '.join(RUNNERS)}); "
                "cloud runners (DLCRunner, VOLCRunner, ...) are not available in lmgauge"
            )
        if section == "eval":
            continue  # lmgauge scores as answers arrive; the eval runner has no work of its own
        if rt.startswith("Slurm"):
            opts["slurm"] = True
            for k, dest in (("partition", "partition"), ("quotatype", "qos"), ("qos", "qos")):
                if runner.get(k):
                    opts[dest] = runner[k]
        if runner.get("max_num_workers"):
            opts["max_num_workers"] = int(runner["max_num_workers"])
        if runner.get("retry") is not None:
            opts["retry"] = int(runner["retry"])
    return opts


def read_opencompass_config(path: str | Path, oc_root: str | None = None) -> dict:
    """The lmgauge config dict of an OpenCompass config file (models, datasets, work_dir, and
    `opencompass_run` with the execution options and the summarizer)."""
    p = Path(path)
    roots = configs_roots(oc_root)
    try:
        ns = run_config_file(p, roots)
    except UnsupportedConfig:
        raise
    except Exception as e:
        raise UnsupportedConfig(f"{p}: error while reading the config: {type(e).__name__}: {e}") from e
    data: dict[str, Any] = {}
    raw_models = [plain(m, f"models[{i}]") for i, m in enumerate(ns.get("models") or [])]
    raw_datasets = [plain(d, f"datasets[{i}]") for i, d in enumerate(ns.get("datasets") or [])]
    data["models"] = [map_model(m, f"models[{i}]") for i, m in enumerate(raw_models)]
    data["datasets"] = datasets_entries(raw_datasets, raw_models)
    if ns.get("work_dir"):
        data["work_dir"] = str(ns["work_dir"])
    data["opencompass_run"] = {
        **_runner_options(ns),
        "summarizer": check_summarizer(plain(ns["summarizer"], "summarizer")) if ns.get("summarizer") else None,
    }
    return data


def read_datasets_only(path: str | Path, max_out_len: int | None = None, oc_root: str | None = None) -> dict:
    """The datasets and summarizer of an OpenCompass config for a model given elsewhere (a compression
    config's `opencompass:` block: the model is the compressed one, as llmc overrides it). Returns
    {datasets, summarizer, ignored}: `ignored` names the config's keys that do not apply (its models'
    abbrs, work_dir, infer/eval) so the caller can say so. Prompts are a base model's (no meta
    template); `max_out_len` stands in for the models' for a GenInferencer without its own."""
    p = Path(path)
    roots = configs_roots(oc_root)
    try:
        ns = run_config_file(p, roots)
    except UnsupportedConfig:
        raise
    except Exception as e:
        raise UnsupportedConfig(f"{p}: error while reading the config: {type(e).__name__}: {e}") from e
    raw_datasets = [plain(d, f"datasets[{i}]") for i, d in enumerate(ns.get("datasets") or [])]
    if not raw_datasets:
        raise UnsupportedConfig(f"{p}: the config defines no `datasets`")
    stand_in = [{"type": "HuggingFaceBaseModel", "max_out_len": max_out_len}]
    ignored: dict[str, Any] = {}
    models = ns.get("models") or []
    if models:
        ignored["models"] = [
            str(m.get("abbr") or m.get("path") or i) if isinstance(m, dict) else str(i) for i, m in enumerate(models)
        ]
    for key in ("work_dir", "infer", "eval"):
        if ns.get(key):
            ignored[key] = str(ns[key]) if key == "work_dir" else "set"
    return {
        "datasets": datasets_entries(raw_datasets, stand_in),
        "summarizer": check_summarizer(plain(ns["summarizer"], "summarizer")) if ns.get("summarizer") else None,
        "ignored": ignored,
    }


def datasets_entries(raw_datasets: list[dict], raw_models: list[dict], where: str = "datasets") -> list[dict]:
    """Each OpenCompass dataset entry, checked now, as an lmgauge dataset entry (`opencompass`)."""
    needs_len = any(
        short((d.get("infer_cfg") or {}).get("inferencer", {}).get("type")) == "GenInferencer"
        and not d["infer_cfg"]["inferencer"].get("max_out_len")
        for d in raw_datasets
        if isinstance(d, dict)
    )
    mp = _model_prompt(raw_models, needs_len) if raw_models else ModelPrompt()
    out, seen = [], set()
    for i, d in enumerate(raw_datasets):
        w = f"{where}[{i}]"
        if not isinstance(d, dict):
            raise UnsupportedConfig(f"{w}: expected a dataset dict, got {type(d).__name__}")
        abbr = d.get("abbr") or dataset_abbr(d)
        if abbr in seen:
            raise UnsupportedConfig(f"{w}.abbr: {abbr!r} is listed twice")
        seen.add(abbr)
        # version: OpenCompass' own prompt hash (its summary's `version` column), recorded in run.json
        spec = {"entry": d, "where": w, "model_prompt": mp.__dict__, "version": version(d)}
        build_task(abbr, spec)  # fails now on anything unsupported
        out.append({"name": abbr, "opencompass": spec})
    return out


def dataset_abbr(d: dict) -> str:
    """OpenCompass' dataset_abbr_from_cfg for an entry without `abbr`: its path (+ '_' + name, when the
    key is there), '/' replaced by '_' (the name its results, summary rows and summary groups use)."""
    abbr = str(d.get("path", "dataset"))
    if "name" in d:
        abbr += "_" + str(d["name"])
    return abbr.replace("/", "_")


def build_task(name: str, spec: dict, max_seq_len: int | None = None) -> OpenCompassTask:
    """The task of a dataset entry; `max_seq_len`: the model's, when the task is built for one."""
    mp = ModelPrompt(**{**spec.get("model_prompt", {})})
    mp.stop_words = tuple(mp.stop_words)
    return OpenCompassTask(
        name=name, entry=spec["entry"], where=spec.get("where", name), model_prompt=mp, max_seq_len=max_seq_len
    )
