"""`lmgauge perf`'s A/B on two real, identical servers: it must say "within noise".

Starts two servers of the same kind on the same model (scripts/servers/serve.py; llama-cpp-python by
default, each with serve.py's thread count), then runs

  lmgauge perf --api-url A --ab-url B --input-len I --output-len O --num-prompts N
               --max-concurrency C --seed S --ab-repeats R --ab-order ORDER --ab-margin M

and prints every metric's difference B - A, its 95% interval, the margin and the verdict. Pass: no
metric "different", and TPOT, E2EL and both throughputs "within noise". Two identical servers can
only differ by noise, so "different" would be a false alarm and "inconclusive" a test too weak for
the margin asked.

  python benchmarks/ab_identical_servers.py [--server llamacpp|vllm] [--num-prompts 16] [--ab-repeats 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

MUST_BE_WITHIN_NOISE = ("tpot_ms", "e2el_ms", "request_throughput", "output_throughput")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["llamacpp", "vllm"], default="llamacpp")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--max-concurrency", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ab-repeats", type=int, default=6)
    ap.add_argument("--ab-order", default="interleaved", choices=["interleaved", "sequential", "parallel"])
    ap.add_argument("--ab-margin", default="5%")
    ap.add_argument("--json", help="copy ab.json here")
    a = ap.parse_args()
    from servers import serve  # tests/servers.py's loader of scripts/servers/serve.py

    extra = ["--interrupt_requests", "False", "--logits_all", "False"] if a.server == "llamacpp" else []
    with contextlib.ExitStack() as stack:
        srv_a = serve.start(a.server, None, extra_args=extra)
        stack.callback(srv_a.stop)
        srv_b = serve.start(a.server, None, extra_args=extra)
        stack.callback(srv_b.stop)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ab_identical_")))
        cmd = [sys.executable, "-m", "lmgauge", "perf", "--api-url", srv_a.base_url + "/v1"]
        cmd += ["--api-model", srv_a.model, "--ab-url", srv_b.base_url + "/v1", "--ab-model", srv_b.model]
        cmd += ["--tokenizer", str(serve.hf_folder_for(None)), "--input-len", str(a.input_len)]
        cmd += ["--output-len", str(a.output_len), "--num-prompts", str(a.num_prompts)]
        cmd += ["--max-concurrency", str(a.max_concurrency), "--seed", str(a.seed), "--num-warmups", "1"]
        cmd += ["--ab-repeats", str(a.ab_repeats), "--ab-order", a.ab_order, "--ab-margin", a.ab_margin]
        cmd += ["-w", str(work), "--run-id", "ab"]
        load0 = os.getloadavg()[0]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            raise SystemExit(f"lmgauge perf failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        ab = json.loads((work / "ab" / "ab" / "ab.json").read_text())
        if a.json:
            Path(a.json).write_text(json.dumps(ab, indent=2))
    print(
        f"{a.server} x2 (identical); {a.num_prompts} prompts, {a.input_len} in / {a.output_len} out, "
        f"concurrency {a.max_concurrency}, {a.ab_repeats} repeats, {a.ab_order}, margin {a.ab_margin}; "
        f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print("| metric | A mean | B - A | 95% interval | margin | verdict |")
    print("| --- | --- | --- | --- | --- | --- |")
    verdicts = {}
    for name, m in {**ab["per_request"], **ab["per_run"]}.items():
        verdicts[name] = m["verdict"]
        if "ci95" not in m:  # too few pairs
            print(f"| {name} | | | | | {m['verdict']} |")
            continue
        lo, hi = m["ci95"]
        cells = f"{m['mean_a']:.4g} | {m['delta']:+.4g} | [{lo:+.4g}, {hi:+.4g}] | {m['margin']:.4g}"
        print(f"| {name} | {cells} | {m['verdict']} |")
    print(f"failed requests: A {ab['failed']['A']}, B {ab['failed']['B']}")
    ok = "different" not in verdicts.values() and all(verdicts.get(k) == "within noise" for k in MUST_BE_WITHIN_NOISE)
    print("PASS" if ok else "FAIL", f"(no metric 'different'; {', '.join(MUST_BE_WITHIN_NOISE)} 'within noise')")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
