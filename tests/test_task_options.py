"""Task options are checked against each task's schema before any work, the same way from a .py
config, a .yaml config and CLI flags; a model's max_out_len is the generation budget where the
dataset sets none."""

from __future__ import annotations

import json
import logging

import pytest

from lmgauge.cli import main
from lmgauge.config import ConfigError, read_config_file, validate
from lmgauge.runs.plan import plan_tasks
from lmgauge.runs.resume import model_key
from lmgauge.tasks.options import OptionError, TaskOptions
from lmgauge.tasks.registry import REGISTRY, build

HELLASWAG_TAKES = "it takes limit, num_fewshot, split, path, seed"


def check(datasets: list, **run) -> str:
    with pytest.raises(ConfigError) as ei:
        validate({"models": [{"path": "/m"}], "datasets": datasets, **run}, "cfg.yaml")
    return str(ei.value)


def test_unknown_option_names_task_key_and_what_it_takes():
    msg = check([{"name": "hellaswag", "seq_len": 512}])
    assert f"datasets[0].seq_len: hellaswag: unknown option 'seq_len'; {HELLASWAG_TAKES}" in msg
    assert msg.startswith("cfg.yaml: invalid configuration")


def test_misspelled_option_suggests_the_close_one():
    msg = check(["piqa", {"name": "hellaswag", "num_fewshots": 5}])
    assert "datasets[1].num_fewshots: hellaswag: unknown option 'num_fewshots' (did you mean num_fewshot?); " in msg
    assert HELLASWAG_TAKES in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num_fewshot", "five", "option 'num_fewshot': Input should be a valid integer (got 'five')"),
        ("num_fewshot", "5", "option 'num_fewshot': Input should be a valid integer (got '5')"),  # strict: no coercion
        ("num_fewshot", -1, "option 'num_fewshot': Input should be greater than or equal to 0 (got -1)"),
        ("split", 3, "option 'split': Input should be a valid string (got 3)"),
    ],
)
def test_wrong_type_names_the_key(key, value, expected):
    assert f"datasets[0].{key}: hellaswag: {expected}" in check([{"name": "hellaswag", key: value}])


def test_generation_option_values_are_checked():
    msg = check([{"name": "gsm8k_cot", "max_out_len": 0, "chat": "yes", "temperature": -1}])
    assert "datasets[0].max_out_len: gsm8k_cot: option 'max_out_len': Input should be greater than 0" in msg
    assert "datasets[0].chat: gsm8k_cot: option 'chat': Input should be a valid boolean (got 'yes')" in msg
    assert "datasets[0].temperature: gsm8k_cot: option 'temperature'" in msg


def test_a_group_is_named_once_and_the_other_variant_is_pointed_at():
    msg = check([{"name": "mmlu", "max_out_len": 16}])
    lines = [line for line in msg.splitlines() if "max_out_len" in line]
    assert lines == [
        "  datasets[0].max_out_len: mmlu: unknown option 'max_out_len'; it takes limit, num_fewshot, path, seed "
        "(mmlu_gen takes max_out_len)"
    ]
    validate({"models": [{"path": "/m"}], "datasets": [{"name": "mmlu_gen", "max_out_len": 16}]})


def test_required_option_says_what_it_wants():
    msg = check(["ppl"])
    assert "datasets[0].path: ppl: option 'path' is required: a text file, a folder of text files" in msg


