"""Token-exact prompts for a model served over HTTP.

With the model's tokenizer at hand, a served model is sent token ids built exactly as the hf
backend builds them (lm-eval's encode_pair, its rolling windows, its left truncation), so the
server scores the very tokens the local path scores. `LocalTokenizer` is the tokenizer half of
the engine's TokenModel, enough for those helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lmgauge.engine.loglikelihood import _document_windows, encode_pair  # the hf path's own tokenization
from lmgauge.models.base import ModelError
from lmgauge.requests import RollingRequest


class LocalTokenizer:
    def __init__(
        self,
        source: str,
        *,
        bos: str = "never",
        max_length: int | None = None,
        trust_remote_code: bool = False,
        tokenizer_kwargs: dict | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        p = Path(source).expanduser()
        kwargs = dict(tokenizer_kwargs or {})
        if p.suffix.lower() == ".gguf":  # the tokenizer inside a .gguf file
            p, kwargs["gguf_file"] = p.parent, p.name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelError(f"could not load the tokenizer from {source!r}: {e}") from e
        tok = self.tokenizer
        self.source = source
        self.eos_token_id = tok.eos_token_id
        self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if self.prefix_token_id is None:
            raise ModelError("tokenizer has neither a BOS nor an EOS token to stand for an empty context")
        adds_bos = bool(tok("a").input_ids[:1] == [tok.bos_token_id]) if tok.bos_token_id is not None else False
        if bos == "always" or (bos == "tokenizer" and adds_bos):
            if tok.bos_token_id is None:
                raise ModelError("bos='always' but the tokenizer has no BOS token")
            self.bos_ids = [tok.bos_token_id]
        else:
            self.bos_ids = []
        self.max_length = max_length  # None: the server's limit is unknown; nothing is cut

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def encode_document(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def configured_context_length(source: str) -> int | None:
    """The context length a local copy of the model's config gives (as the hf backend reads it),
    for servers that do not say theirs (lightllm)."""
    from transformers import AutoConfig

    p = Path(source).expanduser()
    try:
        config = (
            AutoConfig.from_pretrained(str(p.parent), gguf_file=p.name)
            if p.suffix.lower() == ".gguf"
            else AutoConfig.from_pretrained(str(p))
        )
    except (OSError, ValueError):
        return None
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value:
            return int(value)
    return None


@dataclass(frozen=True)
class ScoredPrompt:
    """Token ids to send whole; the tokens from `first` on are the ones scored."""

    ids: list[int]
    first: int
    truncated: int = 0  # tokens dropped on the left to fit the length limit

    @property
    def n_scored(self) -> int:
        return len(self.ids) - self.first


def scored_prompt(context: list[int], continuation: list[int], max_length: int | None) -> ScoredPrompt:
    """The hf path's truncation: keep the last max_length+1 tokens (its forward sees max_length)."""
    if not continuation:
        raise ModelError("the continuation encodes to no tokens")
    full = context + continuation
    keep = full[-(max_length + 1) :] if max_length else full
    return ScoredPrompt(keep, max(1, len(keep) - len(continuation)), len(full) - len(keep))


def loglikelihood_prompt(tok: LocalTokenizer, context: str, continuation: str) -> ScoredPrompt:
    ctx, cont = encode_pair(tok, context, continuation)  # type: ignore[arg-type]
    return scored_prompt(ctx, cont, tok.max_length)


def rolling_prompts(tok: LocalTokenizer, request: RollingRequest) -> tuple[list[ScoredPrompt], int]:
    """The windows of one rolling request as prompts, and how many tokens they predict."""
    if tok.max_length is None and request.window is None:
        raise ModelError("rolling log-likelihood needs a window: give max_seq_len (the server did not say its limit)")
    windows, n_tokens = _document_windows(tok, request)  # type: ignore[arg-type]
    return [ScoredPrompt(ctx + cont, len(ctx)) for ctx, cont in windows], n_tokens


def move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's split for text prompts: a context's trailing spaces belong to the continuation."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation
