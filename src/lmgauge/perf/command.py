"""`lmgauge perf`: flags -> an in-process or a serving benchmark. cli.py registers it with `add_parser`."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("lmgauge")


def _float_or_inf(text: str) -> float:
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'inf'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def add_parser(sub: Any) -> None:
    """Register `perf` on the top-level subparsers."""
    p = sub.add_parser(
        "perf",
        help="latency and throughput: in-process (--hf-path) or against a server (--api-url); docs/perf.md",
        description="How fast a model runs. In-process: first-token and per-token latency per case, written as "
        "inference SDKs write it. Against a server: TTFT/TPOT/ITL/E2EL under load with vLLM's definitions.",
    )
    p.add_argument("-w", "--work-dir", default="outputs", help="where run directories go (default: outputs)")
    p.add_argument("--run-id", help="name of the run directory (default: perf_<timestamp>)")
    p.add_argument("--seed", type=int, default=0, help="prompts and arrival schedule (default 0)")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--input-len", type=int, nargs="+", metavar="N", help="prompt tokens (in-process: a list of cases)")
    p.add_argument(
        "--output-len", type=int, nargs="+", metavar="M", help="generated tokens (in-process: a list of cases)"
    )
    p.add_argument("--tokenizer-path", "--tokenizer", dest="tokenizer_path", help="tokenizer (HF folder or .gguf)")
    p.add_argument("--trust-remote-code", action="store_true")

    ip = p.add_argument_group("in-process (hf backend)")
    ip.add_argument("--hf-path", help="HF model folder or .gguf file")
    ip.add_argument("--model-name", help="name in the CSV file name (default: the model's file name)")
    ip.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto")
    ip.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    ip.add_argument("--case-pair", metavar="JSON", help="[[input, output], ...], e.g. '[[256,256],[512,512]]'")
    ip.add_argument("--min-len-exp", type=int, metavar="K", help="cases input = output = 2^k, k from K ...")
    ip.add_argument("--max-len-exp", type=int, metavar="K", help="... to K")
    ip.add_argument("--batch-size", type=int, nargs="+", metavar="B", help="batch sizes (default 1)")
    ip.add_argument("--warmup", type=int, default=1, help="untimed generations per case first (default 1)")
    ip.add_argument("--repeats", type=int, default=3, help="timed generations per case (default 3)")
    ip.add_argument("--prompt-text", metavar="FILE", help="cut prompts from this text file instead of random ids")
    ip.add_argument("--sdk-config", metavar="INI", help="an SDK's sdk_config.ini: its [performance] keys")

    sv = p.add_argument_group("against a server (OpenAI-compatible or lightllm)")
    sv.add_argument("--api-url", help="http://HOST:PORT[/v1], a full /v1/completions URL, or lightllm's /generate")
    sv.add_argument("--api-model", help="model name to send (default: the one /v1/models lists)")
    sv.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    sv.add_argument("--api-type", choices=["openai", "lightllm"], help="default: from the URL")
    sv.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    sv.add_argument("--no-stream", action="store_true", help="whole answers (no TTFT, TPOT or ITL then)")
    sv.add_argument(
        "--no-force-output-len",
        action="store_true",
        help="let the server stop at EOS (default: ignore_eos + min_tokens)",
    )
    sv.add_argument(
        "--max-concurrency", type=int, nargs="+", metavar="C", help="closed loop: requests in flight (a list sweeps)"
    )
    sv.add_argument(
        "--request-rate",
        type=_float_or_inf,
        nargs="+",
        metavar="R",
        help="open loop: arrivals per second (a list sweeps; inf = all at once; default inf)",
    )
    sv.add_argument("--burstiness", type=_float_or_inf, default=1.0, help="gamma shape: 1 Poisson, <1 burstier")
    sv.add_argument("--num-prompts", type=int, default=100, help="requests per point (default 100)")
    sv.add_argument("--duration", type=float, metavar="S", help="send for S seconds instead (prompts cycle)")
    sv.add_argument("--num-warmups", type=int, default=1, help="requests before each point, not counted (default 1)")
    sv.add_argument("--range-ratio", type=float, default=0.0, help="random lengths in [L(1-r), L(1+r)] (vLLM)")
    sv.add_argument("--dataset-path", metavar="JSONL", help='prompts from a file: {"prompt": ..., "output_len": ...}')
    sv.add_argument("--task", help="prompts of a benchmark task, e.g. mmlu_astronomy")
    sv.add_argument("--percentiles", default="50,90,95,99", help="latency percentiles (default 50,90,95,99)")
    sv.add_argument("--goodput", nargs="+", metavar="NAME:MS", help="SLOs, e.g. ttft:200 tpot:50 e2el:2000")
    sv.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")
    sv.add_argument("--ab-url", metavar="URL", help="A/B: a second endpoint (B) given the same prompts and schedule")
    sv.add_argument("--ab-model", help="model name on the B endpoint (default: the one its /v1/models lists)")
    sv.add_argument(
        "--ab-order",
        choices=["interleaved", "sequential", "parallel"],
        default="interleaved",
        help="A/B: A B, B A, ... per repeat (default); all A then all B; or both at once (separate hardware)",
    )
    sv.add_argument("--ab-repeats", type=int, default=3, metavar="N", help="A/B: runs per side (default 3)")
    sv.add_argument(
        "--ab-margin",
        default="5%",
        metavar="M",
        help="A/B: differences within M of A's mean are 'within noise' (0.05 or 5%%; default 5%%)",
    )
    p.set_defaults(func=cmd_perf)


def cmd_perf(args: argparse.Namespace) -> int:
    from lmgauge.cli import _setup_logging

    _setup_logging(args.debug)
    if bool(args.hf_path) == bool(args.api_url):
        log.error("lmgauge perf: give exactly one of --hf-path (in-process) or --api-url (a server)")
        return 2
    if args.hf_path:
        return run_inprocess(args)
    from lmgauge.perf.serving_command import run_serving

    return run_serving(args)


def _inprocess_cases(args: argparse.Namespace):
    from lmgauge.perf.cases import CaseError, build_cases, exponent_pairs, parse_case_pairs, read_sdk_config

    sdk = read_sdk_config(args.sdk_config) if args.sdk_config else None
    ways = [args.case_pair is not None, args.min_len_exp is not None or args.max_len_exp is not None]
    ways.append(args.input_len is not None or args.output_len is not None)
    if sum(ways) > 1:
        raise CaseError("give one of --case-pair, --min-len-exp/--max-len-exp, or --input-len/--output-len")
    if args.case_pair is not None:
        pairs = parse_case_pairs(args.case_pair)
    elif ways[1]:
        if args.min_len_exp is None or args.max_len_exp is None:
            raise CaseError("--min-len-exp and --max-len-exp go together")
        pairs = exponent_pairs(args.min_len_exp, args.max_len_exp)
    elif ways[2]:
        if not args.input_len or not args.output_len:
            raise CaseError("--input-len and --output-len go together (every input length with every output length)")
        pairs = [(n, m) for n in args.input_len for m in args.output_len]
    elif sdk and sdk.case_pair:  # the SDK reads case_pair first, the exponents when it is empty
        pairs = sdk.case_pair
    elif sdk and sdk.min_len_exp is not None and sdk.max_len_exp is not None:
        pairs = exponent_pairs(sdk.min_len_exp, sdk.max_len_exp, f"{args.sdk_config}: min_len_exp/max_len_exp")
    else:
        raise CaseError(
            "no cases: give --case-pair '[[64,16],[128,16]]', --min-len-exp/--max-len-exp, "
            "--input-len/--output-len, or an --sdk-config with case_pair or the exponents"
        )
    batch = args.batch_size or (sdk.batch_size if sdk and sdk.batch_size else [1])
    name = args.model_name or (sdk.model_name if sdk else None)
    return build_cases(pairs, batch), name


def run_inprocess(args: argparse.Namespace) -> int:
    from lmgauge.models.base import ModelError
    from lmgauge.perf import rundir
    from lmgauge.perf.cases import CaseError
    from lmgauge.perf.console import print_inprocess
    from lmgauge.perf.inprocess import CSV_SDK_COLUMNS, CaseResult, InProcessOptions, run_cases
    from lmgauge.perf.prompts import PromptError
    from lmgauge.runs.rundir import write_json_atomic

    try:
        cases, name = _inprocess_cases(args)
        text = None
        if args.prompt_text:
            pt = Path(args.prompt_text)
            if not pt.is_file():
                raise CaseError(f"--prompt-text: {str(pt)!r} is not a file")
            text = pt.read_text(encoding="utf-8")
        if args.repeats < 1 or args.warmup < 0:
            raise CaseError("--repeats must be at least 1 and --warmup at least 0")
        if not Path(args.hf_path).expanduser().exists():
            raise CaseError(f"--hf-path {args.hf_path!r} does not exist (an HF model folder or a .gguf file)")
        root = rundir.create(args.work_dir, args.run_id)
    except (CaseError, OSError) as e:
        log.error("%s", e)
        return 2
    opts = InProcessOptions(warmup=args.warmup, repeats=args.repeats, seed=args.seed, prompt_text=text)
    manifest = rundir.PerfManifest(
        root,
        "inprocess",
        {
            "hf_path": args.hf_path,
            "dtype": args.dtype,
            "device": args.device,
            "cases": [[c.input_len, c.output_len, c.batch_size] for c in cases],
            "warmup": opts.warmup,
            "repeats": opts.repeats,
            "seed": opts.seed,
            "prompts": f"text cut from {args.prompt_text}" if text else "random non-special token ids",
            "sdk_config": args.sdk_config,
        },
    )
    try:
        from lmgauge.models.hf import HFModel

        hf = HFModel(
            args.hf_path,
            tokenizer_path=args.tokenizer_path,
            dtype=args.dtype,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    except (ModelError, OSError, ValueError) as e:
        log.error("%s", e)
        manifest.finish("failed: model did not load")
        return 2
    model_name = name or hf.name
    device_type = hf.device.split(":")[0]
    manifest.set("model", {**hf.describe(), "model_name": model_name})
    log.info("perf run directory: %s (%d case(s), device %s)", root, len(cases), hf.device)
    done: list[CaseResult] = []

    def on_case(r: CaseResult) -> None:
        done.append(r)
        c = r.case
        log.info(
            "bs %d in %d out %d: first %.1f ms, next %s ms, e2e %.3f s",
            c.batch_size,
            c.input_len,
            c.output_len,
            r.first_token_time_ms,
            f"{r.next_token_time_ms:.2f}" if r.next_token_time_ms else "-",
            r.response_time_s,
        )
        _write_inprocess(root, model_name, device_type, done, CSV_SDK_COLUMNS)

    status = "done"
    try:
        run_cases(hf.model, hf.tokenizer, hf.device, cases, opts, on_case)
    except KeyboardInterrupt:
        status = "interrupted"
    except (PromptError, ValueError, RuntimeError) as e:
        log.error("%s", e)
        status = f"failed: {e}"
    write_json_atomic(root / "inprocess.json", {"model": model_name, "cases": [r.to_json() for r in done]})
    manifest.finish(status)
    if done:
        print_inprocess(done, model_name, hf.device)
        try:
            from lmgauge.perf.plots import plot_inprocess

            plot_inprocess(root, done)
        except ImportError as e:  # matplotlib is an extra: the numbers stand without it
            log.warning("no plots (%s): pip install 'lmgauge[plots]'", e)
    log.info("wrote %s", root)
    return 0 if status == "done" else (130 if status == "interrupted" else 1)


def _write_inprocess(root: Path, model: str, device: str, done: list, sdk_columns: list[str]) -> None:
    from lmgauge.perf.rundir import sdk_csv_name, write_csv_atomic
    from lmgauge.runs.rundir import write_json_atomic

    by_batch: dict[int, list[dict]] = {}
    for r in done:
        by_batch.setdefault(r.case.batch_size, []).append(r.row())
    for b, rows in by_batch.items():
        columns = sdk_columns + [k for k in rows[0] if k not in sdk_columns]
        write_csv_atomic(root / sdk_csv_name(model, device, b), rows, columns)
    write_json_atomic(root / "inprocess.json", {"model": model, "cases": [r.to_json() for r in done]})


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: lmgauge perf ...")
