"""The flower model: backbones, optimizers, callbacks, preprocessing inside
the model, and the macro metrics against sklearn."""

from __future__ import annotations


import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from tuner.model.hypermodel import (build_model, make_optimizer, preprocess_layers, _init_caffe, ramp_schedule,
                                     trial_callbacks, unfreeze_top_blocks)
from tuner.model.metrics import MacroScore
from tuner.spaces import dimensions, load_space

BACKBONES = ["resnet50", "resnet50v2"]
OPTIMIZERS = ["nadam", "rmsprop", "adam", "sgd", "adamw"]
CALLBACKS = ["early_stopping", "lr_schedule", "reduce_lr_on_plateau", "none"]


def values(**kw):
    v = load_space("demo").defaults()
    v.update({"image_size": 32, "weights": "none", **kw})
    return v


# Every optimizer once, the backbones alternating and the callbacks cycled
# (each backbone and each callback at least once): 5 real builds and fits.
# An optimizer, a callback and a backbone meet in no code of their own, so a
# product of them (40 eager ResNet fits, about 10 s each) adds no code path.
COMBOS = [(BACKBONES[i % 2], o, CALLBACKS[i % 4]) for i, o in enumerate(OPTIMIZERS)]


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


def test_values_an_older_trial_lacks_build_and_train_at_the_tables_defaults():
    """A trial.json saved before a dimension existed lacks it: the model and
    the trial's callback (export, refit) take the table's default, as the
    search would draw it today."""
    dims = dimensions()
    v = values(backbone="resnet50v2")
    for name in ("dropout", "callback", "plateau_patience", "plateau_factor"):
        del v[name]
    assert build_model(v).get_layer("head_dropout").rate == dims["dropout"].default > 0
    (callback,) = trial_callbacks(v)
    assert dims["callback"].default == "reduce_lr_on_plateau"
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.patience, callback.factor) == (dims["plateau_patience"].default, dims["plateau_factor"].default)


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


def weights_file(directory, backbone: str, constructor: str) -> str:
    """A local notop weights file whose BatchNorm statistics are not the
    0/1 a fresh layer starts with, as ImageNet's are not."""
    source = getattr(keras.applications, constructor)(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                      pooling="avg")
    rng = np.random.default_rng(5)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
    path = str(directory / f"{backbone}.weights.h5")
    source.save_weights(path)
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {"resnet50v2": weights_file(d, "resnet50v2", "ResNet50V2"),
            "mobilenetv2": weights_file(d, "mobilenetv2", "MobileNetV2")}


def backbone_of(model):
    return next(l for l in model.layers if isinstance(l, keras.Model))


def test_top_blocks_fine_tuning_freezes_the_rest_and_batchnorm(pretrained):
    model = build_model(values(backbone="resnet50v2", weights=pretrained["resnet50v2"], fine_tune="top",
                               fine_tune_blocks=2))
    backbone = backbone_of(model)
    trainable = {l.name for l in backbone.layers if l.trainable and l.weights}
    assert trainable and all(n.startswith(("conv5_block2", "conv5_block3", "post")) for n in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) and l.trainable for l in backbone.layers)
    train_bn = backbone_of(build_model(values(backbone="resnet50v2", weights=pretrained["resnet50v2"],
                                              fine_tune="top", fine_tune_blocks=2, batchnorm="train")))
    bn = {l.name for l in train_bn.layers if isinstance(l, keras.layers.BatchNormalization) and l.trainable}
    assert bn and {l.name for l in train_bn.layers if l.trainable and l.weights} == trainable | bn
    assert all(n.startswith(("conv5_block2", "conv5_block3", "post")) for n in bn)
    frozen = build_model(values(backbone="resnet50v2", weights=pretrained["resnet50v2"], fine_tune="frozen",
                                batchnorm="train"))
    assert all(not w.trainable for l in frozen.layers if isinstance(l, keras.Model) for w in l.weights)


def test_partial_fine_tuning_without_pretrained_weights_trains_everything():
    """A search drawing fine_tune top with weights none (the validator allows
    it only from choices) must not freeze random layers."""
    for fine_tune in ("top", "frozen"):
        backbone = backbone_of(build_model(values(backbone="resnet50v2", fine_tune=fine_tune)))
        assert all(l.trainable for l in backbone.layers)


def _bn_state(backbone):
    return [(l.moving_mean.numpy().copy(), l.moving_variance.numpy().copy())
            for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("batchnorm", ["frozen", "train"])
def test_pretrained_batchnorm_stays_in_inference_mode_unless_trained(pretrained, batchnorm):
    """Keras 3 ignores `backbone(x, training=False)` once the outer model
    trains (keras-team/keras#20285): frozen must hold through a real fit."""
    model = build_model(values(backbone="mobilenetv2", weights=pretrained["mobilenetv2"], fine_tune="full",
                               batchnorm=batchnorm, learning_rate=1e-3))
    model.compile(optimizer=model.optimizer, loss=model.loss, run_eagerly=True)
    backbone = backbone_of(model)
    before = _bn_state(backbone)
    kernel = backbone.get_layer("Conv1").kernel.numpy().copy()
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, keras.utils.to_categorical(rng.integers(0, 104, 8), 104), batch_size=4, epochs=1, verbose=0)
    after = _bn_state(backbone)
    assert not np.array_equal(kernel, backbone.get_layer("Conv1").kernel.numpy()), "the backbone did not train"
    h = model.get_layer("preprocess")(x)
    in_training = keras.ops.convert_to_numpy(backbone(h, training=True))
    in_inference = keras.ops.convert_to_numpy(backbone(h, training=False))
    if batchnorm == "frozen":
        for (m0, v0), (m1, v1) in zip(before, after):
            np.testing.assert_array_equal(m0, m1)
            np.testing.assert_array_equal(v0, v1)
        np.testing.assert_allclose(in_training, in_inference, rtol=1e-6, atol=1e-6)
    else:
        assert all(not np.array_equal(m0, m1) and not np.array_equal(v0, v1)
                   for (m0, v0), (m1, v1) in zip(before, after))
        assert not np.allclose(in_training, in_inference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_adamw_weight_decay_zero_means_none(decay):
    """With a zero gradient only weight decay moves a weight."""
    optimizer = make_optimizer("adamw", 0.1, decay)
    w = keras.Variable(np.ones(3, "float32"))
    optimizer.apply_gradients([(np.zeros(3, "float32"), w)])
    moved = not np.array_equal(w.numpy(), np.ones(3, "float32"))
    assert moved == (decay > 0)


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


def test_smallcnn_fine_tunes_its_top_blocks_and_loads_a_local_weights_file(tmp_path):
    """The small backbone (tuner.model.smallcnn) is built like an application:
    `fine_tune: top` finds its blocks by name, and its weights saved to a file
    load back as a local weights file."""
    from tuner.model.smallcnn import SmallCNN

    source = SmallCNN(input_shape=(32, 32, 3))
    path = tmp_path / "smallcnn.weights.h5"
    source.save_weights(path)
    model = build_model(values(backbone="smallcnn", weights=str(path), fine_tune="top", fine_tune_blocks=1))
    backbone = next(l for l in model.layers if isinstance(l, keras.Model))
    for a, b in zip(backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {l.name for l in backbone.layers if l.trainable and l.trainable_weights} == {"block4_conv"}
    with pytest.raises(ValueError, match="no ImageNet weights"):
        SmallCNN(weights="imagenet", input_shape=(32, 32, 3))
