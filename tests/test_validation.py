"""Validation that costs little (`train.validate_every`): which epochs
validate, what the oracle is told of the others, a real search with a kill
between validations, and the settings' one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras_tuner as kt
import pytest

from conftest import REPO, TINY_SPACE, run_cli, write_space
from test_faults import ENV, FAULTS, history_epochs, retrained_after_save, snapshot, trained_epochs
from tuner.engine import validation
from tuner.engine.rungs import EarlyTerminate
from tuner.engine.tuner import TUNERS


def test_every_k_epochs_with_the_rungs_and_the_last():
    assert validation.validation_epochs(10, 4, [3]) == [3, 4, 8, 10]
    assert validation.validation_epochs(6, 1, []) == [1, 2, 3, 4, 5, 6]
    assert validation.validation_epochs(5, 9, []) == [5]  # the last epoch always
    # a rung beyond the run asked for (Keras Tuner's Hyperband's short brackets) is not validated
    assert validation.validation_epochs(4, 2, [2, 6]) == [2, 4]


def test_auto_keeps_validation_within_a_fifth_of_a_full_trial():
    # `default`: 90 epochs of 10 x 16 images, the whole val split (3,712)
    k = validation.auto_every(90, [], 3712, 160)
    assert validation.share(90, k, [], 3712, 160) <= 0.2 < validation.share(90, 1, [], 3712, 160)
    assert all(validation.share(90, j, [], 3712, 160) > 0.2 for j in range(1, k))  # the smallest such k
    # a full pass over train each epoch (`kaggle-tpu`): every epoch
    assert validation.auto_every(20, [], 3712, 12753) == 1
    # rungs count: the validations they force are in the share
    k = validation.auto_every(40, [2, 6, 18], 371, 96)
    assert validation.share(40, k, [2, 6, 18], 371, 96) <= 0.2
    assert {2, 6, 18, 40} <= set(validation.validation_epochs(40, k, [2, 6, 18]))
    # when even the forced ones exceed it: only those
    assert validation.auto_every(3, [], 10_000, 10) == 3


def _oracle(tmp_path):
    oracle = TUNERS["random"][1](objective=kt.Objective("val_f1", "max"), max_trials=3, seed=1,
                                 early_terminate=EarlyTerminate("hyperband", 2, 2), epochs=4)
    hp = kt.HyperParameters()
    hp.Float("learning_rate", 1e-4, 1e-2)
    oracle.update_space(hp)
    oracle._set_project_dir(str(tmp_path), "proj")
    return oracle


def test_an_epoch_without_validation_counts_its_time_and_is_no_score_or_rung(tmp_path):
    oracle = _oracle(tmp_path)
    tid = oracle.create_trial("t0").trial_id
    train_only = {"loss": 2.0, "accuracy": 0.1, "f1": 0.1, "tuner/epoch_seconds": 9.0, "tuner/first_epoch": 1.0}
    assert oracle.update_trial(tid, train_only, step=1).status == "RUNNING"
    trial = oracle.trials[tid]
    assert not trial.metrics.exists("val_f1") and tid not in oracle.early.curves
    assert oracle.costs.first  # its seconds still count for the budget
    reply = oracle.update_trial(tid, {"loss": 1.5, "val_f1": 0.3, "tuner/epoch_seconds": 5.0,
                                      "tuner/first_epoch": 0.0}, step=2)
    assert reply.status == "IDLE"  # the rung at epoch 2 decides on the validated epoch
    assert oracle.early.curves[tid] == {2: 0.3}
    assert [o.step for o in trial.metrics.get_history("val_f1")] == [2]


BAD = [
    ("validate_every: 0", "train.validate_every: 0 is too small; expected auto or an int >= 1"),
    ("validate_every: often", "train.validate_every: 'often' is a string; expected auto or an int >= 1"),
    ("validate_every: 2.5", "train.validate_every: 2.5 is a float; expected auto or an int >= 1"),
    ("validate_evry: 2", "train.validate_evry: unknown key (did you mean 'validate_every'?)"),
]


@pytest.mark.parametrize("setting,message", BAD)
def test_a_bad_validate_every_is_one_line(setting, message):
    from tuner.errors import SpaceError
    from tuner.spaces import parse_space

    with pytest.raises(SpaceError) as e:
        parse_space(f"method: random\ntrain: {{epochs: 4, {setting}}}\nparameters: {{}}\n")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_bad_validate_every_ends_the_cli_in_one_line_with_code_2(tmp_path):
    space = write_space(tmp_path / "bad.yaml", "method: random\ntrain: {epochs: 4, validate_every: 0}\n")
    r = run_cli("search", "--space", str(space), "--data", str(tmp_path), "--project", str(tmp_path / "p"))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and BAD[0][1] in lines[0] and "Traceback" not in r.stderr, r.stderr


# Rung at epoch 3 (eta 2: of two trials the better goes on); validation every
# 4 epochs: epochs 3 (the rung), 4 and 6 (the last) validate, 1, 2 and 5 not.
# ReduceLROnPlateau with patience 1 halves the rate after a validation that
# does not improve: patience counted in validations.
VAL_SPACE = """\
name: val
method: random
run_cap: 2
seed: 3
train: {epochs: 6, steps_per_epoch: 3, batch_per_replica: 8, jit_compile: false, validate_every: 4}
early_terminate: {type: hyperband, min_iter: 3, eta: 2}
parameters:
  backbone: {value: smallcnn}
  weights: {value: none}
  image_size: {value: 32}
  optimizer: {value: adam}
  learning_rate: {values: [3.0e-3, 1.0e-3]}
  callback: {value: reduce_lr_on_plateau}
  plateau_patience: {value: 1}
  plateau_factor: {value: 0.5}
