"""bench/peers.py, the comparison with the tools people would use instead:
its run order, its scoring, its table and goal line, and its flag checks.
The arms themselves train for minutes; the lead's real run is their test
(see BENCHMARKS.md, "Peers")."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import peers  # noqa: E402  (bench/peers.py)

PEERS = REPO / "bench" / "peers.py"


def test_every_seed_runs_every_arm_once_in_a_rotated_order():
    arms = ["a", "b", "c"]
    order = peers.rounds(arms, [1, 2, 3])
    assert [a for s, a in order if s == 1] == ["a", "b", "c"]
    assert [a for s, a in order if s == 2] == ["b", "c", "a"]
    assert [a for s, a in order if s == 3] == ["c", "a", "b"]
    # one run after another, seed by seed: no seed starts before the last one's arms are done
    assert [s for s, _ in order] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # with as many seeds as arms, every arm runs once in every position
    for pos in range(3):
        assert sorted(order[pos::3][i][1] for i in range(3)) == arms


def test_macro_f1_matches_by_id_not_by_order(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nx,0\ny,1\nz,1\nw,2\n")
    truth = peers.read_labels(str(labels))
    # the same predictions in another order score the same
    predicted = {"w": 2, "z": 1, "y": 0, "x": 0}
    got = peers.macro_f1(predicted, truth, num_classes=4)
    # class 0: P 1/2 R 1 -> 2/3; class 1: P 1 R 1/2 -> 2/3; class 2: 1; class 3: absent -> 0
    assert got["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    assert got["accuracy"] == pytest.approx(0.75) and got["n"] == 4
    with pytest.raises(ValueError, match="1 of 4 test ids have no prediction"):
        peers.macro_f1({"x": 0, "y": 1, "z": 1}, truth, num_classes=4)


def runs(arm: str, scores: list[float | None], wall: float = 100.0) -> list[dict]:
    return [{"arm": arm, "seed": k + 1, "f1": f, "wall": wall} for k, f in enumerate(scores)]


def test_the_table_gives_mean_sd_each_seed_and_our_ratio_and_the_goal():
    results = runs("notebook", [0.40, 0.50, 0.60]) + runs("flower-tuner", [0.55, 0.50, 0.60], wall=110.0)
    summary = peers.summarize(results, ["notebook", "flower-tuner"])
    assert summary["notebook"]["mean"] == pytest.approx(0.5) and summary["notebook"]["sd"] == pytest.approx(0.1)
    assert peers.ratios(summary)["notebook"] == pytest.approx(0.55 / 0.5)
    text = peers.report(summary, 180.0, [1, 2, 3])
    assert "0.5000 ± 0.1000" in text and "0.4000, 0.5000, 0.6000" in text and "1.100" in text
    assert "110 s (max 110)" in text and "budget 180 s" in text
    assert text.splitlines()[-1].endswith("met)")
    # one arm's better mean is a miss
    summary = peers.summarize(results + runs("optuna", [0.7, 0.7, 0.7]), ["notebook", "optuna", "flower-tuner"])
    assert not peers.goal_met(summary) and peers.report(summary, 180.0, [1, 2, 3]).endswith("missed)")
    # a run of the other arms alone (--arms) has no goal to meet or miss
    alone = peers.summarize(runs("notebook", [0.4]), ["notebook"])
    assert peers.report(alone, 180.0, [1]).endswith("not measured (not among the arms))")


def test_a_failed_run_of_ours_misses_the_goal_and_a_failed_peer_is_shown():
    results = runs("notebook", [0.40, None]) + runs("flower-tuner", [0.55, 0.60])
    summary = peers.summarize(results, ["notebook", "flower-tuner"])
    assert summary["notebook"]["failed"] == 1 and summary["notebook"]["mean"] == pytest.approx(0.40)
    assert peers.goal_met(summary)
    assert "(1 failed)" in peers.report(summary, 60.0, [1, 2])
    summary = peers.summarize(runs("notebook", [0.40, 0.4]) + runs("flower-tuner", [0.55, None]),
                              ["notebook", "flower-tuner"])
    assert not peers.goal_met(summary)


@pytest.mark.parametrize("flags, said", [
    (["--budget", "soon"], "--budget 'soon' is not a duration"),
    (["--seeds", "1,x"], "--seeds '1,x': give integers"),
    (["--arms", "notebook,sklearn"], "--arms 'notebook,sklearn': choose from"),
    (["--data", "{tmp}"], "no test labels at {tmp}/test_labels.csv: pass --labels CSV"),
])
def test_bad_flags_are_one_line_and_exit_code_2(tmp_path, flags, said):
    flags = [f.format(tmp=tmp_path) for f in flags]
    r = subprocess.run([sys.executable, str(PEERS), *flags, "--out", str(tmp_path / "o.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and said.format(tmp=tmp_path) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.json").exists()


def test_the_driver_imports_no_tensorflow():
    """The driver only spawns and tabulates (the arms import TensorFlow, each in its own process)."""
    code = f"import sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import peers; print('tensorflow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.stdout.strip() == "False", r.stdout + r.stderr


def test_the_notebook_takes_the_study_configuration_inside_the_demo_space():
    pytest.importorskip("keras")
    import peer_arms  # noqa: F401  (imports Keras: the arms' module)
    from tuner.spaces import load_space

    space = load_space("demo")
    v = peer_arms.notebook_values(space)
    assert (v["learning_rate"], v["callback"], v["optimizer"], v["backbone"]) == (
        1e-3, "reduce_lr_on_plateau", "nadam", "resnet50v2")
    # the study's patience 10 and factor 0.1 are outside the demo space: its nearest values
    assert (v["plateau_patience"], v["plateau_factor"], v["flip_left_right"]) == (5, 0.2, True)
    assert v["label_smoothing"] == 0.1 and v["image_size"] == 64  # fixed values win
    assert Counter(type(v[k]).__name__ for k in space.varying)["str"] == 1


def test_optuna_integrations_pruning_callback_prunes_a_keras3_fit():
    """The Optuna arm relies on optuna-integration's KerasPruningCallback
    (written for tf.keras) under Keras 3: it must read val metrics from
    Keras 3's logs and its TrialPruned must end fit and the trial."""
    optuna = pytest.importorskip("optuna")
    integration = pytest.importorskip("optuna_integration")
    import keras
    import numpy as np

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    epochs_run = []

    def objective(trial):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        h = model.fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=[integration.KerasPruningCallback(trial, "val_accuracy")])
        epochs_run.append(len(h.history["loss"]))
        return h.history["val_accuracy"][-1]

    # a floor no model reaches: the first report prunes
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED and list(t.intermediate_values) == [0]
    assert epochs_run == []  # fit did not go on to its 5 epochs


