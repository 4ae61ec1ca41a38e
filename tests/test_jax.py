"""The tool under Keras' JAX backend (issue 21): real searches in real
subprocesses (Keras fixes its backend per process), kept few and small
(32 px, 2 steps): each new JAX process compiles its train step, which the
session's shared JAX compilation cache then serves to the later ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli, tiny_space

pytest.importorskip("jax")
pytestmark = pytest.mark.jax


def python(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=e,
                          cwd=REPO)


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "tuner", "search", "--plain", *args], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_epoch(proc: subprocess.Popen, project: Path, trial: str = "0", epoch: int = 1) -> None:
    from test_search import wait_for_epoch

    try:
        wait_for_epoch(project, trial, epoch, proc, timeout=540)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()


#: every JAX test's space: one graph (dropout 0, as the 4-device comparison
#: needs), so the session's compilation cache compiles its 1-device step once
NO_DROPOUT = "  dropout: {value: 0.0}\n"


def pointer(project: Path, trial: str = "0") -> dict:
    return json.loads((project / f"trial_{trial}" / "resume.json").read_text())


def test_engine_and_model_import_no_tensorflow_under_jax(tmp_path):
    """The metrics (their reset failed under JAX: zeros_like of a Keras
    variable), a model build, its checkpoint written and restored, the
    strategy and `linear_decay`'s rates: all under JAX, and TensorFlow never
    imported."""
    code = f"""
import sys
import numpy as np
import keras
from keras import ops
import tuner.engine.tuner, tuner.engine.refit, tuner.model.hypermodel
from tuner.model.metrics import MacroScore
from tuner.model.strategy import detect
from tuner.model.hypermodel import build_model
from tuner.engine.checkpoint import TrialCheckpoint
assert keras.backend.backend() == "jax"
m = MacroScore("f1", 3)
m.update_state(np.eye(3, dtype="float32"), np.eye(3, dtype="float32"))
assert abs(float(m.result()) - 1.0) < 1e-6
m.reset_state()
assert float(ops.sum(m.tp)) == 0.0
info = detect("auto")
assert info.strategy is None and info.replicas == 1, info
v = dict(backbone="smallcnn", weights="none", image_size=32, optimizer="adam", learning_rate=1e-3)
model = build_model(v, num_classes=5)
ck = TrialCheckpoint({str(tmp_path)!r})
ck.save(model, 1, {{"rows": [], "trial_id": "0"}})
ck.wait()
fresh = build_model(v, num_classes=5)
assert ck.restore(fresh)["epoch"] == 1
a, b = model.get_weights(), fresh.get_weights()
assert all(np.array_equal(x, y) for x, y in zip(a, b))
from tuner.model.schedules import LinearDecay
tiny = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
tiny.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
seen = []
probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
    float(ops.convert_to_numpy(tiny.optimizer.learning_rate))))
tiny.fit(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), epochs=4, verbose=0,
         callbacks=[LinearDecay(0.1, 4), probe])
