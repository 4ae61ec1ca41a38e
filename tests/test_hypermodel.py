"""The flower model: backbones, optimizers, callbacks, preprocessing inside
the model, and the macro metrics against sklearn."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from tuner.model.hypermodel import build_model, preprocess_layers, _init_caffe, ramp_schedule, trial_callbacks, unfreeze_top_blocks
from tuner.model.metrics import MacroScore
from tuner.spaces import load_space

BACKBONES = ["resnet50", "resnet50v2"]
OPTIMIZERS = ["nadam", "rmsprop", "adam", "sgd", "adamw"]
CALLBACKS = ["early_stopping", "lr_schedule", "reduce_lr_on_plateau", "none"]


def values(**kw):
    v = load_space("demo").defaults()
    v.update({"image_size": 32, "weights": "none", **kw})
    return v


# Every backbone with every optimizer, the callbacks cycled so each meets both
# backbones: 10 real builds and fits (the full 40-way product would cost
# minutes of graph building for no extra code path).
COMBOS = [(b, o, CALLBACKS[i % 4]) for i, (b, o) in enumerate(itertools.product(BACKBONES, OPTIMIZERS))]


@pytest.mark.parametrize("backbone,optimizer,callback", COMBOS)
def test_each_combination_builds_and_trains(backbone, optimizer, callback):
    v = values(backbone=backbone, optimizer=optimizer, callback=callback, es_patience=0, plateau_patience=0,
               learning_rate=1e-3)
    model = build_model(v)
    model.compile(optimizer=model.optimizer, loss=model.loss, metrics=[MacroScore("f1")], run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 104, 4), 104)
    before = [w.copy() for w in model.get_layer("flower").get_weights()]
    hist = model.fit(x, y, validation_data=(x, y), batch_size=4, epochs=3, callbacks=trial_callbacks(v), verbose=0)
    after = model.get_layer("flower").get_weights()
    assert not np.allclose(before[0], after[0]), "the head did not train"
    assert np.isfinite(hist.history["loss"]).all() and "val_f1" in hist.history
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    if callback == "lr_schedule":
        assert lr == pytest.approx(ramp_schedule(1e-5, 1e-5, 5e-5, 5, 0, 0.8)(2))
    if callback == "early_stopping":
        assert len(hist.history["loss"]) <= 3
    probs = model.predict(x, verbose=0)
    assert probs.shape == (4, 104) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_study_schedule_matches_the_original_notebook():
    lr = ramp_schedule(1e-5, 1e-5, 5e-5, 5, 0, 0.8)
    assert lr(0) == pytest.approx(1e-5)
    assert lr(5) == pytest.approx(5e-5)
    assert lr(7) == pytest.approx((5e-5 - 1e-5) * 0.8**2 + 1e-5)


@pytest.mark.parametrize("mode,fn", [("caffe", "resnet"), ("tf", "resnet_v2"), ("torch", "densenet")])
def test_preprocessing_in_the_model_equals_keras_preprocess_input(mode, fn):
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, fn).preprocess_input(x.copy())
    inp = keras.Input((8, 8, 3))
    layers = preprocess_layers(mode)
    out = inp
    for layer in layers:
        out = layer(out)
    if mode == "caffe":
        _init_caffe(layers[0])
    got = keras.Model(inp, out).predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_top_blocks_fine_tuning_freezes_the_rest_and_batchnorm():
    model = build_model(values(backbone="resnet50v2", fine_tune="top", fine_tune_blocks=2))
    backbone = next(l for l in model.layers if isinstance(l, keras.Model))
    trainable = {l.name for l in backbone.layers if l.trainable and l.weights}
    assert trainable and all(n.startswith(("conv5_block2", "conv5_block3", "post")) for n in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) and l.trainable for l in backbone.layers)
    frozen = build_model(values(backbone="resnet50", fine_tune="frozen"))
    assert all(not w.trainable for l in frozen.layers if isinstance(l, keras.Model) for w in l.weights)


def test_unfreeze_top_blocks_counts_blocks():
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    unfreeze_top_blocks(model, 1)
    names = {l.name.split("_")[0] + "_" + l.name.split("_")[1] for l in model.layers if l.trainable and l.weights}
    assert names == {"conv5_block3"}


def test_macro_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 104, 500)
    y[:50] = 7  # an imbalanced class
    logits = rng.normal(size=(500, 104))
    logits[np.arange(500), y] += rng.uniform(0, 4, 500)  # mostly right
    kwargs = dict(labels=list(range(104)), average="macro", zero_division=0)
    p = logits.argmax(axis=1)
    onehot = keras.utils.to_categorical(y, 104)
    for mode, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        m = MacroScore(mode)
        for i in range(0, 500, 64):  # streamed in batches, as in evaluation
            m.update_state(onehot[i:i + 64], logits[i:i + 64])
        assert float(m.result()) == pytest.approx(fn(y, p, **kwargs), abs=1e-6)
        m.reset_state()
        assert float(m.result()) == 0.0


def test_saved_classifier_takes_raw_pixels_and_needs_no_custom_objects(tmp_path):
    model = build_model(values(backbone="resnet50"))
    plain = keras.Model(model.inputs, model.outputs)
    path = tmp_path / "m.keras"
    plain.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-5)


def test_local_weights_file_is_loaded_into_the_backbone(tmp_path):
    """Offline users point `weights` at a file (e.g. the ImageNet notop .h5)."""
    source = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_model(values(backbone="resnet50v2", weights=str(path)))
    backbone = next(l for l in model.layers if isinstance(l, keras.Model))
    for a, b in zip(backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(Exception, match="not found"):
        build_model(values(backbone="resnet50v2", weights=str(tmp_path / "missing.h5")))
