"""The model's tokenizer as every backend uses it: loading, the BOS policy, the context length.

The hf backend runs it in-process; the served backends use the same object to send the very token
ids the hf backend forwards, so both score the same tokens. Written once here: which token stands
for an empty context, whether a BOS token is prepended, and how long a context the model takes
(looked up as lm-evaluation-harness does).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmgauge.models.base import ModelError

BOS_POLICIES = ("never", "always", "tokenizer")
CONTEXT_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")  # lm-eval's order
DEFAULT_CONTEXT_LENGTH = 2048  # lm-eval's fallback when neither the config nor the tokenizer says
HUGE_MODEL_MAX_LENGTH = 1_000_000  # transformers' "no limit" sentinel is ~1e30


def _split_gguf(source: str, kwargs: dict[str, Any]) -> str:
    """A .gguf file is loaded as its folder plus gguf_file=name (transformers' convention)."""
    p = Path(source).expanduser()
    if p.suffix.lower() == ".gguf":
        kwargs["gguf_file"] = p.name
        return str(p.parent)
    return str(p)


def context_length(config: Any, tokenizer: Any = None) -> int | None:
    """The model's context length from its config, else the tokenizer's model_max_length; None
    when neither says (lm-eval then assumes 2048)."""
    for attr in CONTEXT_LENGTH_ATTRS:
        value = getattr(config, attr, None)
        if value:
            return int(value)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml and tml < HUGE_MODEL_MAX_LENGTH:
        return int(tml)
    return None


def configured_context_length(source: str) -> int | None:
    """The context length a local copy of the model's config gives, for servers that do not say
    theirs; None when the folder holds no readable config."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {}
    folder = _split_gguf(source, kwargs)
    try:
        config = AutoConfig.from_pretrained(folder, **kwargs)
    except (OSError, ValueError):
        return None
    return context_length(config)


class ModelTokenizer:
    """A transformers tokenizer with the policies lm-eval applies around it.

    max_length is the longest sequence one forward may hold (None: unknown, nothing is cut); the
    backend sets it once it knows the model's or the server's limit.
    """

    def __init__(self, tokenizer: Any, *, source: str, bos: str = "never", max_length: int | None = None) -> None:
        if bos not in BOS_POLICIES:
            raise ModelError(f"bos policy {bos!r} is not one of {', '.join(BOS_POLICIES)}")
        self.tokenizer = tokenizer
        self.source = source
        self.bos_policy = bos
        self.eos_token_id: int | None = tokenizer.eos_token_id
        bos_id = tokenizer.bos_token_id
        prefix = bos_id if bos_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise ModelError(f"tokenizer {source!r} has neither a BOS nor an EOS token to stand for an empty context")
        self.prefix_token_id: int = prefix  # an empty context is this one token (lm-eval)
        if bos == "always" or (bos == "tokenizer" and self._adds_bos()):
            if bos_id is None:
                raise ModelError(f"bos={bos!r} but tokenizer {source!r} has no BOS token")
            self.bos_ids: list[int] = [bos_id]
        else:
            self.bos_ids = []
        self.max_length = max_length

    @classmethod
    def load(
        cls,
        source: str,
        *,
        bos: str = "never",
        max_length: int | None = None,
        trust_remote_code: bool = False,
        tokenizer_kwargs: dict | None = None,
    ) -> ModelTokenizer:
        """From a model folder or a .gguf file (the tokenizer stored inside it)."""
        from transformers import AutoTokenizer

        kwargs = dict(tokenizer_kwargs or {})
        folder = _split_gguf(source, kwargs)
        try:
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelError(f"could not load the tokenizer from {source!r}: {e}") from e
        return cls(tok, source=source, bos=bos, max_length=max_length)

    def _adds_bos(self) -> bool:
        ids = self.tokenizer("a").input_ids
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of text, no special tokens."""
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """encode of each text, in one call (a fast tokenizer encodes a batch on every core)."""
        return self.tokenizer(list(texts), add_special_tokens=False).input_ids if texts else []

    def encode_document(self, text: str) -> list[int]:
        """Token ids with the tokenizer's own special tokens (as `tokenizer(text)`)."""
        return self.tokenizer(text).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)
