"""A small convolutional network trained from scratch, with the
`keras.applications` constructor's signature so that the hypermodel builds
it like any application.

Why it exists: a keras.applications backbone costs most of a CPU smoke run
before the first step. Keras traces the train step per variable, and the
optimizer's update alone is about half of that trace: MobileNetV2's 158
trainable variables take 27-33 s on 2 cores, this network's 12 take 3-4 s.
It is for smoke runs of a space on a laptop CPU and for the tool's own
tests; it has no ImageNet weights (a local weights file saved from it
loads). Its layers are named `block<k>_...` like the
applications', so `fine_tune: top` unfreezes its last blocks the same way.
"""

from __future__ import annotations

#: filters of each block; each block halves the side
FILTERS = (32, 64, 128, 256)


def SmallCNN(include_top: bool = False, weights: str | None = None, input_shape=None,
             pooling: str | None = "avg", **_ignored):
    import keras

    if weights not in (None, "none"):
        raise ValueError("smallcnn has no ImageNet weights; use weights none or a local weights file")
    if include_top:
        raise ValueError("smallcnn is built without a top; the hypermodel adds the classifier")
    inputs = keras.Input(input_shape or (None, None, 3))
    x = inputs
    for k, filters in enumerate(FILTERS, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{k}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{k}_bn")(x)
        x = keras.layers.ReLU(name=f"block{k}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{k}_pool")(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name="smallcnn")
