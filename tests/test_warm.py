"""A later trial of the same graph trains in the earlier trial's traced model
(tuner/engine/warm.py): no tracing, and the numbers of a fresh build."""

from __future__ import annotations

import pytest

from conftest import write_space
from tuner.engine.checkpoint import read_history
from tuner.engine.warm import graph_key

SAME_GRAPH = """\
name: warm
description: trials that differ only in what the traced step does not depend on
method: random
run_cap: 2
seed: 3
train: {epochs: 2, steps_per_epoch: 3, batch_per_replica: 8, jit_compile: false}
parameters:
  backbone: {value: smallcnn}
  weights: {value: none}
  image_size: {value: 32}
  optimizer: {value: nadam}
  dropout: {value: 0.3}
  learning_rate: {min: 1.0e-3, max: 3.0e-3, distribution: log_uniform_values}
  callback: {values: [none, reduce_lr_on_plateau]}
  flip_left_right: {values: [true, false]}
"""


def test_graph_key_ignores_what_the_traced_step_reads_from_variables_or_never_sees():
    base = {"backbone": "resnet50v2", "image_size": 32, "optimizer": "adam", "learning_rate": 1e-3,
            "label_smoothing": 0.0, "callback": "none", "flip_left_right": True, "tuner/trial_id": "3"}
    same = {**base, "learning_rate": 4e-3, "callback": "reduce_lr_on_plateau", "plateau_patience": 2,
            "flip_left_right": False, "rotation": 10.0, "epochs": 7}
    assert graph_key(base) == graph_key(same)
    for k, v in (("optimizer", "nadam"), ("label_smoothing", 0.1), ("image_size", 48), ("weights", "imagenet"),
                 ("bn_momentum", 0.9), ("batch_per_replica", 16), ("class_weight", "balanced")):
        assert graph_key({**base, k: v}) != graph_key(base), k


def test_adopt_refuses_models_whose_variables_differ():
    import keras

    from tuner.engine.warm import adopt

    def model(units: int, opt: str):
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units), keras.layers.Dense(2)])
        m.compile(optimizer=opt, loss="mse")
        return m

    warm, fresh = model(3, "adam"), model(3, "adam")
    assert adopt(warm, fresh)
    for a, b in zip(warm.variables + warm.optimizer.variables, fresh.variables + fresh.optimizer.variables):
        assert (a.numpy() == b.numpy()).all()
    assert not adopt(model(3, "adam"), model(5, "adam"))
    assert not adopt(model(3, "adam"), model(3, "nadam"))


def test_a_warm_model_trains_exactly_as_a_fresh_build():
    """Trial 2's fresh state copied into trial 1's traced model (BatchNorm
    statistics, dropout's seed state and Nadam's slots included) gives the
    losses of trial 2 built and traced on its own. A small model: the
    search test below runs the real backbone."""
    import keras
    import numpy as np

    from tuner.engine.warm import adopt

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 5, 16), 5)

    def build(seed: int, lr: float):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3)(inputs)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation("relu")(h))
        h = keras.layers.Dropout(0.3)(h)
        model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(h))
        model.compile(optimizer=keras.optimizers.Nadam(lr), loss="categorical_crossentropy")
        return model

    warm = build(1, 1e-2)
    warm.fit(x, y, epochs=2, verbose=0)  # traced, its weights, statistics and slots moved on
    assert adopt(warm, build(2, 2e-2))
    adopted = warm.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    fresh = build(2, 2e-2).fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    assert adopted == pytest.approx(fresh, rel=1e-6)  # a float rounding apart, at most


def test_a_search_traces_a_graph_once(flower_root, tmp_path, capsys):
    from tuner.search import SearchOptions, run_search

    space = write_space(tmp_path / "warm.yaml", SAME_GRAPH)
    project = tmp_path / "proj"
    run_search(SearchOptions(space=str(space), data=str(flower_root), project=str(project), plain=True))
    log = capsys.readouterr().out
    assert log.count("is reused: no tracing") == 1, log  # trial 1 in trial 0's model
    first, second = read_history(str(project / "trial_0")), read_history(str(project / "trial_1"))
    assert [r["epoch"] for r in second] == [1, 2]
    # Trial 0's first epoch holds the tracing (tens of seconds), trial 1's not.
    assert second[0]["seconds"] < first[0]["seconds"] / 2, (first, second)
