"""The command line as a user meets it: fast help, every flag named, and bad
input ending in one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli, tiny_space


def test_help_is_fast_and_imports_no_tensorflow():
    code = ("import sys, time; t=time.perf_counter(); from tuner.cli import build_parser; build_parser(); "
            "import tuner.spaces, tuner.data.augment, tuner.results.plots, tuner.model.backbones, tuner.backend; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, time.perf_counter()-t)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    tf_loaded, keras_loaded, seconds = r.stdout.split()
    assert tf_loaded == "False" and keras_loaded == "False"
    t0 = time.perf_counter()
    r = run_cli("--help")
    assert r.returncode == 0 and "search" in r.stdout
    assert time.perf_counter() - t0 < 3.0  # the interpreter start included; well under a second in practice


def test_best_flags_that_do_not_go_together_are_one_line_before_tensorflow_loads(tmp_path):
    """Read by `main` before the export imports TensorFlow (seconds), so a
    typo costs nothing; the project is not even opened."""
    code = ("import sys; from tuner.cli import main; "
            f"code = main(['best', '--project', {str(tmp_path / 'none')!r}, '--export', {str(tmp_path / 'x')!r}, "
            "'--refit-epochs', '2']); print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.split() == ["2", "False", "False"], r.stdout + r.stderr
    assert r.stderr.strip() == "error: --refit-epochs sets how the refit runs; add --refit"


@pytest.mark.parametrize("flag", ["--space", "--data", "--project", "--max-trials", "--epochs", "--steps-per-epoch",
                                  "--method", "--strategy", "--max-time", "--weights", "--seed", "--overwrite",
                                  "--cpu-replicas", "--warm-start", "--backend"])
def test_search_help_names_every_flag(flag):
    r = run_cli("search", "--help")
    assert flag in r.stdout


def test_spaces_lists_the_shipped_ones():
    r = run_cli("spaces")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert {"default", "demo", "kaggle-tpu", "cpu"} <= set(names)


def one_line_error(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_missing_data_dir(tmp_path):
    space = tiny_space(tmp_path)
    line = one_line_error(run_cli("search", "--space", str(space), "--data", str(tmp_path / "nope"),
                                  "--project", str(tmp_path / "p")))
    assert "not found" in line and "--data" in line


def test_typo_in_space_file(tmp_path):
    space = tiny_space(tmp_path, extra="  learnig_rate: {value: 0.1}\n")
    line = one_line_error(run_cli("search", "--space", str(space), "--data", str(tmp_path)))
    assert str(space) in line and "learnig_rate" in line and "learning_rate" in line


def test_unknown_backbone(tmp_path):
    space = tiny_space(tmp_path, backbone="resnet5O")
    line = one_line_error(run_cli("search", "--space", str(space), "--data", str(tmp_path)))
    assert "resnet5O" in line and "resnet50" in line


def test_unknown_space_name():
    line = one_line_error(run_cli("search", "--space", "nosuchspace"))
    assert "nosuchspace" in line and "default" in line


def test_bad_flag_values():
    line = one_line_error(run_cli("search", "--max-time", "soon"))
    assert "--max-time" in line and "2h45m" in line
    line = one_line_error(run_cli("search", "--epochs", "0"))
    assert "--epochs" in line


def test_missing_weights_file(flower_root, tmp_path):
    space = tiny_space(tmp_path)
    line = one_line_error(run_cli("search", "--space", str(space), "--data", str(flower_root),
                                  "--project", str(tmp_path / "p"), "--weights", str(tmp_path / "w.h5")))
    assert "w.h5" in line and "not found" in line


def test_duration_parsing():
    from tuner.cli import parse_duration

    assert parse_duration("2h45m") == 9900
    assert parse_duration("90m") == 5400
    assert parse_duration("1.5h") == 5400
    assert parse_duration("30") == 30
