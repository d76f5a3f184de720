"""Executors run the jobs of a plan: inline (this process), a local pool of worker processes with
device slots, or Slurm jobs. A job is the shards of one model that one worker process runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmgauge.runs.plan import Shard


@dataclass
class Job:
    model: str
    shards: list[Shard]
    num_devices: int = 0  # devices one worker of this model holds (its run_cfg.num_gpus)
    attempt: int = 1
    log_name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.log_name:
            self.log_name = (
                self.shards[0].id if len(self.shards) == 1 else f"{self.shards[0].id}+{len(self.shards) - 1}"
            )

    @property
    def shard_ids(self) -> list[str]:
        return [s.id for s in self.shards]


def lanes(shards: list[Shard], n: int) -> list[list[Shard]]:
    """Shards of one model dealt to n workers, largest first onto the least loaded one (LPT), each
    worker's list back in plan order."""
    n = max(1, min(n, len(shards)))
    load = [0] * n
    dealt: list[list[Shard]] = [[] for _ in range(n)]
    order = {s.id: i for i, s in enumerate(shards)}
    for s in sorted(shards, key=lambda s: -(s.est_tokens or 1)):
        i = load.index(min(load))
        dealt[i].append(s)
        load[i] += s.est_tokens or 1
    return [sorted(d, key=lambda s: order[s.id]) for d in dealt if d]
