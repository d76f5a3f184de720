"""Loading a transformers model from a folder or a .gguf file.

A .gguf file is dequantized by transformers once (about 20 s for a 135M model) and cached as a
safetensors folder, so later loads take about a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lmgauge.models.base import ModelError

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "float16", "bfloat16")


def cache_root() -> Path:
    return Path(os.environ.get("LMGAUGE_CACHE", Path.home() / ".cache" / "lmgauge"))


def _gguf_key(path: Path) -> str:
    """Identify a gguf file by its size and a hash of its head and tail (hashing GBs takes long)."""
    st = path.stat()
    h = hashlib.sha256(f"{path.name}:{st.st_size}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 22))
        f.seek(max(0, st.st_size - (1 << 22)))
        h.update(f.read(1 << 22))
    return h.hexdigest()[:16]


def split_model_path(path: str | os.PathLike, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """Return (folder, gguf file name or None) for a folder, a .gguf file, or a folder + gguf_file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(
            f"model path {str(p)!r} does not exist: give an HF model folder (config.json + weights) or a .gguf file"
        )
    if p.is_file():
        if p.suffix != ".gguf":
            raise ModelError(f"model path {str(p)!r} is a file but not a .gguf file")
        return p.parent, p.name
    if gguf_file:
        if not (p / gguf_file).is_file():
            raise ModelError(f"gguf_file {gguf_file!r} not found in {str(p)!r}")
        return p, gguf_file
    if not (p / "config.json").is_file():
        ggufs = sorted(x.name for x in p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0]
        hint = f" (it holds {', '.join(ggufs)}: pick one with gguf_file)" if ggufs else ""
        raise ModelError(f"model folder {str(p)!r} has no config.json{hint}")
    return p, None


def dequantized_gguf_folder(folder: Path, gguf_file: str, dtype: str = "float32") -> Path:
    """Folder with the gguf model as safetensors (+ tokenizer), made once and reused."""
    src = folder / gguf_file
    dest = cache_root() / "gguf" / f"{src.stem}-{_gguf_key(src)}-{dtype}"
    if (dest / "config.json").is_file() and any(dest.glob("*.safetensors")):
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once; cached at %s", src, dest)
    torch_dtype = "float32" if dtype == "auto" else dtype
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch_dtype)
    except Exception as e:  # transformers raises many kinds here
        raise ModelError(f"could not read gguf file {str(src)!r}: {e}") from e
    # The weights are plain tensors now; drop the gguf marker so they save as ordinary safetensors.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "lmgauge_source.json").write_text(json.dumps({"gguf": str(src), "dtype": torch_dtype}))
        if dest.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device


def torch_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype == "auto":
        # float16/bfloat16 matmuls on CPU are slow and less exact; CPU gets float32.
        return torch.float32 if device == "cpu" else "auto"
    return getattr(torch, dtype)
