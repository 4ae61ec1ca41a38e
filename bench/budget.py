"""Does the tool turn a fixed wall-clock budget into a better model than not
searching? Three runs one after another on this machine, same data, same
budget, each scored by its final model's validation macro F1:

  (a) one fixed configuration trained as a notebook would: the original
      study's ResNet50V2 with Nadam and ReduceLROnPlateau at a fixed learning
      rate, epoch after epoch until the next epoch would overrun the budget;
  (b) the search space with every trial running all its epochs
      (no early termination), `--max-time` = budget;
  (c) the same space with its early termination, `--max-time` = budget.

    python bench/budget.py [--data ROOT] [--budget 10m] [--seed 1] [--space demo]

(b) and (c) are scored by `best --export`'s metrics.json (the exported model
over the whole validation split); (a) by the same macro F1 over the same
split. Goal: (c) >= (a) and (c) > (b). Without --data, the demo data is
generated first (not counted in any budget). Each run is a subprocess, so
none inherits another's memory or traced graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, cli, demo_data, header, load, run, table, verdict, workdir  # noqa: E402

NOTEBOOK = """
import json, sys, time
t0 = time.monotonic()
import keras, numpy as np
from sklearn.metrics import f1_score
from tuner.data.augment import build_augment
from tuner.data.reader import FlowerData
from tuner.model.hypermodel import build_model
cfg = json.loads(sys.argv[1])
keras.utils.set_random_seed(cfg["seed"])
data = FlowerData(cfg["data"], cfg["image_size"], log=None)
v = cfg["values"]
model = build_model(v, jit_compile=False, num_classes=data.num_classes)
batch = cfg["batch"]
steps = cfg["steps"] or max(1, data.count("train") // batch)
train = data.train_dataset(batch, augment=build_augment(v), seed=cfg["seed"])  # the space's flips
val = data.val_dataset(batch)
plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=2, min_delta=1e-4)
epochs, last = 0, 0.0
while True:
    spent = time.monotonic() - t0
    if epochs and spent + last > cfg["budget"]:
        break
    e0 = time.monotonic()
    model.fit(train, validation_data=val, epochs=epochs + 1, initial_epoch=epochs, steps_per_epoch=steps,
              callbacks=[plateau], verbose=0)
    last = time.monotonic() - e0
    epochs += 1
    print(f"epoch {epochs}: {last:.1f}s, {time.monotonic() - t0:.0f}s spent", flush=True)
y, p = [], []
for x, yy in data.val_dataset(batch):
    p.append(np.argmax(model.predict(x, verbose=0), -1)); y.append(np.argmax(yy.numpy(), -1))
