"""Command line: flags -> calls, no logic of its own. OpenCompass' spelling where it has one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("lmgauge")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmgauge", description="Measure language models: accuracy, perplexity, speed.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate models on tasks (no arguments: the embedded default)")
    run.add_argument("config", nargs="?", help="a .py or .yaml config with `models` and `datasets`")
    run.add_argument("--hf-path", help="HF model folder or .gguf file (adds a model)")
    run.add_argument("--hf-abbr", "--abbr", dest="abbr", help="name of the --hf-path model in results")
    run.add_argument("--tokenizer-path")
    run.add_argument("--datasets", nargs="+", metavar="NAME", help="tasks or groups, e.g. mmlu arc_easy mmlu_astronomy")
    run.add_argument("--limit", type=int, help="at most N docs per task")
    run.add_argument("--num-fewshot", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("-w", "--work-dir", help="where run directories go (default: outputs)")
    run.add_argument("--run-id", help="name of the run directory (default: a timestamp)")
    run.add_argument("--data-dir", help="data root searched first (also LMGAUGE_DATA)")
    run.add_argument("--batch-size", type=int, help="rows per forward (default: only the token budget limits)")
    run.add_argument("--token-budget", type=int, help="padded tokens per forward")
    run.add_argument("--max-seq-len", type=int)
    run.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"])
    run.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    run.add_argument("--bos", choices=["never", "always", "tokenizer"], help="prepend BOS to contexts (lm-eval: never)")
    run.add_argument("--trust-remote-code", action="store_true")
    run.add_argument("--debug", action="store_true", help="one process, debug logs on the console")
    run.add_argument(
        "--allow-weak-sandbox",
        action="store_true",
        help="without bubblewrap, run code tasks' programs under the weaker rlimit fallback (docs/sandbox.md)",
    )
    run.add_argument("--no-report", action="store_true", help="do not write report.html")
    from lmgauge.opencompass import cli_hooks

    cli_hooks.add_arguments(run)
    run.add_argument(
        "--llamacpp-kld", action="store_true", help="compression config: print llama-perplexity's KLD block"
    )
    api = run.add_argument_group("a model served over HTTP (docs/api-backends.md)")
    api.add_argument(
        "--api-url",
        help="OpenAI-compatible base URL (http://HOST:PORT/v1) or lightllm's http://HOST:PORT/generate (adds a model)",
    )
    api.add_argument("--api-model", help="model name on the server (default: the one /v1/models lists)")
    api.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    api.add_argument("--api-type", choices=["openai", "lightllm"], help="default: from the URL")
    api.add_argument(
        "--api-tokenizer",
        metavar="PATH",
        help="local tokenizer (HF folder or .gguf): prompts sent as the hf backend's token ids",
    )
    api.add_argument("--api-chat", action="store_true", help="generation through /v1/chat/completions")
    api.add_argument("--api-stream", action="store_true", help="stream generated text")
    api.add_argument("--concurrency", type=int, help="requests in flight (default 64)")
    api.add_argument("--timeout", type=float, help="seconds per request try (default 120)")
    api.add_argument("--retries", type=int, help="retries of a failed request (default 5)")
    ex = run.add_argument_group("execution (docs/run-directory.md)")
    ex.add_argument(
        "--max-num-workers",
        type=int,
        metavar="N",
        help="shards run in parallel: worker processes (default 1: this process) or Slurm jobs (default 32)",
    )
    ex.add_argument(
        "--max-partition-size",
        type=int,
        metavar="TOKENS",
        help="split a task into shards of at most this many estimated tokens",
    )
    ex.add_argument("--dry-run", action="store_true", help="print the plan (shards, estimated tokens) and stop")
    ex.add_argument(
        "-r",
        "--reuse",
        nargs="?",
        const="latest",
        metavar="RUN",
        help="continue a run (default: the latest in the work dir); only missing docs are computed",
    )
    ex.add_argument(
        "-m",
        "--mode",
        choices=["all", "infer", "eval"],
        default="all",
        help="infer: answers only; eval: re-score saved answers without the model",
    )
    ex.add_argument(
        "--retry",
        type=int,
        default=2,
        metavar="N",
        help="times a shard whose worker or job died is run again (default 2)",
    )
    ex.add_argument("--slurm", action="store_true", help="run shards as Slurm jobs")
    ex.add_argument("-p", "--partition", help="Slurm partition")
    ex.add_argument("-q", "--qos", help="Slurm QOS")
    ex.add_argument("--slurm-time", type=int, metavar="MIN", help="Slurm time limit per job, minutes")

    ls = sub.add_parser("list", help="tasks, their variants, and whether their data is found")
    ls.add_argument("pattern", nargs="?", help="only names containing this")
    ls.add_argument("--data-dir")

    sm = sub.add_parser("summary", help="re-render the summary of a run directory")
    sm.add_argument("run_dir")

    from lmgauge.perf.command import add_parser as add_perf_parser

    add_perf_parser(sub)

    wk = sub.add_parser(
        "worker", help="(internal) run shards of a planned run; what pool processes and Slurm jobs call"
    )
    wk.add_argument("run_dir")
    wk.add_argument("shards", nargs="+", metavar="SHARD_ID")
    from lmgauge.report.commands import add_parsers as add_report_parsers  # report, compare, export

    add_report_parsers(sub)
    return p


def _setup_logging(debug: bool, log_file: Path | None = None) -> None:
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        logging.Formatter(
            "%(levelname)s %(message)s" if not debug else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    )
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, handlers=handlers, format="%(message)s", force=True
    )
    for noisy in ("urllib3", "filelock", "httpx", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _close_log_files() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()


def _raw_config(args) -> dict:
    from lmgauge.config import read_config_file
    from lmgauge.defaults import DEFAULT_SUITE, default_model

    data = (
        read_config_file(args.config, args.oc_root) if args.config else dict(getattr(args, "config_data", None) or {})
    )
    models = list(data.get("models") or [])
    if args.hf_path:
        m = {"path": args.hf_path}
        if args.abbr:
            m["abbr"] = args.abbr
        models.append(m)
    if args.api_url:
        served = {
            "api_url": args.api_url,
            "api_model": args.api_model,
            "api_key_env": args.api_key_env,
            "api_type": args.api_type,
            "tokenizer_path": args.api_tokenizer,
            "api_chat": args.api_chat or None,
            "api_stream": args.api_stream or None,
            "concurrency": args.concurrency,
            "timeout": args.timeout,
            "retries": args.retries,
            "abbr": None if args.hf_path else args.abbr,
        }
        models.append({k: v for k, v in served.items() if v is not None})
    overrides = {
        "tokenizer_path": args.tokenizer_path,
        "batch_size": args.batch_size,
        "token_budget": args.token_budget,
        "max_seq_len": args.max_seq_len,
        "dtype": args.dtype,
        "device": args.device,
        "bos": args.bos,
        "trust_remote_code": args.trust_remote_code or None,
    }
    if not models:
        models = [default_model()]
    models = [
        {**m, **{k: v for k, v in overrides.items() if v is not None}} if isinstance(m, dict) else m for m in models
    ]
    data["models"] = models
    if args.datasets:
        data["datasets"] = list(args.datasets)
    elif not data.get("datasets"):
        data["datasets"] = DEFAULT_SUITE
    for key in ("limit", "num_fewshot", "seed", "work_dir", "data_dir"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.allow_weak_sandbox:
        data["allow_weak_sandbox"] = True
    return data


def cmd_run(args) -> int:
    from lmgauge.config import ConfigError, validate
    from lmgauge.data.sources import set_data_dir
    from lmgauge.report.console import RichProgress, print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.coordinator import (
        RunOptions,
        available_devices,
        check_space,
        execute,
        find_run,
        format_plan,
        previous_partition,
    )
    from lmgauge.runs.manifest import Manifest
    from lmgauge.runs.plan import plan_shards, plan_tasks
    from lmgauge.runs.rundir import RunDir
    from lmgauge.scoring.sandbox import SandboxUnavailable
    from lmgauge.tasks.code import prepare_sandbox
    from lmgauge.tasks.registry import UnknownTask

    _setup_logging(args.debug)
    from lmgauge.compress.cli import cmd_compress, is_compression_file

    if is_compression_file(args.config):  # llmc's keys (quant, eval.eval_pos): docs/compression.md
        return cmd_compress(args)
    opts = RunOptions(
        max_num_workers=args.max_num_workers,
        max_partition_size=args.max_partition_size,
        mode=args.mode,
        retries=args.retry,
        debug=args.debug,
        slurm=args.slurm,
        partition=args.partition,
        qos=args.qos,
        slurm_time_min=args.slurm_time,
    )
    rundir = None
    try:
        if args.mode == "eval" and not args.reuse:
            raise ValueError("--mode eval re-scores the answers of a previous run: give -r [RUN]")
        if args.reuse:
            rundir = find_run(args.work_dir or "outputs", args.reuse)
            if args.max_partition_size is None:  # the same shards as before, unless asked otherwise
                opts.max_partition_size = args.max_partition_size = previous_partition(rundir)
            if not (args.config or args.hf_path or args.datasets):  # `-r` alone: the run's own config
                args.config_data = rundir.read_manifest()["config"]
        from lmgauge.opencompass import cli_hooks

        raw = cli_hooks.apply(_raw_config(args), args, opts)
        cfg = validate(
            raw, args.config or ("run.json of " + str(rundir.root) if rundir and not args.config else "command line")
        )
        set_data_dir(cfg.data_dir)
        specs = plan_tasks(cfg)
        # code tasks' programs run where shards are scored: here, or in Slurm jobs that check their node
        here = args.mode == "eval" or (args.mode == "all" and not args.slurm)
        prepare_sandbox([s.build(cfg.models[0].name) for s in specs] if here else [], cfg.allow_weak_sandbox)
        if args.mode != "eval":
            for m in cfg.models:
                if m.backend == "hf" and not Path(m.path).expanduser().exists():
                    raise FileNotFoundError(
                        f"model {m.name}: path {m.path!r} does not exist (an HF model folder or a .gguf file)"
                    )
        estimate = args.dry_run or bool(args.max_partition_size) or opts.executor != "inline"
        shards = plan_shards(cfg, specs, args.max_partition_size, estimate=estimate)
    except (ConfigError, UnknownTask, FileNotFoundError, ValueError, SandboxUnavailable) as e:
        log.error("%s", e)
        return 2
    if args.dry_run:
        print(format_plan(cfg, shards, opts, available_devices()))
        return 0
    try:
        check_space(rundir.root if rundir else cfg.work_dir, shards)
        rundir = rundir or RunDir.create(cfg.work_dir, args.run_id)
    except OSError as e:
        log.error("%s", e)
        return 2
    _setup_logging(args.debug, rundir.root / "logs" / "run.log")
    manifest = (Manifest.resume if args.reuse else Manifest)(rundir, cfg.model_dump(mode="json"))
    log.info(
        "run directory: %s (%d tasks x %d models, %d shard(s))%s",
        rundir.root,
        len(specs),
        len(cfg.models),
        len(shards),
        f"; continuing, mode {args.mode}" if args.reuse else "",
    )
    outcomes, interrupted = execute(cfg, specs, shards, rundir, manifest, opts, RichProgress())
    failed = sum(1 for o in outcomes if not o.ok and o.complete)
    incomplete = sum(1 for o in outcomes if not o.complete)
    status = "interrupted" if interrupted else ("incomplete" if incomplete and args.mode != "infer" else "done")
    models, rows = write_summary(rundir)
    manifest.finish(status if not failed else f"{status} ({failed} task(s) failed)")
    if args.mode != "infer" and not args.no_report:
        from lmgauge.report.commands import write_run_report

        write_run_report(rundir.root)
    if args.mode != "infer":
        print_summary(models, rows, where=str(Path(rundir.root) / "summary.txt"))
    log.info("wrote %s", rundir.root)
    _close_log_files()
    if interrupted:
        return 130
    return 1 if failed or (incomplete and args.mode != "infer") else 0


def cmd_worker(args) -> int:
    from lmgauge.runs.worker import run_worker

    _setup_logging(False)
    return run_worker(args.run_dir, args.shards)


def cmd_list(args) -> int:
    from lmgauge.data.sources import set_data_dir
    from lmgauge.report.console import print_task_list

    _setup_logging(False)
    set_data_dir(args.data_dir)
    print_task_list(args.pattern)
    return 0


def cmd_summary(args) -> int:
    from lmgauge.report.console import print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.rundir import RunDir

    root = Path(args.run_dir)
    if not (root / "results").is_dir():
        print(f"{root}: not a run directory (no results/)", file=sys.stderr)
        return 2
    print_summary(*write_summary(RunDir(root)), where=str(Path(root) / "summary.txt"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "func"):  # subcommands that register themselves (report/commands.py)
        return args.func(args)
    return {"run": cmd_run, "list": cmd_list, "summary": cmd_summary, "worker": cmd_worker}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
