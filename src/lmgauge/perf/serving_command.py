"""`lmgauge perf --api-url ...`: flags -> a ServingRun, the sweep, files and tables."""

from __future__ import annotations

import argparse
import logging
import math
import os

log = logging.getLogger("lmgauge")


def run_serving(args: argparse.Namespace) -> int:
    from lmgauge.perf import rundir
    from lmgauge.perf.console import print_serving
    from lmgauge.perf.metrics import parse_goodput
    from lmgauge.perf.prompts import PromptError
    from lmgauge.perf.serving import (
        PromptSource,
        ServingError,
        ServingRun,
        SweepPoint,
        build_specs,
        load_tokenizer,
        resolve_endpoint,
        run_sweep,
        served_model,
    )
    from lmgauge.perf.stream_client import Endpoint

    try:
        if args.dataset_path and args.task:
            raise ServingError("give one of --dataset-path or --task (or neither: random prompts)")
        for flag in ("input_len", "output_len"):
            if getattr(args, flag) and len(getattr(args, flag)) > 1:
                raise ServingError(f"--{flag.replace('_', '-')}: one value against a server")
        try:
            percentiles = [float(p) for p in args.percentiles.split(",")]
        except ValueError:
            raise ServingError(f"--percentiles {args.percentiles!r}: comma-separated numbers") from None
        if any(not 0 <= p <= 100 for p in percentiles):
            raise ServingError("--percentiles must lie in 0..100")
        goodput = parse_goodput(args.goodput or [])
        concs = args.max_concurrency or [None]
        rates = args.request_rate or [math.inf]
        if len(concs) > 1 and len(rates) > 1:
            raise ServingError("sweep one of --max-concurrency or --request-rate, not both")
        if any(c is not None and c < 1 for c in concs):
            raise ServingError("--max-concurrency must be at least 1")
        if args.duration is not None and args.duration <= 0:
            raise ServingError("--duration must be positive")
        if args.num_prompts < 1:
            raise ServingError("--num-prompts must be at least 1")
        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                raise ServingError(f"--api-key-env {args.api_key_env}: that variable is not set")
        base, url, kind = resolve_endpoint(args.api_url, args.endpoint, args.api_type)
        model = args.api_model or (None if kind == "lightllm" else served_model(base, api_key))
        tokenizer = load_tokenizer(args.tokenizer_path, args.trust_remote_code) if args.tokenizer_path else None
        src = PromptSource(
            kind="jsonl" if args.dataset_path else ("task" if args.task else "random"),
            input_len=(args.input_len or [1024])[0],
            output_len=(args.output_len or [128])[0],
            range_ratio=args.range_ratio,
            path=args.dataset_path,
            task=args.task,
        )
        specs = build_specs(src, args.num_prompts, tokenizer, args.seed)
        root = rundir.create(args.work_dir, args.run_id)
    except (ServingError, PromptError, ValueError, OSError) as e:
        log.error("%s", e)
        return 2
    ep = Endpoint(
        url=url,
        kind=kind,
        model=model,
        stream=not args.no_stream,
        api_key=api_key,
        force_output_len=not args.no_force_output_len,
    )
    points = [SweepPoint(c, r) for c in concs for r in rates]
    run = ServingRun(
        endpoint=ep,
        base_url=base,
        specs=specs,
        points=points,
        burstiness=args.burstiness,
        duration_s=args.duration,
        num_warmups=args.num_warmups,
        seed=args.seed,
        timeout_s=args.timeout,
        percentiles=percentiles,
        goodput=goodput,
        tokenizer=tokenizer,
        tokenizer_id=args.tokenizer_path,
    )
    manifest = rundir.PerfManifest(
        root,
        "serving",
        {
            "api_url": args.api_url,
            "request_url": url,
            "kind": kind,
            "model": model,
            "stream": ep.stream,
            "forced_output_len": ep.force_output_len,
            "prompts": {**src.__dict__, "num_prompts": len(specs)},
            "points": [p.label for p in points],
            "burstiness": args.burstiness,
            "duration_s": args.duration,
            "num_warmups": args.num_warmups,
            "seed": args.seed,
            "percentiles": percentiles,
            "goodput_ms": goodput or None,
        },
    )
    if args.ab_url:
        return _run_ab(args, run, root, manifest)
    log.info("perf run directory: %s (%d point(s), %d prompts, %s)", root, len(points), len(specs), url)
    results: list[dict] = []

    def on_point(point, result) -> None:
        results.append(result)
        log.info(
            "%s: %d ok, %d failed, %.2f req/s, mean TTFT %s ms",
            point.label,
            result["completed"],
            result["failed"],
            result["request_throughput"],
            f"{result['mean_ttft_ms']:.1f}" if result["mean_ttft_ms"] is not None else "-",
        )
        for w in result["lmgauge_self_check"]["warnings"]:
            log.warning("%s: %s", point.label, w)

    status = "done"
    try:
        run_sweep(run, root, on_point)
    except KeyboardInterrupt:
        status = "interrupted"
    except RuntimeError as e:
        log.error("%s", e)
        status = f"failed: {e}"
    manifest.finish(status)
    if results:
        print_serving(results)
        try:
            from lmgauge.perf.plots import plot_serving

            plot_serving(root, results)
        except ImportError as e:  # the numbers stand without the pictures
            log.warning("no plots (%s)", e)
    log.info("wrote %s", root)
    if status != "done":
        return 130 if status == "interrupted" else 1
    return 1 if all(r["completed"] == 0 for r in results) else 0


