"""Do a served model's answers equal the hf backend's? Two finished run directories, side by side.

Made for issue 11's check: MMLU 5-shot through a real vLLM CPU server with default client settings
completes with no error and the hf backend's predictions. Run the two sides at different times
(each takes the CPU), then compare:

  lmgauge run --hf-path M.gguf --datasets mmlu_astronomy ... --limit 20 -w outputs/hf
  scripts/servers/serve.py vllm --max-len 4096 -- \\
      sh -c 'lmgauge run --api-url $LMGAUGE_SERVER_URL/v1 --api-tokenizer DIR --datasets ... --limit 20 -w outputs/vllm'
  python benchmarks/served_vs_hf.py outputs/hf/<run> outputs/vllm/<run> [--json figures.json]

Prints, per task, the docs, the errors on the served side, predictions equal, the largest
log-likelihood difference; then the run's wall time and what the client logged about its in-flight
limit and retries (the `in flight:` lines of the served run's logs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from lmgauge.runs.reader import open_run

CLIENT_LINE = re.compile(
    r"(\d+) requests; in flight: limit (\d+) \(peak (\d+), (\d+) backoffs\); (\d+) retries, (\d+) stalls, (\d+) failed"
)


def client_figures(root: Path) -> dict:
    """The served backend's last `in flight:` log line, and the peak over all of them."""
    peak, last = 0, None
    for log in sorted((root / "logs").rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = CLIENT_LINE.search(line)
            if m:
                last = [int(x) for x in m.groups()]
                peak = max(peak, last[2])
    if last is None:
        return {}
    return {"limit_peak": peak, "limit_last": last[1], "retries": last[4], "stalls": last[5], "failed": last[6]}


def wall_seconds(root: Path) -> float | None:
    """finished - started of run.json (the last session's, for a resumed run)."""
    from datetime import datetime

    manifest = open_run(root).manifest
    if not manifest.finished:
        return None
    delta = datetime.fromisoformat(manifest.finished) - datetime.fromisoformat(manifest.started)
    return round(delta.total_seconds(), 1)


def compare(hf_dir: Path, served_dir: Path) -> dict:
    hf, served = open_run(hf_dir), open_run(served_dir)
    (hf_model,), (served_model,) = hf.models(), served.models()
    rows = []
    for task in served.tasks(served_model):
        ours = {s.doc_id: s for s in hf.samples(hf_model, task)}
        theirs = {s.doc_id: s for s in served.samples(served_model, task)}
        errors = sum(1 for s in theirs.values() if s.error)
        both = sorted(set(ours) & set(theirs))
        equal = sum(1 for d in both if ours[d].pred == theirs[d].pred and not theirs[d].error)
        diffs = [
            abs(a - b)
            for d in both
            if ours[d].logprobs and theirs[d].logprobs
            for a, b in zip(ours[d].logprobs, theirs[d].logprobs)
            if a is not None and b is not None
        ]
        rows.append(
            {
                "task": task,
                "docs": len(theirs),
                "errors": errors,
                "pred_equal": equal,
                "max_logprob_diff": max(diffs) if diffs else None,
            }
        )
    return {
        "tasks": rows,
        "docs": sum(r["docs"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "pred_equal": sum(r["pred_equal"] for r in rows),
        "hf_wall_s": wall_seconds(hf_dir),
        "served_wall_s": wall_seconds(served_dir),
        "client": client_figures(served_dir),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hf_run", type=Path)
    p.add_argument("served_run", type=Path)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    figures = compare(args.hf_run, args.served_run)
    for r in figures["tasks"]:
        diff = "-" if r["max_logprob_diff"] is None else f"{r['max_logprob_diff']:.2e}"
        print(
            f"{r['task']:<40} docs {r['docs']:>4}  errors {r['errors']:>3}  "
            f"pred equal {r['pred_equal']}/{r['docs']}  max |dlogprob| {diff}"
        )
    print(
        f"total: {figures['pred_equal']}/{figures['docs']} predictions equal, {figures['errors']} errors; "
        f"wall hf {figures['hf_wall_s']} s, served {figures['served_wall_s']} s; client {figures['client']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if figures["errors"] == 0 and figures["pred_equal"] == figures["docs"] else 1


if __name__ == "__main__":
    sys.exit(main())
