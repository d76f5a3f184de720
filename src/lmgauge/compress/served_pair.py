"""A served pair: the float model and the quantized one each behind an OpenAI-compatible server
(vLLM serving the pretrain folder and save_fake's, or a real-kernel checkpoint), evaluated over
HTTP with the same tasks, flips and paired intervals as in-process positions.

    served:
      topk: 20                                   # prompt logprobs per position (vLLM --max-logprobs)
      pretrain:   {api_url: http://127.0.0.1:8000/v1}
      fake_quant: {api_url: http://127.0.0.1:8001/v1, kind: fake-quant}   # or real-kernel (default)

Tasks go through the served backend (lmgauge.models.openai_api: token-id prompts built with
model.path's tokenizer). On the perplexity windows every non-pretrain position asks both servers
for the window once each, with `echo`, `logprobs: k` and `return_tokens_as_token_ids`: the
actual token's logprob (so perplexity, ln PPL ratio, Δp are exact), the top-k (so "same top token"
is exact) and from those a lower bound of the KL (compress/topk_kl.py), stated as a bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from lmgauge.compress.fidelity import TokenFidelity, summarize
from lmgauge.compress.positions import Position
from lmgauge.compress.topk_kl import topk_kl
from lmgauge.models.base import ModelError, OnResult
from lmgauge.models.http_client import BadAnswer, Session
from lmgauge.models.openai_api import TOKEN_ID_KEY, OpenAIModel, _echo_logprobs
from lmgauge.models.served_prompts import ScoredPrompt, rolling_prompts
from lmgauge.requests import (
    RollingRequest,
    RollingResult,
)

log = logging.getLogger(__name__)

Row = dict[int, float]  # one position's known logprobs by token id (top-k and the actual token)


def _rows(answer: Any, p: ScoredPrompt) -> list[Row]:
    """The scored positions' known logprobs of an echo answer with return_tokens_as_token_ids."""
    lp = _echo_logprobs(answer)
    values, tops = lp["token_logprobs"], lp.get("top_logprobs") or []
    if len(values) < len(p.ids) or len(tops) < len(p.ids):
        raise BadAnswer(f"echo gave {len(values)} logprobs for a {len(p.ids)}-token window")
    out = []
    for j in range(p.first, len(p.ids)):
        top = tops[j]
        if not isinstance(top, dict) or not top or values[j] is None:
            raise BadAnswer(f"position {j} has no top_logprobs")
        try:
            row = {int(key.removeprefix(TOKEN_ID_KEY)): float(v) for key, v in top.items()}
        except ValueError:
            raise BadAnswer(f"top_logprobs not keyed by token id: {list(top)[:3]}") from None
        row[p.ids[j]] = float(values[j])  # the actual token's, always returned
        out.append(row)
    return out


async def prompt_topk(model: OpenAIModel, session: Session, *, p: ScoredPrompt, k: int) -> list[Row]:
    body = model._completion_payload(p.ids, echo=True)
    body.update(logprobs=k, return_tokens_as_token_ids=True)
    reply = await session.json("POST", f"{model.base_url}/completions", body, lambda a: _rows(a, p), len(p.ids))
    return reply.value


