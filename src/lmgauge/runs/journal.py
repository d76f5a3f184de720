"""The journal: one JSON line per answered doc, appended and flushed as it arrives.

A (model, task) has one journal file per shard that wrote to it: `samples/<model>/<task>.jsonl` for a
shard covering the whole task, `samples/<model>/<task>.shard-<start>-<stop>.jsonl` otherwise. Reading
takes the union of them, so a resume with another partition still finds every answer. A line holds
the doc's raw answers (`answers`: the result dataclasses as dicts) next to its scored fields, so a
resumed run skips answered docs and `--mode eval` can re-score without the model.

A line cut short by a crash does not parse: it is ignored by readers and cut off by the next writer
of that file before it appends, so finished lines stay exactly as written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, fields
from pathlib import Path

from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RequestLatency,
    RollingRequest,
    RollingResult,
)
from lmgauge.runs.layout import RunLayout
from lmgauge.runs.records import SampleRecord
from lmgauge.runs.rundir import dumps, write_json_atomic

log = logging.getLogger(__name__)

RESULT_OF = {LoglikelihoodRequest: LoglikelihoodResult, RollingRequest: RollingResult, GenerateRequest: GenerateResult}


def answers_of(results: list) -> list[dict]:
    """The results as journal dicts; `latency` and `scored_from` only where a server answered (none
    for hf runs)."""
    out = []
    for r in results:
        a = asdict(r)
        for key in ("latency", "scored_from"):
            if a.get(key, 0) is None:
                del a[key]
        out.append(a)
    return out


def results_from(answers: list[dict], requests: list) -> list:
    """The result dataclasses back from a journal line, typed by the requests they answer."""
    if len(answers) != len(requests):
        raise ValueError(f"the journal has {len(answers)} answers for {len(requests)} requests: the prompt changed")
    out = []
    for q, a in zip(requests, answers):
        cls = RESULT_OF[type(q)]
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in a.items() if k in known}  # a field added later keeps its default
        if isinstance(kw.get("latency"), dict):
            lat = {f.name for f in fields(RequestLatency)}
            kw["latency"] = RequestLatency(**{k: v for k, v in kw["latency"].items() if k in lat})
        out.append(cls(**kw))
    return out


def is_answer(record: dict) -> bool:
    """A doc the model answered (an `error` line is a failure to retry, not an answer)."""
    return "error" not in record and "answers" in record


def read_lines(path: Path) -> tuple[list[tuple[dict, str]], int]:
    """(record, raw line) for every complete line, and the byte length of the complete part."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    out, good_end, pos = [], 0, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:  # no newline: the writer died mid-line
            break
        raw = data[pos:nl].decode("utf-8", errors="replace")
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("doc_id"), int):
            out.append((rec, raw))
            good_end = nl + 1
        else:
            break  # a torn line followed by more data cannot happen with one writer per file; stop here
        pos = nl + 1
    return out, good_end


class TaskJournal:
    """Every journal file of one (model, task), read as one."""

    def __init__(self, layout: RunLayout, model: str, task: str) -> None:
        self.layout = layout
        self.model = model
        self.task = task
        self.main = layout.samples(model, task)

    def shard_path(self, start: int, stop: int, whole: bool) -> Path:
        return self.main if whole else self.layout.shard_journal(self.model, self.task, start, stop)

    def files(self) -> list[Path]:
        return ([self.main] if self.main.exists() else []) + self.layout.shard_journals(self.model, self.task)

    def records(self) -> dict[int, tuple[dict, str]]:
        """doc_id -> (record, raw line): the first answer of a doc wins; an error only where no answer exists."""
        best: dict[int, tuple[dict, str]] = {}
        for f in self.files():
            for rec, raw in read_lines(f)[0]:
                d = rec["doc_id"]
                if d not in best or (not is_answer(best[d][0]) and is_answer(rec)):
                    best[d] = (rec, raw)
        return best

    def answered(self) -> set[int]:
        return {d for d, (rec, _) in self.records().items() if is_answer(rec)}

    def key_path(self) -> Path:
        return self.layout.journal_key(self.model, self.task)

    def check_key(self, key: dict) -> str | None:
        """Compare what shapes the answers (prompt version, model settings) with the journal's.
        A change sets the old journal aside and says why; None when it is still valid."""
        path = self.key_path()
        reason = None
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            changed = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
            if changed and self.files():
                reason = ", ".join(f"{k} {old.get(k)!r} -> {key.get(k)!r}" for k in changed)
                stale = self.layout.stale_dir(self.model, time.strftime("%Y%m%d_%H%M%S"))
                stale.mkdir(parents=True, exist_ok=True)
                for f in self.files():
                    os.replace(f, stale / f.name)
        write_json_atomic(path, key)
        return reason

    def merge(self, records: list[dict] | None = None) -> None:
        """One file in doc order, one line per doc; shard files go. Lines are copied byte for byte
        unless `records` gives re-scored ones."""
        best = self.records()
        if records is not None:
            lines = [dumps(r) for r in sorted(records, key=lambda r: r["doc_id"])]
        else:
            lines = [raw for _, (_, raw) in sorted(best.items())]
        tmp = self.main.with_name(f".{self.main.name}.merge{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        shard_files = [p for p in self.files() if p != self.main]
        os.replace(tmp, self.main)
        for p in shard_files:
            p.unlink(missing_ok=True)


class JournalWriter:
    """Appends to one journal file; a torn last line from a crash is cut off first."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if path.exists():
            _, good_end = read_lines(path)
            if good_end != path.stat().st_size:
                log.warning("%s: a line cut short by a crash is dropped and its doc redone", path)
                with path.open("r+b") as f:
                    f.truncate(good_end)
        self._f = path.open("a", encoding="utf-8")

    def append(self, record: SampleRecord | dict) -> None:
        self._f.write(dumps(record.to_json() if isinstance(record, SampleRecord) else record) + "\n")
        self._f.flush()  # in the OS as soon as written: a killed process loses nothing; fsync at close

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
