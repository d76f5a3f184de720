"""Why llama-cpp-python's server decodes slower after its first loaded run: probe it before and after.

Starts a llama-cpp-python server (scripts/servers/serve.py), then: a probe (one streamed request at
a time, 128-token prompt, `--probe-tokens` forced tokens, `--probes` times; ms/token = (last chunk -
first chunk) / (n - 1), the median printed); a loaded run (`lmgauge perf`, `--load-prompts` prompts
at concurrency 4, 128 in / 32 out); the probe again. Around each step it reads the server's threads
from /proc (name, CPU seconds): the threads the loaded run added and the CPU they burn during a probe
and while the server is idle show whether idle threads spin on the shared cores.

  python benchmarks/llamacpp_slowdown.py                         # serve.py's options as they are
  python benchmarks/llamacpp_slowdown.py --server-arg --n_threads --server-arg 1
  python benchmarks/llamacpp_slowdown.py --env OMP_WAIT_POLICY=passive
  python benchmarks/llamacpp_slowdown.py --no-min-tokens         # the probe sends ignore_eos only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
TICK = os.sysconf("SC_CLK_TCK")
PROMPT = " ".join(f"word{i % 97} and" for i in range(64))  # about 128 SmolLM2 tokens


def threads(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (name, CPU seconds so far) of every thread of pid."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (t / "comm").read_text().strip()
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(t.name)] = (comm, (int(fields[11]) + int(fields[12])) / TICK)  # utime + stime
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile
    return out


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per thread between two snapshots ("name/tid")."""
    return {f"{name}/{tid}": round(cpu - before.get(tid, (name, 0.0))[1], 2) for tid, (name, cpu) in after.items()}


def probe(url: str, model: str, n: int, min_tokens: bool) -> float:
    """ms per decoded token of one streamed request of n forced tokens."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": n, "temperature": 0.0, "stream": True, "ignore_eos": True}
    if min_tokens:
        body["min_tokens"] = n
    times = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]" and json.loads(line[5:]).get("choices"):
                times.append(time.perf_counter())
    if len(times) < 2:
        raise SystemExit(f"the probe got {len(times)} chunk(s)")
    return 1000 * (times[-1] - times[0]) / (len(times) - 1)


def probes(url: str, model: str, a: argparse.Namespace, pid: int) -> dict:
    t0 = threads(pid)
    ms = [probe(url, model, a.probe_tokens, not a.no_min_tokens) for _ in range(a.probes)]
    t1 = threads(pid)
    time.sleep(a.idle_s)
    t2 = threads(pid)
    return {
        "ms_per_token": [round(x, 2) for x in ms],
        "median_ms_per_token": round(statistics.median(ms), 2),
        "threads": len(t1),
        "cpu_during_probes_s": cpu_delta(t0, t1),
        f"cpu_idle_{a.idle_s:g}s": cpu_delta(t1, t2),
    }


def loaded_run(url: str, tok: str, prompts: int, work: Path, rid: str) -> float:
    cmd = [sys.executable, "-m", "lmgauge", "perf", "--api-url", url + "/v1", "--tokenizer", tok]
    cmd += ["--input-len", "128", "--output-len", "32", "--num-prompts", str(prompts), "--max-concurrency", "4"]
    cmd += ["--seed", "1", "-w", str(work), "--run-id", rid]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"lmgauge perf failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    res = json.loads((work / rid / "serving" / "rateinf_conc4.json").read_text())
    return res["request_throughput"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-arg", action="append", default=[], help="extra llama_cpp.server argument")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server's environment")
    ap.add_argument("--probe-tokens", type=int, default=48)
    ap.add_argument("--probes", type=int, default=3)
    ap.add_argument("--load-prompts", type=int, default=16)
    ap.add_argument("--loaded-runs", type=int, default=1)
    ap.add_argument("--idle-s", type=float, default=2.0)
    ap.add_argument("--no-min-tokens", action="store_true", help="probe with ignore_eos only (vllm bench's body)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    from servers import serve

    for kv in a.env:
        k, _, v = kv.partition("=")
        os.environ[k] = v  # serve.start passes this process's environment on
    extra = ["--interrupt_requests", "False", *a.server_arg]
    tok = str(serve.hf_folder_for(None))
    out: dict = {"server_args": extra, "env": a.env, "min_tokens": not a.no_min_tokens, "steps": []}
    with serve.start("llamacpp", None, extra_args=extra) as srv, tempfile.TemporaryDirectory() as tmp:
        pid = srv.proc.pid
        out["steps"].append({"step": "fresh", **probes(srv.base_url, srv.model, a, pid)})
        for k in range(a.loaded_runs):
            before = threads(pid)
            rps = loaded_run(srv.base_url, tok, a.load_prompts, Path(tmp), f"load{k}")
            step = {"step": f"after loaded run {k + 1}", "loaded_req_per_s": round(rps, 3)}
            step["cpu_during_loaded_run_s"] = cpu_delta(before, threads(pid))
            out["steps"].append({**step, **probes(srv.base_url, srv.model, a, pid)})
    for s in out["steps"]:
        print(json.dumps(s))
    print(
        "ms/token:",
        " -> ".join(f"{s['median_ms_per_token']} ({s['threads']} threads)" for s in out["steps"]),
        f"| server {' '.join(a.server_arg) or '(serve.py defaults)'} {' '.join(a.env)}",
        f"| min_tokens {'off' if a.no_min_tokens else 'on'} | load {os.getloadavg()[0]:.2f}",
    )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
