"""The next token of each live row, and what it does to the row: shared by both decode ways."""

from __future__ import annotations

from lmgauge.engine.protocol import TokenModel
from lmgauge.engine.stops import StopCheck
from lmgauge.requests import GenerateRequest


def next_tokens(
    logits, reqs: list[GenerateRequest], live: list[int], generators: dict, n_done: list[int], eos: int | None
) -> list[int]:
    """One token per live row: argmax, or a draw from the temperature / top-p distribution."""
    import torch

    held = [b for b, k in enumerate(live) if eos is not None and n_done[k] < reqs[k].min_new_tokens]
    if held:
        logits = logits.clone()  # the model's logits are inference tensors: not writable in place
        logits[held, eos] = float("-inf")
    out = logits.argmax(-1).tolist()
    for b, k in enumerate(live):
        req = reqs[k]
        if req.temperature <= 0:
            continue
        probs = torch.softmax(logits[b] / req.temperature, dim=-1)
        if req.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < req.top_p  # smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        if k not in generators:
            generators[k] = torch.Generator().manual_seed(req.seed if req.seed is not None else 0)
        out[b] = int(torch.multinomial(probs, 1, generator=generators[k]))
    return out


def advance(
    model: TokenModel, req: GenerateRequest, tokens: list[int], token: int, stops: StopCheck
) -> tuple[str, int, str] | None:
    """Add a row's next token; (text, tokens, reason) once the row is done, else None."""
    if token == model.eos_token_id:
        return (model.decode(tokens), len(tokens), "eos")
    tokens.append(token)
    found = stops.found(tokens)  # a tail window: single token pieces can split multi-byte characters
    if found is not None:
        return (found[0], len(tokens), "stop")
    if len(tokens) >= req.max_new_tokens:
        return (model.decode(tokens), len(tokens), "length")
    return None