assert np.allclose(seen, [0.1, 0.075, 0.05, 0.025]), seen
print("tensorflow" in sys.modules)
"""
    r = python(code, env={"KERAS_BACKEND": "jax"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout


def test_backend_choice(monkeypatch):
    from tuner import backend
    from tuner.errors import TunerError

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.resolve("auto") == ("jax", "from KERAS_BACKEND")
    assert backend.resolve("tensorflow")[0] == "tensorflow"  # the flag wins over the variable
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(TunerError, match="KERAS_BACKEND=torch"):
        backend.resolve(None)
    monkeypatch.delenv("KERAS_BACKEND")
    assert backend.resolve("auto")[0] == backend.CPU_FASTER  # this machine: no TPU, no GPU
    with pytest.raises(TunerError, match="unknown backend"):
        backend.resolve("theano")


def test_bad_backend_is_one_line(tmp_path):
    r = run_cli("search", "--space", str(tiny_space(tmp_path)), "--data", str(tmp_path), "--backend", "torch")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("search", "--space", str(tiny_space(tmp_path)), "--data", str(tmp_path),
                env={"KERAS_BACKEND": "torch"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: KERAS_BACKEND=torch is not a backend flower-tuner runs on; set it to tensorflow or jax, or unset it"]


def test_a_trial_killed_under_each_backend_resumes_under_the_other_and_exports(flower_root, tmp_path, jax_cache):
    """The weight files do not depend on the backend. A TensorFlow trial
    killed by SIGKILL after epoch 1 continues under JAX, killed again after
    epoch 2 it ends under TensorFlow: each epoch trains once, each run says
    its backend, status shows the last. Then `best --export --refit --tta 2`
    under JAX writes model.keras (the SavedModel as a path or one line), and
    that model.keras predicts under TensorFlow. (One chain for both
    directions: each process here traces or compiles the model anew.)"""
    space = tiny_space(tmp_path, epochs=3, steps=2, extra=NO_DROPOUT)
    project = tmp_path / "proj"
    args = ("--space", str(space), "--data", str(flower_root), "--project", str(project), "--max-trials", "1")
    proc = start(*args, "--backend", "tensorflow")
    kill_after_epoch(proc, project)
    assert pointer(project)["epoch"] == 1 and pointer(project)["backend"] == "tensorflow"
    proc = start(*args, "--backend", "jax", env=jax_cache)
    kill_after_epoch(proc, project, epoch=2)
    assert pointer(project)["epoch"] == 2 and pointer(project)["backend"] == "jax"
    r = run_cli("search", "--plain", *args, "--backend", "tensorflow")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "backend: tensorflow" in r.stdout and "resuming after epoch 2" in r.stdout, r.stdout
    trained = [ln.split(":")[0].strip() for ln in r.stdout.splitlines() if ln.strip().startswith("epoch ")]
    assert trained == ["epoch 3/3"], r.stdout
    assert pointer(project)["done"] and [row["epoch"] for row in pointer(project)["rows"]] == [1, 2, 3]
    s = run_cli("status", "--project", str(project))
    assert s.returncode == 0 and "backend: tensorflow" in s.stdout, s.stdout + s.stderr
    out = tmp_path / "export"
    e = run_cli("best", "--project", str(project), "--export", str(out), "--refit", "--refit-epochs", "1",
                "--tta", "2", "--backend", "jax", env=jax_cache)
    assert e.returncode == 0, e.stdout + e.stderr
    assert "Traceback" not in e.stderr
    saved = [ln for ln in e.stdout.splitlines() if ln.startswith("SavedModel:")]
    assert len(saved) == 1, e.stdout
    assert (out / "model.keras").exists() and (out / "submission.csv").exists() and (out / "metrics.json").exists()
    tta = json.loads((out / "metrics.json").read_text())["tta"]  # decided under JAX on both halves
    assert tta["views"] == 2 and len(tta["halves"]) == 2, tta
    p = run_cli("predict", "--model", str(out / "model.keras"), "--data", str(flower_root), "--out",
                str(tmp_path / "sub.csv"), "--backend", "tensorflow")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "sub.csv").read_text().splitlines()[0] == "id,label"
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 31


FOUR = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
#: both runs read the same batches (tf.data's training reads are unordered by default)
SAME_BATCHES = {"TUNER_DETERMINISTIC": "1"}


def test_four_devices_match_one_device(flower_root, tmp_path, jax_cache):
    """A search trains data-parallel over 4 (fake CPU) devices, global batch
    8 = 2 x 4, and its first epoch's metrics match a 1-device run at batch 8."""
    rows = {}
    for name, batch, strategy, env in (("one", 8, "cpu", {}), ("four", 2, "mirrored", FOUR)):
        space = tiny_space(tmp_path, epochs=1, steps=2, extra=NO_DROPOUT, name=f"{name}.yaml")
        # fixed values: Keras Tuner's random draws are not reproduced exactly between processes
        space.write_text(space.read_text().replace("batch_per_replica: 8", f"batch_per_replica: {batch}")
                         .replace("{min: 1.0e-3, max: 3.0e-3, distribution: log_uniform_values}", "{value: 2.0e-3}"))
        project = tmp_path / name
        r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project",
                    str(project), "--max-trials", "1", "--backend", "jax", "--strategy", strategy,
                    env={**jax_cache, **SAME_BATCHES, **env})
        assert r.returncode == 0, r.stdout + r.stderr
        if name == "four":
            assert "JAX data parallel on mirrored, 4 replica(s)" in r.stdout, r.stdout
        assert "learning_rate: {value: 2.0e-3}" in space.read_text()
        rows[name] = pointer(project)["rows"][0]
        assert pointer(project)["replicas"] == (4 if name == "four" else 1)
    # float tolerance: the all-reduce sums the gradients in another order, and
    # Adam's first steps amplify that (0.2% on step 2 here); an argmax flip
    # moves val_accuracy and val_f1 by about one image in 104
    for key in ("loss", "val_loss"):
        assert rows["four"][key] == pytest.approx(rows["one"][key], rel=1e-2), (key, rows)
    for key in ("val_accuracy", "val_f1"):
        assert rows["four"][key] == pytest.approx(rows["one"][key], abs=0.011), (key, rows)