"""
VALIDATED = {3, 4, 6}


def _history(trial_dir: Path) -> list[dict[str, str]]:
    with open(trial_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_a_search_validating_every_k_epochs_killed_between_validations_resumes_exactly(flower_root, tmp_path):
    space = write_space(tmp_path / "val.yaml", VAL_SPACE)
    project = tmp_path / "proj"
    args = ["search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project)]
    # saves: trial 0's epochs 1-3 (paused at the rung), trial 1's 1-3, then
    # the one that goes on: 4, 5 (not validated), 6 (the 9th save: killed as it
    # returns, before its background write, so epoch 5 is the last on disk)
    killed = subprocess.run([sys.executable, str(FAULTS), "--kill-at", "save", "--nth", "9", "--", *args],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert "[faults] SIGKILL at save" in killed.stdout, killed.stdout + killed.stderr
    assert "validation every 4 epochs" in killed.stdout, killed.stdout
    decisions = json.loads((project / "oracle.json").read_text())["flower_tuner"]["early_terminate"]["decisions"]
    going = next(t for t, d in decisions.items() if d["state"] == "promoted")
    stopped = next(t for t, d in decisions.items() if d["state"] == "stopped")
    assert history_epochs(project / f"trial_{going}") == [1, 2, 3, 4, 5]
    before = snapshot(project)
    r = run_cli("search", *args[1:])
    assert r.returncode == 0, r.stdout + r.stderr
    assert not retrained_after_save(before, r.stdout), r.stdout
    assert [e for t, e in trained_epochs(r.stdout)] == [6], r.stdout  # only what the kill left
    for err in (killed.stderr, r.stderr):  # Keras' callbacks do not warn at each epoch without val_loss
        assert "which is not available" not in err, err

    for tid, epochs in ((going, [1, 2, 3, 4, 5, 6]), (stopped, [1, 2, 3])):
        rows = _history(project / f"trial_{tid}")
        assert [int(float(r["epoch"])) for r in rows] == epochs  # each epoch once
        for row in rows:  # val metrics on validated epochs only; training metrics on every one
            assert bool(row["val_f1"]) == (int(float(row["epoch"])) in VALIDATED), rows
            assert row["loss"], rows
        # the oracle was told the validated epochs' scores only
        t = json.loads((project / f"trial_{tid}" / "trial.json").read_text())
        steps = sorted(o["step"] for o in t["metrics"]["metrics"]["val_f1"]["observations"])
        assert steps == [e for e in epochs if e in VALIDATED], t["metrics"]
    # the rung decided on both trials' epoch-3 scores (a validated epoch)
    ours = json.loads((project / "oracle.json").read_text())["flower_tuner"]
    state = ours["early_terminate"]
    # and the budget was told every epoch's time, validated or not: by the rung
    # decision (oracle.json saved) both trials' epochs 1-3
    assert sum(len(v) for table in ours["costs"].values() for v in table.values()) >= 6, ours["costs"]
    assert set(state["records"]["0"]) == {going, stopped}
    # patience in validations: the rate moves only after a validated epoch
    lrs = [float(r["learning_rate"]) for r in _history(project / f"trial_{going}")]
    # (epoch 3's, the first validation, is always an improvement)
    assert lrs[0] == lrs[1] == lrs[2] and lrs[4] == lrs[3], lrs  # epochs 1, 2 and 5 change nothing
    # `best` ranks whole-split scores of validated epochs only
    top = json.loads(run_cli("best", "--project", str(project), "--format", "json").stdout)
    for entry in top:
        assert entry["best_epoch"] in VALIDATED, top


def test_under_min_iter_auto_the_planned_rungs_validate_and_dropped_ones_need_not(tmp_path):
    """`min_iter: auto` keeps its rungs or drops them for the budget (it
    never moves them), so the planned rungs hold every epoch a decision can
    fall on: a worker, which does not know the chief's rungs, validates
    those."""
    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.spaces import load_space

    text = TINY_SPACE.format(epochs=20, steps=2, backbone="smallcnn", extra="").replace(
        "jit_compile: false}", "jit_compile: false, validate_every: 10}")
    path = write_space(tmp_path / "auto.yaml", text + "early_terminate: {type: hyperband, min_iter: auto, eta: 2}\n")
    space = load_space(str(path))
    hm = FlowerHyperModel(space, data_factory=None, strategy_info=None)
    assert hm.rungs() == [8, 16]  # max(2, ceil(0.4 x 20)), x eta
    v = space.defaults()
    assert hm.validation_epochs(v, 20) == [8, 10, 16, 20]  # the planned rungs, every 10th, the last
    assert hm.validation_epochs(v, 20, rungs=[]) == [10, 20]  # the budget dropped them: no exploration


@pytest.mark.parametrize("name", ["default", "cpu", "kaggle-tpu", "demo"])
def test_each_shipped_space_spends_at_most_a_fifth_of_its_search_validating(name):
    """Issue 20's goal, by the estimate the search prints at its start: on
    the real data's counts (the demo's for `demo`), with the rungs' stops."""
    from tuner.data.classes import TRAIN_CLASS_COUNTS
    from tuner.demo.splits import REAL_VAL
    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.spaces import load_space

    space = load_space(name)
    hm = FlowerHyperModel(space, data_factory=None, strategy_info=None)
    v = space.defaults()
    train, val = (1291, 371) if name == "demo" else (sum(TRAIN_CLASS_COUNTS), REAL_VAL)
    steps = space.train.steps_per_epoch
    per_epoch = steps * space.train.batch_per_replica if steps else train
    cost = hm.validation_cost(v)
    et = space.early_terminate
    every = validation.auto_every(space.train.epochs, hm.rungs(), val, per_epoch, cost=cost)
    assert et is not None and et.type == "hyperband"  # every shipped space stops its weak trials early
    got = validation.search_share(space.train.epochs, every, hm.rungs(), et.eta, val, per_epoch, cost)
    assert got <= 0.2, f"{name}: {got:.0%}"


def test_a_trial_stopped_at_an_early_rung_makes_the_search_validate_more():
    # 18 epochs of 800 images, 3,712 val images at 1/3: one rung at 6 against one at 3
    assert validation.search_share(18, 18, [6], 3, 3712, 800) <= 0.2 < validation.search_share(18, 18, [3, 9], 3, 3712, 800)
    assert validation.search_share(10, 1, [], 3, 100, 100) == pytest.approx(validation.share(10, 1, [], 100, 100))
