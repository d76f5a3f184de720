"""`lmgauge compare` and `lmgauge report` on run directories whose every answer is known."""

from __future__ import annotations

import json
import re

import pytest

from lmgauge.cli import main
from lmgauge.report.compare import CompareRefused, compare_runs, margins
from lmgauge.report.html import render_html, write_report
from lmgauge.report.html_data import report_data
from lmgauge.report.load import NotARunDir, load_run
from lmgauge.scoring.paired import FlipTable, mcnemar, newcombe_paired_interval
from report_runs import XSS, write_run

T, F = True, False
ASTRONOMY = [T, T, F, T, F, T]
ANATOMY = [T, F, F, T]


def pair(tmp_path, b_astronomy, **kw_b):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY, "mmlu_anatomy": ANATOMY}, seed=1)
    b = write_run(tmp_path / "b", {"mmlu_astronomy": b_astronomy, "mmlu_anatomy": ANATOMY}, seed=2, **kw_b)
    return load_run(a), load_run(b)


def rows_by(cmp):
    return {(r.level, r.name, r.metric): r for r in cmp.rows}


def test_one_known_answer_differs(tmp_path):
    b_ast = list(ASTRONOMY)
    b_ast[1] = F  # doc 1 of astronomy: right in A, wrong in B
    cmp = compare_runs(*pair(tmp_path, b_ast))
    assert not cmp.warnings
    assert [(f.task, f.doc_id, f.direction) for f in cmp.flipped] == [("mmlu_astronomy", 1, "right_to_wrong")]
    rows = rows_by(cmp)
    ast = rows[("subject", "mmlu_astronomy", "acc")]
    table = FlipTable(both_right=3, right_to_wrong=1, wrong_to_right=0, both_wrong=2)
    assert ast.stats.flips == table
    assert ast.stats.delta == pytest.approx(-1 / 6)
    assert (ast.stats.p_exact, ast.stats.p_value) == (1.0, 0.5)  # one discordant pair: 2*1/2 and 1 - 1/2
    assert (ast.stats.low, ast.stats.high) == pytest.approx(newcombe_paired_interval(table))
    assert ast.stats.low < 0 < ast.stats.high and ast.stats.verdict == "within noise"
    anatomy = rows[("subject", "mmlu_anatomy", "acc")]
    assert anatomy.stats.delta == 0 and anatomy.stats.flips.flips == 0
    group = rows[("group", "mmlu", "acc (micro)")]
    assert group.stats.delta == pytest.approx(-1 / 10) and group.stats.flips.right_to_wrong == 1
    assert group.value_a == pytest.approx(6 / 10) and group.value_b == pytest.approx(5 / 10)
    assert rows[("category", "mmlu_stem", "acc (micro)")].stats.flips == group.stats.flips
    # worst first: the astronomy drop leads
    assert cmp.worst_first()[0] is ast
    flip = cmp.flipped[0]
    assert flip.pred_a == flip.gold != flip.pred_b
    assert flip.margins_a == pytest.approx(margins(flip.logprobs_a))
    assert flip.margins_a[flip.pred_a] > 0 and flip.margins_b[flip.pred_b] > 0
    assert sum(m > 0 for m in flip.margins_a) == 1


def test_many_flips_are_beyond_noise(tmp_path):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": [T] * 30}, seed=1)
    b = write_run(tmp_path / "b", {"mmlu_astronomy": [F] * 10 + [T] * 20}, seed=2)
    cmp = compare_runs(load_run(a), load_run(b))
    row = rows_by(cmp)[("subject", "mmlu_astronomy", "acc")]
    t = mcnemar(row.stats.flips)
    assert (t.p_exact, t.p_midp) == (pytest.approx(2 / 1024), pytest.approx(1 / 1024))
    assert row.stats.verdict == "worse" and row.stats.high < 0
    assert len(cmp.flipped) == 10 and all(f.direction == "right_to_wrong" for f in cmp.flipped)


def test_right_to_wrong_listed_first(tmp_path):
    b_ast = [F, T, T, T, F, T]  # doc 0 right->wrong, doc 2 wrong->right
    cmp = compare_runs(*pair(tmp_path, b_ast))
    assert [(f.doc_id, f.direction) for f in cmp.flipped] == [(0, "right_to_wrong"), (2, "wrong_to_right")]


