"""The before/after report of a compression run, read from its run directory only.

- `before_after_rows`: each metric of each position against pretrain, worst change first, with
  its interval, McNemar mid-p and flips for binary metrics, and recovery (position / pretrain).
- `markdown`: those rows and the fidelity block per corpus, appended to summary.md.
- `llamacpp_kld`: the statistics block of `llama-perplexity --kl-divergence` in its own layout
  (tools/perplexity/perplexity.cpp), from the kept per-position arrays: with seq_len 512 the
  windows are llama.cpp's chunks (n_ctx 512) and only the second half of each is scored, as there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lmgauge.compress.fidelity import mean_and_uncertainty, percentile
from lmgauge.runs.rundir import RunDir

LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")
LLAMACPP_N_CTX = 512


def _results(rundir: RunDir):
    for model_dir, task, info in rundir.iter_results():
        if isinstance(info, dict) and "position" in info:
            yield model_dir, task, info


def before_after_rows(rundir: RunDir) -> list[dict]:
    rows = []
    for model, task, info in _results(rundir):
        vs = info.get("vs_pretrain")
        if not vs:
            continue
        for metric, m in vs["metrics"].items():
            lower = metric in LOWER_IS_BETTER
            rec = m.get("recovery")
            if rec is None or not math.isfinite(rec):  # pretrain scored 0: rank by the change itself
                badness = m["delta"] if lower else -m["delta"]
            else:
                badness = (rec - 1.0) if lower else (1.0 - rec)
            row = {
                "model": model,
                "position": info["position"]["name"],
                "kind": info["position"]["kind"],
                "task": task,
                "metric": metric,
                "pretrain": m["pretrain"],
                "value": m["value"],
                "delta": m["delta"],
                "recovery": m["recovery"],
                "badness": badness,
            }
            p = m.get("paired")
            if p:
                row.update(low=p["low"], high=p["high"], p=p.get("p_value"), verdict=p["verdict"])
                if p.get("flips"):
                    row["right_to_wrong"] = p["flips"]["right_to_wrong"]
                    row["wrong_to_right"] = p["flips"]["wrong_to_right"]
            elif "ratio_low" in m:
                row.update(low=m["ratio_low"], high=m["ratio_high"], verdict=m["verdict"], interval_of="ppl ratio")
            rows.append(row)
    return sorted(rows, key=lambda r: -r["badness"])


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(rundir: RunDir) -> str:
    rows = before_after_rows(rundir)
    out = ["## Compression: each position against pretrain (worst first)", ""]
    if not rows:
        return "\n".join(out + ["(no position to compare: eval_pos needs pretrain and another position)", ""])
    out += [
        "| position | kind | task | metric | pretrain | value | Δ | interval (95%) | mid-p | right→wrong | wrong→right | recovery | verdict |",
        "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        interval = f"[{_f(r.get('low'))}, {_f(r.get('high'))}]" if "low" in r else "—"
        if r.get("interval_of"):
            interval += " (ratio)"
        out.append(
            f"| {r['position']} | {r['kind']} | {r['task']} | {r['metric']} | {_f(r['pretrain'])} | {_f(r['value'])} "
            f"| {r['delta']:+.4f} | {interval} | {_f(r.get('p'))} | {_f(r.get('right_to_wrong'))} "
            f"| {_f(r.get('wrong_to_right'))} | {_f(r['recovery'], 6)} | {r.get('verdict', '—')} |"
        )
    fid = [(m, t, i) for m, t, i in _results(rundir) if i.get("fidelity", {}).get("n_positions")]
    if fid:
        out += [
            "",
            "### Next-token fidelity against pretrain",
            "",
            "KL: `exact` is full-vocabulary, float32 (in-process); `>= (top-k)` a lower bound from served top-k "
            "logprobs (the exact KL is at least this; docs/compression.md).",
            "",
            "| position | corpus | tokens | KL | KL mean ± se | median | p90 | p95 | p99 | p99.9 | max | same top | Δp mean | ln PPL ratio ± se (token / window) |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for _, task, info in fid:
            f = info["fidelity"]
            k, r = f["kl"], f["ln_ppl_ratio"]
            kind = f">= (top-{f['kl_topk']})" if "kl_topk" in f else "exact"
            out.append(
                f"| {info['position']['name']} | {task} | {f['n_positions']} | {kind} | {k['mean']:.6f} ± {k['stderr']:.6f} "
                f"| {k['median']:.6f} | {k['p90']:.6f} | {k['p95']:.6f} | {k['p99']:.6f} | {k['p99_9']:.6f} "
                f"| {k['max']:.6f} | {100 * f['same_top']['value']:.3f}% | {100 * f['delta_p']['mean']:+.3f}% "
                f"| {r['value']:+.6f} ± {r['stderr']:.6f} / {_f(r['stderr_windows'], 6)} |"
            )
    return "\n".join(out + [""])


def append_to_summary(rundir: RunDir) -> None:
    path = rundir.root / "summary.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    marker = "## Compression: each position against pretrain"
    if marker in text:
        text = text[: text.index(marker)].rstrip() + "\n"
    path.write_text(text + ("\n" if text else "") + markdown(rundir), encoding="utf-8")


def llamacpp_kld(arrays: dict[str, np.ndarray], seq_len: int) -> str:
    """llama.cpp's final statistics of `--kl-divergence`, from per-position arrays (offset kept)."""
    keep = arrays["offset"] >= seq_len // 2
    kl = np.sort(arrays["kl"][keep].astype(np.float64))
    nll = arrays["nll"][keep].astype(np.float64)
    nll_base = arrays["nll_ref"][keep].astype(np.float64)
    same = arrays["same_top"][keep]
    n = kl.size
    lines = []
    if seq_len != LLAMACPP_N_CTX:
        lines.append(f"(chunks of seq_len {seq_len}, not llama.cpp's default n_ctx {LLAMACPP_N_CTX})")
    if n < 100:
        return "\n".join(lines + [f"only {n} scored tokens: llama.cpp prints no statistics below 100"])
    lp, lp_unc = mean_and_uncertainty(nll)
    lb, lb_unc = mean_and_uncertainty(nll_base)
    cov = ((nll * nll_base).mean() - nll.mean() * nll_base.mean()) / (n - 1)
    ppl, ppl_base = math.exp(lp), math.exp(lb)
    ratio_unc = math.sqrt(max(lp_unc**2 + lb_unc**2 - 2 * cov, 0.0))
    ppl_diff_unc = math.sqrt(max((ppl * lp_unc) ** 2 + (ppl_base * lb_unc) ** 2 - 2 * ppl * ppl_base * cov, 0.0))
    lines += [
        "====== Perplexity statistics ======",
        f"Mean PPL(Q)                   : {ppl:10.6f} ± {ppl * lp_unc:10.6f}",
        f"Mean PPL(base)                : {ppl_base:10.6f} ± {ppl_base * lb_unc:10.6f}",
        f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * cov / (lp_unc * lb_unc) if lp_unc and lb_unc else 0.0:6.2f}%",
        f"Mean ln(PPL(Q)/PPL(base))     : {lp - lb:10.6f} ± {ratio_unc:10.6f}",
        f"Mean PPL(Q)/PPL(base)         : {math.exp(lp - lb):10.6f} ± {math.exp(lp - lb) * ratio_unc:10.6f}",
        f"Mean PPL(Q)-PPL(base)         : {ppl - ppl_base:10.6f} ± {ppl_diff_unc:10.6f}",
        "",
        "====== KL divergence statistics ======",
    ]
    kl_mean, kl_unc = mean_and_uncertainty(kl)
    lines.append(f"Mean    KLD: {kl_mean:10.6f} ± {kl_unc:10.6f}")
    lines.append(f"Maximum KLD: {kl[-1]:10.6f}")
    for label, frac in (("99.9%", 0.999), ("99.0%", 0.99), ("95.0%", 0.95), ("90.0%", 0.90)):
        lines.append(f"{label:<7} KLD: {percentile(kl, frac):10.6f}")
    lines.append(f"Median  KLD: {float(np.median(kl)):10.6f}")
    for label, frac in (("10.0%", 0.10), (" 5.0%", 0.05), (" 1.0%", 0.01), (" 0.1%", 0.001)):
        lines.append(f"{label:<7} KLD: {percentile(kl, frac):10.6f}")
    lines.append(f"Minimum KLD: {kl[0]:10.6f}")
    p_diff = np.exp(-nll) - np.exp(-nll_base)
    dp_sorted = np.sort(p_diff)
    dp_mean, dp_unc = mean_and_uncertainty(p_diff)
    lines += [
        "",
        "====== Token probability statistics ======",
        f"Mean    Δp: {100 * dp_mean:6.3f} ± {100 * dp_unc:5.3f} %",
    ]
    lines.append(f"Maximum Δp: {100 * dp_sorted[-1]:6.3f}%")
    for label, frac in (("99.9%", 0.999), ("99.0%", 0.99), ("95.0%", 0.95), ("90.0%", 0.90), ("75.0%", 0.75)):
        lines.append(f"{label:<7} Δp: {100 * percentile(dp_sorted, frac):6.3f}%")
    lines.append(f"Median  Δp: {100 * float(np.median(dp_sorted)):6.3f}%")
    for label, frac in (("25.0%", 0.25), ("10.0%", 0.10), (" 5.0%", 0.05), (" 1.0%", 0.01), (" 0.1%", 0.001)):
        lines.append(f"{label:<7} Δp: {100 * percentile(dp_sorted, frac):6.3f}%")
    lines.append(f"Minimum Δp: {100 * dp_sorted[0]:6.3f}%")
    mse, mse_unc = mean_and_uncertainty(p_diff**2)
    rms = math.sqrt(mse)
    lines.append(f"RMS Δp    : {100 * rms:6.3f} ± {100 * (0.5 / rms * mse_unc if rms else 0.0):5.3f} %")
    same_p = float(same.mean())
    lines.append(f"Same top p: {100 * same_p:6.3f} ± {100 * math.sqrt(same_p * (1 - same_p) / (n - 1)):5.3f} %")
    return "\n".join(lines)


