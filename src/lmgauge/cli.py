"""Command line: flags -> calls, no logic of its own. OpenCompass' spelling where it has one.

A room adds its subcommands with one line in ROOMS, "module:function": the function adds them to
the subparsers, each with `set_defaults(func=...)` (a function of the parsed args returning the
exit code).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger("lmgauge")

# At exit the interpreter's last collections walk every object still alive: after an hf model,
# torch's and transformers' ~400k, ~1 s of a short run. Frozen first (atexit runs before them),
# they are skipped: 0.2 s. Files and journals are closed explicitly, never left to a collection.
atexit.register(gc.freeze)

ROOMS: tuple[str, ...] = (
    "lmgauge.perf.command:add_parser",  # perf
    "lmgauge.report.commands:add_parsers",  # report, compare, export
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmgauge", description="Measure language models: accuracy, perplexity, speed.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_builtin(sub)
    for room in ROOMS:
        module, _, function = room.partition(":")
        getattr(importlib.import_module(module), function)(sub)
    return p


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="evaluate models on tasks (no arguments: the embedded default)")
    run.set_defaults(func=cmd_run)
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
    api.add_argument(
        "--api-topk",
        type=int,
        metavar="K",
        help="choices of one token each: one request per question reading the next token's top K logprobs "
        "(default 20, checked against the server at start); 0: one request per choice",
    )
    api.add_argument(
        "--concurrency",
        type=int,
        help="most requests in flight (default 64); the client adapts below it to what the server sustains",
    )
    api.add_argument(
        "--timeout",
        type=float,
        help="a try is given up when the server delivers nothing for this many seconds (default 120)",
    )
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
    ex.add_argument("--slurm", action="store_true", help="run shards as Slurm jobs (--executor slurm)")
    ex.add_argument(
        "--executor",
        metavar="NAME",
        help="inline, pool, slurm or another registered in lmgauge/runs/executors (default: from the flags above)",
    )
    ex.add_argument("-p", "--partition", help="Slurm partition")
    ex.add_argument("-q", "--qos", help="Slurm QOS")
    ex.add_argument("--slurm-time", type=int, metavar="MIN", help="Slurm time limit per job, minutes")


def _add_builtin(sub) -> None:
    ls = sub.add_parser("list", help="tasks, their variants, and whether their data is found")
    ls.set_defaults(func=cmd_list)
    ls.add_argument("pattern", nargs="?", help="only names containing this")
    ls.add_argument("--data-dir")

    sm = sub.add_parser("summary", help="re-render the summary of a run directory")
    sm.set_defaults(func=cmd_summary)
    sm.add_argument("run_dir")

    wk = sub.add_parser(
        "worker", help="(internal) run shards of a planned run; what pool processes and Slurm jobs call"
    )
    wk.set_defaults(func=cmd_worker)
    wk.add_argument("run_dir")
    wk.add_argument("shards", nargs="+", metavar="SHARD_ID")


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


def cmd_run(args) -> int:
    from lmgauge.opencompass import cli_hooks
    from lmgauge.report.console import RichProgress, print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.launch import LaunchError, RunRequest, execute_run, open_run_dir, prepare

    _setup_logging(args.debug)
    started = time.strftime("%Y%m%d_%H%M%S")  # OpenCompass names its summary after the invocation's start
    from lmgauge.compress.cli import cmd_compress, is_compression_file

    if is_compression_file(args.config):  # llmc's keys (quant, eval.eval_pos): docs/compression.md
        return cmd_compress(args)
    try:
        prepared = prepare(RunRequest.from_args(args), lambda raw, req: cli_hooks.apply(raw, req, SimpleNamespace()))
        if args.dry_run:
            print(prepared.plan_text())
            return 0
        rundir = open_run_dir(prepared)
    except LaunchError as e:
        log.error("%s", e)
        return 2
    _setup_logging(args.debug, rundir.run_log)
    finished = execute_run(prepared, rundir, RichProgress())
    models, rows = write_summary(rundir)
    if args.mode != "infer":
        cli_hooks.write_summary(rundir, started)
    if args.mode != "infer" and not args.no_report:
        from lmgauge.report.commands import write_run_report

        write_run_report(rundir.root)
    if args.mode != "infer":
        print_summary(models, rows, where=str(rundir.summary("txt")))
    log.info("wrote %s", rundir.root)
    _close_log_files()
    return finished.exit_code


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
    from lmgauge.opencompass import cli_hooks
    from lmgauge.report.console import print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.rundir import RunDir

    rundir = RunDir(Path(args.run_dir))
    if not rundir.results_root.is_dir():
        print(f"{rundir.root}: not a run directory (no results/)", file=sys.stderr)
        return 2
    print_summary(*write_summary(rundir), where=str(rundir.summary("txt")))
    cli_hooks.write_summary(rundir, time.strftime("%Y%m%d_%H%M%S"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
