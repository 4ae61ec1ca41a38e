"""Tests for tuner.data.augment: seeded, batched, TPU-friendly augmentations."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from tuner.data import augment as A

tf = pytest.importorskip("tensorflow")

B, H, W = 8, 32, 32
SEED = (3, 14)
OTHER_SEED = (3, 15)


def _images(batch: int = B, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (batch, H, W, 3)).astype("float32")


def _same_images(batch: int = B) -> np.ndarray:
    """One asymmetric, colourful image repeated: per-sample randomness is the
    only thing that can make the outputs of a batch differ."""
    return np.repeat(_images(1, seed=1), batch, axis=0)


def _max(name: str):
    spec = A.AUGMENTATIONS[name]
    return True if spec.kind == "bool" else spec.max


# Each op alone, at its maximum strength, as fn(images, seed).
OPS = {
    "flip_left_right": A.flip_left_right,
    "flip_up_down": A.flip_up_down,
    "brightness": lambda x, s: A.brightness(x, 1.0, s),
    "contrast": lambda x, s: A.contrast(x, 1.0, s),
    "saturation": lambda x, s: A.saturation(x, 1.0, s),
    "hue": lambda x, s: A.hue(x, 0.5, s),
    "rotation": lambda x, s: A.transform(x, 180.0, 0.0, 0.0, 0.0, s),
    "shear": lambda x, s: A.transform(x, 0.0, 45.0, 0.0, 0.0, s),
    "zoom": lambda x, s: A.transform(x, 0.0, 0.0, 0.9, 0.0, s),
    "shift": lambda x, s: A.transform(x, 0.0, 0.0, 0.0, 0.5, s),
    "transform": lambda x, s: A.transform(x, 180.0, 45.0, 0.9, 0.5, s),
    "crop": lambda x, s: A.random_crop(x, 0.9, s),
    "all": A.build_augment({k: _max(k) for k in A.AUGMENTATIONS}),
}
# Same ops at strength 0 / off.
OFF = {
    "flip_left_right": None,  # bool ops have no "off" call; see build_augment
    "brightness": lambda x, s: A.brightness(x, 0.0, s),
    "contrast": lambda x, s: A.contrast(x, 0.0, s),
    "saturation": lambda x, s: A.saturation(x, 0.0, s),
    "hue": lambda x, s: A.hue(x, 0.0, s),
    "transform": lambda x, s: A.transform(x, 0.0, 0.0, 0.0, 0.0, s),
    "crop": lambda x, s: A.random_crop(x, 0.0, s),
}
# No XLA kernel (checked on XLA CPU, TF 2.21): ImageProjectiveTransformV3,
# CropAndResize.
NOT_XLA = {"rotation", "shear", "zoom", "shift", "transform", "crop", "all"}


# ------------------------------------------------------------------ metadata


def test_import_does_not_import_tensorflow():
    code = ("import sys, tuner.data.augment as a; "
            "assert a.AUGMENTATIONS and 'tensorflow' not in sys.modules, "
            "sorted(m for m in sys.modules if 'tensorflow' in m)[:5]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metadata_names_kinds_ranges_defaults():
    expected = {
        "flip_left_right": ("bool", None), "flip_up_down": ("bool", None),
        "brightness": ("float", 1.0), "contrast": ("float", 1.0),
        "saturation": ("float", 1.0), "hue": ("float", 0.5),
        "rotation": ("float", 180.0), "shear": ("float", 45.0),
        "zoom": ("float", 0.9), "shift": ("float", 0.5), "crop": ("float", 0.9),
    }
    assert set(A.AUGMENTATIONS) == set(expected)
    for name, (kind, hi) in expected.items():
        spec = A.AUGMENTATIONS[name]
        assert spec.name == name and spec.kind == kind and spec.help
        if kind == "bool":
            assert spec.default is False
        else:
            assert spec.default == 0.0 and spec.min == 0.0 and spec.max == hi
    with pytest.raises(Exception):
        spec.min = 1.0  # frozen


# ---------------------------------------------------------------- validation


def test_validate_accepts_good_values():
    A.validate({})
    A.validate({"rotation": 180, "zoom": 0.0, "flip_up_down": True,
                "hue": 0.5, "crop": 0.25, "flip_left_right": False})


@pytest.mark.parametrize("params, words", [
    ({"rotate": 10.0}, ["'rotate'", "unknown", "rotation"]),
    ({"rotation": 181.0}, ["'rotation'", "[0, 180]", "181"]),
    ({"rotation": -1}, ["'rotation'", "[0, 180]"]),
    ({"zoom": 0.95}, ["'zoom'", "[0, 0.9]"]),
    ({"hue": 0.6}, ["'hue'", "[0, 0.5]"]),
    ({"brightness": "0.2"}, ["'brightness'", "[0, 1]", "'0.2'"]),
    ({"brightness": True}, ["'brightness'", "[0, 1]"]),
    ({"shift": None}, ["'shift'", "[0, 0.5]"]),
    ({"shear": math.nan}, ["'shear'", "[0, 45]"]),
    ({"flip_left_right": 1}, ["'flip_left_right'", "true or false"]),
    ({"flip_up_down": "yes"}, ["'flip_up_down'", "true or false"]),
])
def test_validate_rejects(params, words):
    with pytest.raises(ValueError) as info:
        A.validate(params)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_build_augment_none_when_nothing_is_on():
    assert A.build_augment({}) is None
    assert A.build_augment({k: A.AUGMENTATIONS[k].default
                            for k in A.AUGMENTATIONS}) is None
    # Other hyperparameters are ignored, not rejected.
    assert A.build_augment({"learning_rate": 1e-3, "backbone": "resnet50",
                            "rotation": 0}) is None


def test_build_augment_ignores_other_keys_but_validates_augmentations():
    fn = A.build_augment({"learning_rate": 1e-3, "brightness": 0.2})
    assert fn is not None and fn.ops == ("brightness",)
    with pytest.raises(ValueError, match="'brightness'.*\\[0, 1\\]"):
        A.build_augment({"learning_rate": 1e-3, "brightness": 2.0})


def test_build_augment_order():
    fn = A.build_augment({k: _max(k) for k in A.AUGMENTATIONS})
    assert fn.ops == ("transform", "crop", "flip_left_right", "flip_up_down",
                      "brightness", "contrast", "saturation_hue")


def test_rejects_unbatched_images():
    with pytest.raises(ValueError, match="batch"):
        A.brightness(np.zeros((H, W, 3), "float32"), 0.5, SEED)


# ---------------------------------------------------------- per-op contracts


@pytest.mark.parametrize("name", sorted(OPS))
def test_shape_dtype_range_at_max_strength(name):
    x = _images()
    y = OPS[name](x, tf.constant(SEED, tf.int64))
    assert y.shape == x.shape and y.dtype == tf.float32
    y = y.numpy()
    assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 255.0
    # Saturated inputs (all white, all black) stay in range; int32 seeds work.
    for v in (0.0, 255.0):
        z = OPS[name](np.full_like(x, v), tf.constant(SEED, tf.int32)).numpy()
        assert z.max() <= 255.0 and z.min() >= 0.0


@pytest.mark.parametrize("name", sorted(OPS))
def test_same_seed_same_output_other_seed_differs(name):
    x = _images()
    a = OPS[name](x, tf.constant(SEED, tf.int64)).numpy()
    b = OPS[name](x, tf.constant(SEED, tf.int64)).numpy()
    c = OPS[name](x, tf.constant(OTHER_SEED, tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x)


@pytest.mark.parametrize("name", sorted(OPS))
def test_parameters_differ_within_a_batch(name):
    x = _same_images()
    y = OPS[name](x, tf.constant(SEED, tf.int64)).numpy()
    distinct = {y[i].tobytes() for i in range(len(y))}
    assert len(distinct) > 1, "every sample got the same random parameters"
    if name not in ("flip_left_right", "flip_up_down"):
        assert len(distinct) == len(y)


@pytest.mark.parametrize("name", sorted(OFF))
def test_strength_zero_is_identity(name):
    x = _images()
    if OFF[name] is None:
        assert A.build_augment({name: False}) is None
        return
    y = OFF[name](x, tf.constant(SEED, tf.int64))
    np.testing.assert_array_equal(y.numpy(), x)


@pytest.mark.parametrize("name", sorted(OPS))
def test_jit_compile(name):
    if name in NOT_XLA:
        pytest.skip("ImageProjectiveTransformV3 / CropAndResize have no XLA kernel")
    fn = tf.function(OPS[name], jit_compile=True)
    x = tf.constant(_images())
    a = fn(x, tf.constant(SEED, tf.int64)).numpy()
    b = fn(x, tf.constant(SEED, tf.int64)).numpy()
    c = fn(x, tf.constant(OTHER_SEED, tf.int64)).numpy()
    # XLA's stateless RNG draws other numbers than the CPU kernel: compare
    # compiled runs with each other, not with eager ones.
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and a.min() >= 0.0 and a.max() <= 255.0


def test_jit_compile_of_colour_and_flip_pipeline():
    fn = A.build_augment({"flip_left_right": True, "flip_up_down": True,
                          "brightness": 0.2, "contrast": 0.3,
                          "saturation": 0.3, "hue": 0.1})
    y = tf.function(fn, jit_compile=True)(_images(), tf.constant(SEED, tf.int64))
    assert y.shape == (B, H, W, 3)


# ------------------------------------------------------------------ semantics


def test_brightness_adds_one_delta_per_image():
    x = np.full((B, H, W, 3), 128.0, "float32")
    y = A.brightness(x, 0.2, SEED).numpy()
    delta = y - x
    per_image = delta[:, :1, :1, :1]
    np.testing.assert_allclose(delta, np.broadcast_to(per_image, delta.shape),
                               atol=1e-4)
    assert np.abs(per_image).max() <= 0.2 * 255 + 1e-3


def test_contrast_keeps_the_mean():
    x = 100.0 + _images() * 0.2  # 100..151: no clipping at strength 0.5
    y = A.contrast(x, 0.5, SEED).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-2)


def test_saturation_and_hue_leave_grey_alone():
    x = np.repeat(_images()[..., :1], 3, axis=-1)
    np.testing.assert_allclose(A.saturation(x, 1.0, SEED).numpy(), x, atol=0.05)
    np.testing.assert_allclose(A.hue(x, 0.5, SEED).numpy(), x, atol=0.05)


def test_rotation_90_rotates_exactly():
    x = _images(2)
    m = A.transform_matrices(tf.constant([90.0, -90.0]), 0.0, 1.0, 0.0, 0.0, H, W)
    y = A.apply_transform(x, m).numpy()
    # +90 is counterclockwise as displayed (np.rot90), -90 clockwise.
    np.testing.assert_allclose(y[0], np.rot90(x[0], 1), atol=1e-2)
    np.testing.assert_allclose(y[1], np.rot90(x[1], -1), atol=1e-2)
    y180 = A.apply_transform(
        x, A.transform_matrices(180.0, 0.0, 1.0, 0.0, 0.0, H, W)).numpy()
    np.testing.assert_allclose(y180, x[:, ::-1, ::-1], atol=1e-2)


def test_shift_and_zoom_move_content_as_documented():
    x = _images(1)
    y = A.apply_transform(
        x, A.transform_matrices(0.0, 0.0, 1.0, 2 / H, 4 / W, H, W)).numpy()
    np.testing.assert_allclose(y[0, 2:, 4:], x[0, :-2, :-4], atol=1e-3)
    x33 = np.random.default_rng(5).uniform(0, 255, (1, 33, 33, 3)).astype("float32")
    z = A.apply_transform(
        x33, A.transform_matrices(0.0, 0.0, 2.0, 0.0, 0.0, 33, 33)).numpy()
    # zoom 2 about the centre (16, 16): output pixel 16 + 2k shows input 16 + k
    np.testing.assert_allclose(z[0, 16::2, 16::2], x33[0, 16:25, 16:25], atol=1e-3)


def test_combined_matrix_is_inverse_of_documented_forward_map():
    rot, shr, zm, dy, dx = 30.0, 20.0, 1.3, 0.1, -0.2
    t = A.transform_matrices(rot, shr, zm, dy, dx, H, W).numpy()[0]
    inv = np.array([[t[0], t[1], t[2]], [t[3], t[4], t[5]], [0, 0, 1]])
    r, s = math.radians(rot), math.radians(shr)
    cx, cy = (W - 1) / 2, (H - 1) / 2

    def tr(x, y):
        return np.array([[1, 0, x], [0, 1, y], [0, 0, 1.0]])

    rotate = np.array([[math.cos(r), math.sin(r), 0],
                       [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(s), 0], [0, 1, 0], [0, 0, 1]])
    zoom = np.diag([zm, zm, 1.0])
    forward = tr(cx + dx * W, cy + dy * H) @ rotate @ shear @ zoom @ tr(-cx, -cy)
    np.testing.assert_allclose(inv @ forward, np.eye(3), atol=1e-4)


def test_crop_of_constant_image_is_constant_and_zooms_in():
    x = np.full((B, H, W, 3), 77.0, "float32")
    np.testing.assert_allclose(A.random_crop(x, 0.9, SEED).numpy(), x, atol=1e-3)
    # On a ramp (value = column), a crop keeping area a in [0.1, 1] shows a
    # width fraction sqrt(a) over the whole output: slope sqrt(a) in
    # [0.316, 1], and only values of the original.
    ramp = np.broadcast_to(np.arange(W, dtype="float32")[None, None, :, None],
                           (B, H, W, 3)).copy()
    y = A.random_crop(ramp, 0.9, SEED).numpy()
    slope = np.diff(y, axis=2)
    assert slope.min() >= math.sqrt(0.1) - 1e-3 and slope.max() <= 1.0 + 1e-3
    assert y.min() >= 0.0 and y.max() <= W - 1
    assert len({y[i].tobytes() for i in range(B)}) == B


# -------------------------------------------------------------------- tf.data


def _dataset(fn, n: int = 5):
    images = tf.data.Dataset.from_tensor_slices(_images(n)).batch(2)
    seeds = tf.data.Dataset.random(seed=42).batch(2)
    return tf.data.Dataset.zip((images, seeds)).map(fn)


def test_tf_data_map_is_reproducible():
    fn = A.build_augment({k: _max(k) for k in A.AUGMENTATIONS})
    runs = [[b.numpy() for b in _dataset(fn)] for _ in range(2)]
    assert [b.shape for b in runs[0]] == [(2, H, W, 3), (2, H, W, 3), (1, H, W, 3)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
        assert a.min() >= 0.0 and a.max() <= 255.0
    # The batches got different seeds: not the same augmentation twice.
    first = _images(5)
    assert not np.array_equal(runs[0][0] - first[:2], runs[0][1] - first[2:4])
    # And the pipeline really ran in graph mode through the same function.
    eager = fn(tf.constant(_images(5)[:2]),
               next(iter(tf.data.Dataset.random(seed=42).batch(2)))).numpy()
    np.testing.assert_allclose(runs[0][0], eager, atol=1e-3)