y, p = np.concatenate(y), np.concatenate(p)
f1 = f1_score(y, p, labels=range(data.num_classes), average="macro", zero_division=0)
print(json.dumps({"f1": float(f1), "epochs": epochs, "trials": 1, "seconds": time.monotonic() - t0}))
"""


def parse_duration(text: str) -> float:
    from tuner.cli import parse_duration as parse

    return parse(text)


def notebook(args, space, root: str, tmp: str) -> dict:
    values = space.defaults()
    values.update(backbone="resnet50v2", weights="none", fine_tune="full", optimizer="nadam",
                  learning_rate=args.notebook_lr, callback="reduce_lr_on_plateau",
                  image_size=max(space.params["image_size"].possible()))
    cfg = {"seed": args.seed, "data": root, "image_size": int(values["image_size"]), "values": values,
           "batch": space.train.batch_per_replica, "steps": space.train.steps_per_epoch,
           "budget": args.budget_s}
    t0 = time.monotonic()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-c", NOTEBOOK, json.dumps(cfg)], cwd=REPO, env=env,
                       capture_output=True, text=True)
    with open(os.path.join(tmp, "a.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode or not last:
        raise RuntimeError(f"(a) failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    out = json.loads(last[-1])
    out["wall"] = time.monotonic() - t0
    return out


def search(args, space_path: str, root: str, tmp: str, name: str) -> dict:
    project, export = os.path.join(tmp, f"proj-{name}"), os.path.join(tmp, f"export-{name}")
    t0 = time.monotonic()
    rc, text = cli("search", "--plain", "--space", space_path, "--data", root, "--project", project,
                   "--max-time", f"{args.budget_s:.0f}s", "--seed", str(args.seed),
                   log=os.path.join(tmp, f"{name}.log"))
    wall = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"({name}) search failed: {text.strip().splitlines()[-1:]}")
    rc, etext = cli("best", "--project", project, "--export", export, log=os.path.join(tmp, f"{name}-export.log"))
    if rc != 0:
        raise RuntimeError(f"({name}) export failed: {etext.strip().splitlines()[-1:]}")
    with open(os.path.join(export, "metrics.json")) as f:
        f1 = json.load(f)["macro_f1"]
    m = re.search(r"time spent: (\d+) epochs trained", text)
    trials = len([d for d in os.listdir(project) if d.startswith("trial_")])
    stopped = re.search(r"time spent: .*", text)
    return {"f1": f1, "epochs": int(m.group(1)) if m else None, "trials": trials, "wall": wall,
            "spent": stopped.group(0) if stopped else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="data root (default: generate the demo data)")
    p.add_argument("--budget", default="10m", help="wall-clock budget of each run (default 10m)")
    p.add_argument("--seed", type=int, default=1, help="seed of the space and the notebook (default 1)")
    p.add_argument("--space", default="demo", help="space of (b) and (c); it must have early_terminate")
    p.add_argument("--notebook-lr", type=float, default=1e-3, help="(a)'s fixed learning rate (default 1e-3)")
    p.add_argument("--keep", action="store_true", help="keep the projects and logs")
    p.add_argument("--only", default="abc", help="runs to make now (default abc); the others are read from the "
                   "last bench/out/budget-seedN.json of this seed, and the table says so")
    args = p.parse_args()
    args.budget_s = parse_duration(args.budget)
    header("budget: notebook vs full-epoch search vs early-terminated search")
    import yaml

    from tuner.spaces import load_space

    space = load_space(args.space)
    if space.early_terminate is None:
        raise SystemExit(f"space {args.space} has no early_terminate; (c) would equal (b)")
    with workdir(keep=args.keep) as tmp:
        root = demo_data(args.data, tmp, space.params["image_size"].possible(), 0.1)
        doc = yaml.safe_load(space.text)
        doc.pop("early_terminate")
        no_et = os.path.join(tmp, "space-b.yaml")
        with open(no_et, "w") as f:
            yaml.safe_dump(doc, f)
        with_et = os.path.join(tmp, "space-c.yaml")
        with open(with_et, "w") as f:
            f.write(space.text)
        rows, res = [], {}
        saved_path = os.path.join(REPO, "bench", "out", f"budget-seed{args.seed}.json")
        saved = {}
        if set(args.only) != set("abc"):
            with open(saved_path) as f:
                saved = json.load(f)
            if saved["budget_s"] != args.budget_s:
                raise SystemExit(f"{saved_path} was measured with another budget; run all three")
        for name, fn in (("a", lambda: notebook(args, space, root, tmp)),
                         ("b", lambda: search(args, no_et, root, tmp, "b")),
                         ("c", lambda: search(args, with_et, root, tmp, "c"))):
            if name not in args.only:
                res[name] = {**saved["runs"][name], "from": saved.get("at", "an earlier run")}
                r = res[name]
                rows.append([f"{name} (from {r['from']})", f"{r['f1']:.4f}", str(r["epochs"]), str(r["trials"]),
                             f"{r['wall']:.0f}s", r.get("load", "")])
                continue
            before = load()
            res[name] = fn()
            r = res[name]
            r["load"] = f"{before} -> {load()}"
            rows.append([name, f"{r['f1']:.4f}", str(r["epochs"]), str(r["trials"]), f"{r['wall']:.0f}s",
                         r["load"]])
            print(f"({name}) done: F1 {r['f1']:.4f}, {r['epochs']} epochs, {r['trials']} trial(s), "
                  f"{r['wall']:.0f}s {r.get('spent', '')}", flush=True)
        print(table(rows, ["run", "val macro F1", "epochs", "trials", "wall", "load average (1/5/15 min)"]))
        a, b, c = res["a"]["f1"], res["b"]["f1"], res["c"]["f1"]
        print(f"ratios: (c)/(a) {c / a if a else float('inf'):.3f}, (c)/(b) {c / b if b else float('inf'):.3f}")
        os.makedirs(os.path.join(REPO, "bench", "out"), exist_ok=True)
        with open(os.path.join(REPO, "bench", "out", f"budget-seed{args.seed}.json"), "w") as f:
            json.dump({"budget_s": args.budget_s, "seed": args.seed, "runs": res,
                       "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, f, indent=1)
        verdict(c >= a, f"(c) {c:.4f} >= (a) {a:.4f}")
        verdict(c > b, f"(c) {c:.4f} > (b) {b:.4f}")


if __name__ == "__main__":
    run(main)
