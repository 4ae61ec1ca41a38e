"""Memory over a search: this process's RSS (VmRSS from /proc/self/status)
after each of N small trials of ONE in-process `run_search` (a random space
at 32 px, tiny steps). Keras Tuner issues #873 and #395 report RSS growing
trial after trial.

Goal: RSS after trial N minus RSS after trial 1 <= 200 MB.

RSS is read in the search's own progress object (`trial_end`, called after
each trial's files are written), so nothing outside bench/ is touched. With
each sample the script counts the Keras models and the traced train-step
graphs (`one_step_on_data` FuncGraphs) still alive after gc.collect().

A control (--control, on by default) runs in a fresh subprocess the same
number of plain-Keras rounds without the tuner: build_model, fit the same
epochs x steps, del, keras.backend.clear_session(), gc.collect(). If the
control grows as much as the search, the growth comes from Keras/TensorFlow,
not from flower-tuner or Keras Tuner.

--purge-grad-registry is an experiment, not a fix: after each trial it deletes
the `CustomGradient-*` entries TensorFlow's global gradient registry gained
during the trial. In TF 2.21 / Keras 3, `tf.custom_gradient` in graph mode
(used by `ReplicaContext.all_reduce`, which the Keras optimizer calls inside
the traced train step) registers a closure there that is never removed and
that keeps the whole traced graph, with the model's and optimizer's
variables, alive.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --trials 30 --image-size 64 --jit-compile auto
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SPACE = """\
name: bench-memory
description: many tiny random trials, for bench/memory.py
method: random
run_cap: {trials}
seed: 3
train: {{epochs: {epochs}, steps_per_epoch: {steps}, batch_per_replica: {batch}, jit_compile: {jit}}}
parameters:
  backbone:      {{value: {backbone}}}
  weights:       {{value: none}}
  image_size:    {{value: {size}}}
  optimizer:     {{values: [adam, nadam, rmsprop]}}
  learning_rate: {{min: 1.0e-4, max: 3.0e-3, distribution: log_uniform_values}}
  dropout:       {{min: 0.0, max: 0.5}}
  callback:      {{values: [none, reduce_lr_on_plateau]}}
  flip_left_right: {{values: [true, false]}}
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data root (default: generate demo data in a temp dir)")
    p.add_argument("--trials", type=int, default=10, help="trials in the one search (default: 10)")
    p.add_argument("--image-size", type=int, default=32, help="image size (default: 32)")
    p.add_argument("--scale", type=float, default=0.02, help="demo data scale (default: 0.02)")
    p.add_argument("--backbone", default="resnet50v2", help="backbone (default: resnet50v2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (default: 2)")
    p.add_argument("--steps", type=int, default=2, help="steps per epoch (default: 2)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default: 8)")
    p.add_argument("--jit-compile", default="false", choices=("auto", "true", "false"), help="(default: false)")
    p.add_argument("--goal", type=float, default=200.0, help="allowed growth trial 1 -> last, MB (default: 200)")
    p.add_argument("--purge-grad-registry", action="store_true",
                   help="experiment: after each trial delete the 'CustomGradient-*' entries TensorFlow added to its "
                        "global gradient registry during it (private API), to show where the growth comes from")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="skip the plain-Keras control loop")
    p.add_argument("--bare-loop", metavar="ROOT", help=argparse.SUPPRESS)  # the control, run as a subprocess
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def alive() -> tuple[int, int]:
    """(keras models, traced train/eval step graphs) alive after gc.collect()."""
    import keras
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    objs = gc.get_objects()
    models = sum(1 for o in objs if isinstance(o, keras.Model))
    graphs = sum(1 for o in objs if isinstance(o, FuncGraph) and o.name == "one_step_on_data")
    return models, graphs


def bare_loop(args) -> None:
    """The control: the same model and fits as the trials, without any tuner."""
    import keras

    from tuner.data.reader import FlowerData
    from tuner.model.hypermodel import build_model

    data = FlowerData(args.bare_loop, args.image_size, log=None)
    v = {"backbone": args.backbone, "weights": "none", "image_size": args.image_size, "optimizer": "adam",
         "learning_rate": 1e-3, "dropout": 0.2}
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    for i in range(args.trials):
        keras.backend.clear_session()
        gc.collect()
        model = build_model(v, jit_compile=jit, num_classes=data.num_classes)
        model.fit(data.train_dataset(args.batch, cache="auto", seed=i), validation_data=data.val_dataset(args.batch),
                  epochs=args.epochs, steps_per_epoch=args.steps, verbose=0)
        del model
        keras.backend.clear_session()
        gc.collect()
        m, g = alive()
        print(f"CONTROL {i + 1} {vm('VmRSS'):.0f} {m} {g}", flush=True)


def run_control(args, root: str) -> list[tuple[float, int, int]]:
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--bare-loop", root, "--trials", str(args.trials),
           "--image-size", str(args.image_size), "--backbone", args.backbone, "--epochs", str(args.epochs),
           "--steps", str(args.steps), "--batch", str(args.batch), "--jit-compile", args.jit_compile]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("CONTROL "):
            _, _, rss, m, g = line.split()
            rows.append((float(rss), int(m), int(g)))
    if not rows:
        print(out.stdout[-1500:], out.stderr[-1500:])
    return rows


