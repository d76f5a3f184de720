"""Command line: flags -> calls, no logic of its own. OpenCompass' spelling where it has one."""

from __future__ import annotations

import argparse
import logging
import sys
import time
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

    ls = sub.add_parser("list", help="tasks, their variants, and whether their data is found")
    ls.add_argument("pattern", nargs="?", help="only names containing this")
    ls.add_argument("--data-dir")

    sm = sub.add_parser("summary", help="re-render the summary of a run directory")
    sm.add_argument("run_dir")
    return p


def _setup_logging(debug: bool, log_file: Path | None = None) -> None:
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s" if not debug else "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=handlers, format="%(message)s", force=True)
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

    data = read_config_file(args.config) if args.config else {}
    models = list(data.get("models") or [])
    if args.hf_path:
        m = {"path": args.hf_path}
        if args.abbr:
            m["abbr"] = args.abbr
        models.append(m)
    overrides = {
        "tokenizer_path": args.tokenizer_path, "batch_size": args.batch_size, "token_budget": args.token_budget,
        "max_seq_len": args.max_seq_len, "dtype": args.dtype, "device": args.device, "bos": args.bos,
        "trust_remote_code": args.trust_remote_code or None,
    }  # fmt: skip
    if not models:
        models = [default_model()]
    models = [{**m, **{k: v for k, v in overrides.items() if v is not None}} if isinstance(m, dict) else m for m in models]
    data["models"] = models
    if args.datasets:
        data["datasets"] = list(args.datasets)
    elif not data.get("datasets"):
        data["datasets"] = DEFAULT_SUITE
    for key in ("limit", "num_fewshot", "seed", "work_dir", "data_dir"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return data


def cmd_run(args) -> int:
    from lmgauge.config import ConfigError, validate
    from lmgauge.data.sources import set_data_dir
    from lmgauge.models import ModelError, build_model
    from lmgauge.report.console import RichProgress, print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.manifest import Manifest, peak_memory
    from lmgauge.runs.plan import plan_tasks
    from lmgauge.runs.rundir import RunDir
    from lmgauge.runs.runner import run_model_tasks
    from lmgauge.tasks.registry import UnknownTask

    _setup_logging(args.debug)
    try:
        raw = _raw_config(args)
        cfg = validate(raw, args.config or "command line")
        set_data_dir(cfg.data_dir)
        specs = plan_tasks(cfg)
        for m in cfg.models:
            if not Path(m.path).expanduser().exists():
                raise FileNotFoundError(f"model {m.name}: path {m.path!r} does not exist (an HF model folder or a .gguf file)")
    except (ConfigError, UnknownTask, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 2
    try:
        rundir = RunDir.create(cfg.work_dir, args.run_id)
    except OSError as e:
        log.error("%s", e)
        return 2
    _setup_logging(args.debug, rundir.root / "logs" / "run.log")
    manifest = Manifest(rundir, cfg.model_dump(mode="json"))
    log.info("run directory: %s (%d tasks x %d models)", rundir.root, len(specs), len(cfg.models))
    failed = 0
    status = "done"
    try:
        for mcfg in cfg.models:
            t0 = time.perf_counter()
            try:
                model = build_model(mcfg)
            except (ModelError, OSError, ValueError) as e:
                log.error("model %s: %s", mcfg.name, e)
                manifest.model_loaded(mcfg.name, {"status": "failed", "error": str(e)})
                failed += len(specs)
                continue
            manifest.model_loaded(mcfg.name, {**model.describe(), "load_s": round(time.perf_counter() - t0, 3)})
            outcomes = run_model_tasks(model, specs, rundir, manifest, RichProgress())
            failed += sum(not o.ok for o in outcomes)
            manifest.data["models"][mcfg.name]["tokens"] = {
                "forwarded": model.stats.forwarded, "per_request_baseline": model.stats.naive,
                "scored": model.stats.scored, "requests": model.stats.requests,
            }  # fmt: skip
            manifest.data["models"][mcfg.name]["peak_memory"] = peak_memory()
            manifest.data["models"][mcfg.name]["eval_s"] = round(time.perf_counter() - t0, 3)
            del model
    except KeyboardInterrupt:
        status = "interrupted"
        log.warning("interrupted: finished tasks are kept in %s", rundir.root)
    models, rows = write_summary(rundir)
    manifest.finish(status if not failed else f"{status} ({failed} task(s) failed)")
    print_summary(models, rows, where=str(Path(rundir.root) / "summary.txt"))
    log.info("wrote %s", rundir.root)
    _close_log_files()
    return 130 if status == "interrupted" else (1 if failed else 0)


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
    return {"run": cmd_run, "list": cmd_list, "summary": cmd_summary}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
