"""OpenCompass' dataset version: utils/prompt.py get_prompt_hash, from lmgauge's plain entries.

The hash is sha256 of the entry's infer_cfg as sorted JSON, with the `type`s as the dotted names
they were imported under and FixKRetriever's fix_id_list moved to the inferencer (OpenCompass'
"compromise for the hash consistency"); a list of entries hashes the comma-joined hashes of its
members. The first six characters are the suffix of the stock config names (`mmlu_ppl_ac766d`)
and the `version` column of OpenCompass' summary.
"""

from __future__ import annotations

import copy
import hashlib
import json


def prompt_hash(entry: dict | list[dict]) -> str:
    if isinstance(entry, list):
        if len(entry) == 1:
            return prompt_hash(entry[0])
        return hashlib.sha256(",".join(prompt_hash(e) for e in entry).encode()).hexdigest()
    infer = copy.deepcopy(entry["infer_cfg"])
    retriever = infer.get("retriever") or {}
    if "fix_id_list" in retriever:
        infer.setdefault("inferencer", {})["fix_id_list"] = retriever.pop("fix_id_list")
    return hashlib.sha256(json.dumps(infer, sort_keys=True).encode()).hexdigest()


def version(entry: dict | list[dict]) -> str:
    """The six-character version OpenCompass prints."""
    return prompt_hash(entry)[:6]
