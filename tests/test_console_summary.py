"""The console summary folds large groups; the summary files keep every row."""

from lmgauge.report.console import print_summary
from lmgauge.report.summary import render_txt


def _rows(n_members: int) -> list[dict]:
    rows = [{"dataset": "mmlu", "version": "v", "metric": "acc (micro)", "mode": "ppl", "m": 0.5, "_member_of": None}]
    rows += [
        {"dataset": f"mmlu_s{i:02d}", "version": "v", "metric": "acc", "mode": "ppl", "m": 0.25, "_member_of": "mmlu"}
        for i in range(n_members)
    ]
    return rows


def test_large_group_folds_on_console_but_not_in_files(capsys):
    rows = _rows(12)
    print_summary(["m"], rows, where="RUN/summary.txt")
    out = capsys.readouterr().out
    assert "mmlu_s00" not in out and "12 mmlu members" in out and "RUN/summary.txt" in out
    assert all(f"mmlu_s{i:02d}" in render_txt(["m"], rows) for i in range(12))


def test_small_group_is_shown_whole(capsys):
    print_summary(["m"], _rows(3))
    out = capsys.readouterr().out
    assert "mmlu_s02" in out and "members" not in out
