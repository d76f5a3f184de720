"""Backends. `build_model` turns a validated model config into a LanguageModel."""

from __future__ import annotations

import importlib

from lmgauge.models.base import LanguageModel, ModelError

# Models served over HTTP, by backend name: "module:class", a subclass of served.ServedModel.
# A new one (SGLang's /generate, TensorRT-LLM's server) is its own module plus one line here.
SERVED_BACKENDS = {
    "openai": "lmgauge.models.openai_api:OpenAIModel",
    "lightllm": "lmgauge.models.lightllm:LightLLMModel",
}


def build_model(cfg) -> LanguageModel:
    """cfg: lmgauge.config.ModelConfig. Paths on object storage (s3://, cluster:s3://) are loaded
    from their local copy (object_store)."""
    from lmgauge.models.object_store import local_path

    if cfg.backend == "hf":
        from lmgauge.models.hf import HFModel

        return HFModel(
            str(local_path(cfg.path)),
            name=cfg.name,
            tokenizer_path=local_path(cfg.tokenizer_path),
            gguf_file=cfg.gguf_file,
            dtype=cfg.dtype,
            device=cfg.device,
            trust_remote_code=cfg.trust_remote_code,
            bos=cfg.bos,
            chat_template=cfg.chat_template,
            max_seq_len=cfg.max_seq_len,
            batch_size=cfg.batch_size,
            token_budget=cfg.token_budget,
            prefix_attention=cfg.prefix_attention,
            decode_way=cfg.decode_way,
            model_kwargs=cfg.model_kwargs,
            tokenizer_kwargs=cfg.tokenizer_kwargs,
        )
    if cfg.backend in SERVED_BACKENDS:
        module, cls = SERVED_BACKENDS[cfg.backend].split(":")
        served = getattr(importlib.import_module(module), cls)
        return served(
            cfg.api_url,
            name=cfg.name,
            api_model=cfg.api_model,
            api_key_env=cfg.api_key_env,
            tokenizer_path=local_path(cfg.tokenizer_path),
            chat=cfg.api_chat,
            stream=cfg.api_stream,
            topk=cfg.api_topk,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            retries=cfg.retries,
            max_seq_len=cfg.max_seq_len,
            bos=cfg.bos,
            trust_remote_code=cfg.trust_remote_code,
            tokenizer_kwargs=cfg.tokenizer_kwargs,
        )
    raise ModelError(f"unknown backend {cfg.backend!r}")


__all__ = ["SERVED_BACKENDS", "LanguageModel", "ModelError", "build_model"]
