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
    if cfg.backend in ("openai", "lightllm"):  # a model served over HTTP
        served = dict(
            name=cfg.name,
            api_model=cfg.api_model,
            api_key_env=cfg.api_key_env,
            tokenizer_path=cfg.tokenizer_path,
            stream=cfg.api_stream,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            retries=cfg.retries,
            max_seq_len=cfg.max_seq_len,
            bos=cfg.bos,
            trust_remote_code=cfg.trust_remote_code,
            tokenizer_kwargs=cfg.tokenizer_kwargs,
        )
        if cfg.backend == "lightllm":
            from lmgauge.models.lightllm import LightLLMModel

            return LightLLMModel(cfg.api_url, **served)
        from lmgauge.models.openai_api import OpenAIModel

        return OpenAIModel(cfg.api_url, chat=cfg.api_chat, **served)
    raise ModelError(f"unknown backend {cfg.backend!r}")


__all__ = ["LanguageModel", "ModelError", "build_model"]
