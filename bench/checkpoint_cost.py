"""CPU and wall seconds of one epoch checkpoint, on the training thread
(`TrialCheckpoint.save`: the snapshot) and in the background (`_write`: the
HDF5 image and the file), for ResNet50V2 with Nadam. `--code DIR` measures
another checkout's `tuner` (e.g. a `git worktree` of an older commit), so two
versions can run back to back in one shell loop:

    for c in /tmp/old . /tmp/old .; do python bench/checkpoint_cost.py --code $c; done
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", default=".", help="the checkout whose tuner package is measured (default: .)")
    p.add_argument("--image-size", type=int, default=64, help="ResNet50V2's input size (default: 64)")
    p.add_argument("--epochs", type=int, default=6, help="saves, one per epoch; the first is not counted (default: 6)")
    p.add_argument("--dir", default=None, help="where the trial folder goes (default: a temp dir under the "
                   "current folder, on the project's disk)")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.abspath(args.code))
    import keras
    import numpy as np

    from tuner.engine.checkpoint import TrialCheckpoint

    size = args.image_size
    model = keras.applications.ResNet50V2(weights=None, input_shape=(size, size, 3), classes=104)
    model.compile(keras.optimizers.Nadam(1e-3), "sparse_categorical_crossentropy")
    x, y = np.random.rand(64, size, size, 3).astype("float32"), np.zeros(64)
    model.fit(x, y, epochs=1, verbose=0)
    last: dict[str, float] = {}
    real = TrialCheckpoint._write

    def timed(self, *a, **k):
        cpu, wall = time.thread_time(), time.perf_counter()
        real(self, *a, **k)
        last.update(cpu=time.thread_time() - cpu, wall=time.perf_counter() - wall)

    TrialCheckpoint._write = timed
    folder = tempfile.mkdtemp(prefix="ckpt-cost-", dir=args.dir or ".")
    rows = []
    try:
        ckpt = TrialCheckpoint(folder)
        for epoch in range(1, args.epochs + 1):
            model.fit(x, y, epochs=1, verbose=0, batch_size=32)
            cpu = time.thread_time()
            ckpt.save(model, epoch, {"rows": []})
            save = time.thread_time() - cpu
            ckpt.flush()
            print(f"  epoch {epoch}: save() {save:.2f} CPU-s on the training thread; background write "
                  f"{last['cpu']:.2f} CPU-s, {last['wall']:.2f} s wall", flush=True)
            if epoch > 1:
                rows.append((save, last["cpu"], last["wall"]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    a = np.array(rows)
    print(f"{os.path.abspath(args.code)}: epochs 2-{args.epochs} mean: save() {a[:, 0].mean():.2f} CPU-s, "
          f"write {a[:, 1].mean():.2f} CPU-s, {a[:, 2].mean():.2f} s wall")


if __name__ == "__main__":
    main()
