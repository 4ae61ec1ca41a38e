"""The model `best --export` rebuilds (weights none, then the trial's
checkpoint) predicts exactly what the trained model predicted, for every
registered backbone and wherever the trained model's weights came from; and a
pretrained EfficientNet computes what Keras' own ImageNet build computes.

ImageNet downloads are served from a file the test writes in the format of
Keras' notop files (legacy .h5), by replacing only `file_utils.get_file`;
Keras builds and loads everything else itself."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from tuner.model import backbones
from tuner.model.hypermodel import build_model
from tuner.results.export import _inference_model
from tuner.spaces import load_space

#: The heaviest builds (20-45 s each here on 2 shared cores, against 6-19 s for
#: the rest): `make test` skips them; the fast set keeps every keras builder
#: family but DenseNet (efficientnetb0, the ResNets, mobilenetv2, xception).
# make test keeps the backbones whose architecture could depend on the
# weights' source (EfficientNet) and the default ones; `make faults` runs all
SLOW = {"efficientnetb6", "resnet152v2", "densenet201", "densenet121", "resnet101", "resnet101v2", "xception"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)  # Keras' EfficientNet file holds these as the variance


def values(name: str, weights: str) -> dict:
    v = load_space("demo").defaults()
    v.update(backbone=name, image_size=backbones.get(name).min_size, weights=weights)
    return v


def images(size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype("float32")


def infer(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's inference output (eager: tracing predict for each of these
    large graphs would cost more than the test)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def stem(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The output of the backbone's first convolution for raw images `x`: a
    random deep network's final features hardly depend on its input, this
    shows any change of input scale in full."""
    backbone, h = backbone_of(model), x
    if backbone is None:  # a bare application
        backbone = model
    else:
        for layer in model.layers[1:model.layers.index(backbone)]:  # our preprocessing
            h = layer(h)
    conv = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
    return infer(keras.Model(backbone.inputs, conv.output), h)


def backbone_of(model: keras.Model) -> keras.Model | None:
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def move_statistics(model: keras.Model, seed: int) -> None:
    """BatchNorm moving statistics away from their 0/1 start, as training
    (or ImageNet) leaves them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape).astype("float32"))


def imagenet_like_file(name: str, tmp_path) -> str:
    """A notop weights file shaped like Keras' ImageNet one for `name`."""
    spec = backbones.get(name)
    size = spec.min_size
    src = getattr(keras.applications, spec.constructor)(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    move_statistics(src, 1)
    for layer in src.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt_mean.assign(np.array(IMAGENET_MEAN, "float32"))
            layer.adapt_variance.assign(np.array(IMAGENET_STD, "float32"))
            layer.finalize_state()
    path = str(tmp_path / f"{name}_notop.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, src)
    return path


def serve_imagenet(monkeypatch, path: str) -> None:
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: path)


def assert_rebuild_predicts_alike(v: dict, tmp_path) -> None:
    trained = build_model(v, jit_compile=False)
    move_statistics(backbone_of(trained), 2)  # what a trial's training changes
    checkpoint = str(tmp_path / "checkpoint.weights.h5")
    trained.save_weights(checkpoint)
    x = images(int(v["image_size"]))
    expected, expected_stem = infer(trained, x), stem(trained, x)
    rebuilt = _inference_model(v, checkpoint)
    np.testing.assert_allclose(stem(rebuilt, x), expected_stem, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(infer(rebuilt, x), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(backbones.BACKBONES)])
def test_export_rebuild_predicts_like_the_trained_model(name, tmp_path):
    assert_rebuild_predicts_alike(values(name, "none"), tmp_path)


@pytest.mark.parametrize("name,source", [("efficientnetb0", "imagenet"), ("efficientnetb0", "file")])
def test_export_rebuild_after_pretrained_weights(name, source, tmp_path, monkeypatch):
    path = imagenet_like_file(name, tmp_path)
    serve_imagenet(monkeypatch, path)
    assert_rebuild_predicts_alike(values(name, "imagenet" if source == "imagenet" else path), tmp_path)


@pytest.mark.parametrize("source", ["imagenet", "file"])
def test_pretrained_efficientnet_is_keras_imagenet_build(source, tmp_path, monkeypatch):
    """Keras adds Rescaling(1/sqrt(std)) only for weights="imagenet"; a local
    copy of that file must give the same network, and so must our build."""
    path = imagenet_like_file("efficientnetb0", tmp_path)
    serve_imagenet(monkeypatch, path)
    reference = keras.applications.EfficientNetB0(include_top=False, weights="imagenet",
                                                  input_shape=(32, 32, 3), pooling="avg")
    model = build_model(values("efficientnetb0", "imagenet" if source == "imagenet" else path), jit_compile=False)
    x = images(32)
    ours = backbone_of(model)
    np.testing.assert_allclose(stem(ours, x), stem(reference, x), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(infer(ours, x), infer(reference, x), rtol=1e-5, atol=1e-6)
