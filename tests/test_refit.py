"""best --export --refit: the exported choice trained again on train + val,
checkpointed like a trial, continued after --max-time and after a SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from tuner.engine.checkpoint import history_csv, read_history

pytestmark = pytest.mark.xdist_group("finished")


def test_the_refit_starts_each_epoch_at_the_learning_rate_the_search_had(tmp_path):
    from tuner.engine.refit import plan
    from tuner.results.trials import TrialInfo

    trial_dir = tmp_path / "trial_3"
    trial_dir.mkdir()
    # ReduceLROnPlateau cut the rate at the end of epochs 2 and 3: a row's
    # rate is the one its epoch's callbacks left for the next epoch.
    lrs = [1e-3, 5e-4, 2.5e-4, 2.5e-4]
    (trial_dir / "history.csv").write_text(history_csv(
        [{"epoch": i + 1, "loss": 1.0, "val_f1": 0.1 * i, "learning_rate": lr} for i, lr in enumerate(lrs)]))
    trial = TrialInfo("3", "completed", {}, str(trial_dir), best_epoch=3)
    values = {"learning_rate": 1e-3, "callback": "reduce_lr_on_plateau"}

    at_best = plan(str(tmp_path), trial, values)
    assert at_best.epochs == 3 and at_best.start_lrs == (1e-3, 1e-3, 5e-4)
    longer = plan(str(tmp_path), trial, values, epochs=6)
    assert longer.start_lrs == (1e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-4, 2.5e-4)
    assert longer.folder != at_best.folder  # another epoch count is a refit of its own
    # the trial's own schedule needs no validation data: it runs as it did
    assert plan(str(tmp_path), trial, {**values, "callback": "lr_schedule"}).start_lrs == ()


def _pointer(folder: Path) -> dict:
    try:
        return json.loads((folder / "resume.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_refit_killed_after_its_first_epoch_continues_at_epoch_2_and_ships(finished_project, tmp_path):
    project, out = finished_project, tmp_path / "out"
    cmd = ["best", "--project", str(project), "--export", str(out), "--refit", "--refit-epochs", "3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner", *cmd], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    folder = None
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            found = list((project / "refit").glob("*-3ep")) if (project / "refit").exists() else []
            if found and _pointer(found[0]).get("epoch"):
                folder = found[0]
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # a real SIGKILL, once epoch 1 is saved
        log = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert folder is not None, log
    killed_at = _pointer(folder)["epoch"]
    assert killed_at < 3 and not _pointer(folder).get("done") and not out.exists(), log

    last = run_cli(*cmd)
    assert last.returncode == 0, last.stdout + last.stderr
    assert f"continuing after epoch {killed_at}" in last.stdout
    with open(folder / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]  # each epoch once
    assert _pointer(folder).get("done") and not (folder / "resume").exists()

    with open(out / "submission.csv") as f:
        ids = [r["id"] for r in csv.DictReader(f)]
    assert len(ids) == 30 == len(set(ids))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["measured_model"] == "search_model.keras" and metrics["refit"]["scored"] is False
    assert list(metrics["refit"]["epochs"].values()) == [3]
    assert "not scored" in (out / "report.md").read_text()
    # what ships is the refit's weights, not the search's model
    import keras
    import numpy as np

    shipped, scored = keras.models.load_model(out / "model.keras"), keras.models.load_model(out / "search_model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert not np.allclose(shipped.predict(x, verbose=0), scored.predict(x, verbose=0))


def test_max_time_stops_a_refit_after_the_epoch_is_saved(tmp_path):
    import keras

    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.refit import RefitEpoch, RefitPlan
    from tuner.engine.stopper import Stopper

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    plan = RefitPlan("0", {}, 3, (1e-3,) * 3, str(tmp_path / "refit"))
    stopper = Stopper(1e-6)
    time.sleep(0.01)
    lines: list[str] = []
    cb = RefitEpoch(plan, TrialCheckpoint(plan.folder), [], lines.append, stopper)
    cb.set_model(model)
    cb.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.1})
    # fit ends at this epoch, and refit() raises Stopped with this once fit has returned
    assert model.stop_training and cb.stopped == "max-time reached: refit of trial 0 stopped after epoch 1 of 3"
    assert _pointer(tmp_path / "refit")["epoch"] == 1 and lines  # saved and shown before the stop
    cb.on_epoch_end(2, {"loss": 0.4, "accuracy": 0.2})  # the last epoch finishes: nothing left to stop
    cb.ckpt.flush()  # as refit() does when fit returns
    assert (tmp_path / "refit" / "model.weights.h5").exists()


def test_a_refit_on_data_without_val_labels_is_one_line(finished_project, flower_root, tmp_path):
    # (FlowerData refuses such a root for any export: the search's model is measured on val)
    root = tmp_path / "noval"
    for size_dir in (d for d in Path(flower_root).iterdir() if d.is_dir()):
        for split in ("train", "test"):
            shutil.copytree(size_dir / split, root / size_dir.name / split)
    r = run_cli("best", "--project", str(finished_project), "--export", str(tmp_path / "out"), "--refit",
                "--data", str(root))
    assert r.returncode == 2 and "no val records in" in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
        r.stdout + r.stderr
    assert not (tmp_path / "out" / "model.keras").exists()


def _uneven_root(root: Path) -> Path:
    """3 classes at 32 px, uneven: train 16/6/2, val 4/2/2 (32 images, 4 batches of 8)."""
    import numpy as np

    from conftest import make_images
    from tuner.data import records

    for split, counts in (("train", (16, 6, 2)), ("val", (4, 2, 2))):
        labels = np.repeat(np.arange(3), counts)
        jpegs = records.encode_jpeg(make_images(labels, 32, np.random.default_rng(len(labels))))
        records.write_split(str(root), 32, split, [(j, f"{split}{k}", int(y)) for k, (j, y) in
                                                   enumerate(zip(jpegs, labels))], num_files=1)
    return root


def test_a_balanced_trial_is_refitted_weighted(tmp_path):
    """A refit trains as the search did: `class_weight: balanced` weights each
    image by its class's balanced weight over train + val. At learning rate 0
    with a frozen backbone the model stays as built, and one pass over the 32
    images makes the epoch's loss the weighted mean of the per-image losses."""
    import keras
    import numpy as np

    from tuner.data.reader import FlowerData
    from tuner.engine.refit import RefitPlan, refit
    from tuner.model.hypermodel import build_model

    root = _uneven_root(tmp_path / "data")
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    for layer in source.layers:  # freshly built, its features vanish in inference mode: shift them off zero
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta + 0.1, mean, var])
    backbone = tmp_path / "backbone.weights.h5"
    source.save_weights(backbone)
    values = {"backbone": "mobilenetv2", "weights": str(backbone), "fine_tune": "frozen", "image_size": 32,
              "optimizer": "adam", "learning_rate": 0.0, "callback": "none", "class_weight": "balanced",
              "dropout": 0.0, "label_smoothing": 0.0}  # the loss is then the per-image losses' mean
    meta = {"space": {"seed": 1, "train": {"batch_per_replica": 8, "jit_compile": False, "cache": False}}}
    plan = RefitPlan("0", values, 1, (0.0,), str(tmp_path / "refit"))
    lines: list[str] = []
    weights = refit(plan, meta, str(root), log=lines.append, strategy="cpu")
    assert "1 epochs of 4 steps" in lines[0], lines
    rows = read_history(str(tmp_path / "refit"))
    assert len(rows) == 1, rows

    model = build_model(values, jit_compile=False, num_classes=3)
    model.load_weights(weights)
    data = FlowerData(str(root), 32, log=None)
    images, labels = zip(*[(x.numpy(), int(y)) for x, y in data.decoded(("train", "val"))])
    p = model.predict(np.stack(images).astype("float32"), verbose=0)
    per_image = -np.log(p[np.arange(32), labels])
    balanced = 32 / (3 * np.array([20, 8, 4]))  # n / (classes x count) over train + val
    weighted, plain = float(np.mean(balanced[list(labels)] * per_image)), float(per_image.mean())
    assert abs(weighted - plain) > 0.01  # the two readings are told apart
    assert float(rows[0]["loss"]) == pytest.approx(weighted, rel=1e-4)
    np.testing.assert_allclose(data.class_weights(("train", "val")), balanced, rtol=1e-6)
