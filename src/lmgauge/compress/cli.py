"""`lmgauge run compress.yaml`: a compression config (llmc's keys) routed here from cli.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lmgauge.config import ConfigError

log = logging.getLogger("lmgauge")


def is_compression_file(path: str | None) -> bool:
    """A .yaml/.yml file whose top level has `quant`, or `eval` with `eval_pos`."""
    if not path or Path(path).suffix not in (".yaml", ".yml") or not Path(path).is_file():
        return False
    from lmgauge.compress.config import is_compression_config
    from lmgauge.config import read_config_file

    try:
        return is_compression_config(read_config_file(path))
    except ConfigError:
        return False


# run flags that mean something for one model of a plain run but not here: refused, not ignored
_NOT_HERE = ("hf_path", "api_url", "datasets", "reuse", "dry_run", "slurm", "max_num_workers", "max_partition_size")


def check_corpora(cc) -> None:
    """Every task builds and every perplexity corpus is found: before the model loads, not after
    an hour of MMLU."""
    from lmgauge.data.sources import set_data_dir
    from lmgauge.runs.plan import plan_tasks

    rc = cc.run_config()
    set_data_dir(rc.data_dir)
    from lmgauge.data import DataError
    from lmgauge.opencompass.task import OpenCompassTask

    for spec in plan_tasks(rc):
        task = spec.build(rc.models[0].name)
        if getattr(task, "output_type", None) == "perplexity":
            task.load()  # raises DataNotFound naming every place it looked
        elif isinstance(task, OpenCompassTask):  # the opencompass block's data, found now
            try:
                task.load()
            except (DataError, OSError) as e:  # DataNotFound is an OSError
                assert cc.opencompass is not None
                raise DataError(
                    f"opencompass.cfg_path {cc.opencompass.cfg_path}: {task.where} ({task.name}): {e}"
                ) from None


def cmd_compress(args) -> int:
    from lmgauge.compress.config import load_compression_config
    from lmgauge.compress.report import append_to_summary, llamacpp_views
    from lmgauge.compress.run import run_compression
    from lmgauge.config import read_config_file
    from lmgauge.data.sources import DataError
    from lmgauge.models.quant import QuantError
    from lmgauge.report.console import RichProgress, print_summary
    from lmgauge.report.summary import write_summary
    from lmgauge.runs.rundir import RunDir
    from lmgauge.tasks.registry import UnknownTask

    given = [f"--{k.replace('_', '-')}" for k in _NOT_HERE if getattr(args, k, None) not in (None, False)]
    if given:
        log.error(
            "%s: %s do not apply to a compression config (its model and tasks are in the file)",
            args.config,
            ", ".join(given),
        )
        return 2
    try:
        data = read_config_file(args.config)
        for key in ("limit", "num_fewshot", "work_dir", "data_dir"):
            if getattr(args, key, None) is not None:
                data[key] = getattr(args, key)
        cc = load_compression_config(data, args.config)
        for key, attr in (("device", "device"), ("dtype", "torch_dtype")):
            if getattr(args, key, None) is not None:
                setattr(cc.model, attr, getattr(args, key))
        if not Path(cc.model.path).expanduser().exists():
            raise FileNotFoundError(f"{args.config}: model.path {cc.model.path!r} does not exist")
        check_corpora(cc)  # tasks and perplexity text checked before the model loads
    except (ConfigError, UnknownTask, FileNotFoundError, ValueError, DataError) as e:
        log.error("%s", e)
        return 2
    started = time.strftime("%Y%m%d_%H%M%S")  # OpenCompass' <time> of the summary files
    try:
        rundir: RunDir = run_compression(cc, args.run_id, RichProgress())
    except QuantError as e:  # the scheme does not fit this model: said before anything was evaluated
        log.error("%s: %s", args.config, e)
        return 2
    models, rows = write_summary(rundir)
    append_to_summary(rundir)
    if cc.opencompass is not None:
        from lmgauge.compress.opencompass_out import write_opencompass_outputs
        from lmgauge.compress.run import ORDER

        positions = sorted(cc.eval.eval_pos, key=ORDER.__getitem__)
        written = write_opencompass_outputs(rundir, cc, positions, started)
        if written:
            log.info("wrote %s (OpenCompass' summary, a column per position)", written[0])
        if cc.opencompass.output_path:
            log.info("wrote %s (OpenCompass' work-dir layout)", Path(cc.opencompass.output_path) / started)
    if not getattr(args, "no_report", False):
        from lmgauge.report.commands import write_run_report

        write_run_report(rundir.root)
    print_summary(models, rows, where=str(rundir.root / "summary.txt"))
    if getattr(args, "llamacpp_kld", False):
        print(llamacpp_views(rundir))
    log.info("wrote %s (before/after in summary.md)", rundir.root)
    failed = [
        p for p, meta in rundir.read_manifest()["compression"]["positions"].items() if meta.get("status") == "failed"
    ]
    return 1 if failed else 0
