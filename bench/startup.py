"""Start-up latency of the command line:

- `python -m tuner --help` (should answer at once: nothing heavy is imported);
- `python -m tuner search ...` (a subprocess) until the first trial is created
  (`trial_*/trial.json` appears) and until its first training step begins.

The first step is located from files only: the first epoch's checkpoint
starts by creating `trial_*/resume/` (polled every --poll seconds), and
history.csv's `seconds` for epoch 1 is the time from the epoch's start (its
first step) to just before that checkpoint; so first step = resume/ appearing
minus epoch 1's seconds.

    .venv/bin/python bench/startup.py
    .venv/bin/python bench/startup.py --image-size 64 --repeats 3 --goal-first-step 30
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SPACE = """\
name: bench-startup
description: one tiny trial, for bench/startup.py
method: random
run_cap: 1
seed: 5
train: {{epochs: 2, steps_per_epoch: {steps}, batch_per_replica: 8, jit_compile: {jit}}}
parameters:
  backbone:      {{value: {backbone}}}
  weights:       {{value: none}}
  image_size:    {{value: {size}}}
  optimizer:     {{value: adam}}
  learning_rate: {{value: 0.001}}
  callback:      {{value: none}}
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data root (default: generate demo data in a temp dir)")
    p.add_argument("--image-size", type=int, default=32, help="image size (default: 32)")
    p.add_argument("--scale", type=float, default=0.02, help="demo data scale (default: 0.02)")
    p.add_argument("--backbone", default="resnet50v2", help="backbone (default: resnet50v2)")
    p.add_argument("--steps", type=int, default=2, help="steps per epoch (default: 2)")
    p.add_argument("--jit-compile", default="false", choices=("auto", "true", "false"), help="(default: false)")
    p.add_argument("--repeats", type=int, default=2, help="search launches to time (default: 2)")
    p.add_argument("--poll", type=float, default=0.02, help="file polling interval, s (default: 0.02)")
    p.add_argument("--goal-help", type=float, default=1.0, help="goal for --help, s (default: 1.0)")
    p.add_argument("--goal-first-step", type=float, default=30.0,
                   help="goal for launch -> first training step, s (default: 30)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def time_cmd(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=C.REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def one_search(args, root: str, space: str, project: str) -> dict:
    cmd = [sys.executable, "-m", "tuner", "search", "--space", space, "--data", root, "--project", project,
           "--plain", "--strategy", "cpu"]
    la = C.load()
    t0 = time.perf_counter()
    log = open(project + ".log", "w+")
    proc = subprocess.Popen(cmd, cwd=C.REPO, env=env(), stdout=log, stderr=subprocess.STDOUT)
    t_trial = t_resume = None
    while proc.poll() is None and (t_trial is None or t_resume is None):
        now = time.perf_counter() - t0
        if t_trial is None and glob.glob(os.path.join(project, "trial_*", "trial.json")):
            t_trial = now
        if t_resume is None and glob.glob(os.path.join(project, "trial_*", "resume")):
            t_resume = now
        time.sleep(args.poll)
    proc.wait()
    log.seek(0)
    out = log.read()
    log.close()
    t_end = time.perf_counter() - t0
    hist = glob.glob(os.path.join(project, "trial_*", "history.csv"))
    epoch1 = None
    if hist:
        with open(hist[0]) as f:
            rows = list(csv.DictReader(f))
        if rows:
            epoch1 = float(rows[0]["seconds"])
    if proc.returncode != 0 or t_resume is None or epoch1 is None:
        print(out[-2000:])
        raise RuntimeError(f"search exited {proc.returncode}; trial.json at {t_trial}, resume/ at {t_resume}")
    return {"trial": t_trial, "resume": t_resume, "epoch1": epoch1, "first_step": t_resume - epoch1,
            "end": t_end, "load": la}


def main(argv=None) -> int:
    args = parse_args(argv)
    C.header("bench/startup.py: command-line start-up latency")
    print(C.versions())
    with C.workdir(args.keep) as tmp:
        root = C.demo_data(args.data, tmp, (args.image_size,), args.scale)
        space = os.path.join(tmp, "startup.yaml")
        with open(space, "w") as f:
            f.write(SPACE.format(steps=args.steps, jit=args.jit_compile, backbone=args.backbone, size=args.image_size))
        py = sys.executable
        helps = []
        imports = []
        for _ in range(3):
            helps.append(time_cmd([py, "-m", "tuner", "--help"]))
        for _ in range(2):
            imports.append(time_cmd([py, "-c", "import tensorflow, keras, keras_tuner"]))
        bare_py = time_cmd([py, "-c", "pass"])
        print(f"python -m tuner --help: {', '.join(f'{h:.2f}' for h in helps)} s (python -c pass {bare_py:.2f} s); "
              f"load {C.load()}")
        print(f"python -c 'import tensorflow, keras, keras_tuner': {', '.join(f'{h:.2f}' for h in imports)} s")
        runs = []
        for k in range(args.repeats):
            r = one_search(args, root, space, os.path.join(tmp, f"proj{k}"))
            runs.append(r)
            print(f"search launch {k + 1}: trial.json at {r['trial']:.2f}s, resume/ at {r['resume']:.2f}s, "
                  f"epoch 1 took {r['epoch1']:.2f}s -> first step began at {r['first_step']:.2f}s; "
                  f"process ended at {r['end']:.2f}s; load at start {r['load']}", flush=True)

    h = statistics.median(helps)
    imp = statistics.median(imports)
    trial = statistics.median(r["trial"] for r in runs)
    first = statistics.median(r["first_step"] for r in runs)
    e1 = statistics.median(r["epoch1"] for r in runs)
    print()
    print(f"{args.backbone} at {args.image_size}px, jit_compile {args.jit_compile}; medians of "
          f"{len(helps)} --help runs and {len(runs)} search launches")
    rows = [
        ["python -m tuner --help", f"{h:.2f}", f"<= {args.goal_help:g}", "yes" if h <= args.goal_help else "NO"],
        ["(reference) import tensorflow, keras, keras_tuner", f"{imp:.2f}", "-", ""],
        ["search: launch -> trial_*/trial.json", f"{trial:.2f}", "-", ""],
        ["search: launch -> first training step", f"{first:.2f}", f"<= {args.goal_first_step:g}",
         "yes" if first <= args.goal_first_step else "NO"],
        ["(epoch 1 incl. tracing the train step)", f"{e1:.2f}", "-", ""],
    ]
    print(C.table(rows, ["figure", "seconds", "goal", "met?"]))
    C.verdict(h <= args.goal_help and first <= args.goal_first_step,
              f"--help {h:.2f}s (goal <= {args.goal_help:g}s), launch -> first step {first:.2f}s "
              f"(goal <= {args.goal_first_step:g}s); load now {C.load()}")
    return 0


if __name__ == "__main__":
    C.run(main)
