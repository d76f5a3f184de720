"""Backends. `build_model` turns a validated model config into a LanguageModel."""

from __future__ import annotations

from lmgauge.models.base import LanguageModel, ModelError


def build_model(cfg) -> LanguageModel:
    """cfg: lmgauge.config.ModelConfig."""
    if cfg.backend == "hf":
        from lmgauge.models.hf import HFModel

        return HFModel(
            cfg.path,
            name=cfg.name,
            tokenizer_path=cfg.tokenizer_path,
            gguf_file=cfg.gguf_file,
            dtype=cfg.dtype,
            device=cfg.device,
            trust_remote_code=cfg.trust_remote_code,
            bos=cfg.bos,
            chat_template=cfg.chat_template,
            max_seq_len=cfg.max_seq_len,
            batch_size=cfg.batch_size,
            token_budget=cfg.token_budget,
            model_kwargs=cfg.model_kwargs,
            tokenizer_kwargs=cfg.tokenizer_kwargs,
        )
    raise ModelError(f"unknown backend {cfg.backend!r}")


__all__ = ["LanguageModel", "ModelError", "build_model"]