def _run_ab(args: argparse.Namespace, run, root, manifest) -> int:
    """The same prompts and schedule against --api-url (A) and --ab-url (B); paired differences."""
    from dataclasses import replace

    from lmgauge.perf.ab import compare, parse_margin, run_ab
    from lmgauge.perf.console import print_ab
    from lmgauge.perf.serving import ServingError, point_result, resolve_endpoint, served_model
    from lmgauge.runs.rundir import write_json_atomic

    if len(run.points) > 1:
        log.error("A/B compares one load point: give one --max-concurrency and one --request-rate")
        manifest.finish("failed: A/B with a sweep")
        return 2
    try:
        margin = parse_margin(args.ab_margin)
        base_b, url_b, kind_b = resolve_endpoint(args.ab_url, args.endpoint, args.api_type)
        model_b = args.ab_model or (None if kind_b == "lightllm" else served_model(base_b, run.endpoint.api_key))
    except (ServingError, ValueError) as e:
        log.error("%s", e)
        manifest.finish(f"failed: {e}")
        return 2
    ep_b = replace(run.endpoint, url=url_b, kind=kind_b, model=model_b)
    point = run.points[0]
    load = run.load_spec(point)
    manifest.set(
        "ab",
        {"a": run.endpoint.url, "b": url_b, "order": args.ab_order, "repeats": args.ab_repeats, "margin": margin},
    )
    log.info("A/B: %s vs %s, %d repeats, %s; %s", run.endpoint.url, url_b, args.ab_repeats, args.ab_order, root)
    out = root / "ab"

    def on_run(side: str, r: int, res) -> None:
        sub = replace(run, endpoint=run.endpoint if side == "A" else ep_b)
        write_json_atomic(out / f"{side}_{r}.json", point_result(sub, point, res))
        log.info("A/B: %s repeat %d done (%d ok)", side, r + 1, sum(1 for x in res.records if x.success))

    try:
        a, b = run_ab(run.endpoint, ep_b, run.specs, load, args.ab_repeats, args.ab_order, run.tokenizer, on_run)
    except (ValueError, RuntimeError) as e:
        log.error("%s", e)
        manifest.finish(f"failed: {e}")
        return 1
    result = {
        "a": run.endpoint.url,
        "b": url_b,
        "point": point.label,
        **compare(a, b, run.percentiles, run.seed, margin, by_repeat=args.ab_order != "parallel"),
    }
    write_json_atomic(out / "ab.json", result)
    manifest.finish("done")
    print_ab(result)
    log.info("wrote %s", out / "ab.json")
    return 0
