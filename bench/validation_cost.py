"""What a validation image costs against a training image, by how much of the
backbone trains: the ratio `train.validate_every: auto` sizes with
(`tuner.engine.validation.VAL_COST`).

In-memory batches (no input pipeline), the tool's own model
(`tuner.model.hypermodel.build_model`, weights none: the cost does not depend
on the weights' values), `train_on_batch` against `test_on_batch` at the same
batch, after warm-up steps; medians of the timed steps.

    .venv/bin/python bench/validation_cost.py --image-size 96 --steps 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(fine_tune: str, size: int, batch: int, steps: int, blocks: int) -> tuple[float, float]:
    """(seconds per training image, seconds per validation image)."""
    import keras
    import numpy as np

    from tuner.model.hypermodel import build_model, unfreeze_top_blocks

    model = build_model({"backbone": "resnet50v2", "weights": "none", "image_size": size,
                         "jit_compile": False}, jit_compile=False, num_classes=104)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    if fine_tune == "top":
        unfreeze_top_blocks(backbone, blocks)
    elif fine_tune == "frozen":
        backbone.trainable = False
    model.compile(optimizer=keras.optimizers.Nadam(1e-3), loss="categorical_crossentropy", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 104, batch), 104)
    times: dict[str, list[float]] = {"train": [], "val": []}
    for i in range(steps + 2):  # two warm-up steps each (tracing)
        for kind, fn in (("train", model.train_on_batch), ("val", model.test_on_batch)):
            t0 = time.perf_counter()
            fn(x, y)
            if i >= 2:
                times[kind].append(time.perf_counter() - t0)
    return statistics.median(times["train"]) / batch, statistics.median(times["val"]) / batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=12, help="timed steps of each kind (default: 12)")
    p.add_argument("--blocks", type=int, default=2, help="top blocks trained with fine_tune top (default: 2)")
    p.add_argument("--modes", default="full,top,frozen")
    a = p.parse_args(argv)
    print(f"ResNet50V2 {a.image_size} px, batch {a.batch}, {a.steps} timed steps; load {os.getloadavg()}")
    for mode in a.modes.split(","):
        train, val = measure(mode, a.image_size, a.batch, a.steps, a.blocks)
        label = f"top {a.blocks} blocks" if mode == "top" else mode
        print(f"fine_tune {label:<13} train {1000 * train:7.2f} ms/image  validation {1000 * val:6.2f} ms/image  "
              f"ratio {val / train:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
