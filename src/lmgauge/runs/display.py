"""The plan as a person reads it (`--dry-run`): shards, their docs and estimated tokens."""

from __future__ import annotations

from lmgauge.config import RunConfig
from lmgauge.runs.executors.base import devices_per_worker, executor_class
from lmgauge.runs.plan import Shard


def format_plan(
    cfg: RunConfig, shards: list[Shard], executor: str, workers: int, max_partition_size: int | None, devices: list[str]
) -> str:
    local = executor_class(executor).local_devices
    lines = [
        f"plan: {len(shards)} shard(s), executor {executor}"
        + (f", {workers} worker(s)" if executor != "inline" else "")
        + (f", max partition {max_partition_size} tokens" if max_partition_size else "")
    ]
    for m in cfg.models:
        n = devices_per_worker(m, devices, local)
        lines.append(
            f"model {m.name}: {n} device(s) per worker"
            + (f"; {n * workers} for {workers} workers, {len(devices)} here" if n and local else "")
        )
    width = max((len(s.id) for s in shards), default=10)
    lines.append(f"  {'shard':<{width}}  {'docs':>6}  {'est. tokens':>11}")
    for s in shards:
        docs = "?" if s.n_docs is None else str(s.n_docs)
        cost = "?" if s.est_tokens is None else f"{s.est_tokens:,}"
        lines.append(f"  {s.id:<{width}}  {docs:>6}  {cost:>11}")
    total = sum(s.est_tokens or 0 for s in shards)
    lines.append(f"  {'total':<{width}}  {sum(s.n_docs or 0 for s in shards):>6}  {total:>11,}")
    return "\n".join(lines)
