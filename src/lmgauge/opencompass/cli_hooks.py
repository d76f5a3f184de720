"""The OpenCompass flags of `lmgauge run`, and how they and a config's infer/eval sections reach
the run options. cli.py calls `add_arguments` and `apply`; nothing else of it knows OpenCompass."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

# the run options an OpenCompass config may set, and the CLI defaults that mean "not given"
_RUN_DEFAULTS = {
    "max_num_workers": None,
    "max_partition_size": None,
    "slurm": False,
    "partition": None,
    "qos": None,
    "retry": 2,
}


def add_arguments(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("OpenCompass configs and names (docs/opencompass.md)")
    g.add_argument("--models", nargs="+", metavar="NAME", help="OpenCompass model config names (configs/models/**)")
    g.add_argument(
        "--hf-type",
        choices=["base", "chat"],
        help="--hf-path as HuggingFaceBaseModel (base, default) or HuggingFacewithChatTemplate (chat)",
    )
    g.add_argument("--max-out-len", type=int, help="new tokens per generation (OpenCompass' max_out_len)")
    g.add_argument(
        "--oc-root", metavar="DIR", help="an OpenCompass checkout whose configs/ are searched (also OPENCOMPASS_ROOT)"
    )


def apply(raw: dict, args, opts) -> dict:
    """Resolve OpenCompass names in the raw config and move a config's execution options onto
    `opts` where the command line left them at their defaults. Returns the raw config."""
    from lmgauge.opencompass.names import resolve_cli

    run = raw.pop("opencompass_run", None) or {}
    for key, default in _RUN_DEFAULTS.items():
        if key in run and getattr(args, key, default) == default:
            setattr(args, key, run[key])
            setattr(opts, "retries" if key == "retry" else key, run[key])
    if run.get("summarizer") is not None:
        raw["summarizer"] = run["summarizer"]  # checked when read; run.json keeps it for `lmgauge summary`
    return resolve_cli(raw, args)


def write_summary(rundir, time_str: str) -> list:
    """OpenCompass' summary/summary_<time_str>.{txt,csv,md} beside lmgauge's summary, for a run
    with OpenCompass datasets (nothing otherwise)."""
    from lmgauge.opencompass.summary import write_run_summary

    written = write_run_summary(rundir, time_str)
    if written:
        log.info("wrote %s (OpenCompass' summary)", written[0])
    return written
