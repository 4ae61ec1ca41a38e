"""The Python API (`import tuner`) and the tables of `status` and `best`,
read back as a user sees them: on a small finished search."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.xdist_group("finished")


def test_import_tuner_is_light_and_has_the_api():
    code = ("import sys, time; t = time.perf_counter(); import tuner; dt = time.perf_counter() - t; "
            "print(dt, 'tensorflow' in sys.modules, 'keras' in sys.modules, "
            "all(callable(getattr(tuner, n)) for n in ('search', 'status', 'best', 'export')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    seconds, tf_loaded, keras_loaded, api = r.stdout.split()
    assert (tf_loaded, keras_loaded, api) == ("False", "False", "True"), r.stdout + r.stderr
    assert float(seconds) < 1.0


def test_status_and_best_as_records_and_a_dataframe(finished_project):
    import tuner

    trials = tuner.status(str(finished_project))
    assert [t["trial"] for t in trials] == ["0", "1"] and trials.project == str(finished_project)
    for t in trials:
        assert t["state"] == "completed" and t["epochs"] == 2 and 0 <= t["val_f1"] <= 1
        assert t["values"]["backbone"] == "smallcnn" and Path(t["trial_dir"]).is_dir()
    top = tuner.best(str(finished_project), top=1)
    assert len(top) == 1 and top[0]["val_f1"] == max(t["val_f1"] for t in trials)
    frame = trials.to_frame()
    assert list(frame.index) == ["0", "1"]
    assert {"state", "val_f1", "learning_rate", "backbone"} <= set(frame.columns)
    assert frame.loc[top[0]["trial"], "val_f1"] == top[0]["val_f1"]


def test_api_errors_raise_instead_of_exiting(tmp_path):
    import tuner

    with pytest.raises(tuner.TunerError, match="no project"):
        tuner.status(str(tmp_path / "nothing"))
    with pytest.raises(tuner.TunerError, match="top must be at least 1"):
        tuner.best(str(tmp_path), top=0)
    with pytest.raises(tuner.TunerError, match="invalid duration '2 hours'"):
        tuner.search("demo", max_time="2 hours")
    with pytest.raises(tuner.TunerError, match="pass refit=True"):
        tuner.export(str(tmp_path), str(tmp_path / "out"), max_time="1h")


def test_export_from_python_returns_its_files_and_metrics(finished_project, tmp_path):
    import tuner

    lines: list[str] = []
    result = tuner.export(str(finished_project), str(tmp_path / "out"), log=lines.append)
    assert result.model == str(tmp_path / "out" / "model.keras") and Path(result.model).is_file()
    assert Path(result.submission).is_file() and "submission.csv" in result.files
    assert 0 <= result.metrics["macro_f1"] <= 1 and lines == result.lines and lines


def test_status_formats_for_scripts(finished_project):
    r = run_cli("status", "--project", str(finished_project), "--format", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert [x["trial"] for x in records] == ["0", "1"] and isinstance(records[0]["val_f1"], float)
    r = run_cli("status", "--project", str(finished_project), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["trial"] for x in rows] == ["0", "1"] and "val F1" in rows[0]
    r = run_cli("best", "--project", str(finished_project), "--format", "md", "--top", "1")
    assert r.stdout.splitlines()[1].startswith("| trial | model |"), r.stdout
    r = run_cli("best", "--project", str(finished_project), "--format", "json", "--top", "2")
    assert [x["val_f1"] for x in json.loads(r.stdout)] == sorted((x["val_f1"] for x in records), reverse=True)
    r = run_cli("status", "--project", str(finished_project), "--format", "xml")
    assert r.returncode == 2 and "invalid choice: 'xml'" in r.stderr


def test_the_terminal_table_as_a_user_sees_it(finished_project):
    """rich's recording console stands in for the terminal: columns, the
    state in colour, the best trial marked."""
    from rich.console import Console

    import tuner
    from tuner.results.trials import load_trials, print_table, status_row

    meta, trials = load_trials(str(finished_project))
    best = tuner.best(str(finished_project))[0]["trial"]
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    print_table([status_row(meta, t) for t in trials], "runs", "auto", best=best, console=console)
    text = console.export_text(clear=False)
    header = next(ln for ln in text.splitlines() if "trial" in ln and "state" in ln)
    for col in ("state", "learning_rate", "dtype", "epochs", "val F1", "precision", "recall", "time"):
        assert col in header, header
    marked = [ln for ln in text.splitlines() if "★" in ln]
    assert len(marked) == 1 and f"★ {best}" in marked[0]
    styled = console.export_text(styles=True)
    assert "\x1b[32mcompleted" in styled  # green


def test_status_watch_refreshes_until_ctrl_c(finished_project):
    """Started with SIGINT ignored, as a non-interactive shell starts its
    background jobs (and so a suite run as one): SIGINT still ends the watch.
    This test hung there before the watch set its own handler; where the
    suite's processes had Python's handler it passed."""
    p = subprocess.Popen([sys.executable, "-m", "tuner", "status", "--project", str(finished_project), "--watch", "0.2"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "COLUMNS": "200"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"no exit 30 s after SIGINT; stdout tail {out[-400:]!r}, stderr {err[-2000:]!r}")
    assert p.returncode == 0, err
    assert "completed" in out and "Traceback" not in err