def test_an_arms_models_are_removed_after_scoring_and_its_logs_kept(tmp_path):
    for name in ("log.txt", "score.txt", "arm.json", "final.keras", "best.weights.h5"):
        (tmp_path / name).write_text("x")
    (tmp_path / "project" / "trial_00").mkdir(parents=True)
    peers.prune(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm.json", "log.txt", "score.txt"]


def test_the_optuna_arm_without_optuna_integration_is_one_line_at_the_start(tmp_path):
    """It failed when its turn came (5 s into a run of fifteen), its seed lost."""
    code = ("import runpy, sys; sys.modules['optuna_integration'] = None; "
            f"sys.argv = ['peers.py', '--arms', 'notebook,optuna', '--out', {str(tmp_path / 'o.json')!r}]; "
            f"runpy.run_path({str(PEERS)!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "optuna arm needs optuna-integration" in r.stderr, r.stderr
    assert not (tmp_path / "o.json").exists()


def test_the_notebook_linear_horizon_is_the_epoch_the_deadline_falls_in():
    """notebook-linear (not an issue-20 arm) decays to the epoch in which
    its deadline falls, timed from its epochs after the first (the trace)."""
    pytest.importorskip("keras")
    import time

    import peer_arms
    from tuner.model.schedules import LinearDecay

    decay = LinearDecay(1e-3, 100)
    horizon = peer_arms.BudgetHorizon(time.monotonic() + 110, [decay])
    horizon.on_train_begin()
    assert decay.last_epoch == horizon.last_epoch and horizon.last_epoch(1) is None
    now = time.monotonic()
    horizon.begins = [now - 190, now - 100, now - 50]  # epochs of 90, 50 and 50 s: 110 s hold 2 and a part
    assert decay.horizon(3) == 6
