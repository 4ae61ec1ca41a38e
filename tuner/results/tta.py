"""Test-time augmentation: a model's predictions averaged over a few fixed
views of each image.

View 1 is the image, view 2 its left-right mirror, views 3 and on small
versions (half the magnitude) of the geometric and colour augmentations the
trial trained with, every other one mirrored; a trial that trained with none
of them gets a small zoom and shift. Each image's draws are seeded by the view
and the image's own pixels, not by its batch: an image gets the same views on
every run, at any `--batch` and in any position, so `predict --tta` sees the
views the export judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_VIEWS = 8
#: used for views 3+ when the trial trained with no geometric or colour augmentation
DEFAULT_SMALL = {"zoom": 0.1, "shift": 0.05}


def check_views(n: int) -> None:
    from tuner.errors import TunerError

    if not 1 <= n <= MAX_VIEWS:
        raise TunerError(f"--tta {n}: give 1 to {MAX_VIEWS} views (1 = none, 2 = the image and its mirror)")


def small_augmentations(values: dict[str, Any] | None) -> dict[str, float]:
    from tuner.data.augment import AUGMENTATIONS

    out = {}
    for name, spec in AUGMENTATIONS.items():
        v = (values or {}).get(name)
        if spec.kind != "bool" and v:
            out[name] = float(v) / 2
    return out or dict(DEFAULT_SMALL)


def views(n: int, values: dict[str, Any] | None = None) -> list[Callable]:
    """`n` functions images (B, H, W, 3 float) -> images of the same shape."""
    import tensorflow as tf

    from tuner.data.augment import build_augment

    check_views(n)

    def mirror(x):
        return tf.reverse(x, axis=[2])

    out: list[Callable] = [lambda x: x, mirror][:n]
    if n > 2:
        augment = build_augment(small_augmentations(values))
        for k in range(2, n):
            view = per_image(augment, k)
            out.append((lambda x, v=view: mirror(v(x))) if k % 2 else view)
    return out


def per_image(augment: Callable, k: int) -> Callable:
    """`augment` applied image by image, each seeded by (k, a fingerprint of
    its pixels): `augment` draws per position in the batch from one seed,
    which would give an image other views in another batch."""
    import tensorflow as tf

    def one(image):
        fp = tf.bitcast(tf.fingerprint(tf.reshape(image, [1, -1])), tf.int64)  # shape [1]
        return augment(image[None], tf.concat([tf.constant([k], tf.int64), fp], 0))[0]

    @tf.function(reduce_retracing=True)
    def view(x):
        return tf.map_fn(one, x, fn_output_signature=x.dtype)

    return lambda x: view(tf.convert_to_tensor(x, tf.float32))


def averaged(predict: Callable, n: int, values: dict[str, Any] | None = None) -> Callable:
    """`predict` over `n` views of each batch, averaged (n = 1: `predict`)."""
    import numpy as np

    if n == 1:
        return predict
    fns = views(n, values)

    def run(x):
        return np.mean([np.asarray(predict(v(x))) for v in fns], axis=0)

    return run
