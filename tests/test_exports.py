"""Each export read back the way its own tool reads it.

lm-eval and the inference SDK are not installed here (lm-eval must not become a dependency), so their
readers are reproduced from their sources, line for line where it matters:
- lm-eval 0.4.x `lm_eval/utils.py` (get_results_filenames, get_sample_results_filenames,
  get_file_task_name, get_file_datetime, get_latest_filename), `scripts/zeno_visualize.py`
  (tasks_for_model, generate_system_df) and `lm_eval/utils.py:make_table` (metric/stderr keys);
- OpenCompass 0.5.4 `tasks/openicl_eval.py:OpenICLEvalTask._load_predictions` (the installed wheel's
  source, not imported: importing it pulls its whole stack) and its summary CSV;
- atb_speed_sdk's precision metric script (`pd.read_csv(cache, names=[...])`, compute_metric).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from lmgauge.cli import main
from lmgauge.report.load import load_run
from report_runs import write_run

T, F = True, False
SUBJECTS = {"mmlu_astronomy": [T, T, F, T, F, T], "mmlu_anatomy": [T, F, F, T]}


@pytest.fixture
def run_dir(tmp_path):
    return write_run(
        tmp_path / "run", SUBJECTS, generation=[T, F, T], code=[T, F], perplexity=[-300.0, -320.0], num_fewshot=5
    )


# ---- lm-eval's helpers (lm_eval/utils.py), as written there
def get_file_task_name(filename: str) -> str:
    return filename[filename.find("_") + 1 : filename.rfind("_")]


def get_file_datetime(filename: str) -> str:
    return filename[filename.rfind("_") + 1 :].replace(".jsonl", "")


def get_results_filenames(filenames: list[str]) -> list[str]:
    return [f for f in filenames if "/results_" in f and ".json" in f]


def get_sample_results_filenames(filenames: list[str]) -> list[str]:
    return [f for f in filenames if "/samples_" in f and ".json" in f]


def get_latest_filename(filenames: list[str]) -> str:
    return max(filenames, key=lambda f: get_file_datetime(f))


def test_lmeval_layout_read_back(run_dir, tmp_path):
    out = tmp_path / "lmeval"
    assert main(["export", str(run_dir), "--format", "lm-eval", "-o", str(out)]) == 0
    model_dir = out / "m"
    files = [f.as_posix() for f in model_dir.iterdir() if f.is_file()]
    latest = get_latest_filename(get_results_filenames(files))
    results = json.loads(Path(latest).read_text())
    # zeno_visualize.tasks_for_model: the tasks are the keys of "configs"
    tasks = list(results["configs"])
    assert set(tasks) == {"mmlu_astronomy", "mmlu_anatomy", "gsm8k_cot", "humaneval", "wikitext2"}
    run = load_run(run_dir)
    for task in tasks:
        config = results["configs"][task]
        samples_file = get_latest_filename([Path(f).name for f in get_sample_results_filenames(files) if task in f])
        assert get_file_task_name(samples_file) == task
        assert get_file_datetime(samples_file) == get_file_datetime(Path(latest).name.replace(".json", ".jsonl"))
        data = [json.loads(line) for line in (model_dir / samples_file).read_text().splitlines()]
        # zeno_visualize.generate_system_df: ids, outputs and one column per metric_list entry
        ids = (
            [x["doc_id"] for x in data]
            if not config.get("filter_list")
            else [f"{x['doc_id']}.{x['filter']}" for x in data]
        )
        assert len(set(ids)) == len(ids)
        if config["output_type"] == "multiple_choice":
            outputs = [", ".join(str(y[0]) for y in x["filtered_resps"]) for x in data]
            assert all(len(o.split(", ")) == 4 for o in outputs)
            assert all(x["arguments"]["gen_args_0"]["arg_0"].endswith("Answer:") for x in data)
        elif config["output_type"] == "generate_until":
            assert all(isinstance(x["filtered_resps"][0], str) for x in data)
        for metric in config["metric_list"]:
            column = [x[metric["metric"]] for x in data]
            for filt in {x["filter"] for x in data}:
                values = [x[metric["metric"]] for x in data if x["filter"] == filt]
                key = f"{metric['metric']},{filt}"
                if metric["aggregation"] == "mean":
                    assert results["results"][task][key] == pytest.approx(sum(values) / len(values))
            assert column
        ours = run.result("m", task)["metrics"]
        for name, m in ours.items():
            base, _, filt = name.partition(",")
            assert results["results"][task][f"{base},{filt or 'none'}"] == pytest.approx(m["value"])
        assert results["versions"][task] == run.result("m", task)["version"]
        assert results["n-shot"][task] == 5
        assert results["n-samples"][task]["effective"] == run.result("m", task)["n"]
    # make_table's loop: every metric has its stderr key and a higher_is_better entry
    for k, dic in results["results"].items():
        hib = results["higher_is_better"].get(k, {})
        for mf in dic:
            if mf == "alias":
                continue
            m, _, f = mf.partition(",")
            if m.endswith("_stderr"):
                continue
            assert f"{m}_stderr,{f}" in dic
            if k in results["configs"]:
                assert m in hib
    assert results["higher_is_better"]["wikitext2"]["token_perplexity"] is False
    assert results["group_subtasks"]["mmlu"] == ["mmlu_stem"]
    assert set(results["group_subtasks"]["mmlu_stem"]) == set(SUBJECTS)
    assert results["results"]["mmlu"]["acc,none"] == pytest.approx(6 / 10)


def test_opencompass_layout_read_back(run_dir, tmp_path):
    out = tmp_path / "oc"
    assert main(["export", str(run_dir), "--format", "opencompass", "-o", str(out)]) == 0
    run = load_run(run_dir)
    # OpenICLEvalTask._load_predictions
    for task in ["mmlu_astronomy", "mmlu_anatomy", "gsm8k_cot"]:
        filename = out / "predictions" / "m" / f"{task}.json"
        preds = json.loads(filename.read_text())
        preds = [preds[str(i)] for i in range(len(preds))]
        pred_dicts = [dict(p) for p in preds]
        columns = {k: [pred.get(k) for pred in preds] for k in preds[0]}
        pred_strs = columns.pop("prediction")
        if task.startswith("mmlu"):
            acc = sum(p == g for p, g in zip(pred_strs, columns["gold"])) / len(pred_strs)
            assert acc == pytest.approx(run.result("m", task)["metrics"]["acc"]["value"])
            rec = pred_dicts[0]
            ppl = {k: v["PPL"] for k, v in rec.items() if k.startswith("label: ")}
            assert set(ppl) == {"label: A", "label: B", "label: C", "label: D"}
            assert min(ppl, key=ppl.get) == "label: " + rec["prediction"]  # lowest PPL is the prediction
        else:
            assert pred_strs[0].startswith("The answer is")
    (csv_file,) = (out / "summary").glob("summary_*.csv")
    (txt_file,) = (out / "summary").glob("summary_*.txt")
    (md_file,) = (out / "summary").glob("summary_*.md")
    assert csv_file.stem == txt_file.stem == md_file.stem and len(csv_file.stem) == len("summary_20260101_120000")
    rows = list(csv.reader(csv_file.read_text().splitlines()))
    assert rows[0] == ["dataset", "version", "metric", "mode", "m"]
    table = {(r[0], r[2]): r for r in rows[1:]}
    assert table[("mmlu_astronomy", "accuracy")][4] == f"{4 / 6 * 100:.2f}"
    assert table[("mmlu_astronomy", "accuracy")][3] == "ppl"
    assert table[("gsm8k_cot", "exact_match strict-match")][3] == "gen"
    assert table[("mmlu", "naive_average")][4] == f"{(4 / 6 + 2 / 4) / 2 * 100:.2f}"
    assert table[("mmlu", "weighted_average")][4] == f"{6 / 10 * 100:.2f}"
    text = txt_file.read_text()
    assert text.startswith(txt_file.stem.removeprefix("summary_") + "\ntabulate format\n")
    assert "csv format" in text and "markdown format" in text and "raw format" in text and "Model: m" in text


def test_sdk_layout_read_back(tmp_path):
    subjects = {"ceval_computer_network": [T, F, T, T], "ceval_college_physics": [F, F, T]}
    ceval = write_run(tmp_path / "ceval", subjects)
    mmlu = write_run(tmp_path / "mmlu", SUBJECTS, category="stem")
    for run_dir, expected_classes in [
        (ceval, {"STEM": 4 / 7, "Avg": 4 / 7, "Avg(Hard)": 1 / 3}),
        (mmlu, {"stem": 6 / 10, "Avg": 6 / 10}),
    ]:
        out = tmp_path / f"sdk-{run_dir.name}"
        assert main(["export", str(run_dir), "--format", "sdk", "-o", str(out)]) == 0
        folder = out / "m" / "test_result"
        # the SDK's metric script
        run_results = pd.read_csv(
            folder / "cache.csv", names=["task_name", "question_id", "truth_answer", "predict_answer"]
        )
        subject_acc = {}
        for task in run_results.task_name.unique():
            this_task = run_results.loc[run_results.task_name == task]
            subject_acc[task] = (this_task.truth_answer == this_task.predict_answer).sum() / this_task.shape[0]
        assert subject_acc == pytest.approx(json.loads((folder / "result_subject_acc.json").read_text()))
        run = load_run(run_dir)
        for task in subjects if run_dir is ceval else SUBJECTS:
            sub = task.split("_", 1)[1]
            assert subject_acc[sub] == pytest.approx(run.result("m", task)["metrics"]["acc"]["value"])
        assert json.loads((folder / "result_classes_acc.json").read_text()) == pytest.approx(expected_classes)
        # column C the expected answer, column D the model's: letters
        first = next(csv.reader((folder / "cache.csv").read_text().splitlines()))
        assert first[2] in "ABCD" and first[3] in "ABCD"


def test_sdk_refuses_a_run_without_mmlu_or_ceval(tmp_path, capsys):
    run_dir = write_run(tmp_path / "r", {}, generation=[T])
    assert main(["export", str(run_dir), "--format", "sdk", "-o", str(tmp_path / "o")]) == 2
    assert "no MMLU or C-Eval task" in capsys.readouterr().err
