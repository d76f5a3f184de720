"""Plain-text sources for perplexity: raw files, folders of files, parquet and jsonl columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmgauge.data.sources import DataError, DiskSource, JsonlDocsSource, Row, Source

TEXT_SUFFIXES = (".txt", ".raw", ".md", ".text")


@dataclass
class RawLinesSource:
    """A raw text file read the way HF's wikitext builder reads wiki.*.raw: one row per line,
    line ending kept, blank lines as empty strings (so "\\n\\n".join(rows) matches GPTQ's input)."""

    path: Path

    def describe(self) -> str:
        return f"{self.path} (raw text, one row per line)"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> list[Row]:
        with self.path.open(encoding="utf-8") as f:  # universal newlines, as the HF builder reads it
            return [{"text": line if line.strip() else ""} for line in f]


@dataclass
class TextFilesSource:
    """A text file, or every text file of a folder (sorted by name): one document each."""

    path: Path

    def describe(self) -> str:
        return f"{self.path} (text file{'s' if self.path.is_dir() else ''})"

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        return []

    def exists(self) -> bool:
        return bool(self._files())

    def load(self) -> list[Row]:
        rows = []
        for p in self._files():
            try:
                rows.append({"text": p.read_text(encoding="utf-8"), "file": str(p)})
            except UnicodeDecodeError as e:
                raise DataError(f"{p}: not UTF-8 text ({e})") from e
        return rows


@dataclass
class ParquetSource:
    path: Path

    def describe(self) -> str:
        return f"{self.path} (parquet)"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> list[Row]:
        import pyarrow.parquet as pq

        return pq.read_table(self.path).to_pylist()


def text_source(path: str | Path) -> Source:
    """The right reader for a user-given path: parquet, jsonl, save_to_disk folder, text files."""
    p = Path(path).expanduser()
    if p.suffix == ".parquet":
        return ParquetSource(p)
    if p.suffix == ".jsonl" or p.name.endswith(".jsonl.gz"):
        return JsonlDocsSource(p)
    if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
        return DiskSource(p)
    return TextFilesSource(p)
