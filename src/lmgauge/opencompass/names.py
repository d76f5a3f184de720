"""OpenCompass' CLI names: `--datasets ceval_gen mmlu_ppl_ac766d`, `--models hf_internlm2_chat_1_8b`.

As OpenCompass' utils/run.py does, a dataset name is a config file `<name>.py` anywhere under a
configs root's `datasets/` folder, and the run takes every `*_datasets` list that file defines;
a model name is a file under `models/`, and the run takes its `models` list. Where a name is both
an lmgauge task and an OpenCompass config file, the OpenCompass config wins (the run records
which config file each dataset came from); other names stay lmgauge's.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from lmgauge.opencompass.config_reader import datasets_entries, map_model, plain
from lmgauge.opencompass.imports import configs_roots, run_config_file
from lmgauge.opencompass.task import UnsupportedConfig


def find_config(name: str, kind: str, oc_root: str | None = None) -> Path | None:
    """The config file `<name>.py` under `<configs root>/<kind>/` (first root that has one)."""
    pattern = name if name.endswith(".py") else name + ".py"
    for root in configs_roots(oc_root):
        base = root / kind
        if not base.is_dir():
            continue
        hits = sorted(
            p for p in base.rglob("*.py") if fnmatch.fnmatch(p.name, pattern) and "__pycache__" not in p.parts
        )
        if len(hits) > 1 and "*" not in name:
            listed = ", ".join(str(h.relative_to(base)) for h in hits)
            raise UnsupportedConfig(f"{kind} name {name!r} matches several configs ({listed}); give the full file name")
        if hits:
            return hits[0]
    return None


def dataset_configs(name: str, oc_root: str | None = None) -> tuple[Path, list[dict]] | None:
    """The dataset entries of an OpenCompass dataset config name, or None when it is not one."""
    path = find_config(name, "datasets", oc_root)
    if path is None:
        return None
    ns = run_config_file(path, configs_roots(oc_root))
    entries: list[dict] = []
    for k, v in ns.items():
        if k.endswith("_datasets") and isinstance(v, list):
            entries += [plain(d, f"{name}.{k}[{i}]") for i, d in enumerate(v)]
    if not entries:
        raise UnsupportedConfig(f"{path}: defines no *_datasets list")
    return path, entries


def model_configs(name: str, oc_root: str | None = None) -> tuple[Path, list[dict]]:
    path = find_config(name, "models", oc_root)
    if path is None:
        raise UnsupportedConfig(
            f"model config {name!r} not found under any OpenCompass configs/models folder "
            f"({', '.join(str(r) for r in configs_roots(oc_root)) or 'none found: install opencompass or give --oc-root'})"
        )
    ns = run_config_file(path, configs_roots(oc_root))
    models = ns.get("models")
    if not isinstance(models, list) or not models:
        raise UnsupportedConfig(f"{path}: defines no `models` list")
    return path, [plain(m, f"{name}.models[{i}]") for i, m in enumerate(models)]


def resolve_cli(raw: dict, args) -> dict:
    """Apply OpenCompass' CLI names and options to the raw config dict cli.py built."""
    oc_root = getattr(args, "oc_root", None)
    oc_models: list[dict] = []
    for name in getattr(args, "models", None) or []:
        path, models = model_configs(name, oc_root)
        oc_models += models
    hf_type = getattr(args, "hf_type", None)
    max_out_len = getattr(args, "max_out_len", None)
    # the OpenCompass-shaped models of this run (what the prompt depends on)
    prompt_models: list[dict] = list(oc_models)
    if args.hf_path:
        prompt_models.append(
            {
                "type": "HuggingFacewithChatTemplate" if hf_type == "chat" else "HuggingFaceBaseModel",
                "path": args.hf_path,
                "max_out_len": max_out_len or 256,  # OpenCompass' --max-out-len default
            }
        )
    if oc_models:
        mapped = [map_model(m, f"--models[{i}]") for i, m in enumerate(oc_models)]
        for m in mapped:
            for key in ("max_seq_len", "batch_size", "max_out_len"):
                if getattr(args, key, None) is not None:
                    m[key] = getattr(args, key)
        raw["models"] = mapped + [m for m in raw.get("models", []) if m.get("path") == args.hf_path and args.hf_path]
    if args.hf_path and hf_type == "chat":
        for m in raw["models"]:
            if m.get("path") == args.hf_path:
                m["chat_template"] = True
    if max_out_len:
        for m in raw["models"]:
            m["max_out_len"] = max_out_len
    if not args.datasets:
        return raw
    datasets: list = []
    for name in args.datasets:
        found = dataset_configs(name, oc_root) if isinstance(name, str) else None
        if found is None:
            datasets.append(name)
            continue
        path, entries = found
        try:
            checked = datasets_entries(entries, prompt_models or _as_oc_models(raw["models"]), where=name)
        except UnsupportedConfig as e:
            datasets.append(_lmgauge_instead(name, path, e))
            continue
        for entry in checked:
            entry["opencompass"]["source"] = str(path)
            datasets.append(entry)
    raw["datasets"] = datasets
    return raw


def _as_oc_models(models: list[dict]) -> list[dict]:
    return [
        {
            "type": "HuggingFacewithChatTemplate" if m.get("chat_template") else "HuggingFaceBaseModel",
            "max_out_len": m.get("max_out_len") or 256,  # ModelConfig's default
        }
        for m in models
    ]


def _lmgauge_instead(name: str, path: Path, why: UnsupportedConfig) -> str:
    """An OpenCompass config lmgauge cannot run: lmgauge's task of that name if there is one
    (said on the console), else an error giving both reasons."""
    import logging

    from lmgauge.tasks.registry import UnknownTask, build, expand

    try:
        for task, mode in expand(name):
            build(task, mode)
    except (UnknownTask, KeyError) as e:
        raise UnsupportedConfig(f"{name}: as OpenCompass config {path}: {why}; as an lmgauge task: {e}") from None
    logging.getLogger(__name__).warning(
        "%s: OpenCompass config %s cannot be run (%s); running lmgauge's task %s instead", name, path, why, name
    )
    return name
