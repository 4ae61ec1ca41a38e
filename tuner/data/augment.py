"""Seedable, batched image augmentations for the input pipeline.

Every op takes a batch of images, float32 ``[B, H, W, 3]`` with pixels in
0..255 (the model applies its own ``preprocess_input``), and a seed tensor of
shape ``[2]`` (int32 or int64). Randomness comes only from stateless random ops
(``tf.random.stateless_*``), so the same images and seed always give the same
output in eager mode, inside ``tf.data.Dataset.map`` and inside
``tf.function`` (XLA-compiled code draws different, but equally reproducible,
numbers: XLA's stateless RNG differs from the CPU kernel). Random parameters are drawn per sample. Outputs keep shape and
dtype and are clipped to 0..255.

What public Kaggle notebooks for the flower data use is what is offered here:
flips; brightness, contrast, saturation and hue; rotation / shear / zoom /
shift combined into one 3x3 transform per image; random crop.

XLA: every op compiles with ``tf.function(jit_compile=True)`` except
``transform`` (``ImageProjectiveTransformV3``) and ``random_crop``
(``CropAndResize``), which have no XLA kernel (checked on XLA CPU, TF 2.21).
Both are ordinary TF ops, so they run inside ``tf.data`` map functions, which is
where the input pipeline applies augmentations.

Importing this module does not import TensorFlow: the metadata below is pure
Python (the search-space validator uses it); TF is imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugSpec:
    """One augmentation hyperparameter: its type, allowed range and default."""

    name: str
    kind: str  # "bool" or "float"
    min: float
    max: float
    default: float | bool  # off by default: False or 0.0
    help: str

    def describe_range(self) -> str:
        if self.kind == "bool":
            return "true or false"
        return f"a number in [{_fmt(self.min)}, {_fmt(self.max)}]"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _spec(name: str, kind: str, lo: float, hi: float, help: str) -> AugSpec:
    return AugSpec(name, kind, lo, hi, False if kind == "bool" else 0.0, help)


AUGMENTATIONS: dict[str, AugSpec] = {
    s.name: s
    for s in (
        _spec("rotation", "float", 0.0, 180.0,
              "random rotation angle in [-s, s] degrees (one combined transform "
              "with shear, zoom and shift)"),
        _spec("shear", "float", 0.0, 45.0,
              "random horizontal shear angle in [-s, s] degrees"),
        _spec("zoom", "float", 0.0, 0.9,
              "random isotropic scale in [1-s, 1+s] (>1 zooms in)"),
        _spec("shift", "float", 0.0, 0.5,
              "random shift in [-s, s] of the height and width, each axis "
              "independently"),
        _spec("crop", "float", 0.0, 0.9,
              "random crop keeping an area fraction in [1-s, 1] (same aspect "
              "ratio, random position), resized back to HxW"),
        _spec("flip_left_right", "bool", 0.0, 1.0,
              "flip left-right with probability 0.5"),
        _spec("flip_up_down", "bool", 0.0, 1.0,
              "flip up-down with probability 0.5"),
        _spec("brightness", "float", 0.0, 1.0,
              "add a random delta in [-s, s] * 255"),
        _spec("contrast", "float", 0.0, 1.0,
              "scale about the per-image, per-channel mean by a factor in "
              "[1-s, 1+s]"),
        _spec("saturation", "float", 0.0, 1.0,
              "multiply the HSV saturation by a factor in [1-s, 1+s]"),
        _spec("hue", "float", 0.0, 0.5,
              "add a random delta in [-s, s] to the HSV hue (in turns)"),
    )
}

#: The geometric params that `transform` combines into one matrix.
TRANSFORM_KEYS = ("rotation", "shear", "zoom", "shift")
#: Application order of `build_augment`: geometry, crop, flips, colour.
#: Saturation and hue share one HSV round trip ("saturation_hue" step).
ORDER = (
    "transform", "crop", "flip_left_right", "flip_up_down",
    "brightness", "contrast", "saturation_hue",
)
# Fixed per-step seed salts: a step's random stream does not depend on which
# other steps are on. Never renumber (it would change every seeded run).
_SALT = {name: i + 1 for i, name in enumerate(ORDER)}


# --------------------------------------------------------------- validation


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(params: Mapping[str, Any]) -> None:
    """Check augmentation hyperparameters. Every key must be a known
    augmentation name; raises ValueError naming the key and what is allowed."""
    for key, value in params.items():
        spec = AUGMENTATIONS.get(key)
        if spec is None:
            known = ", ".join(sorted(AUGMENTATIONS))
            raise ValueError(f"unknown augmentation {key!r} (known: {known})")
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(
                    f"augmentation {key!r} must be true or false, got {value!r}")
            continue
        if not _is_number(value) or not math.isfinite(float(value)):
            raise ValueError(
                f"augmentation {key!r} must be {spec.describe_range()}, "
                f"got {value!r}")
        if not spec.min <= float(value) <= spec.max:
            raise ValueError(
                f"augmentation {key!r} must be {spec.describe_range()}, "
                f"got {value!r}")


def active(params: Mapping[str, Any]) -> dict[str, float | bool]:
    """The augmentation entries of ``params`` that are on (validated); other
    keys (non-augmentation hyperparameters) are ignored."""
    aug = {k: v for k, v in params.items() if k in AUGMENTATIONS}
    validate(aug)
    return {k: v for k, v in aug.items() if v}


# ------------------------------------------------------------------ helpers


def _tf():
    import tensorflow as tf

    return tf


def _prep(images, seed):
    """Convert inputs; check rank 4 and a [2] integer seed."""
    tf = _tf()
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    if images.shape.rank is not None and images.shape.rank != 4:
        raise ValueError(
            f"augmentations expect a batch [B, H, W, C], got shape {images.shape}")
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    seed = tf.reshape(seed, [2])
    return images, seed


def _batch(images):
    return _tf().shape(images)[0]


def _uniform(shape, seed, lo, hi):
    tf = _tf()
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi,
                                       dtype=tf.float32)


def _split(seed, n: int):
    """n independent seeds derived from one (fold-in of 0..n-1)."""
    tf = _tf()
    return [tf.random.experimental.stateless_fold_in(seed, i) for i in range(n)]


def _clip(images):
    return _tf().clip_by_value(images, 0.0, 255.0)


def _hw(images):
    """Height and width: static ints when known, else scalar tensors."""
    tf = _tf()
    dyn = tf.shape(images)
    h, w = images.shape[1], images.shape[2]
    return (h if h is not None else dyn[1]), (w if w is not None else dyn[2])


# -------------------------------------------------------------------- flips


def _random_flip(images, seed, axis: int):
    tf = _tf()
    images, seed = _prep(images, seed)
    flip = _uniform([_batch(images)], seed, 0.0, 1.0) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, [axis]), images)


def flip_left_right(images, seed):
    """Flip each image left-right with probability 0.5."""
    return _random_flip(images, seed, 2)


def flip_up_down(images, seed):
    """Flip each image up-down with probability 0.5."""
    return _random_flip(images, seed, 1)


# ------------------------------------------------------------------- colour


def brightness(images, strength: float, seed):
    """Add a per-image delta drawn from [-strength, strength] * 255."""
    images, seed = _prep(images, seed)
    if not strength:
        return images
    s = float(strength)
    delta = _uniform([_batch(images), 1, 1, 1], seed, -s, s) * 255.0
    return _clip(images + delta)


def contrast(images, strength: float, seed):
    """Scale each image about its per-channel mean by a factor drawn from
    [1-strength, 1+strength] (as ``tf.image.adjust_contrast``)."""
    tf = _tf()
    images, seed = _prep(images, seed)
    if not strength:
        return images
    s = float(strength)
    factor = _uniform([_batch(images), 1, 1, 1], seed, 1.0 - s, 1.0 + s)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return _clip((images - mean) * factor + mean)


def _hsv_adjust(images, seed, sat: float, hue_delta: float):
    tf = _tf()
    hsv = tf.image.rgb_to_hsv(images / 255.0)
    h, s, v = tf.unstack(hsv, axis=-1)
    n = _batch(images)
    seed_s, seed_h = _split(seed, 2)
    if sat:
        factor = _uniform([n, 1, 1], seed_s, 1.0 - sat, 1.0 + sat)
        s = tf.clip_by_value(s * factor, 0.0, 1.0)
    if hue_delta:
        h = h + _uniform([n, 1, 1], seed_h, -hue_delta, hue_delta)
        h = h - tf.floor(h)
    rgb = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    return _clip(rgb * 255.0)


def saturation(images, strength: float, seed):
    """Multiply the HSV saturation of each image by a factor drawn from
    [1-strength, 1+strength] (as ``tf.image.adjust_saturation``)."""
    images, seed = _prep(images, seed)
    if not strength:
        return images
    return _hsv_adjust(images, seed, float(strength), 0.0)


def hue(images, strength: float, seed):
    """Rotate the HSV hue of each image by a delta drawn from
    [-strength, strength] turns (as ``tf.image.adjust_hue``)."""
    images, seed = _prep(images, seed)
    if not strength:
        return images
    return _hsv_adjust(images, seed, 0.0, float(strength))


# ----------------------------------------------------------------- geometry


def transform_matrices(rotation, shear, zoom, shift_y, shift_x, height, width):
    """Per-image projective transforms, ``[B, 8]`` float32, for
    ``ImageProjectiveTransformV3`` (they map output pixel (x, y) to the input
    point it samples).

    Arguments are ``[B]`` tensors or scalars (all scalars give ``[1, 8]``,
    which applies to every image of a batch): the content of each image is
    zoomed by ``zoom`` (>1 magnifies), sheared horizontally by ``shear``
    degrees, rotated counterclockwise (as displayed, rows going down) by
    ``rotation`` degrees, all about the image centre, then shifted by
    ``shift_y * height`` rows down and ``shift_x * width`` columns right.
    The forward map is the product of the shift, rotation, shear and zoom
    matrices; the returned transform is its inverse, written out in closed form.
    """
    tf = _tf()
    f32 = tf.float32
    rot = tf.cast(rotation, f32) * (math.pi / 180.0)
    shr = tf.cast(shear, f32) * (math.pi / 180.0)
    zoom = tf.cast(zoom, f32)
    shift_y = tf.cast(shift_y, f32)
    shift_x = tf.cast(shift_x, f32)
    shape = tf.shape(tf.reshape(rot + shr + zoom + shift_y + shift_x, [-1]))
    rot, shr, zoom, shift_y, shift_x = (
        tf.broadcast_to(t, shape) for t in (rot, shr, zoom, shift_y, shift_x))
    h = tf.cast(height, f32)
    w = tf.cast(width, f32)
    cy, cx = (h - 1.0) / 2.0, (w - 1.0) / 2.0
    # Forward: p_out = c + t + R(rot) @ Sh(shr) @ Z(zoom) @ (p_in - c), with
    #   R = [[cos, sin], [-sin, cos]] (counterclockwise on screen, y down),
    #   Sh = [[1, tan], [0, 1]], Z = zoom * I.
    # Inverse: p_in = c + L @ (p_out - c - t), L = Z^-1 @ Sh^-1 @ R^-1.
    c, s, t = tf.cos(rot), tf.sin(rot), tf.tan(shr)
    inv_z = 1.0 / zoom
    # Sh^-1 @ R^-1 = [[1, -t], [0, 1]] @ [[c, -s], [s, c]]
    l00 = (c - t * s) * inv_z
    l01 = (-s - t * c) * inv_z
    l10 = s * inv_z
    l11 = c * inv_z
    ox = cx + shift_x * w  # c + t
    oy = cy + shift_y * h
    b0 = cx - (l00 * ox + l01 * oy)
    b1 = cy - (l10 * ox + l11 * oy)
    zeros = tf.zeros_like(l00)
    return tf.stack([l00, l01, b0, l10, l11, b1, zeros, zeros], axis=1)


def apply_transform(images, transforms, fill_mode: str = "REFLECT"):
    """Apply ``[B, 8]`` projective transforms in one
    ``ImageProjectiveTransformV3`` call (bilinear; fill REFLECT or NEAREST)."""
    tf = _tf()
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    fill_mode = fill_mode.upper()
    if fill_mode not in ("REFLECT", "NEAREST", "WRAP", "CONSTANT"):
        raise ValueError(f"fill_mode must be REFLECT or NEAREST, got {fill_mode!r}")
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode=fill_mode,
    )
    out = tf.ensure_shape(out, images.shape)
    return _clip(out)


def transform(images, rotation: float = 0.0, shear: float = 0.0,
              zoom: float = 0.0, shift: float = 0.0, seed=None,
              fill_mode: str = "REFLECT"):
    """Random rotation / shear / zoom / shift, combined into one 3x3 transform
    per image and applied in a single ``ImageProjectiveTransformV3`` call.

    Per image: angle in [-rotation, rotation] degrees, shear angle in
    [-shear, shear] degrees, scale in [1-zoom, 1+zoom], shift in
    [-shift, shift] of the height and (independently) of the width.
    Not XLA-compilable (no XLA kernel for ImageProjectiveTransformV3).
    """
    if seed is None:
        raise ValueError("transform needs a seed tensor of shape [2]")
    images, seed = _prep(images, seed)
    if not (rotation or shear or zoom or shift):
        return images
    n = _batch(images)
    s_rot, s_shr, s_zoom, s_y, s_x = _split(seed, 5)
    rot = _uniform([n], s_rot, -float(rotation), float(rotation))
    shr = _uniform([n], s_shr, -float(shear), float(shear))
    zm = _uniform([n], s_zoom, 1.0 - float(zoom), 1.0 + float(zoom))
    dy = _uniform([n], s_y, -float(shift), float(shift))
    dx = _uniform([n], s_x, -float(shift), float(shift))
    h, w = _hw(images)
    mats = transform_matrices(rot, shr, zm, dy, dx, h, w)
    return apply_transform(images, mats, fill_mode)


def random_crop(images, strength: float, seed):
    """Crop a random box covering an area fraction in [1-strength, 1] (the
    image's aspect ratio, random position) and resize it back to HxW
    (``tf.image.crop_and_resize``, bilinear). Not XLA-compilable
    (no XLA kernel for CropAndResize)."""
    tf = _tf()
    images, seed = _prep(images, seed)
    if not strength:
        return images
    n = _batch(images)
    s_area, s_y, s_x = _split(seed, 3)
    area = _uniform([n], s_area, 1.0 - float(strength), 1.0)
    side = tf.sqrt(area)
    y1 = _uniform([n], s_y, 0.0, 1.0) * (1.0 - side)
    x1 = _uniform([n], s_x, 0.0, 1.0) * (1.0 - side)
    boxes = tf.stack([y1, x1, y1 + side, x1 + side], axis=1)
    h, w = _hw(images)
    crop_size = [h, w] if isinstance(h, int) and isinstance(w, int) else tf.stack([h, w])
    out = tf.image.crop_and_resize(images, boxes, tf.range(n), crop_size,
                                   method="bilinear")
    out = tf.ensure_shape(out, images.shape)
    return _clip(out)


# -------------------------------------------------------------- composition


def build_augment(
    params: Mapping[str, Any],
) -> Callable[[Any, Any], Any] | None:
    """``fn(images, seed)`` applying the augmentations that are on in
    ``params``, in a fixed order: geometry (one combined transform), crop,
    flips, then colour; each op gets its own seed folded in from ``seed``
    (with a fixed per-op salt, so switching one op on or off does not change
    the others' random draws). Returns None when nothing is on. Keys of
    ``params`` that are not augmentation names are ignored; augmentation
    entries are validated (ValueError)."""
    on = active(params)
    if not on:
        return None
    cfg = {k: (bool(v) if AUGMENTATIONS[k].kind == "bool" else float(v))
           for k, v in on.items()}
    geo = {k: cfg.get(k, 0.0) for k in TRANSFORM_KEYS}
    steps: list[tuple[str, Callable]] = []
    if any(geo.values()):
        steps.append(("transform", lambda x, s: transform(x, seed=s, **geo)))
    if "crop" in cfg:
        steps.append(("crop", lambda x, s: random_crop(x, cfg["crop"], s)))
    if cfg.get("flip_left_right"):
        steps.append(("flip_left_right", flip_left_right))
    if cfg.get("flip_up_down"):
        steps.append(("flip_up_down", flip_up_down))
    for name, op in (("brightness", brightness), ("contrast", contrast)):
        if name in cfg:
            steps.append((name, lambda x, s, op=op, v=cfg[name]: op(x, v, s)))
    if "saturation" in cfg or "hue" in cfg:
        # One HSV round trip for both; each draws its own stream split off
        # the step seed (same draws as saturation()/hue() with that seed).
        sat, hue_d = cfg.get("saturation", 0.0), cfg.get("hue", 0.0)

        def hsv(x, s):
            return _hsv_adjust(x, s, sat, hue_d)

        steps.append(("saturation_hue", hsv))

    def augment(images, seed):
        tf = _tf()
        images, seed = _prep(images, seed)
        with tf.name_scope("augment"):
            for name, op in steps:
                images = op(images, tf.random.experimental.stateless_fold_in(
                    seed, _SALT[name]))
        return images

    augment.ops = tuple(name for name, _ in steps)  # type: ignore[attr-defined]
    augment.params = dict(cfg)  # type: ignore[attr-defined]
    return augment

