"""OpenCompass' work-dir layout (0.5.x): the paths its tools read back, in one place.

    <root>/summary/summary_<time>.{txt,csv,md}   DefaultSummarizer's files (`<time>` is %Y%m%d_%H%M%S)
    <root>/results/<model>/<dataset>.json        an evaluator's dict ({"accuracy": 60.0})
    <root>/predictions/<model>/<dataset>.json    an inferencer's records keyed "0".."n-1"

`<root>` is one invocation's folder (OpenCompass writes `<work_dir>/<time>/`); `<model>` is the
model's folder name (`safe_name`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmgauge.runs.rundir import safe_name

SUMMARY_EXTS = ("txt", "csv", "md")


@dataclass(frozen=True)
class OpenCompassWorkDir:
    root: Path

    def summaries(self, time_str: str) -> dict[str, Path]:
        return {ext: self.root / "summary" / f"summary_{time_str}.{ext}" for ext in SUMMARY_EXTS}

    def results(self, model: str, dataset: str) -> Path:
        return self.root / "results" / safe_name(model) / f"{dataset}.json"

    def predictions(self, model: str, dataset: str) -> Path:
        return self.root / "predictions" / safe_name(model) / f"{dataset}.json"


def write_json(path: Path, obj: Any) -> Path:
    """A JSON file as OpenCompass writes its own (indent 4, non-ASCII kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False), encoding="utf-8")
    return path
