"""Every path of a run directory, built here and nowhere else (docs/run-directory.md).

    run.json                                   manifest
    plan.json                                  the config and the shards
    shards/<shard-id>.json                     a shard's marker
    samples/<model>/<task>.jsonl               the journal of a task (merged)
    samples/<model>/<task>.shard-<a>-<b>.jsonl  a shard's journal while its task is split
    samples/<model>/<task>.key.json            what the answers depend on
    samples/<model>/.stale/<time>/             journals set aside
    results/<model>/<task>.json                a task's or a group's results
    summary.{txt,csv,md}                       lmgauge's summary
    summary/summary_<time>.{txt,csv,md}        OpenCompass' summary (runs with OpenCompass datasets)
    logs/run.log, logs/workers/, logs/slurm/

`<model>` and `<task>` are names made safe for a file system (`safe_name`).
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
SHARD_JOURNAL = re.compile(r"\.shard-(\d+)-(\d+)\.jsonl$")
MANIFEST = "run.json"


def safe_name(name: str) -> str:
    """A model or task name usable as a file name on every system."""
    return SAFE.sub("_", name).strip("._") or "model"


class RunLayout:
    """The paths of one run directory; creates nothing but the folders a writer asks for."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # the run as a whole
    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    def summary(self, ext: str) -> Path:
        return self.root / f"summary.{ext}"

    def oc_summary(self, time_str: str, ext: str) -> Path:
        """OpenCompass' DefaultSummarizer file: `<time_str>` is `%Y%m%d_%H%M%S`, one set per invocation."""
        return self.root / "summary" / f"summary_{time_str}.{ext}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run_log(self) -> Path:
        return self.logs / "run.log"

    def worker_log(self, job_name: str, attempt: int) -> Path:
        return self.logs / "workers" / f"{job_name}.attempt{attempt}.log"

    def slurm_log(self, job_name: str, attempt: int) -> Path:
        """With Slurm's `%j` left in: sbatch puts the job id there."""
        return self.logs / "slurm" / f"{job_name}.attempt{attempt}.%j.out"

    # shards
    @property
    def markers_dir(self) -> Path:
        return self.root / "shards"

    def marker(self, shard_id: str) -> Path:
        return self.markers_dir / f"{shard_id}.json"

    # samples: the journal
    @property
    def samples_root(self) -> Path:
        return self.root / "samples"

    def samples_dir(self, model: str) -> Path:
        return self.samples_root / safe_name(model)

    def samples(self, model: str, task: str) -> Path:
        return self.samples_dir(model) / f"{safe_name(task)}.jsonl"

    def shard_journal(self, model: str, task: str, start: int, stop: int) -> Path:
        return self.samples_dir(model) / f"{safe_name(task)}.shard-{start:06d}-{stop:06d}.jsonl"

    def shard_journals(self, model: str, task: str) -> list[Path]:
        """The shard journals of a task that exist now, in file-name (= doc range) order."""
        folder = self.samples_dir(model)
        return sorted(p for p in folder.glob(f"{safe_name(task)}.shard-*.jsonl") if SHARD_JOURNAL.search(p.name))

    def journal_key(self, model: str, task: str) -> Path:
        return self.samples_dir(model) / f"{safe_name(task)}.key.json"

    def stale_root(self, model: str) -> Path:
        return self.samples_dir(model) / ".stale"

    def stale_dir(self, model: str, stamp: str) -> Path:
        return self.stale_root(model) / stamp

    def tasks_with_journals(self, model: str) -> list[str]:
        """Task names (file-system form) with a journal file, merged or per shard."""
        folder = self.samples_dir(model)
        files = folder.glob("*.jsonl") if folder.is_dir() else []
        return sorted({SHARD_JOURNAL.sub("", p.name) if SHARD_JOURNAL.search(p.name) else p.stem for p in files})

    # results
    @property
    def results_root(self) -> Path:
        return self.root / "results"

    def results_dir(self, model: str) -> Path:
        return self.results_root / safe_name(model)

    def results(self, model: str, task: str) -> Path:
        return self.results_dir(model) / f"{safe_name(task)}.json"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()
