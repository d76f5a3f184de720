"""One compression run: every position of `eval_pos` into ONE run directory, the model loaded once.

Order: pretrain first (the reference), then transformed, then the fake-quant positions; the model
is fake-quantized in place between them, its float weights kept (the same tensors, not copies)
while a paired perplexity pass needs them. Each position is a model of its own in the run
directory, `<abbr>@<position>`, so reports and comparisons read it like any other model; run.json's
`compression` block and each results file's `position` say what it was (kind: float, fake-quant,
real-kernel).

Per position and task the results file gets `vs_pretrain`: flips and McNemar mid-p for binary
metrics (lmgauge.scoring.paired), the fidelity block (KL, same top token, Δp, ln PPL ratio) for
perplexity corpora, recovery = position / pretrain. Per-position arrays behind the fidelity block
are kept in `fidelity/<model>/<task>.npz` so views (the llama.cpp layout) re-render without a model.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from lmgauge.compress.config import POSITION_KIND, CompressConfig
from lmgauge.compress.positions import PositionModel, logits_of
from lmgauge.data.sources import set_data_dir
from lmgauge.models import build_model
from lmgauge.models.base import ModelError
from lmgauge.models.quant import FakeQuantized, QuantError, plan_layers, quantize_model
from lmgauge.runs.manifest import Manifest
from lmgauge.runs.plan import TaskSpec, plan_tasks
from lmgauge.runs.rundir import RunDir, safe_name, write_json_atomic
from lmgauge.runs.runner import TaskOutcome, group_results, run_task
from lmgauge.runs.worker import Progress
from lmgauge.scoring.paired import compare_paired, is_binary

log = logging.getLogger(__name__)

ORDER = {"pretrain": 0, "transformed": 1, "fake_quant": 2, "fake_quant_wo_kv": 3}


def fidelity_path(rundir: RunDir, model: str, task: str) -> Path:
    """fidelity/<model>/<task>.npz, named as results/<model>/<task>.json is."""
    return rundir.root / "fidelity" / safe_name(model) / f"{safe_name(task)}.npz"


def _is_windows_ppl(task: Any) -> bool:
    return getattr(task, "output_type", None) == "perplexity" and getattr(task, "style", None) == "windows"


def save_fake_model(hf: Any, fq: FakeQuantized, folder: Path) -> Path:
    """The fake-quantized weights as a normal HF folder (safetensors + config + tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    hf.model.save_pretrained(folder, safe_serialization=True)
    hf.tokenizer.save_pretrained(folder)
    note = {**fq.describe(), "source": hf.source}
    if fq.scheme.act is not None and not fq.scheme.act.is_float:
        note["warning"] = "activation fake-quant is applied at run time and is not in these weights"
    (folder / "lmgauge_quant.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    return folder


class CompressionRun:
    def __init__(self, cc: CompressConfig, run_id: str | None = None, progress: Progress | None = None) -> None:
        self.cc = cc
        self.rc = cc.run_config()
        set_data_dir(self.rc.data_dir)
        self.specs: list[TaskSpec] = plan_tasks(self.rc)
        self.progress = progress or Progress()
        self.rundir = RunDir.create(self.rc.work_dir, run_id)
        self.manifest = Manifest.create(self.rundir, self.rc.model_dump(mode="json"))
        self.positions: dict[str, dict] = {}  # run.json's compression.positions: what each position was
        self.manifest.set_extra("compression", {"config": cc.model_dump(mode="json"), "positions": self.positions})
        self.samples: dict[tuple[str, str], list[dict]] = {}  # (position, task) -> samples
        self.results: dict[tuple[str, str], dict] = {}
        self.fq: FakeQuantized | None = None
        self.hf: Any = None  # the float model, loaded by _start (an HFModel; its torch module is transformed in place)
        self.load_s = 0.0

    # --- positions ----------------------------------------------------------------------------

    def _float_reference(self, hf: Any):
        fq = self.fq
        if fq is None:
            return logits_of(hf)
        plain = logits_of(hf)

        def reference(ids: Any) -> Any:
            with fq.float_weights():
                return plain(ids)

        return reference

    def _position(self, pos: str, hf: Any) -> tuple[PositionModel, Any]:
        """(model of the position, a model loaded for it alone, to free afterwards)."""
        name = self.cc.position_name(pos)
        info: dict[str, Any] = {"position": pos, "kind": POSITION_KIND[pos]}
        if pos == "pretrain":
            return PositionModel(hf, name, info), None
        if pos == "transformed":
            return self._saved_folder(hf, name, info, "transformed_model")
        if self.cc.quant is None:  # evaluate what llmc saved
            return self._saved_folder(hf, name, info, "fake_quant_model")
        if self.fq is None:
            t0 = time.perf_counter()
            need_float = any(_is_windows_ppl(s.build(self.rc.models[0].name)) for s in self.specs)
            self.fq = quantize_model(hf.model, self.cc.quant.scheme(), keep_float=need_float)
            info["transform_s"] = round(time.perf_counter() - t0, 3)
            log.info(
                "%s: fake-quantized %d Linear layers (%s) in %.1f s",
                name,
                len(self.fq.layers),
                self.fq.scheme.label(),
                info["transform_s"],
            )
            if self.cc.save.save_fake and self.cc.save.save_path:
                where = save_fake_model(hf, self.fq, Path(self.cc.save.save_path) / "fake_quant_model")
                info["saved_to"] = str(where)
        info["quant"] = self.fq.describe()
        if pos == "fake_quant_wo_kv":
            info["note"] = "no KV-cache quantization in this scheme: the same weights as fake_quant"
        return PositionModel(hf, name, info, reference=self._float_reference(hf)), None

    def _saved_folder(self, hf: Any, name: str, info: dict, sub: str) -> tuple[PositionModel, Any]:
        root = self.cc.save.save_path
        folder = Path(root) / sub if root else None
        if folder is None or not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"eval_pos {info['position']}: no llmc {sub}/ with a config.json under save.save_path "
                f"({str(folder) if folder else 'save_path not set'})"
            )
        mcfg = self.rc.models[0].model_copy(update={"path": str(folder), "abbr": name, "gguf_file": None})
        other = build_model(mcfg)
        info["path"] = str(folder)
        info["source"] = f"llmc {sub}"
        return PositionModel(other, name, info, reference=logits_of(hf)), other

    # --- the run ------------------------------------------------------------------------------

    # A position that cannot run is said and the others go on; these exceptions mean that.
    position_errors: tuple[type[Exception], ...] = (FileNotFoundError, ValueError)

    def _start(self) -> None:
        """Load the float model once (every in-process position wraps it) and refuse a scheme that
        cannot apply to it before any work."""
        t0 = time.perf_counter()
        self.hf = build_model(self.rc.models[0])
        self.load_s = time.perf_counter() - t0
        if self.cc.quant is not None:
            try:
                plan_layers(self.hf.model, self.cc.quant.scheme())
            except QuantError as e:
                self.manifest.set_extra("error", str(e))
                self.manifest.finish("failed")
                raise

    def _open_position(self, pos: str, first: bool) -> tuple[Any, float]:
        """(the float model to wrap, load seconds to record) for one position."""
        return self.hf, self.load_s if first else 0.0

    def run(self) -> RunDir:
        self._start()
        positions = sorted(self.cc.eval.eval_pos, key=ORDER.__getitem__)
        status = "done"
        try:
            for i, pos in enumerate(positions):
                try:
                    self._run_position(pos, *self._open_position(pos, i == 0))
                except self.position_errors as e:
                    log.error("position %s: %s", pos, e)
                    self.positions[pos] = {"status": "failed", "error": str(e)}
                    status = "done (a position failed)"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.progress.stop()
            self._compare_all(positions)
            self.manifest.finish(status)
        return self.rundir

    def _run_position(self, pos: str, hf: Any, load_s: float) -> None:
        t0 = time.perf_counter()
        model, extra = self._position(pos, hf)
        prep_s = time.perf_counter() - t0
        self.manifest.model_loaded(model.name, {**model.describe(), "load_s": round(load_s, 3)})
        outcomes: list[TaskOutcome] = []
        timings: dict[str, float] = {}
        try:
            for spec in self.specs:
                task = spec.build(self.rc.models[0].name)
                model.sink = model.new_sink() if model.paired and _is_windows_ppl(task) else None
                t1 = time.perf_counter()
                try:
                    samples, info = run_task(model, task, spec, self.rundir, self.progress)
                except RuntimeError as e:
                    log.error("%s | %s failed: %s", model.name, spec.name, e)
                    self.manifest.task_done(model.name, spec.name, {"status": "failed", "error": str(e)})
                    continue
                timings[task.name] = round(time.perf_counter() - t1, 3)
                info["position"] = {"name": pos, "kind": model.info["kind"], "model": self.cc.abbr}
                if model.sink is not None:
                    model.sink.save(fidelity_path(self.rundir, model.name, task.name))
                    info["fidelity"] = model.sink.summary()
                    info["fidelity"]["reference"] = self.cc.position_name("pretrain")
                self.rundir.write_results(model.name, task.name, info)
                self.manifest.task_done(model.name, task.name, {"status": "done", "n": info["n"]})
                self.samples[(pos, task.name)] = samples
                self.results[(pos, task.name)] = info
                outcomes.append(TaskOutcome(task.name, True, samples, task))
            for group, grouped in group_results(model.name, outcomes).items():
                ginfo = grouped.to_json()
                ginfo["position"] = {"name": pos, "kind": model.info["kind"], "model": self.cc.abbr}
                self.rundir.write_results(model.name, group, ginfo)
                self.results[(pos, group)] = ginfo
        finally:
            model.sink = None
            meta = {**model.info, "model": model.name, "prepare_s": round(prep_s, 3), "eval_s": timings}
            self.positions[pos] = meta
            self.manifest.save()
            if extra is not None:
                del extra
                gc.collect()

    # --- against pretrain ---------------------------------------------------------------------

    def _compare_all(self, positions: list[str]) -> None:
        if "pretrain" not in positions:
            return
        for pos in positions:
            if pos == "pretrain":
                continue
            for (p, task), info in list(self.results.items()):
                if p != pos or (("pretrain", task) not in self.results):
                    continue
                info["vs_pretrain"] = self._compare(task, pos, info)
                self.rundir.write_results(self.cc.position_name(pos), task, info)

    def _compare(self, task: str, pos: str, info: dict) -> dict:
        base = self.results[("pretrain", task)]
        if info.get("is_group"):
            return self._compare_group(task, pos, info)
        out: dict[str, Any] = {"reference": self.cc.position_name("pretrain"), "metrics": {}}
        for metric, m in info.get("metrics", {}).items():
            b = base.get("metrics", {}).get(metric)
            if not isinstance(m, dict) or not isinstance(b, dict) or b.get("value") is None or m.get("value") is None:
                continue
            row: dict[str, Any] = {
                "pretrain": b["value"],
                "value": m["value"],
                "delta": m["value"] - b["value"],
                "recovery": m["value"] / b["value"] if b["value"] else math.nan,  # unrounded, llm-compressor's
            }
            paired = self._paired(task, pos, metric)
            if paired is not None:
                row["paired"] = paired
            out["metrics"][metric] = row
        if "fidelity" in info:
            fid = info["fidelity"]
            ppl = out["metrics"].get("perplexity")
            if ppl is not None and fid.get("n_positions"):
                r = fid["ln_ppl_ratio"]
                # the verdict uses the wider of the per-token and per-window uncertainties: tokens of
                # one window are correlated, so the per-token one (llama.cpp's) can be too narrow
                se = max(r["stderr"], r["stderr_windows"] if r["stderr_windows"] == r["stderr_windows"] else 0.0)
                ppl.update(
                    {
                        "ln_ratio": r["value"],
                        "ln_ratio_stderr": se,
                        "ratio_low": math.exp(r["value"] - 1.96 * se),
                        "ratio_high": math.exp(r["value"] + 1.96 * se),
                        "interval": "exp(ln PPL ratio +- 1.96 se), se the wider of per-token and per-window",
                    }
                )
                noise = ppl["ratio_low"] <= 1.0 <= ppl["ratio_high"]
                ppl["verdict"] = "within noise" if noise else ("worse" if r["value"] > 0 else "better")
            out["same_top"] = fid["same_top"]["value"]
            out["kl_mean"] = fid["kl"]["mean"]
            if "kl_bound" in fid:  # a served pair's KL: a lower bound from top-k, said beside it
                out["kl_mean_is"] = "a lower bound (top-k)"
        return out

    def _compare_group(self, group: str, pos: str, info: dict) -> dict:
        """A group (mmlu): flips pooled over its members' questions (the micro view)."""
        out: dict[str, Any] = {
            "reference": self.cc.position_name("pretrain"),
            "metrics": {},
            "pooled_over": info["members"],
        }
        for metric in info.get("metrics", {}):
            paired = self._paired(group, pos, metric, members=info["members"])
            if paired is None:
                continue
            out["metrics"][metric] = {
                "pretrain": paired["mean_a"],
                "value": paired["mean_b"],
                "delta": paired["delta"],
                "recovery": paired["mean_b"] / paired["mean_a"] if paired["mean_a"] else math.nan,
                "paired": paired,
            }
        return out

    def _paired(self, task: str, pos: str, metric: str, members: list[str] | None = None) -> dict | None:
        pairs = []
        for t in members or [task]:
            a = self.samples.get(("pretrain", t)) or []
            b = self.samples.get((pos, t)) or []
            by_id = {s["doc_id"]: s for s in a}
            for s in b:
                if s["doc_id"] in by_id:
                    pairs.append((by_id[s["doc_id"]]["metrics"].get(metric), s["metrics"].get(metric)))
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if len(pairs) < 2:
            return None
        xa, xb = [x for x, _ in pairs], [y for _, y in pairs]
        res = compare_paired(xa, xb, binary=is_binary(xa) and is_binary(xb))
        return res.to_dict()


class ServedPairRun(CompressionRun):
    """The positions served over HTTP (`served:`): nothing is loaded here; pretrain's server is the
    reference of the others' perplexity windows (KL as a lower bound from top-k)."""

    position_errors = (ModelError,)  # a server that cannot serve the pair

    def _start(self) -> None:
        self.served: dict[str, Any] = {}

    def _open_position(self, pos: str, first: bool) -> tuple[Any, float]:
        from lmgauge.compress.served_pair import connect

        self.served[pos], load_s = connect(self.cc, pos)
        return None, load_s

    def _position(self, pos: str, hf: Any) -> tuple[Any, Any]:
        from lmgauge.compress.served_pair import ServedPosition

        assert self.cc.served is not None
        ep = self.cc.served.endpoint(pos)
        kind = ep.kind or ("float" if pos == "pretrain" else "real-kernel")
        info: dict[str, Any] = {"position": pos, "kind": kind, "served": ep.api_url}
        reference = self.served.get("pretrain") if pos != "pretrain" else None
        return ServedPosition(self.served[pos], self.cc.position_name(pos), info, reference, self.cc.served.topk), None


def run_compression(cc: CompressConfig, run_id: str | None = None, progress: Progress | None = None) -> RunDir:
    run: CompressionRun = (
        ServedPairRun(cc, run_id, progress) if cc.served is not None else CompressionRun(cc, run_id, progress)
    )
    rundir = run.run()
    write_json_atomic(rundir.root / "compression.json", compression_summary(run))
    return rundir


def compression_summary(run: CompressionRun) -> dict:
    return {
        "model": run.cc.abbr,
        "positions": run.positions,
        "models": {pos: run.cc.position_name(pos) for pos in run.cc.eval.eval_pos},
        "tasks": sorted({t for _, t in run.results}),
    }
