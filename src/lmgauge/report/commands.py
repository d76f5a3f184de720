"""The report room's subcommands: `lmgauge report`, `lmgauge compare`, `lmgauge export`.

Registered from cli.py with one call (`add_parsers`); each sets `func` so the dispatcher needs no
table entry. Bad input (a path that is not a run directory, runs that cannot be joined) is one clear
message and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("lmgauge")

EXPORT_FORMATS = ("lm-eval", "opencompass", "sdk")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("report", help="write a self-contained report.html for one run (two: with their comparison)")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (two: B is compared against A)")
    rp.add_argument("-o", "--output", help="where to write (default: RUN/report.html; two runs: B/compare.html)")
    _compare_options(rp)
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="paired comparison of two runs: deltas with intervals, flipped questions")
    cp.add_argument("run_a", metavar="A", help="baseline run directory")
    cp.add_argument("run_b", metavar="B", help="candidate run directory (delta = B - A)")
    cp.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    cp.add_argument("--all", action="store_true", help="every subject row, not only the worst")
    cp.add_argument("--html", metavar="PATH", help="also write the two-run report here")
    _compare_options(cp)
    cp.set_defaults(func=cmd_compare)

    ep = sub.add_parser("export", help="write a run in lm-eval's, OpenCompass' or the inference SDK's layout")
    ep.add_argument("run", metavar="RUN")
    ep.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    ep.add_argument("-o", "--output", required=True, metavar="DIR")
    ep.set_defaults(func=cmd_export)


def _compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-a", help="model of A to compare (default: models joined by name)")
    p.add_argument("--model-b", help="model of B to compare")
    p.add_argument("--strict", action="store_true", help="refuse when prompt versions differ (default: warn)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")


def _load(paths: list[str]):
    from lmgauge.report.load import load_run

    return [load_run(p) for p in paths]


def _compare(args, runs):
    from lmgauge.report.compare import compare_runs

    return compare_runs(
        runs[0],
        runs[1],
        model_a=args.model_a,
        model_b=args.model_b,
        strict=args.strict,
        seed=args.seed,
        n_resamples=args.resamples,
    )


def _errors():
    from lmgauge.report.compare import CompareRefused
    from lmgauge.report.export_sdk import NothingToExport
    from lmgauge.report.load import NotARunDir

    return (NotARunDir, CompareRefused, NothingToExport)


def cmd_report(args) -> int:
    from lmgauge.report.html import write_report

    try:
        if len(args.runs) > 2:
            raise ValueError("a report shows one run, or two with their comparison; got " + str(len(args.runs)))
        runs = _load(args.runs)
        cmp = _compare(args, runs) if len(runs) == 2 else None
    except (*_errors(), ValueError) as e:
        print(f"lmgauge report: {e}", file=sys.stderr)
        return 2
    default = runs[-1].root / ("compare.html" if cmp else "report.html")
    out = write_report(runs, Path(args.output) if args.output else default, cmp)
    for w in cmp.warnings if cmp else []:
        print(f"WARNING {w}", file=sys.stderr)
    print(out)
    return 0


def cmd_compare(args) -> int:
    from lmgauge.report.compare_console import print_comparison
    from lmgauge.report.html import write_report

    try:
        runs = _load([args.run_a, args.run_b])
        cmp = _compare(args, runs)
    except (*_errors(), ValueError) as e:
        print(f"lmgauge compare: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(_json(cmp))
    else:
        print_comparison(cmp, show_all=args.all)
    if args.html:
        print(write_report(runs, Path(args.html), cmp), file=sys.stderr)
    return 0


def _json(cmp) -> str:
    from lmgauge.runs.rundir import dumps

    return dumps(cmp.to_dict(), indent=2)


def cmd_export(args) -> int:
    from lmgauge.report.export_lmeval import export_lmeval
    from lmgauge.report.export_opencompass import export_opencompass
    from lmgauge.report.export_sdk import export_sdk

    writers = {"lm-eval": export_lmeval, "opencompass": export_opencompass, "sdk": export_sdk}
    try:
        (run,) = _load([args.run])
        written = writers[args.format](run, Path(args.output))
    except _errors() as e:
        print(f"lmgauge export: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0


def write_run_report(run_dir: Path) -> Path | None:
    """`lmgauge run`'s report.html; a failure is logged with its reason and never fails the run."""
    from lmgauge.report.html import write_report
    from lmgauge.report.load import load_run

    try:
        out = write_report([load_run(run_dir)], Path(run_dir) / "report.html")
        log.info("report: %s", out)
        return out
    except Exception as e:  # the results are on disk already; `lmgauge report RUN` can retry
        log.error(
            "could not write %s/report.html: %s: %s (run `lmgauge report %s` to retry)",
            run_dir,
            type(e).__name__,
            e,
            run_dir,
        )
        return None