def test_prompt_versions_differ_warn_with_the_config_diff_or_refuse(tmp_path):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY}, version="aaaa0000", num_fewshot=5)
    b = write_run(tmp_path / "b", {"mmlu_astronomy": ASTRONOMY}, version="bbbb0000", num_fewshot=0)
    cmp = compare_runs(load_run(a), load_run(b))
    assert "prompt version aaaa0000 in A, bbbb0000 in B" in cmp.warnings[0]
    assert "num_fewshot: 5 -> 0" in cmp.warnings[0]
    assert "num_fewshot: 5 -> 0" in cmp.config_diff
    with pytest.raises(CompareRefused, match="prompt versions differ"):
        compare_runs(load_run(a), load_run(b), strict=True)


def test_different_docs_are_joined_on_the_common_ones(tmp_path):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY})
    b = write_run(tmp_path / "b", {"mmlu_astronomy": ASTRONOMY[:4]})
    cmp = compare_runs(load_run(a), load_run(b))
    assert any("4 in both, 2 only in A, 0 only in B" in w for w in cmp.warnings)
    assert rows_by(cmp)[("subject", "mmlu_astronomy", "acc")].stats.n == 4


def test_models_are_paired_by_name_or_named(tmp_path):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY}, model="base")
    b = write_run(tmp_path / "b", {"mmlu_astronomy": ASTRONOMY}, model="w4a16")
    assert compare_runs(load_run(a), load_run(b)).pairs == [("base", "w4a16")]  # one model each
    with pytest.raises(CompareRefused, match="no model 'nope'"):
        compare_runs(load_run(a), load_run(b), model_a="nope")


def test_generation_code_and_perplexity_rows(tmp_path):
    kw = {"generation": [T, F, T, T], "code": [T, T, F], "perplexity": [-300.0, -310.0, -290.0]}
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY}, **kw)
    kw_b = {"generation": [T, T, T, F], "code": [T, T, F], "perplexity": [-301.0, -311.0, -291.5]}
    b = write_run(tmp_path / "b", {"mmlu_astronomy": ASTRONOMY}, **kw_b)
    cmp = compare_runs(load_run(a), load_run(b), n_resamples=2000)
    rows = rows_by(cmp)
    gen = rows[("task", "gsm8k_cot", "exact_match,strict-match")]
    assert (gen.stats.flips.right_to_wrong, gen.stats.flips.wrong_to_right) == (1, 1)
    assert {(f.task, f.doc_id) for f in cmp.flipped if f.task == "gsm8k_cot"} == {("gsm8k_cot", 1), ("gsm8k_cot", 3)}
    assert rows[("task", "humaneval", "pass@1")].stats.flips.flips == 0
    lp = rows[("task", "wikitext2", "logprob")]
    assert lp.stats.method == "bootstrap" and lp.stats.delta == pytest.approx(-1.1666666, abs=1e-6)
    assert lp.stats.seed == 0 and lp.stats.n_resamples == 2000
    ppl = rows[("task", "wikitext2", "token_perplexity")]
    assert ppl.stats is None and ppl.value_b > ppl.value_a


def test_not_a_run_directory_is_named(tmp_path):
    with pytest.raises(NotARunDir, match=re.escape(str(tmp_path / "nothing"))):
        load_run(tmp_path / "nothing")
    assert main(["compare", str(tmp_path / "nothing"), str(tmp_path)]) == 2