def test_early_termination_pauses_and_continues_a_trial_under_jax(ten_classes, tmp_path, jax_cache):
    """Hyperband at epoch 2, eta 3, under JAX: trials 0 and 1 pause at the
    rung, trial 2 arrives and the rung is decided; trial 1, the only one whose
    learning rate learns, continues from its epoch checkpoint (optimizer state
    and all) to epoch 3, the other two stop; each epoch is in history.csv once.
    A learning rate of 1e-9 does not stop BatchNorm's moving statistics from
    adapting, and at seed 1 that alone took trial 2 to val_f1 0.30 by epoch
    2, and 0.11 at epoch 1, where trial 1 scored 0.07-0.42 in 8 runs (CI
    once saw trial 2 win at epoch 1). At seed 2 both 1e-9 trials stay at
    0.00-0.025 to epoch 2, trial 1 at 0.24-0.74 (2 runs). (With three learning
    rates that learn alike, the rung's winner was chance, and when it was
    trial 2, the last to arrive, it went on without a pause.)"""
    from test_faults import history_epochs

    space = tiny_space(tmp_path, epochs=3, steps=8, extra=NO_DROPOUT + "early_terminate: {type: hyperband, "
                                                                      "min_iter: 2, eta: 3}\n"
                                                                      "start_with:\n  - {learning_rate: 1.0e-9}\n"
                                                                      "  - {learning_rate: 3.0e-3}\n"
                                                                      "  - {learning_rate: 1.0e-9}\n")
    # and two steps per call into the device (Keras' multi-step train function under JAX)
    space.write_text(space.read_text().replace("run_cap: 2", "run_cap: 3").replace("seed: 1", "seed: 2")
                     .replace("min: 1.0e-3, max: 3.0e-3", "min: 1.0e-9, max: 3.0e-3")
                     .replace("jit_compile: false}", "jit_compile: false, steps_per_execution: 2}"))
    project = tmp_path / "proj"
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(ten_classes), "--project", str(project),
                "--backend", "jax", env=jax_cache)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "backend: jax" in r.stdout, r.stdout
    states = {row["trial"]: row["state"] for row in json.loads(
        run_cli("status", "--project", str(project), "--format", "json").stdout)}
    winner = [t for t, s in states.items() if not s.startswith("stopped")]
    assert winner == ["1"] and sorted(states) == ["0", "1", "2"], (states, r.stdout)
    assert "trial 1 paused" in r.stdout and "trial 1 goes on from rung 1" in r.stdout, r.stdout
    assert "steps_per_execution: 2" in r.stdout and pointer(project, "1")["steps_per_execution"] == 2
    for t in states:
        assert history_epochs(project / f"trial_{t}") == ([1, 2, 3] if t == "1" else [1, 2]), (t, r.stdout)
    assert [s for t, s in states.items() if t != "1"] == ["stopped at epoch 2 (rung 1)"] * 2, states


#: a process where TensorFlow is not installed, as far as imports can tell
#: (importlib.util.find_spec answers None and `import tensorflow` fails)
WITHOUT_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None; "


def test_a_chief_under_jax_serves_without_tensorflow(flower_root, tmp_path, jax_cache, monkeypatch):
    """The chief trains nothing, so under JAX it needs no TensorFlow (it
    imported it for a strategy it never entered): a chief in a process
    without TensorFlow serves one JAX worker's trial to its end."""
    from test_distributed import free_port, launch
    from test_search import trial_statuses

    space = tiny_space(tmp_path, epochs=1, steps=2, extra=NO_DROPOUT)
    project, port = tmp_path / "shared-project", free_port()
    common = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--backend", "jax"]
    chief_args = ["search", "--plain", *common, "--chief", f"127.0.0.1:{port}", "--max-trials", "1"]
    env = {**os.environ, **jax_cache, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "chief.log", "w") as out:
        chief = subprocess.Popen([sys.executable, "-c", WITHOUT_TENSORFLOW + "from tuner.cli import main; "
                                  f"code = main({chief_args!r}); "
                                  "print('tensorflow imported:', sys.modules.get('tensorflow') is not None); "
                                  "sys.exit(code)"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = None
    for key, value in jax_cache.items():  # launch() passes os.environ on
        monkeypatch.setenv(key, value)
    try:
        worker = launch([*common, "--connect", f"127.0.0.1:{port}", "--worker-id", "w1"], tmp_path / "w1.log")
        assert chief.wait(timeout=540) == 0, (tmp_path / "chief.log").read_text()
        assert worker.wait(timeout=60) == 0, (tmp_path / "w1.log").read_text()
    finally:
        for p in (chief, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert "tensorflow imported: False" in (tmp_path / "chief.log").read_text()
    assert "backend: jax" in (tmp_path / "w1.log").read_text()
    assert trial_statuses(project) == {"0": "COMPLETED"}


@pytest.mark.xdist_group("finished")
def test_an_ensemble_exported_and_predicted_under_jax(finished_project, flower_root, tmp_path, jax_cache):
    """The suite's 2-trial search (trained under TensorFlow) exported under
    JAX with `--ensemble 2`: the members reload, the cross-fitted decision is
    taken and recorded, and `predict` under JAX writes a row for every test id
    from what was shipped (an ensemble or the best single model)."""
    out = tmp_path / "ens"
    r = run_cli("best", "--project", str(finished_project), "--export", str(out), "--ensemble", "2",
                "--backend", "jax", env=jax_cache)
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "jax", metrics
    info = metrics["ensemble"]
    assert sorted(info["candidates"]) == ["0", "1"] and "gain" in info["cross_fitted"], info  # both reloaded (best first)
    assert info["kept"] == (info["cross_fitted"]["gain"] > 0 and len(info["members"]) > 1), info
    sub = tmp_path / "sub.csv"
    p = run_cli("predict", "--model", str(out / "model.keras"), "--data", str(flower_root), "--out", str(sub),
                "--backend", "jax", env=jax_cache)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = sub.read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 31, lines[:3]
