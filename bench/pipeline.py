"""Input-pipeline headroom: images/s of FlowerData.train_dataset vs ResNet50V2's
training images/s at the same image size, on this machine.

Goal: every pipeline configuration delivers >= 10x the images/s the model can
train on (the input is never the bottleneck).

    .venv/bin/python bench/pipeline.py                 # 192 px, small demo data
    .venv/bin/python bench/pipeline.py --data ROOT --batches 200 --model-steps 10
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

AUG = {"flip_left_right": True, "rotation": 15.0, "zoom": 0.1, "brightness": 0.1,
       "saturation": 0.1, "crop": 0.1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data root holding tfrecords-jpeg-SxS/ (default: generate demo data in a temp dir)")
    p.add_argument("--image-size", type=int, default=192, help="image size (default: 192)")
    p.add_argument("--scale", type=float, default=0.05,
                   help="demo data scale when generating (default: 0.05, ~700 train images)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--batches", type=int, default=40, help="timed batches per pipeline config (default: 40)")
    p.add_argument("--backbone", default="resnet50v2", help="model to compare against (default: resnet50v2)")
    p.add_argument("--model-warmup", type=int, default=2, help="untimed warm-up training steps (default: 2)")
    p.add_argument("--model-steps", type=int, default=5, help="timed training steps (default: 5)")
    p.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"),
                   help="model.compile jit_compile (default: auto)")
    p.add_argument("--goal", type=float, default=10.0, help="required pipeline/model ratio (default: 10)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def time_pipeline(ds, warmup: int, batches: int, batch: int) -> tuple[float, str]:
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    la = C.load()
    t0 = time.perf_counter()
    for _ in range(batches):
        x = next(it)
    _ = x[0].shape
    dt = time.perf_counter() - t0
    return batches * batch / dt, la


def model_rate(args) -> tuple[float, str, float]:
    import keras
    import numpy as np
    import tensorflow as tf

    from tuner.model.hypermodel import build_model

    keras.backend.clear_session()
    s = args.image_size
    v = {"backbone": args.backbone, "weights": "none", "image_size": s, "optimizer": "adam",
         "learning_rate": 1e-3, "fine_tune": "full"}
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    t0 = time.perf_counter()
    model = build_model(v, jit_compile=jit)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, s, s, 3)).astype("float32")
    y = tf.one_hot(rng.integers(0, 104, args.batch), 104)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()  # the input costs nothing here

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begin, self.end = {}, {}

        def on_epoch_begin(self, epoch, logs=None):
            self.begin[epoch] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.end[epoch] = time.perf_counter()

    timer = Timer()
    # A first fit warms up (tracing, XLA compile); the second reuses the
    # compiled train function and is timed over args.model_steps steps.
    model.fit(ds, steps_per_epoch=args.model_warmup, epochs=1, verbose=0)
    la = C.load()
    model.fit(ds, steps_per_epoch=args.model_steps, epochs=1, verbose=0, callbacks=[timer])
    dt = timer.end[0] - timer.begin[0]
    jit_used = getattr(model, "jit_compile", "?")
    print(f"model: {model.name}, {model.count_params() / 1e6:.1f}M params, built in {build_s:.1f}s, "
          f"jit_compile={jit_used}; {args.model_steps} steps x {args.batch} in {dt:.1f}s")
    return args.model_steps * args.batch / dt, la, dt


def main(argv=None) -> int:
    args = parse_args(argv)
    C.header("bench/pipeline.py: input pipeline headroom")
    print(C.versions())
    with C.workdir(args.keep) as tmp:
        root = C.demo_data(args.data, tmp, (args.image_size,), args.scale)
        from tuner.data.augment import build_augment
        from tuner.data.reader import FlowerData

        data = FlowerData(root, args.image_size, log=print)
        n = data.count("train")
        epoch_batches = math.ceil(n / args.batch)
        aug = build_augment(AUG)
        print(f"train records: {n} ({epoch_batches} batches of {args.batch} per pass); "
              f"augmentations: {', '.join(f'{k}={v}' for k, v in AUG.items())} -> ops {aug.ops}")
        # cache on: fill the cache with one full pass (plus the shuffle buffer) first.
        fill = epoch_batches + math.ceil(2048 / args.batch) + 2
        configs = [
            ("cache off, no augmentation", dict(cache=False, augment=None), 3),
            ("cache on (filled), no augmentation", dict(cache=True, augment=None), fill),
            ("cache off, augmentations on", dict(cache=False, augment=aug), 3),
            ("cache on (filled), augmentations on", dict(cache=True, augment=aug), fill),
        ]
        results = []
        for name, kw, warm in configs:
            ds = data.train_dataset(args.batch, seed=0, **kw)
            rate, la = time_pipeline(ds, warm, args.batches, args.batch)
            print(f"  {name}: {rate:.0f} images/s (load {la})", flush=True)
            results.append((name, rate, la))
            del ds
        mrate, mla, _ = model_rate(args)
        print(f"  {args.backbone} training at {args.image_size}px: {mrate:.2f} images/s (load {mla})")
        # The pipeline again after the model, so a load change shows up.
        ds = data.train_dataset(args.batch, seed=0, cache=False, augment=aug)
        rate2, la2 = time_pipeline(ds, 3, args.batches, args.batch)
        print(f"  (re-run) cache off, augmentations on: {rate2:.0f} images/s (load {la2})")

    rows = [[name, f"{rate:.0f}", f"{rate / mrate:.1f}", la, "yes" if rate / mrate >= args.goal else "NO"]
            for name, rate, la in results]
    rows.append([f"{args.backbone} training (jit {args.jit_compile})", f"{mrate:.2f}", "1.0", mla, ""])
    print()
    print(f"batch {args.batch}, {args.image_size}px, {args.batches} timed batches per config")
    print(C.table(rows, ["configuration", "images/s", f"ratio to {args.backbone}", "load avg", f">= {args.goal:g}?"]))
    worst = min(r for _, r, _ in results)
    C.verdict(worst / mrate >= args.goal,
              f"slowest pipeline config {worst:.0f} images/s = {worst / mrate:.1f}x {args.backbone}'s "
              f"{mrate:.2f} images/s (goal >= {args.goal:g}x); load now {C.load()}")
    return 0


if __name__ == "__main__":
    C.run(main)
