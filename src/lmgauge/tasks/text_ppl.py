"""Perplexity tasks: wikitext2 in its official layouts, and any text a user points at."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from lmgauge.data import DiskSource, HubSource, Source, data_roots
from lmgauge.data.text import ParquetSource, RawLinesSource, text_source
from lmgauge.tasks.base import DocSet
from lmgauge.tasks.options import PerplexityOptions
from lmgauge.tasks.perplexity import PerplexityTask
from lmgauge.tasks.registry import register

WIKITEXT_HINT = (
    "wikitext-2 is not shipped by any package here: put the raw release (wikitext-2-raw/wiki.test.raw) "
    "or HF's parquet copy (wikitext-2-raw-v1/test-00000-of-00001.parquet) under "
    "<data dir>/wikitext/, or give the dataset a `path`"
)


def wikitext_candidates(split: str, path: str | None) -> list[Source]:
    raw = {"test": "wiki.test.raw", "validation": "wiki.valid.raw", "train": "wiki.train.raw"}[split]
    pq = f"{split}-00000-of-00001.parquet"
    out: list[Source] = []
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            out.append(ParquetSource(p) if p.suffix == ".parquet" else RawLinesSource(p))
        else:
            out += [RawLinesSource(p / raw), ParquetSource(p / pq), DiskSource(p / split)]
    for root in data_roots():
        for base in (root / "wikitext", root):
            out += [
                RawLinesSource(base / "wikitext-2-raw" / raw),
                ParquetSource(base / "wikitext-2-raw-v1" / pq),
                DiskSource(base / "wikitext-2-raw-v1" / split),
            ]
    return out + [HubSource("wikitext", "wikitext-2-raw-v1", split)]


class WikitextOptions(PerplexityOptions):
    split: Literal["test", "validation", "train"] = "test"
    path: str | None = None  # the raw release's folder or file, or HF's parquet


class TextPplOptions(PerplexityOptions):
    path: str = Field(description="a text file, a folder of text files, a parquet/jsonl file or a save_to_disk folder")
    column: str = "text"
    style: Literal["windows", "rolling"] = "rolling"


@register("wikitext2", WikitextOptions, description="wikitext-2 perplexity (windows of seq_len, GPTQ/llmc convention)")
def make_wikitext2(o: WikitextOptions) -> PerplexityTask:
    split, path = o.split, o.path
    docs = DocSet(f"wikitext2 {split}", lambda: wikitext_candidates(split, path), WIKITEXT_HINT, required=("text",))
    return PerplexityTask(name="wikitext2", docs=docs, style=o.style, seq_len=o.seq_len, bs=o.bs)


@register("ppl", TextPplOptions, description="perplexity of any text (path=..., style=rolling|windows)")
def make_text_ppl(o: TextPplOptions) -> PerplexityTask:
    path, column = o.path, o.column
    docs = DocSet(
        f"text at {path}",
        lambda: [text_source(path)],
        "give `path` a text file, a folder of .txt files, a .parquet/.jsonl file or a save_to_disk folder",
        required=(column,),
    )
    return PerplexityTask(name="ppl", docs=docs, style=o.style, seq_len=o.seq_len, bs=o.bs, text_field=column)


__all__ = ["make_wikitext2", "make_text_ppl"]
