"""Speed on an accelerator (issue 12): training images/s of ResNet50 and
ResNet50V2 for each precision and with XLA on and off; the tool's trial
against a bare Keras `fit` of the same model; the input pipeline against
training.

Goals: trial / bare >= 0.95 (images/s, epochs after the first); slowest
input pipeline (cache off, six augmentations) >= 1.5x the fastest training
configuration at the same size. The precision and XLA table has no goal: it
is what `train.precision: auto` and `jit_compile: auto` are judged by.

    .venv/bin/python bench/accelerator.py                  # a GPU: 192 and 512 px
    .venv/bin/python bench/accelerator.py --quick          # any machine: 32 px, a smoke run
    .venv/bin/python bench/accelerator.py --sizes 192 --backbones resnet50v2 --no-trial
    python bench/accelerator.py --backend jax --synthetic  # JAX + Keras, no TensorFlow needed

`--synthetic` trains from in-memory numpy batches and imports no
TensorFlow (a JAX GPU box without it); it measures the throughput table
only: the trial comparison and the input pipeline need the tf.data reader.

Each configuration is built in a fresh Keras session and trained on one
synthetic batch repeated (the input costs nothing there), `--warmup` steps
untimed (tracing, XLA compilation), then `--steps` timed steps. A precision
the device cannot run (mixed_float16 without an NVIDIA GPU) is listed as
skipped. The trial comparison runs bench/overhead.py's two sides (alternated
bare, tuner, tuner, bare) at the first size and backbone, with the
precision and XLA that `auto` picks here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="resnet50,resnet50v2", help="comma-separated (default: resnet50,resnet50v2)")
    p.add_argument("--sizes", default="192,512", help="image sizes, comma-separated (default: 192,512)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=f"comma-separated (default: all of {PRECISIONS})")
    p.add_argument("--jit", default="false,true", help="jit_compile values to try (default: false,true)")
    p.add_argument("--batch", type=int, default=64, help="batch size for the throughput table (default: 64)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per configuration (default: 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default: 20)")
    p.add_argument("--no-trial", dest="trial", action="store_false", help="skip the trial-vs-bare comparison")
    p.add_argument("--trial-epochs", type=int, default=4, help="epochs per side, the first not counted (default: 4)")
    p.add_argument("--trial-steps", type=int, default=40, help="steps per epoch on each side (default: 40)")
    p.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the input pipeline figure")
    p.add_argument("--scale", type=float, default=0.05, help="demo data scale (default: 0.05)")
    p.add_argument("--data", help="data root (default: demo data in a temp dir)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run anywhere: 32 px, resnet50v2, float32 and mixed_bfloat16, 2 steps")
    p.add_argument("--out", default=os.path.join(C.REPO, "bench", "out", "accelerator.json"),
                   help="where the figures go as JSON (default: bench/out/accelerator.json)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--backend", choices=("tensorflow", "jax"), help="Keras backend (default: $KERAS_BACKEND, "
                   "else tensorflow)")
    p.add_argument("--synthetic", action="store_true", help="numpy batches, no TensorFlow import: the "
                   "throughput table only (implies --no-trial --no-pipeline)")
    args = p.parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # before the first `import keras`
    if args.synthetic:
        args.trial = args.pipeline = False
    if os.environ.get("KERAS_BACKEND") == "jax":
        args.jit = "true"  # JAX always compiles (build_model ignores jit_compile false there)
    if args.quick:
        args.backbones, args.sizes, args.precisions = "resnet50v2", "32", "float32,mixed_bfloat16"
        args.batch, args.warmup, args.steps = 16, 1, 2
        args.trial_epochs, args.trial_steps, args.scale = 2, 3, 0.02
    return args


def _jax() -> bool:
    import keras

    return keras.backend.backend() == "jax"


def device_description() -> str:
    if _jax():
        import jax

        devs = jax.local_devices()
        kinds = sorted({f"{d.platform}: {getattr(d, 'device_kind', '?')}" for d in devs})
        return f"JAX {jax.__version__}, {len(devs)} device(s) ({'; '.join(kinds)}); host {C.machine()}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"no GPU: {C.machine()}"
    names = []
    for g in gpus:
        d = tf.config.experimental.get_device_details(g)
        cc = ".".join(map(str, d.get("compute_capability", ()))) or "?"
        names.append(f"{d.get('device_name', g.name)} (compute capability {cc})")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        smi = ""
    return "; ".join(names) + (f"; nvidia-smi: {smi}" if smi else "") + f"; host {C.machine()}"


def train_rate(backbone: str, size: int, precision: str, jit: bool, args) -> dict:
    """Images/s of `model.fit` steps on one repeated synthetic batch."""
    import keras
    import numpy as np

    from tuner.model.hypermodel import build_model

    keras.backend.clear_session()
    v = {"backbone": backbone, "weights": "none", "image_size": size, "optimizer": "adam",
         "learning_rate": 1e-3, "fine_tune": "full"}
    model = build_model(v, jit_compile=jit, precision=precision)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, size, size, 3)).astype("float32")
    if args.synthetic:
        y = np.eye(104, dtype="float32")[rng.integers(0, 104, args.batch)]
        return _train_rate_arrays(model, x, y, backbone, size, precision, jit, args)
    import tensorflow as tf

    y = tf.one_hot(rng.integers(0, 104, args.batch), 104)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t0
    return {"backbone": backbone, "size": size, "precision": precision, "jit": jit,
            "images_per_s": args.steps * args.batch / dt, "warmup_s": first, "load": C.load()}


def _train_rate_arrays(model, x, y, backbone, size, precision, jit, args) -> dict:
    """`train_rate` from one numpy batch (train_on_batch: no tf.data)."""
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(x, y)
    float(loss[0] if isinstance(loss, list) else loss)  # the last step has finished
    dt = time.perf_counter() - t0
    return {"backbone": backbone, "size": size, "precision": precision, "jit": jit,
            "images_per_s": args.steps * args.batch / dt, "warmup_s": first, "load": C.load()}


def throughput_table(args) -> list[dict]:
    from tuner.errors import TunerError
    from tuner.model.precision import choose, this_device

    device = this_device("gpu" if _has_gpu() else "cpu")
    rows = []
    for backbone in args.backbones.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for precision in args.precisions.split(","):
                try:
                    choose(precision, device)
                except TunerError as e:
                    rows.append({"backbone": backbone, "size": size, "precision": precision, "skipped": str(e)})
                    print(f"  {backbone} {size}px {precision}: skipped ({e})", flush=True)
                    continue
                for jit in (s.strip() == "true" for s in args.jit.split(",")):
                    try:
                        r = train_rate(backbone, size, precision, jit, args)
                    except Exception as e:  # noqa: BLE001 - an out-of-memory at 512 px is a figure too
                        r = {"backbone": backbone, "size": size, "precision": precision, "jit": jit,
                             "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
                        print(f"  {backbone} {size}px {precision} jit={jit}: {r['error']}", flush=True)
                    else:
                        print(f"  {backbone} {size}px {precision} jit={jit}: {r['images_per_s']:.1f} images/s "
                              f"(warm-up {r['warmup_s']:.1f}s, load {r['load']})", flush=True)
                    rows.append(r)
    return rows


def _has_gpu() -> bool:
    if _jax():
        import jax

        return jax.local_devices()[0].platform == "gpu"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def trial_vs_bare(args, root: str, tmp: str) -> dict:
    """bench/overhead.py's bare and tuner sides, alternated, with `auto`."""
    import overhead

    o = overhead.parse_args([
        "--image-size", str(int(args.sizes.split(",")[0])), "--backbone", args.backbones.split(",")[0],
        "--epochs", str(args.trial_epochs), "--steps", str(args.trial_steps), "--batch", str(args.batch),
        "--repeats", "2", "--no-breakdown", "--strategy", "auto"])
    runs: dict[str, list] = {"bare": [], "tuner": []}
    for k, kind in enumerate(["bare", "tuner", "tuner", "bare"]):
        r = overhead.bare_run(o, root) if kind == "bare" else overhead.tuner_run(o, root, tmp, k)
        runs[kind].append(r)
        print(f"  run {k + 1} {kind}: epochs 2..{o.epochs} wall {', '.join(f'{x:.2f}' for x in r['wall'])} s",
              flush=True)
    med = {kind: statistics.median(x for r in rs for x in r["wall"]) for kind, rs in runs.items()}
    return {"size": o.image_size, "backbone": o.backbone, "precision": overhead.policy(o), "steps": o.steps,
            "batch": o.batch, "bare_s_per_epoch": med["bare"], "tuner_s_per_epoch": med["tuner"],
            "ratio": med["bare"] / med["tuner"]}