def vm(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.bare_loop:
        bare_loop(args)
        return 0
    C.header("bench/memory.py: RSS across trials in one process")
    print(C.versions())
    with C.workdir(args.keep) as tmp:
        root = C.demo_data(args.data, tmp, (args.image_size,), args.scale)
        space = os.path.join(tmp, "memory.yaml")
        with open(space, "w") as f:
            f.write(SPACE.format(trials=args.trials, epochs=args.epochs, steps=args.steps, batch=args.batch,
                                 jit=args.jit_compile, backbone=args.backbone, size=args.image_size))
        import tensorflow  # noqa: F401  (so the baseline includes TF itself)

        from tuner.engine.progress import Progress
        from tuner.search import SearchOptions, run_search

        samples: list[tuple] = []

        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # noqa: SLF001 - diagnosis only
        known = set(registry)

        class Sampling(Progress):
            def trial_end(self, trial_id, status, score, message=None, goal="max"):
                super().trial_end(trial_id, status, score, message, goal)
                added = [k for k in set(registry) - known if k.startswith("CustomGradient-")]
                if args.purge_grad_registry:
                    for k in added:
                        del registry[k]
                known.update(registry)
                rss = vm("VmRSS")
                models, graphs = alive()  # includes gc.collect()
                samples.append((trial_id, status, rss, vm("VmRSS"), vm("VmHWM"), C.load(), models, graphs))
                print(f"  [memory] after trial {trial_id} ({status}): VmRSS {rss:.0f} MB "
                      f"(after gc {samples[-1][3]:.0f} MB), peak {samples[-1][4]:.0f} MB; alive: {models} keras "
                      f"models, {graphs} traced step graphs; {len(added)} CustomGradient registry entries added"
                      f"{' and purged' if args.purge_grad_registry else ''}; load {C.load()}", flush=True)

        base = vm("VmRSS")
        print(f"RSS before the search (TensorFlow imported): {base:.0f} MB")
        t0 = time.monotonic()
        res = run_search(SearchOptions(space=space, data=root, project=os.path.join(tmp, "proj"),
                                       plain=True, strategy="cpu"), progress=Sampling(plain=True))
        wall = time.monotonic() - t0
        print(f"search: {len(res.trials)} trials in {wall:.0f}s, statuses {sorted(set(res.trials.values()))}")
        control = []
        if args.control:
            t0 = time.monotonic()
            control = run_control(args, root)
            print(f"control (plain Keras, fresh process): {len(control)} rounds in {time.monotonic() - t0:.0f}s; "
                  f"load {C.load()}")

    if len(samples) < 2:
        C.verdict(None, f"only {len(samples)} trial(s) sampled")
        return 0
    rows = []
    for i, (tid, st, r, g, h, la, models, graphs) in enumerate(samples):
        row = [str(i + 1), tid, st, f"{r:.0f}", f"{r - samples[0][2]:+.0f}", f"{g:.0f}", f"{h:.0f}",
               f"{models}/{graphs}"]
        if control:
            c = control[i] if i < len(control) else None
            row += [f"{c[0]:.0f}" if c else "-", f"{c[0] - control[0][0]:+.0f}" if c else "-",
                    f"{c[1]}/{c[2]}" if c else "-"]
        rows.append(row + [la])
    print()
    print(f"{args.backbone} at {args.image_size}px, {args.epochs} epochs x {args.steps} steps x batch {args.batch}, "
          f"jit_compile {args.jit_compile}{', gradient registry purged after each trial' if args.purge_grad_registry else ''}; baseline before the search {base:.0f} MB")
    head = ["#", "trial", "status", "VmRSS MB", "vs trial 1", "after gc", "VmHWM MB", "alive models/graphs"]
    if control:
        head += ["control VmRSS", "control vs 1", "control models/graphs"]
    print(C.table(rows, head + ["load"]))
    first, last = samples[0][2], samples[-1][2]
    n = len(samples)
    # least-squares slope over trials 2..n (trial 1 includes one-off warm-up)
    xs = list(range(2, n + 1))
    ys = [s[2] for s in samples[1:]]
    if len(xs) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(f"trend over trials 2..{n}: {slope:+.1f} MB/trial")
    if len(control) >= 2:
        cg = control[-1][0] - control[0][0]
        print(f"control (plain Keras build/fit/del/clear_session, no tuner): {cg:+.0f} MB over "
              f"{len(control)} rounds ({cg / (len(control) - 1):+.0f} MB/round); the search: "
              f"{(last - first) / (n - 1):+.0f} MB/trial")
    C.verdict(last - first <= args.goal,
              f"RSS growth trial 1 -> trial {n}: {last - first:+.0f} MB ({first:.0f} -> {last:.0f} MB; "
              f"goal <= {args.goal:g} MB); load now {C.load()}")
    return 0


if __name__ == "__main__":
    C.run(main)
