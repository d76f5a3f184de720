"""What changed beyond accuracy, per predicted token, on the perplexity windows.

Both models run over each window in the same pass (the float reference and the candidate, e.g. the
fake-quantized weights swapped in place), so the reference distributions are exact, full-vocabulary
and float32, and never stored or recomputed. Per position: KL(reference || candidate) of the next
token distribution, whether the top token is the same, the probability of the correct token under
each, and each model's negative log-likelihood.

Statistics follow llama.cpp's `llama-perplexity --kl-divergence` (tools/perplexity/perplexity.cpp):
mean with uncertainty sqrt((E[x^2] - E[x]^2) / (n - 1)), percentiles interpolated linearly between
sorted values, ln(PPL(Q)/PPL(base)) with the uncertainty from both variances and their covariance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmgauge.requests import RollingRequest, RollingResult, TokenStats

Logits = Callable[[Any], Any]  # input ids [B, L] -> logits [B, L, V]

KL_QUANTILES = {
    "p0_1": 0.001,
    "p1": 0.01,
    "p5": 0.05,
    "p10": 0.10,
    "p90": 0.90,
    "p95": 0.95,
    "p99": 0.99,
    "p99_9": 0.999,
}


@dataclass
class TokenFidelity:
    """Per-position arrays of one corpus, in window order (float32; a few MB per 100k tokens)."""

    kl: list[np.ndarray] = field(default_factory=list)
    same_top: list[np.ndarray] = field(default_factory=list)
    nll_ref: list[np.ndarray] = field(default_factory=list)
    nll: list[np.ndarray] = field(default_factory=list)
    offset: list[np.ndarray] = field(default_factory=list)  # index in the window of the predicting position

    def add(self, kl, same_top, nll_ref, nll) -> None:
        """One batch of windows, tensors [B, L-1]."""
        for k in range(kl.shape[0]):
            self.kl.append(kl[k].numpy().astype(np.float32))
            self.same_top.append(same_top[k].numpy().astype(np.bool_))
            self.nll_ref.append(nll_ref[k].numpy().astype(np.float32))
            self.nll.append(nll[k].numpy().astype(np.float32))
            self.offset.append(np.arange(kl.shape[1], dtype=np.int32))

    @property
    def n_windows(self) -> int:
        return len(self.kl)

    def arrays(self, first_offset: int = 0) -> dict[str, np.ndarray]:
        """Concatenated arrays, keeping positions whose offset in the window is >= first_offset."""
        if not self.kl:
            return {k: np.zeros(0) for k in ("kl", "same_top", "nll_ref", "nll", "window", "offset")}
        keep = [o >= first_offset for o in self.offset]
        return {
            "kl": np.concatenate([a[m] for a, m in zip(self.kl, keep)]),
            "same_top": np.concatenate([a[m] for a, m in zip(self.same_top, keep)]),
            "nll_ref": np.concatenate([a[m] for a, m in zip(self.nll_ref, keep)]),
            "nll": np.concatenate([a[m] for a, m in zip(self.nll, keep)]),
            "window": np.concatenate([np.full(int(m.sum()), w, dtype=np.int32) for w, m in enumerate(keep)]),
            "offset": np.concatenate([o[m] for o, m in zip(self.offset, keep)]),
        }

    def summary(self) -> dict:
        return summarize(self.arrays())

    def save(self, path) -> None:
        a = self.arrays()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            kl=a["kl"],
            same_top=a["same_top"],
            nll_ref=a["nll_ref"],
            nll=a["nll"],
            window=a["window"],
            offset=a["offset"],
        )
        tmp.replace(path)


def mean_and_uncertainty(x: np.ndarray) -> tuple[float, float]:
    """llama.cpp's: mean and sqrt((E[x^2] - mean^2) / (n - 1)), 0 for n <= 10."""
    n = x.size
    if n < 1:
        return math.nan, math.nan
    xd = x.astype(np.float64)
    f = float(xd.mean())
    df = float((xd * xd).mean()) - f * f
    return f, math.sqrt(df / (n - 1)) if df > 0 and n > 10 else 0.0


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear between the two nearest sorted values (numpy's 'linear')."""
    return float(np.quantile(sorted_values.astype(np.float64), fraction))


def summarize(a: dict[str, np.ndarray]) -> dict:
    """The fidelity block of one corpus from its per-position arrays."""
    n = int(a["kl"].size)
    if n == 0:
        return {"n_positions": 0}
    kl = np.sort(a["kl"].astype(np.float64))
    kl_mean, kl_unc = mean_and_uncertainty(a["kl"])
    nll, nll_ref = a["nll"].astype(np.float64), a["nll_ref"].astype(np.float64)
    p, p_ref = np.exp(-nll), np.exp(-nll_ref)
    dp_mean, dp_unc = mean_and_uncertainty(p - p_ref)
    same = a["same_top"].astype(np.float64)
    same_p = float(same.mean())
    lp, lp_unc = mean_and_uncertainty(nll)
    lb, lb_unc = mean_and_uncertainty(nll_ref)
    cov = float(((nll * nll_ref).mean() - nll.mean() * nll_ref.mean()) / (n - 1)) if n >= 10 else 0.0
    ratio_unc = math.sqrt(max(lp_unc**2 + lb_unc**2 - 2 * cov, 0.0))
    windows = a["window"]
    per_window = np.bincount(windows, weights=nll - nll_ref) / np.maximum(np.bincount(windows), 1)
    n_win = per_window.size
    win_unc = float(per_window.std(ddof=1) / math.sqrt(n_win)) if n_win > 1 else math.nan
    rms_mean, rms_unc = mean_and_uncertainty((p - p_ref) ** 2)
    rms = math.sqrt(rms_mean)
    kl_block = {
        "mean": kl_mean,
        "stderr": kl_unc,
        "median": float(np.median(kl)),
        "max": float(kl[-1]),
        "min": float(kl[0]),
        **{k: percentile(kl, f) for k, f in KL_QUANTILES.items()},
    }
    return {
        "n_positions": n,
        "n_windows": n_win,
        "kl": kl_block,
        "same_top": {"value": same_p, "stderr": math.sqrt(same_p * (1 - same_p) / (n - 1)) if n > 1 else math.nan},
        "delta_p": {"mean": dp_mean, "stderr": dp_unc, "rms": rms, "rms_stderr": 0.5 / rms * rms_unc if rms else 0.0},
        "ln_ppl_ratio": {
            "value": lp - lb,
            "stderr": ratio_unc,  # per token, paired through the covariance (llama.cpp's)
            "stderr_windows": win_unc,  # per window means: tokens of one window are not independent
        },
        "ppl": math.exp(lp),
        "ppl_ref": math.exp(lb),
        "ppl_ratio": math.exp(lp - lb),
        "cor_ln_ppl": cov / (lp_unc * lb_unc) if lp_unc and lb_unc else math.nan,
    }


class PairedWindowScorer:
    """Scores GPTQ-style perplexity windows with a candidate and a reference in one pass.

    `windows(request)` gives the request's windows as token id lists (the engine's own windowing);
    `reference` and `candidate` map input ids [B, L] to logits [B, L, V].
    """

    def __init__(self, windows: Callable[[RollingRequest], list[list[int]]], reference: Logits, candidate: Logits):
        self.windows = windows
        self.reference = reference
        self.candidate = candidate

    def score(
        self,
        requests: Sequence[RollingRequest],
        sink: TokenFidelity,
        on_result: Callable[[int, RollingResult], None] | None = None,
        stats: TokenStats | None = None,
    ) -> list[RollingResult]:
        import torch

        out: list[RollingResult] = []
        for i, r in enumerate(requests):
            if r.style != "disjoint":
                raise ValueError("the paired fidelity pass scores GPTQ-style windows (style windows) only")
            wins = self.windows(r)
            bs = r.rows_per_batch or 1
            total = 0.0
            for start in range(0, len(wins), bs):
                ids = torch.tensor(wins[start : start + bs])
                with torch.inference_mode():
                    # [B, L, V] tensors of a 50k vocabulary are ~100 MB a window: each one allocated
                    # costs about what the arithmetic on it does, so as few as the numbers need
                    lp_ref = torch.log_softmax(self.reference(ids)[:, :-1].float(), dim=-1)
                    lp = torch.log_softmax(self.candidate(ids)[:, :-1].float(), dim=-1)
                    target = ids[:, 1:].unsqueeze(-1).to(lp.device)
                    nll_ref = -lp_ref.gather(-1, target).squeeze(-1)
                    nll = -lp.gather(-1, target).squeeze(-1)
                    same = lp_ref.argmax(-1) == lp.argmax(-1)
                    # KL(ref || cand) = sum_v p_ref (log p_ref - log p_cand), exact over the vocabulary:
                    # kl_div computes exp(t) * (t - x) elementwise in one tensor
                    kl = torch.nn.functional.kl_div(lp, lp_ref, reduction="none", log_target=True).sum(-1)
                sink.add(kl.cpu(), same.cpu(), nll_ref.cpu(), nll.cpu())
                total += -float(nll.double().sum())
                if stats is not None:
                    stats.forwarded += 2 * ids.numel()
                    stats.scored += int(nll.numel())
            n_tok = len(wins) * (r.window - 1) if r.window else 0
            res = RollingResult(total, n_tok, len(wins))
            out.append(res)
            if on_result is not None:
                on_result(i, res)
        if stats is not None:
            stats.requests += len(requests)
        return out