def test_compare_cli_json_and_table(tmp_path, capsys):
    b_ast = list(ASTRONOMY)
    b_ast[1] = F
    a, b = pair(tmp_path, b_ast)
    assert main(["compare", str(a.root), str(b.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orientation"] == "delta = b - a"
    assert out["rows"][0]["name"] == "mmlu_astronomy" and out["rows"][0]["stats"]["flips"]["right_to_wrong"] == 1
    assert [f["doc_id"] for f in out["flipped"]] == [1]
    assert main(["compare", str(a.root), str(b.root)]) == 0
    text = capsys.readouterr().out
    assert "mmlu_astronomy" in text and "-16.67" in text and "flipped docs: 1 right->wrong, 0 wrong->right" in text


def test_report_cli_writes_one_self_contained_file(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY}, generation=[T, F], code=[T, F], perplexity=[-5.0])
    assert main(["report", str(a)]) == 0
    page = (a / "report.html").read_text(encoding="utf-8")
    assert "<link" not in page and "src=" not in page.split('id="report-data"')[0]
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    b = write_run(tmp_path / "b", {"mmlu_astronomy": ASTRONOMY})
    assert main(["report", str(a), str(b)]) == 0
    assert (b / "compare.html").is_file()


def test_data_blob_cannot_close_its_script_element(tmp_path):
    run = load_run(write_run(tmp_path / "x", {"mmlu_astronomy": [T, F]}, generation=[T], xss=True))
    page = render_html(report_data([run]))
    blob = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in blob and ">" not in blob and "&" not in blob
    data = json.loads(blob)
    (task,) = [t for t in data["runs"][0]["tasks"] if t["task"] == "mmlu_astronomy"]
    prompt = task["samples"][0]["prompt"]
    assert XSS["script"] in prompt and XSS["img"] in prompt  # the text itself is kept, only encoded
    assert page.count("</script>") == 2  # the data element's and the viewer's, nothing from the data


def test_samples_share_the_few_shot_prefix_once(tmp_path):
    run = load_run(write_run(tmp_path / "x", {"mmlu_astronomy": [T] * 20}))
    task = report_data([run])["runs"][0]["tasks"][0]
    assert task["prefix"].startswith("The following are multiple choice questions") and task["prefix"].endswith("\n\n")
    original = [s["prompt"] for s in run.samples("m", "mmlu_astronomy")]
    assert [task["prefix"] + s["prompt"] for s in task["samples"]] == original
    assert all("answers" not in s for s in task["samples"])


def test_run_writes_report_html_by_default(tmp_path, tiny_llama_dir):
    work = tmp_path / "work"
    args = ["run", "--hf-path", str(tiny_llama_dir), "--abbr", "tiny", "--datasets", "mmlu_astronomy", "--limit", "3"]
    assert main([*args, "-w", str(work), "--run-id", "r1", "--max-seq-len", "256"]) == 0
    assert (work / "r1" / "report.html").is_file()
    assert main([*args, "-w", str(work), "--run-id", "r2", "--max-seq-len", "256", "--no-report"]) == 0
    assert not (work / "r2" / "report.html").exists()
    write_report([load_run(work / "r1")], tmp_path / "again.html")


def test_compression_positions_get_their_own_view(tmp_path):
    root = write_run(tmp_path / "c", {"mmlu_astronomy": ASTRONOMY}, model="m-w4")
    res_path = root / "results" / "m-w4" / "mmlu_astronomy.json"
    res = json.loads(res_path.read_text())
    paired = {
        "low": -0.2,
        "high": 0.05,
        "p_value": 0.25,
        "verdict": "within noise",
        "flips": {"right_to_wrong": 2, "wrong_to_right": 0},
    }
    res["position"] = {"name": "w4", "kind": "fake_quant"}
    res["vs_pretrain"] = {
        "metrics": {"acc": {"pretrain": 0.75, "value": 0.625, "delta": -0.125, "recovery": 0.8333, "paired": paired}}
    }
    res_path.write_text(json.dumps(res))
    manifest = json.loads((root / "run.json").read_text())
    manifest["compression"] = {"config": {"quant": {"w_bit": 4}}, "positions": {"w4": {"status": "done"}}}
    (root / "run.json").write_text(json.dumps(manifest))
    comp = report_data([load_run(root)])["runs"][0]["compression"]
    (row,) = comp["rows"]
    assert (row["position"], row["task"], row["metric"], row["delta"], row["right_to_wrong"]) == (
        "w4",
        "mmlu_astronomy",
        "acc",
        -0.125,
        2,
    )
    assert comp["manifest"]["positions"] == {"w4": {"status": "done"}}
    assert (
        report_data([load_run(write_run(tmp_path / "plain", {"mmlu_astronomy": ASTRONOMY}))])["runs"][0]["compression"]
        is None
    )


def test_perf_results_in_the_run_directory_get_a_latency_section(tmp_path):
    root = write_run(tmp_path / "p", {"mmlu_astronomy": ASTRONOMY})
    (root / "serving").mkdir()
    point = {
        "label": "rateinf_conc4",
        "completed": 40,
        "failed": 0,
        "max_concurrency": 4,
        "request_rate": "inf",
        "output_throughput": 512.5,
        "mean_ttft_ms": 31.2,
        "p99_ttft_ms": 80.0,
    }
    (root / "serving" / "rateinf_conc4.json").write_text(json.dumps(point))
    (root / "serving" / "sweep.json").write_text(json.dumps({"points": []}))
    (root / "performance_test_m_cpu_bs1.csv").write_text("batch_size,input_seq_len(Encoding)\n1,128\n")
    perf = report_data([load_run(root)])["runs"][0]["perf"]
    assert [p["label"] for p in perf["serving"]] == ["rateinf_conc4"]
    assert perf["serving"][0]["output_throughput"] == 512.5 and perf["serving"][0]["mean_tpot_ms"] is None
    assert perf["inprocess"] == [
        {
            "file": "performance_test_m_cpu_bs1.csv",
            "header": ["batch_size", "input_seq_len(Encoding)"],
            "rows": [["1", "128"]],
        }
    ]