def llamacpp_views(rundir: RunDir) -> str:
    """The llama.cpp block of every position and corpus of a run with kept fidelity arrays."""
    blocks = []
    for model, task, info in _results(rundir):
        if not info.get("fidelity", {}).get("n_positions"):
            continue
        npz = rundir.root / "fidelity" / model / f"{task}.npz"  # model: the results folder's (safe) name
        if not npz.is_file():
            blocks.append(f"# {model} | {task}: {npz} is missing")
            continue
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files}
        seq_len = _seq_len(rundir, info)
        header = f"# {model} | {task} against {info['fidelity'].get('reference', 'pretrain')} (llama-perplexity --kl-divergence layout)"
        blocks.append(header + "\n" + llamacpp_kld(arrays, seq_len))
    return "\n\n".join(blocks) if blocks else "no fidelity arrays in this run"


def _seq_len(rundir: RunDir, info: dict) -> int:
    opts = info.get("options") or {}
    if "seq_len" in opts:
        return int(opts["seq_len"])
    try:
        return int(json.loads((rundir.root / "run.json").read_text())["compression"]["config"]["eval"]["seq_len"])
    except (OSError, KeyError, ValueError):
        return LLAMACPP_N_CTX


def write_report(rundir: RunDir | Path) -> None:
    rd = rundir if isinstance(rundir, RunDir) else RunDir(Path(rundir))
    append_to_summary(rd)