def test_python_yaml_and_cli_refuse_alike(tmp_path, capsys):
    py = tmp_path / "c.py"
    py.write_text("models = [dict(path='/m')]\ndatasets = [dict(abbr='hellaswag', seq_len=512)]\n", encoding="utf-8")
    yml = tmp_path / "c.yaml"
    yml.write_text("models: [{path: /m}]\ndatasets:\n  - {name: hellaswag, seq_len: 512}\n", encoding="utf-8")
    for p in (py, yml):
        with pytest.raises(ConfigError, match=f"hellaswag: unknown option 'seq_len'; {HELLASWAG_TAKES}"):
            validate(read_config_file(p), str(p))
        rc = main(["run", str(p), "-w", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and str(p) in err and "unknown option 'seq_len'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any run directory is made
    # the run-level flag is checked against the tasks too: nothing here takes few-shot examples
    rc = main(["run", "--hf-path", str(tmp_path), "--datasets", "wikitext2", "--num-fewshot", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "num_fewshot 5: none of the tasks takes it (wikitext2)" in err


def test_run_level_num_fewshot_applies_where_taken_and_says_where_not(caplog):
    cfg = validate({"models": [{"path": "/m"}], "datasets": ["hellaswag", "lambada_openai"], "num_fewshot": 3})
    with caplog.at_level(logging.WARNING):
        specs = {s.name: s for s in plan_tasks(cfg)}
    assert specs["hellaswag"].options == {"num_fewshot": 3, "seed": 1234}
    assert specs["lambada_openai"].options == {}
    assert "num_fewshot 3 does not apply to lambada_openai" in caplog.text


def test_build_refuses_what_the_factory_would_not_read():
    with pytest.raises(OptionError, match="wikitext2: unknown option 'num_fewshot'"):
        build("wikitext2", num_fewshot=5)
    with pytest.raises(OptionError, match="mmlu_astronomy: unknown option 'temperature'"):
        build("mmlu_astronomy", "ppl", temperature=0.5)


def test_every_task_builds_from_its_defaults_and_forbids_the_rest():
    for name, info in REGISTRY.tasks.items():
        for mode, variant in info.variants.items():
            schema = variant.options
            assert issubclass(schema, TaskOptions) and schema.model_config["extra"] == "forbid", name
            if all(not f.is_required() for f in schema.model_fields.values()):
                build(name, mode)
            with pytest.raises(OptionError):
                build(name, mode, not_an_option=1)


# --- max_out_len -----------------------------------------------------------------------------------


def test_budget_precedence_dataset_then_benchmark_then_model():
    assert build("gsm8k_cot").max_new_tokens == 256  # lm-eval's default max_gen_toks
    assert build("gsm8k_cot", model_max_out_len=8).max_new_tokens == 8
    assert build("gsm8k_cot", model_max_out_len=8, max_out_len=16).max_new_tokens == 16
    assert build("triviaqa", model_max_out_len=8).max_new_tokens == 8
    assert build("mbpp", model_max_out_len=8).max_new_tokens == 8
    # benchmarks with a budget of their own keep it (lm-eval's humaneval.yaml; a letter for exam gen)
    assert build("humaneval", model_max_out_len=8).max_new_tokens == 1024
    assert build("mmlu_astronomy", "gen", model_max_out_len=8).max_new_tokens == 32
    assert build("ceval_law", "gen", model_max_out_len=8, max_out_len=4).max_new_tokens == 4
    req = build("gsm8k_cot", model_max_out_len=8).requests({"question": "1+1?", "answer": "#### 2"}, 0)[0]
    assert req.max_new_tokens == 8


def _keys(budget: int) -> dict[str, dict]:
    """The journal key of each task for a model with this max_out_len (as the coordinator makes it)."""
    cfg = validate(
        {
            "models": [{"path": "/m", "abbr": "m", "max_out_len": budget}],
            "datasets": ["gsm8k_cot", {"name": "triviaqa", "max_out_len": 16}, "humaneval", "mmlu_astronomy"],
        }
    )
    m = cfg.models[0]
    return {s.name: {"task_version": s.build(m.name).version, "model": model_key(m)} for s in plan_tasks(cfg)}


def test_journal_key_changes_only_where_the_budget_does():
    a, b = _keys(256), _keys(8)
    assert a["gsm8k_cot"] != b["gsm8k_cot"]
    for same in ("triviaqa", "humaneval", "mmlu_astronomy"):
        assert a[same] == b[same], same


def test_cli_max_out_len_flag_is_the_model_budget(tmp_path, capsys):
    """--max-out-len (OpenCompass' flag) sets the model's budget: the plan's estimate of a
    generation doc is its prompt and its budget, so 108 estimates 100 tokens more than 8."""

    def estimate(flags: list[str]) -> int:
        argv = ["run", "--hf-path", str(tmp_path), "--datasets", "gsm8k_cot", "--limit", "1", "--dry-run", *flags]
        assert main(argv) == 0
        total = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("total")]
        return int(total[-1].split()[-1].replace(",", ""))

    assert estimate(["--max-out-len", "108"]) - estimate(["--max-out-len", "8"]) == 100


@pytest.mark.slow
def test_model_max_out_len_bounds_real_generations_and_resume_redoes_only_those(tmp_path, smollm2):
    """SmolLM2 with max_out_len 8: gsm8k_cot (no budget of its own) generates 8 tokens and stops
    there, triviaqa (its entry sets 4) at most 4; a resume with another model budget recomputes
    gsm8k_cot only. One gsm8k_cot doc: its 8-shot prompt is the slow part."""
    from conftest import smollm2_gguf

    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        json.dumps(
            {
                "models": [{"abbr": "smol", "path": str(smollm2_gguf()), "dtype": "float32", "max_out_len": 8}],
                "datasets": [
                    {"name": "gsm8k_cot", "limit": 1},
                    {"name": "triviaqa", "limit": 2, "max_out_len": 4},
                ],
            }
        ),
        encoding="utf-8",
    )
    work = tmp_path / "out"
    assert main(["run", str(cfg), "-w", str(work), "--run-id", "r"]) == 0
    rd = work / "r"
    tok = smollm2.tokenizer

    def answers(task: str) -> list[dict]:
        lines = (rd / "samples" / "smol" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
        return [a for line in lines for a in json.loads(line)["answers"]]

    for task, budget, n in (("gsm8k_cot", 8, 1), ("triviaqa", 4, 2)):
        got = answers(task)
        assert len(got) == n
        for a in got:
            assert a["n_tokens"] <= budget, (task, a)
            assert len(tok(a["text"], add_special_tokens=False).input_ids) <= budget, (task, a["text"])
    (cot,) = answers("gsm8k_cot")  # a chain of thought is longer than 8 tokens: cut by the budget
    assert cot["finish_reason"] == "length" and cot["n_tokens"] == 8

    assert main(["run", str(cfg), "-r", str(rd), "-w", str(work), "--max-out-len", "6"]) == 0
    tasks = json.loads((rd / "run.json").read_text(encoding="utf-8"))["tasks"]["smol"]
    assert tasks["gsm8k_cot"]["computed"] == 1 and tasks["triviaqa"]["reused"] == 2
    (cot,) = answers("gsm8k_cot")
    assert cot["n_tokens"] == 6
