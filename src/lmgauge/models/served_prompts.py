"""Token-exact prompts for a model served over HTTP.

With the model's tokenizer at hand, a served model is sent token ids built exactly as the hf
backend builds them (lm-eval's encode_pair, its rolling windows, the engine's left truncation), so
the server scores the very tokens the local path scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmgauge.engine.loglikelihood import _document_windows, encode_pairs  # the hf path's own tokenization
from lmgauge.engine.truncation import generation_room, keep_last, scored_window
from lmgauge.models.base import ModelError
from lmgauge.models.tokenizer import ModelTokenizer
from lmgauge.requests import RollingRequest


@dataclass(frozen=True)
class ScoredPrompt:
    """Token ids to send whole; the tokens from `first` on are the ones scored."""

    ids: list[int]
    first: int
    truncated: int = 0  # tokens dropped on the left to fit the length limit

    @property
    def n_scored(self) -> int:
        return len(self.ids) - self.first


def loglikelihood_prompts(tok: ModelTokenizer, pairs: Sequence[tuple[str, str]]) -> list[ScoredPrompt]:
    """The hf path's (context, continuation) pairs, each cut as its forward cuts it (the last
    max_length+1 tokens); encoded in one batch as the hf path encodes them (`encode_pairs`)."""
    prompts = []
    for i, (ctx, cont) in enumerate(encode_pairs(tok, pairs)):  # type: ignore[arg-type]  # the tokenizer half of a TokenModel
        if not cont:
            raise ModelError(f"request {i}: the continuation encodes to no tokens")
        keep, dropped = scored_window(ctx, cont, tok.max_length)
        prompts.append(ScoredPrompt(keep, max(1, len(keep) - len(cont)), dropped))
    return prompts


def rolling_prompts(tok: ModelTokenizer, request: RollingRequest) -> tuple[list[ScoredPrompt], int]:
    """The windows of one rolling request as prompts, and how many tokens they predict."""
    if tok.max_length is None and request.window is None:
        raise ModelError("rolling log-likelihood needs a window: give max_seq_len (the server did not say its limit)")
    windows, n_tokens = _document_windows(tok, request)  # type: ignore[arg-type]  # as above
    return [ScoredPrompt(ctx + cont, len(ctx)) for ctx, cont in windows], n_tokens


def generation_prompt(tok: ModelTokenizer, prompt: str, max_new_tokens: int) -> tuple[list[int], int]:
    """The hf path's generation prompt ids (BOS policy, left truncation) and the tokens dropped."""
    ids = tok.bos_ids + tok.encode(prompt)
    if not tok.max_length:
        return ids, 0
    return keep_last(ids, generation_room(tok.max_length, max_new_tokens))


def move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's split for text prompts: a context's trailing spaces belong to the continuation."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation
