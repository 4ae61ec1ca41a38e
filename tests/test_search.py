"""The search end to end: real Keras Tuner, real records, real subprocesses
killed with real signals."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, event_steps, run_cli, tiny_space


def history_epochs(trial_dir: Path) -> list[int]:
    with open(trial_dir / "history.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def trial_statuses(project: Path) -> dict[str, str]:
    out = {}
    for p in sorted(project.glob("trial_*/trial.json")):
        t = json.loads(p.read_text())
        out[t["trial_id"]] = t["status"]
    return out


def start_search(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "tuner", "search", "--plain", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_epoch(project: Path, trial: str, epoch: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Block until trial `trial` has checkpointed `epoch` epochs."""
    pointer = project / f"trial_{trial}" / "resume.json"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"search ended early:\n{proc.stdout.read()}")
        try:
            if json.loads(pointer.read_text())["epoch"] >= epoch:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"trial {trial} never reached epoch {epoch}")


@pytest.mark.xdist_group("finished")
def test_two_trial_search_reports_macro_f1(finished_project, flower_root):
    project = finished_project
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED"}
    for tid in ("0", "1"):
        trial = json.loads((project / f"trial_{tid}" / "trial.json").read_text())
        f1 = trial["metrics"]["metrics"]["val_f1"]["observations"]
        assert all(0.0 <= o["value"][0] <= 1.0 for o in f1)
        with open(project / f"trial_{tid}" / "history.csv") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        for col in ("val_f1", "val_precision", "val_recall", "val_loss", "learning_rate", "seconds"):
            assert rows[0][col] != "", col
    log = (project.parent / "search.log").read_text()
    assert "val_f1" in log and "search done: 2 trials" in log
    # Running the finished search again trains nothing and says so.
    space = project.parent / "tiny.yaml"
    again = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project))
    assert again.returncode == 0, again.stderr
    assert "2 of 2 trials done" in again.stdout and "epoch 1/" not in again.stdout


# The kill in the second trial (which also checks the finished first trial is
# not trained again) costs a third traced run: `make faults` runs it.
@pytest.mark.parametrize("victim", ["0", pytest.param("1", marks=pytest.mark.slow)],
                         ids=["first-trial", "second-trial"])
def test_sigkill_mid_trial_resumes_from_last_epoch(flower_root, tmp_path, victim):
    space = tiny_space(tmp_path, epochs=3, steps=4)
    project = tmp_path / "proj"
    trials = int(victim) + 1
    args = ("--space", str(space), "--data", str(flower_root), "--project", str(project), "--max-trials", str(trials))
    proc = start_search(*args)
    try:
        wait_for_epoch(project, victim, 1, proc)
        proc.send_signal(signal.SIGKILL)  # during epoch 2 of the victim
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert json.loads((project / f"trial_{victim}" / "resume.json").read_text())["epoch"] == 1
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"trial {victim} " in r.stdout and "resuming after epoch 1" in r.stdout
    assert trial_statuses(project) == {str(i): "COMPLETED" for i in range(trials)}
    for tid in range(trials):
        assert history_epochs(project / f"trial_{tid}") == [1, 2, 3]
    # the resumed trial trained epochs 2 and 3 only in the second run
    trained = [ln.split(":")[0].strip() for ln in r.stdout.splitlines() if ln.strip().startswith("epoch ")]
    assert trained == ["epoch 2/3", "epoch 3/3"], r.stdout


def wait_for_report(project: Path, trial: str, step: int, timeout: float = 60) -> None:
    """Block until the oracle recorded epoch `step` of `trial` (after its checkpoint)."""
    path = project / f"trial_{trial}" / "trial.json"
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            obs = json.loads(path.read_text())["metrics"]["metrics"]["val_f1"]["observations"]
            if any(o["step"] >= step for o in obs):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"trial {trial}'s epoch {step} was never reported")


def test_sigterm_stops_at_epoch_end_and_resumes(flower_root, tmp_path):
    # In mixed_bfloat16: a half-precision trial and its resume on this CPU (issue 12) for the price of one test.
    space = tiny_space(tmp_path, epochs=3, steps=4, extra="  precision: {value: mixed_bfloat16}\n")
    # and steps_per_execution 3, which 4 steps per epoch bring down to 2 (said, and kept in the checkpoint)
    space.write_text(space.read_text().replace("jit_compile: false}", "jit_compile: false, steps_per_execution: 3}"))
    project = tmp_path / "proj"
    args = ("--space", str(space), "--data", str(flower_root), "--project", str(project), "--max-trials", "1")
    proc = start_search(*args)
    try:
        wait_for_epoch(project, "0", 1, proc)
        wait_for_report(project, "0", 1)  # epoch 1's end is over: the signal lands in epoch 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "stopping at the end of this epoch" in out and "run the same command to continue" in out
    assert "Traceback" not in out and "precision: mixed_bfloat16 (asked for in the space)" in out
    # it finished the epoch it was in, and saved it
    pointer = json.loads((project / "trial_0" / "resume.json").read_text())
    assert pointer["epoch"] == 2 and pointer["precision"] == "mixed_bfloat16"
    assert pointer["steps_per_execution"] == 2 and "steps_per_execution: 2 (asked 3; 2 is the largest divisor" in out
    assert history_epochs(project / "trial_0") == [1, 2]
    assert event_steps(project / "trial_0") == [1, 2]  # TensorBoard has what the checkpoint has
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming after epoch 2" in r.stdout
    assert history_epochs(project / "trial_0") == [1, 2, 3]
    assert event_steps(project / "trial_0") == [1, 2, 3]  # the resumed run continues it, each epoch once
    assert "mixed_bfloat16" in run_cli("status", "--project", str(project)).stdout


def test_max_time_is_a_ceiling_for_the_whole_command(flower_root, tmp_path):
    """--max-time 60s: the command, from its start (imports, data checks and
    the first trace included) to its exit, ends within the budget, having
    used most of it: its last epoch is cut at the step after which its
    validation would not fit (tuner.engine.pace), validated and saved; it
    says, records and `status` shows how the time went."""
    # 20,000 steps an epoch: 4-8 minutes of smallcnn's training here, so the
    # budget always ends inside epoch 1 (with 2,000 the first epoch could end
    # a few seconds before it, and then no cut was due; the step-level choice
    # is in test_pace)
    space = tiny_space(tmp_path, epochs=3, steps=20000)
    project = tmp_path / "proj"
    t0 = time.monotonic()
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project),
                "--max-time", "60s")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("max-time reached"))
    k = int(line.split("stopped after epoch ")[1].split(";")[0])
    assert 1 <= k < 3 and history_epochs(project / "trial_0") == list(range(1, k + 1))
    assert f"epoch {k} cut after " in line and " of 20000 steps" in line, line
    last = json.loads((project / "trial_0" / "resume.json").read_text())["rows"][-1]
    assert last["epoch"] == k and 0 < last["steps"] < 20000 and last["val_f1"] is not None, last
    # The goal (within T + 3%) is measured in bench/ceiling.py on an idle
    # machine. Under the test suite's load 10% is allowed, and an epoch's
    # jitter: the most one later epoch of this run took over their median
    # (a stall the median could not foresee; CI once ran 66.3 s). Before the
    # budget counted from the process start, this was 68-75 s. (A run's
    # first step holds the trace, which nothing interrupts: on a heavily
    # loaded machine it alone can run past 60 s, and the cut comes after it.)
    with open(project / "trial_0" / "history.csv") as f:
        later = [float(row["seconds"]) for row in csv.DictReader(f)][1:]
    jitter = max(later) - statistics.median(later) if later else 0.0
    runs = json.loads((project / "time.json").read_text())["tuner0"]
    assert 45 <= elapsed <= 66 + jitter or (last["steps"] == 1 and elapsed >= 45), (elapsed, jitter, runs, r.stdout)
    told = next(ln for ln in r.stdout.splitlines() if ln.startswith("time: "))
    assert "training" in told, told  # a share under 0.5% (validation of 104 images here) goes unnamed
    parts = {k: v for k, v in runs[0].items() if k not in ("ended", "total")}
    assert abs(sum(parts.values()) - runs[0]["total"]) < 0.1 and parts["training"] > 0 and parts["validation"] > 0
    assert 45 <= runs[0]["total"] <= elapsed and parts["startup"] > 1.0  # the imports count
    status = run_cli("status", "--project", str(project)).stdout
    assert "time: " in status and "training" in status, status


def test_the_stop_comes_when_the_next_epoch_would_overrun():
    from tuner.engine.stopper import Stopper

    assert Stopper(None).requested(1e9) is None  # no budget, no stop
    stopper = Stopper(10.0)
    assert stopper.requested(4.0) is None and stopper.requested() is None
    why = stopper.requested(15.0)
    assert why.startswith("max-time reached") and "less than an epoch (about 15s)" in why
    assert stopper.requested() == why  # once asked for, the stop stands


def test_the_stop_waits_for_the_slowest_of_the_recent_checkpoint_writes():
    from tuner.engine.budget import EXIT_SECONDS
    from tuner.engine.stopper import Stopper

    stopper = Stopper(100.0)
    stopper.note_flush(3.0)
    stopper.note_flush(0.1)  # one quick write does not hide the slow one before it
    assert stopper.budget.tail == EXIT_SECONDS + 3.0
    for _ in range(4):
        stopper.note_flush(0.1)
    assert stopper.budget.tail == EXIT_SECONDS + 0.1  # five writes later it is forgotten
    stopper.note_flush(None)
    assert stopper.budget.tail == EXIT_SECONDS + 0.1


def test_a_stopping_fit_leaves_its_input_pipeline_held_until_released():
    """A stop at an epoch end keeps fit's iterator from being torn down when
    fit returns (tf.data's teardown waited 10-18 s there on loaded cores:
    the overrun the ceiling test saw); it goes once the search has said
    everything (release), or with the process."""
    import sys

    import keras
    import numpy as np
    import tensorflow as tf
    from keras.src.trainers.epoch_iterator import EpochIterator

    from tuner.engine import graphs

    class Holds(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            graphs.hold_input_pipeline(sys._getframe(1))

    graphs.release_input_pipelines()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((8, 3), "float32"), np.zeros((8, 2), "float32"))).batch(4)
    model.fit(ds.repeat(), epochs=2, steps_per_epoch=2, callbacks=[Holds()], verbose=0)
    assert len(graphs._HELD) == 1 and isinstance(graphs._HELD[0], EpochIterator)
    graphs.release_input_pipelines()
    assert graphs._HELD == []


def set_up_only(space: Path, root: Path, project: Path, overwrite: bool = False) -> str:
    """A search in this process whose time is up before its first trial:
    the project is opened (or set up) and the lock taken and released,
    without the seconds of a new interpreter importing TensorFlow."""
    import contextlib
    import io

    from tuner.search import SearchOptions, run_search

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_search(SearchOptions(space=str(space), data=str(root), project=str(project), plain=True,
                                 max_time=1e-6, overwrite=overwrite))
    return out.getvalue()


def test_changed_space_is_refused_then_overwrite_starts_afresh(flower_root, tmp_path):
    space = tiny_space(tmp_path, epochs=1, steps=1)
    project = tmp_path / "proj"
    args = ("--space", str(space), "--data", str(flower_root), "--project", str(project))
    # The project is set up, then the search stops before its first trial.
    set_up_only(space, flower_root, project)
    meta = (project / "flower_tuner.json").read_text()
    space.write_text(space.read_text().replace("max: 3.0e-3", "max: 5.0e-3"))
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in r.stderr
    assert "parameters.learning_rate.max: 0.003 -> 0.005" in err and "--overwrite" in err
    assert (project / "flower_tuner.json").read_text() == meta  # nothing touched
    assert "0 of 2 trials done" in set_up_only(space, flower_root, project, overwrite=True)
    assert "max: 5.0e-3" in json.loads((project / "flower_tuner.json").read_text())["space_text"]


def test_second_search_on_same_project_is_locked_out(flower_root, tmp_path):
    space = tiny_space(tmp_path, epochs=3, steps=4)
    project = tmp_path / "proj"
    args = ("--space", str(space), "--data", str(flower_root), "--project", str(project))
    proc = start_search(*args)
    try:
        t0 = time.time()
        while f"pid {proc.pid}" not in ((project / ".lock").read_text() if (project / ".lock").exists() else ""):
            assert time.time() - t0 < 60 and proc.poll() is None, "the first search never took the lock"
            time.sleep(0.05)
        r = run_cli("search", "--plain", *args)
        assert r.returncode == 2
        assert "another search is running on" in r.stderr and f"pid {proc.pid}" in r.stderr
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # the lock dies with its holder, even by SIGKILL
    set_up_only(space, flower_root, project)


def test_mirrored_search_on_two_logical_cpus(flower_root, tmp_path):
    space = tiny_space(tmp_path, epochs=1, steps=2)
    project = tmp_path / "proj"
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project),
                "--strategy", "mirrored", "--cpu-replicas", "2", "--max-trials", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mirrored strategy, 2 replica(s)" in r.stdout
    assert trial_statuses(project) == {"0": "COMPLETED"}
    assert history_epochs(project / "trial_0") == [1]


def test_nan_trial_fails_with_its_reason_and_the_search_goes_on(flower_root, tmp_path, monkeypatch):
    """A 'backbone' whose output is NaN stands in for a diverging model; the
    rest (Keras Tuner, fit, checkpoints) is the real search, in-process."""
    import keras

    from tuner.model import backbones
    from tuner.search import SearchOptions, run_search

    def diverging(include_top=False, weights=None, input_shape=None, pooling=None):
        inp = keras.Input(input_shape)
        out = keras.layers.Rescaling(float("nan"))(keras.layers.GlobalAveragePooling2D()(inp))
        return keras.Model(inp, out)

    monkeypatch.setattr(keras.applications, "DivergingNet", diverging, raising=False)
    monkeypatch.setitem(backbones.BACKBONES, "diverging", backbones.Backbone("diverging", "DivergingNet", "none"))
    space = tiny_space(tmp_path, epochs=2, steps=2).read_text()
    assert "backbone: {value: smallcnn}" in space
    space = space.replace("backbone: {value: smallcnn}", "backbone: {values: [diverging, smallcnn]}")
    space = space.replace("method: random", "method: bayes")  # BayesianOptimization's oracle, for real
    space = space.replace("learning_rate: {min: 1.0e-3, max: 3.0e-3, distribution: log_uniform_values}",
                          "learning_rate: {value: 1.0e-3}")
    (tmp_path / "nan.yaml").write_text(space)
    project = tmp_path / "proj"
    result = run_search(SearchOptions(space=str(tmp_path / "nan.yaml"), data=str(flower_root), project=str(project),
                                      plain=True))
    assert result.stopped is None
    assert sorted(result.trials.values()) == ["COMPLETED", "FAILED"]
    failed = next(t for t in project.glob("trial_*/trial.json") if json.loads(t.read_text())["status"] == "FAILED")
    trial = json.loads(failed.read_text())
    assert trial["hyperparameters"]["values"]["backbone"] == "diverging"
    assert trial["message"] == "loss became NaN in epoch 1; lower the learning rate"
    from tuner.results.trials import load_trials

    _, infos = load_trials(str(project))
    assert {t.state_text() for t in infos} >= {"failed: loss became NaN in epoch 1; lower the learning rate"}


@pytest.mark.slow
def test_hyperband_promotes_trials_with_their_weights(flower_root, tmp_path):
    space = tiny_space(tmp_path, epochs=2, steps=2).read_text()
    space = space.replace("method: random", "method: hyperband\nhyperband: {factor: 2, iterations: 1}")
    (tmp_path / "hb.yaml").write_text(space)
    project = tmp_path / "proj"
    r = run_cli("search", "--plain", "--space", str(tmp_path / "hb.yaml"), "--data", str(flower_root),
                "--project", str(project))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"continuing trial \d+'s weights after epoch 1", r.stdout), r.stdout
    assert set(trial_statuses(project).values()) == {"COMPLETED"}
