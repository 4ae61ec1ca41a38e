"""Is `--max-time T` a ceiling for the whole command? For each T, one
`python -m tuner search --space demo --max-time T` in a fresh project, timed
from just before its process is started to its exit (Python's start, the
imports, the data checks, the first build and trace and the exit included).

    python bench/ceiling.py [--data ROOT] [--budgets 3m,7m,15m] [--space demo]

Goals (issue 19): every run exits within T + 3% and at most T + 10 s, and
uses at least T - 1.5 epochs' time (epoch: the median of the runs' later
epochs, from history.csv). The runs go one after another, nothing else
should run meanwhile (an epoch's time on a loaded machine jumps). Without
--data the demo data is generated first (not counted).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, demo_data, header, load, run, table, verdict, workdir  # noqa: E402


def later_epochs(project: str) -> list[float]:
    """Seconds of every epoch that was not the first of its trial."""
    out = []
    for path in glob.glob(os.path.join(project, "trial_*", "history.csv")):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        out += [float(r["seconds"]) for r in rows[1:] if r.get("seconds")]
    return out


def one(space: str, root: str, project: str, budget: float, log: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "tuner", "search", "--space", space, "--data", root,
                             "--project", project, "--max-time", f"{budget:.0f}s", "--plain"],
                            cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    epochs = later_epochs(project)
    runs = json.load(open(os.path.join(project, "time.json"))).get("tuner0", []) if os.path.exists(
        os.path.join(project, "time.json")) else []
    best = subprocess.run([sys.executable, "-m", "tuner", "best", "--project", project, "--top", "1",
                           "--format", "json"], cwd=REPO, env=env, capture_output=True, text=True)
    try:
        score = json.loads(best.stdout)[0]["val_f1"]
    except (ValueError, IndexError, KeyError):
        score = None
    return {"budget": budget, "rc": rc, "wall": wall, "f1": score, "epoch": statistics.median(epochs) if epochs else None,
            "epochs": len(epochs) + len(glob.glob(os.path.join(project, "trial_*", "history.csv"))),
            "breakdown": runs[-1] if runs else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="data root (default: demo data generated first)")
    ap.add_argument("--budgets", default="3m,7m,15m", help="comma-separated --max-time values")
    ap.add_argument("--space", default="demo")
    ap.add_argument("--keep", action="store_true", help="keep the projects and logs")
    args = ap.parse_args()
    from tuner.duration import parse_duration

    header("--max-time as a ceiling for the whole command")
    budgets = [parse_duration(b) for b in args.budgets.split(",")]
    rows, ok = [], True
    with workdir(args.keep) as tmp:
        root = demo_data(args.data, tmp, (64,), 0.1)
        for b in budgets:
            r = one(args.space, root, os.path.join(tmp, f"p{b:.0f}"), b, os.path.join(tmp, f"p{b:.0f}.log"))
            over = r["wall"] - b
            limit = min(0.03 * b, 10.0)
            floor = b - 1.5 * r["epoch"] if r["epoch"] else None
            good = r["rc"] == 0 and over <= limit and (floor is None or r["wall"] >= floor)
            ok &= good
            br = r["breakdown"]
            rows.append([f"{b / 60:.0f} min", f"{r['wall']:.1f} s", f"{over:+.1f} s ({100 * over / b:+.1f}%)",
                         f"+{limit:.1f} s", f"{r['epoch']:.1f} s" if r["epoch"] else "-",
                         f"{floor:.0f} s" if floor else "-", str(r["epochs"]),
                         f"{br.get('training', 0):.0f}/{br.get('validation', 0):.0f}/"
                         f"{br.get('build', 0) + br.get('tracing', 0):.0f}/{br.get('checkpoint', 0):.0f}/"
                         f"{br.get('startup', 0):.0f}/{br.get('other', 0):.0f}",
                         f"{r['f1']:.3f}" if r["f1"] is not None else "-", "ok" if good else "MISSED"])
            print(f"T={b:.0f}s: exit after {r['wall']:.1f}s (rc {r['rc']}), load {load()}", flush=True)
    print(table(rows, ["T", "command's time", "over T", "allowed", "epoch", "at least", "epochs",
                       "train/val/build+trace/ckpt/start/other (s)", "best val F1", "goal"]))
    verdict(ok, "every run exits within T + 3% (and T + 10 s) and uses at least T - 1.5 epochs")


if __name__ == "__main__":
    run(main)
