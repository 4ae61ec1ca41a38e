"""`callback: linear_decay` (tuner.model.schedules): the learning rate falls
linearly to the trial's last epoch, which --max-time may bring forward."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import run_cli, tiny_space


def rates_by_epoch(decay, epochs: int) -> list[float]:
    """The rate each epoch of a real (tiny) Keras fit trained at."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(decay.learning_rate), loss="mse")
    seen: list[float] = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], epochs=epochs, verbose=0, callbacks=[decay, probe])
    return seen


def test_linear_decay_falls_to_the_trials_last_epoch():
    from tuner.model.schedules import LinearDecay

    assert rates_by_epoch(LinearDecay(0.1, 4), 4) == pytest.approx([0.1, 0.075, 0.05, 0.025])


def test_linear_decay_ends_where_the_budget_does_and_never_rises():
    """The budget's last epoch is 3 of 10 from epoch 1 on, then seems to be
    6 (a faster pace): the rate goes to a third at epoch 3 and stays below."""
    from tuner.model.schedules import LinearDecay

    decay = LinearDecay(0.1, 10)
    decay.last_epoch = lambda e: None if e < 1 else (3 if e < 3 else 6)
    assert rates_by_epoch(decay, 5) == pytest.approx([0.1, 0.1 * 2 / 3, 0.1 / 3, 0.1 / 3, 0.1 / 3])


def test_the_trial_callback_is_linear_decay_to_its_epochs():
    from tuner.model.hypermodel import trial_callbacks
    from tuner.model.schedules import LinearDecay

    [cb] = trial_callbacks({"callback": "linear_decay", "learning_rate": 2e-3}, epochs=8)
    assert isinstance(cb, LinearDecay) and cb.learning_rate == 2e-3 and cb.epochs == 8


def test_a_search_under_max_time_decays_to_the_budgets_last_epoch(flower_root, tmp_path):
    """400 epochs that 45 s cannot hold: the tuner tells the decay where the
    budget ends, so the rate falls to a small part of the trial's in the
    epochs trained (decaying to epoch 400, it would still be above 0.8 of it),
    never rising; history.csv records each epoch's rate for the next, as a
    refit replays it."""
    space = tiny_space(tmp_path, epochs=400, steps=20)
    space.write_text(space.read_text().replace("callback: {value: none}", "callback: {value: linear_decay}")
                     .replace("learning_rate: {min: 1.0e-3, max: 3.0e-3, distribution: log_uniform_values}",
                              "learning_rate: {value: 2.0e-3}"))
    project = tmp_path / "proj"
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project),
                "--max-time", "45s")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(project / "trial_0" / "history.csv") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    assert 3 <= len(rates) < 400, (rates, r.stdout)
    assert all(b <= a for a, b in zip(rates, rates[1:])), rates
    assert rates[0] < 2.0e-3 * 0.99 and rates[-2] <= 2.0e-3 * 0.35, (rates, r.stdout)