def pipeline_rate(args, root: str) -> dict:
    """The slowest configuration of bench/pipeline.py (cache off, six augmentations)."""
    import pipeline

    from tuner.data.augment import build_augment
    from tuner.data.reader import FlowerData

    size = int(args.sizes.split(",")[0])
    data = FlowerData(root, size, log=None)
    ds = data.train_dataset(args.batch, seed=0, cache=False, augment=build_augment(pipeline.AUG))
    rate, la = pipeline.time_pipeline(ds, 3, max(args.steps, 10), args.batch)
    return {"size": size, "images_per_s": rate, "load": la}


def _versions() -> str:
    """Package versions without importing TensorFlow (for --synthetic)."""
    from importlib import metadata

    out = []
    for dist in ("jax", "jaxlib", "keras", "keras-tuner", "tensorflow", "tensorflow-cpu"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    C.header("bench/accelerator.py: precision, XLA, trial overhead and input pipeline on this device")
    print(_versions() if args.synthetic else C.versions())
    desc = device_description()
    print(f"device: {desc}")
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": desc,
                 "command": " ".join(sys.argv), "batch": args.batch}
    out["throughput"] = rows = throughput_table(args)
    done = [r for r in rows if "images_per_s" in r]
    print()
    print(C.table([[r["backbone"], str(r["size"]), r["precision"], str(r.get("jit", "")),
                    f"{r['images_per_s']:.1f}" if "images_per_s" in r else r.get("skipped") or r.get("error", "")]
                   for r in rows], ["backbone", "px", "precision", "jit", "images/s"]))
    verdicts = []
    with C.workdir(args.keep) as tmp:
        if args.trial or args.pipeline:
            root = C.demo_data(args.data, tmp, (int(args.sizes.split(",")[0]),), args.scale)
        if args.trial:
            out["trial"] = t = trial_vs_bare(args, root, tmp)
            print(f"trial / bare at {t['size']}px {t['backbone']} ({t['precision']}): {t['ratio']:.3f} "
                  f"({t['bare_s_per_epoch']:.2f} vs {t['tuner_s_per_epoch']:.2f} s/epoch)")
            verdicts.append((t["ratio"] >= 0.95, f"trial / bare = {t['ratio']:.3f} (goal >= 0.95)"))
        if args.pipeline and done:
            size = int(args.sizes.split(",")[0])
            fastest = max((r for r in done if r["size"] == size), key=lambda r: r["images_per_s"], default=None)
            out["pipeline"] = pl = pipeline_rate(args, root)
            if fastest is not None:
                pl["ratio"] = pl["images_per_s"] / fastest["images_per_s"]
                pl["against"] = {k: fastest[k] for k in ("backbone", "precision", "jit", "images_per_s")}
                print(f"input pipeline at {size}px (cache off, six augmentations): {pl['images_per_s']:.0f} images/s "
                      f"= {pl['ratio']:.2f}x the fastest training configuration ({fastest['backbone']} "
                      f"{fastest['precision']} jit={fastest['jit']}, {fastest['images_per_s']:.1f} images/s)")
                verdicts.append((pl["ratio"] >= 1.5, f"pipeline / training = {pl['ratio']:.2f}x (goal >= 1.5x)"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"figures written to {args.out}")
    if args.synthetic:
        print(f"TensorFlow imported: {'yes' if 'tensorflow' in sys.modules else 'no'}")
    for ok, what in verdicts:
        C.verdict(ok, what)
    return 0


if __name__ == "__main__":
    C.run(main)