@dataclass
class TopkFidelity(TokenFidelity):
    """TokenFidelity whose `kl` is the top-k lower bound; keeps the coarse bound and the tail mass."""

    k: int = 20
    kl_coarse: list[np.ndarray] = field(default_factory=list)
    tail_ref: list[np.ndarray] = field(default_factory=list)

    def add_window(self, ref: list[Row], cand: list[Row], ids: list[int]) -> float:
        """One window's positions; returns the candidate's summed logprob of the actual tokens."""
        bounds = [topk_kl(r, c, self.k) for r, c in zip(ref, cand)]
        self.kl.append(np.array([b.lower for b in bounds], dtype=np.float32))
        self.kl_coarse.append(np.array([b.coarse for b in bounds], dtype=np.float32))
        self.tail_ref.append(np.array([b.tail_ref for b in bounds], dtype=np.float32))
        self.same_top.append(
            np.array([max(r, key=r.__getitem__) == max(c, key=c.__getitem__) for r, c in zip(ref, cand)])
        )
        self.nll_ref.append(np.array([-r[t] for r, t in zip(ref, ids)], dtype=np.float32))
        nll = [-c[t] for c, t in zip(cand, ids)]
        self.nll.append(np.array(nll, dtype=np.float32))
        self.offset.append(np.arange(len(ref), dtype=np.int32))
        return -float(np.sum(np.asarray(nll, dtype=np.float64)))

    def arrays(self, first_offset: int = 0) -> dict[str, np.ndarray]:
        a = super().arrays(first_offset)
        if not self.kl:
            return {**a, "kl_coarse": np.zeros(0), "tail_ref": np.zeros(0)}
        keep = [o >= first_offset for o in self.offset]
        a["kl_coarse"] = np.concatenate([x[m] for x, m in zip(self.kl_coarse, keep)])
        a["tail_ref"] = np.concatenate([x[m] for x, m in zip(self.tail_ref, keep)])
        return a

    def summary(self) -> dict:
        a = self.arrays()
        out = summarize(a)
        if out.get("n_positions"):
            out["kl_bound"] = (
                f"lower bound from each server's top-{self.k} prompt logprobs (data-processing inequality, "
                "docs/compression.md); the exact KL is this plus P_ref(rest) x KL of the two tails, not bounded above"
            )
            out["kl_topk"] = self.k
            out["kl"]["coarse_mean"] = float(a["kl_coarse"].astype(np.float64).mean())
            tail = a["tail_ref"].astype(np.float64)
            out["tail_ref"] = {
                "mean": float(tail.mean()),
                "p99": float(np.quantile(tail, 0.99)),
                "max": float(tail.max()),
            }
        return out

    def save(self, path) -> None:
        super().save(path)  # kl (the bound), same_top, nll, nll_ref, window, offset
        a = self.arrays()
        with np.load(path) as data:
            kept = {k: data[k] for k in data.files}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **kept, kl_coarse=a["kl_coarse"], tail_ref=a["tail_ref"])
        tmp.replace(path)


class ServedPosition(Position):
    """A position answered by a server (`inner` is an OpenAIModel); perplexity windows paired with
    the reference server's top-k when a reference is given."""

    def __init__(self, served: OpenAIModel, name: str, info: dict, reference: OpenAIModel | None, k: int) -> None:
        super().__init__(served, name, info)
        self.served = served
        self.reference = reference
        self.k = k

    @property
    def paired(self) -> bool:
        return self.reference is not None

    def new_sink(self) -> TopkFidelity:
        return TopkFidelity(k=self.k)

    def _paired_rolling(self, requests: Sequence[RollingRequest], on_result: OnResult | None) -> list[RollingResult]:
        tok = self.served.tokenizer
        if tok is None or not self.served.token_prompts:
            raise ModelError("the served pair's perplexity windows need token-id prompts (model.path's tokenizer)")
        ref, sink, k = self.reference, self.sink, self.k
        assert ref is not None and isinstance(sink, TopkFidelity)
        out = []
        for i, r in enumerate(requests):
            prompts, n_tokens = rolling_prompts(tok, r)
            total = 0.0
            for p in prompts:  # windows in order: the sink's arrays follow the corpus
                rows_ref: list[Row] = ref._call(partial(prompt_topk, ref, p=p, k=k))
                rows: list[Row] = self.served._call(partial(prompt_topk, self.served, p=p, k=k))
                total += sink.add_window(rows_ref, rows, p.ids[p.first :])
                self.served.count_tokens(len(p.ids), p.n_scored)
            res = RollingResult(total, n_tokens, len(prompts))
            out.append(res)
            if on_result is not None:
                on_result(i, res)
        self.served.stats.requests += len(requests)
        return out


def connect(cc: Any, pos: str) -> tuple[OpenAIModel, float]:
    """The served model of a position (its tokenizer: model.tokenizer_path or model.path)."""
    ep = cc.served.endpoint(pos)
    t0 = time.perf_counter()
    model = OpenAIModel(
        ep.api_url,
        name=cc.position_name(pos),
        api_model=ep.api_model,
        api_key_env=ep.api_key_env,
        tokenizer_path=cc.model.tokenizer_path or cc.model.path,
        topk=cc.served.topk,
        trust_remote_code=cc.model.trust_remote_code,
    )
    if model.logprobs_problem:
        raise ModelError(f"served.{pos}: {ep.api_url}: {model.logprobs_problem}")
    return model, time.perf_counter() - t0
