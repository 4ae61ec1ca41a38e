"""`tuner.spaces.conditions` mirrors the hypermodel: a dimension it calls
inactive is one the trial's model does not use, and an active one is used."""

from __future__ import annotations

import pytest

from tuner.spaces.conditions import CONDITIONS, is_active, parents_first
from tuner.spaces.table import dimensions


class Unread:
    """A value that fails the trial when the hypermodel converts it."""

    def __float__(self) -> float:
        raise AssertionError("read")

    __int__ = __index__ = __float__


CALLBACK_CHILDREN = sorted(n for n, (parent, _) in CONDITIONS.items() if parent == "callback")


@pytest.mark.parametrize("child", CALLBACK_CHILDREN)
def test_a_callbacks_own_dimension_is_read_exactly_where_it_is_active(child):
    from tuner.model.hypermodel import trial_callbacks

    for callback in dimensions()["callback"].choices:
        values = {"callback": callback, child: Unread()}
        if is_active(child, values):
            with pytest.raises(AssertionError, match="read"):
                trial_callbacks(values, epochs=5)
        else:
            trial_callbacks(values, epochs=5)


def test_weight_decay_reaches_only_the_optimizers_it_is_active_for():
    from tuner.model.hypermodel import make_optimizer

    for name in dimensions()["optimizer"].choices:
        opt = make_optimizer(name, 1e-3, 0.25)
        assert (opt.weight_decay == 0.25) == is_active("weight_decay", {"optimizer": name}), name


def test_every_condition_names_real_dimensions_and_values_and_parents_come_first():
    dims = dimensions()
    for child, (parent, where) in CONDITIONS.items():
        assert child in dims and parent in dims and parent not in CONDITIONS
        assert where <= set(dims[parent].choices), (child, where)
    order = parents_first(["plateau_factor", "learning_rate", "callback"])
    assert order.index("callback") < order.index("plateau_factor")
    assert is_active("plateau_factor", {}) and is_active("learning_rate", {"callback": "none"})


def test_status_shows_a_dash_where_the_trials_model_did_not_read_the_value():
    from tuner.results.trials import TrialInfo, status_row

    meta = {"space": {"parameters": {"callback": {"values": ["linear_decay", "reduce_lr_on_plateau"]},
                                     "plateau_factor": {"values": [0.2, 0.5]},
                                     "learning_rate": {"min": 1e-4, "max": 1e-2}}}}
    values = {"callback": "linear_decay", "plateau_factor": 0.2, "learning_rate": 1e-3}
    row = status_row(meta, TrialInfo("0", "completed", values, "/nowhere"))
    assert (row["callback"], row["plateau_factor"], row["learning_rate"]) == ("linear_decay", "-", "0.001")
    row = status_row(meta, TrialInfo("1", "completed", {**values, "callback": "reduce_lr_on_plateau"}, "/nowhere"))
    assert row["plateau_factor"] == "0.2"


def test_importance_does_not_rank_a_dimension_some_trials_did_not_read():
    """Under TPE a linear_decay trial keeps plateau_factor at its default: fed
    to fANOVA, that default would stand for the callback itself."""
    import random

    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from tuner.results.importance import evaluate

    rng = random.Random(3)
    dists = {"callback": CategoricalDistribution(["linear_decay", "reduce_lr_on_plateau"]),
             "plateau_factor": FloatDistribution(0.1, 0.9),
             "learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}
    rows, scores = [], []
    for i in range(16):
        cb = ["linear_decay", "reduce_lr_on_plateau"][i % 2]
        rows.append({"callback": cb, "plateau_factor": 0.1 if cb == "linear_decay" else rng.uniform(0.1, 0.9),
                     "learning_rate": 10 ** rng.uniform(-4, -2)})
        scores.append((0.8 if cb == "linear_decay" else 0.4) + rng.gauss(0, 0.01))
    result, left_out, used = evaluate(rows, scores, dists)
    assert used == 16 and "plateau_factor" in left_out and "plateau_factor" not in result
    assert list(result)[0] == "callback", result
    # where every trial read it, it is ranked
    rlrop = [r for r in rows if r["callback"] == "reduce_lr_on_plateau"]
    result, left_out, _ = evaluate(rlrop, [r["plateau_factor"] for r in rlrop], dists)
    assert list(result)[0] == "plateau_factor" and "callback" in left_out
