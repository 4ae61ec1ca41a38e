"""Which Keras backend trains faster on this CPU (issue 21): ResNet50V2
training images/s under TensorFlow and under JAX, each in its own process
(Keras fixes its backend at import), the figure `--backend auto` picks by
on a machine without an accelerator (tuner.backend.CPU_FASTER).

    .venv/bin/python bench/backends.py                 # 64 and 192 px
    .venv/bin/python bench/backends.py --sizes 64 --steps 5

Each configuration builds the tool's own model (weights none, float32, XLA
on: JAX always compiles, TensorFlow with jit_compile true and false),
trains `--warmup` untimed steps on one in-memory batch (tracing and
compilation, timed apart), then `--steps` timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(backend: str, size: int, batch: int, warmup: int, steps: int, jit: bool) -> dict:
    """Runs in the child process, with KERAS_BACKEND already set."""
    import numpy as np

    import keras

    from tuner.model.hypermodel import build_model

    v = {"backbone": "resnet50v2", "weights": "none", "image_size": size, "optimizer": "nadam",
         "learning_rate": 1e-4}
    model = build_model(v, jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 104, batch), 104).astype("float32")
    t0 = time.perf_counter()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    return {"backend": backend, "size": size, "batch": batch, "jit_compile": jit, "warmup_s": round(first, 2),
            "step_s": round(median, 4), "images_per_s": round(batch / median, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,192")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--backends", default="tensorflow,jax")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "out", "backends.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        backend, size, jit = args.child.split(":")
        print(json.dumps(one(backend, int(size), args.batch, args.warmup, args.steps, jit == "1")))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in args.backends.split(","):
            for jit in ((False, True) if backend == "tensorflow" else (True,)):
                env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                       "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
                cmd = [sys.executable, __file__, "--child", f"{backend}:{size}:{int(jit)}", "--batch",
                       str(args.batch), "--warmup", str(args.warmup), "--steps", str(args.steps)]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode:
                    print(r.stderr[-2000:], file=sys.stderr)
                    return 1
                row = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{backend:10s} {size:4d} px  jit {str(jit):5s}  {row['images_per_s']:7.2f} images/s  "
                      f"(step {row['step_s']:.3f} s; first {args.warmup} steps {row['warmup_s']:.1f} s)", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"nproc": os.cpu_count(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
