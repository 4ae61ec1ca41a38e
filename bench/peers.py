"""flower-tuner against the tools people would use instead (issue 20, 7):
the same data, the same search space, the same budget and seed, one machine,
one run after another, each scored by its final model's macro F1 on the test
split's true labels (labels none of them chose on).

    python bench/peers.py [--data ROOT] [--budget 3m] [--seeds 1,2,3] [--out peers.json]

Arms (each in its own fresh process and directory; bench/peer_arms.py):
  notebook      the original study's configuration (inside the space: see
                peer_arms.STUDY), one model.fit for the whole budget, its
                best epoch by val_f1 (ModelCheckpoint) the final model;
  kt-hyperband  Keras Tuner's kt.Hyperband with our model-building function,
  kt-bayes      and kt.BayesianOptimization, stopped at the budget; the final
                model is tuner.get_best_models(1)[0];
  optuna        Optuna's TPESampler + HyperbandPruner with optuna-integration's
                KerasPruningCallback, study.optimize(timeout=budget); the best
                trial's saved best epoch;
  flower-tuner  `python -m tuner search --max-time budget`, then
                `python -m tuner best --export`; its export's model.keras.
Also, named in --arms only (not one of issue 20's arms):
  notebook-linear  the notebook with `linear_decay` in place of the study's
                ReduceLROnPlateau, decaying to the epoch the deadline falls in.
Runs are interleaved: for each seed every arm once, the arm order rotated per
seed, so a drift in the machine's speed hits every arm alike. Each arm's wall
time runs from its process's start to its exit (flower-tuner: the search's
start to the export's exit). Without --data the demo data is generated first
(not counted); --labels defaults to ROOT/test_labels.csv (the demo data has one;
Kaggle's test split has no labels). Goal: flower-tuner's mean >= every other
arm's mean.
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
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from _common import REPO, demo_data, header, load, run, table, workdir  # noqa: E402

ARMS = ("notebook", "kt-hyperband", "kt-bayes", "optuna", "flower-tuner")
#: arms --arms may name beside ARMS, never run by default
EXTRA_ARMS = ("notebook-linear",)
OURS = "flower-tuner"


def rounds(arms: list[str], seeds: list[int]) -> list[tuple[int, str]]:
    """(seed, arm) in run order: per seed every arm once, the order rotated
    by one place per seed."""
    out = []
    for i, seed in enumerate(seeds):
        k = i % len(arms)
        out += [(seed, arm) for arm in arms[k:] + arms[:k]]
    return out


def read_labels(path: str) -> dict[str, int]:
    """id -> label of an `id,label` CSV (test_labels.csv, a submission)."""
    with open(path, newline="") as f:
        return {row["id"]: int(row["label"]) for row in csv.DictReader(f)}


def macro_f1(predicted: dict[str, int], truth: dict[str, int], num_classes: int) -> dict:
    """Macro F1 (and accuracy) over the classes 0..num_classes-1, matched by
    id; every true id must be predicted (a missing one is a broken arm)."""
    from sklearn.metrics import accuracy_score, f1_score

    missing = [i for i in truth if i not in predicted]
    if missing:
        raise ValueError(f"{len(missing)} of {len(truth)} test ids have no prediction (e.g. {missing[0]})")
    ids = sorted(truth)
    y, p = [truth[i] for i in ids], [predicted[i] for i in ids]
    return {"macro_f1": float(f1_score(y, p, labels=list(range(num_classes)), average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y, p)), "n": len(ids)}


def summarize(results: list[dict], arms: list[str]) -> dict[str, dict]:
    """Per arm: its scores by seed, mean and standard deviation over the
    seeds that produced a model, failures, and wall times."""
    out = {}
    for arm in arms:
        mine = [r for r in results if r["arm"] == arm]
        f1 = [r["f1"] for r in mine if r.get("f1") is not None]
        walls = [r["wall"] for r in mine if r.get("wall") is not None]
        out[arm] = {"by_seed": {str(r["seed"]): r.get("f1") for r in mine},
                    "mean": statistics.mean(f1) if f1 else None,
                    "sd": statistics.stdev(f1) if len(f1) > 1 else None,
                    "failed": len(mine) - len(f1),
                    "wall_mean": statistics.mean(walls) if walls else None,
                    "wall_max": max(walls) if walls else None}
    return out


def ratios(summary: dict[str, dict], ours: str = OURS) -> dict[str, float | None]:
    """Our mean over each other arm's mean."""
    m = summary.get(ours, {}).get("mean")
    return {arm: (m / s["mean"] if m is not None and s["mean"] else None)
            for arm, s in summary.items() if arm != ours}


def goal_met(summary: dict[str, dict], ours: str = OURS) -> bool:
    """Our mean >= every other arm's mean; a failed run of ours misses it,
    an arm with no model at all does not count against us."""
    mine = summary.get(ours)
    if not mine or mine["mean"] is None or mine["failed"]:
        return False
    return all(s["mean"] is None or mine["mean"] >= s["mean"] for a, s in summary.items() if a != ours)


def report(summary: dict[str, dict], budget: float, seeds: list[int], ours: str = OURS) -> str:
    """The table and the goal line."""
    rel = ratios(summary, ours)
    rows = []
    for arm, s in summary.items():
        mean = "-" if s["mean"] is None else (f"{s['mean']:.4f}" + (f" ± {s['sd']:.4f}" if s["sd"] is not None else ""))
        per = ", ".join("-" if s["by_seed"].get(str(k)) is None else f"{s['by_seed'][str(k)]:.4f}" for k in seeds)
        wall = "-" if s["wall_mean"] is None else f"{s['wall_mean']:.0f} s (max {s['wall_max']:.0f})"
        r = "" if arm == ours else ("-" if rel.get(arm) is None else f"{rel[arm]:.3f}")
        rows.append([arm, mean, per + (f" ({s['failed']} failed)" if s["failed"] else ""), wall, r])
    text = table(rows, ["arm", "test macro F1, mean ± sd", f"by seed {','.join(map(str, seeds))}",
                        f"wall (budget {budget:.0f} s)", f"{ours} / arm"])
    said = ("not measured (not among the arms)" if ours not in summary
            else "met" if goal_met(summary, ours) else "missed")
    return text + f"\n({ours} mean >= every other arm's mean: {said})"


def spawn(cmd: list[str], log: str, limit: float) -> tuple[int | str, float]:
    """One process, its output in `log`: (exit code or 'timeout', seconds
    from just before its start to its exit)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            rc: int | str = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                           timeout=limit).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return rc, time.monotonic() - t0


def lines(path: str) -> list[str]:
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def last_line(log: str) -> str:
    found = lines(log)
    return found[-1][:200] if found else ""


def run_arm(arm: str, seed: int, args, root: str, folder: str) -> dict:
    """One arm once, in `folder`: its wall time and its final model's path."""
    os.makedirs(folder)
    log = os.path.join(folder, "log.txt")
    limit = args.budget_s + max(300.0, args.budget_s)  # a hung arm is a failure, not a hung benchmark
    result: dict[str, Any] = {"arm": arm, "seed": seed, "dir": folder}
    if arm == OURS:
        project, export = os.path.join(folder, "project"), os.path.join(folder, "export")
        rc, search = spawn([sys.executable, "-m", "tuner", "search", "--plain", "--space", args.space, "--data", root,
                            "--project", project, "--max-time", f"{args.budget_s:.0f}s", "--seed", str(seed)],
                           log, limit)
        result["search_wall"] = search
        if rc == 0:
            rc, exported = spawn([sys.executable, "-m", "tuner", "best", "--project", project, "--export", export,
                                  "--data", root], log, limit)
            result["export_wall"] = exported
        result["wall"] = search + result.get("export_wall", 0.0)
        result["model"] = os.path.join(export, "model.keras")
        result["trials"] = len(glob.glob(os.path.join(project, "trial_*")))
        result["epochs"] = sum(max(0, len(lines(h)) - 1)
                               for h in glob.glob(os.path.join(project, "trial_*", "history.csv")))
    else:
        rc, result["wall"] = spawn([sys.executable, os.path.join(BENCH, "peer_arms.py"), arm, "--data", root,
                                    "--dir", folder, "--budget", f"{args.budget_s}", "--seed", str(seed),
                                    "--space", args.space], log, limit)
        info = os.path.join(folder, "arm.json")
        if rc == 0 and os.path.exists(info):
            with open(info) as f:
                result.update(json.load(f))
            result["model"] = result.pop("final")
    result["rc"] = rc
    if rc != 0 or not os.path.exists(result.get("model", "")):
        result["f1"], result["error"] = None, last_line(log)
        return result
    rc, result["score_wall"] = spawn([sys.executable, os.path.join(BENCH, "peer_arms.py"), "score", "--data", root,
                                      "--model", result["model"], "--labels", args.labels_path],
                                     os.path.join(folder, "score.txt"), 600)
    scored = [ln for ln in lines(os.path.join(folder, "score.txt")) if ln.startswith("{")]
    if rc != 0 or not scored:
        result["f1"], result["error"] = None, "scoring failed: " + last_line(os.path.join(folder, "score.txt"))
        return result
    s = json.loads(scored[-1])
    result["f1"], result["accuracy"] = s["macro_f1"], s["accuracy"]
    sub = os.path.join(folder, "export", "submission.csv")
    if arm == OURS and os.path.exists(sub):  # the export's own submission must say the same
        result["f1_submission"] = macro_f1(read_labels(sub), read_labels(args.labels_path),
                                           int(args.num_classes))["macro_f1"]
    return result


def timing(r: dict, budget: float) -> str:
    """A run's wall time against the budget, and where its overhead went."""
    text = f"wall {r['wall']:.1f} s ({r['wall'] - budget:+.1f} s over the budget"
    if "model_ready_s" in r:
        text += f"; final model saved at {r['model_ready_s']:.1f} s"
    if "search_wall" in r:
        text += f"; search {r['search_wall']:.1f} s + export {r.get('export_wall', 0.0):.1f} s"
    return text + ")"


def prune(folder: str) -> None:
    """An arm's directory less its models and checkpoints (a 90-second
    round left 2 GB), its logs and arm.json kept until the end."""
    import shutil

    for name in os.listdir(folder):
        if name not in ("log.txt", "score.txt", "arm.json"):
            path = os.path.join(folder, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked: a bad one is one line and exit code 2, before
    anything slow runs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="data root (default: the demo data, generated first)")
    p.add_argument("--labels", help="id,label CSV of the test split's true labels (default: ROOT/test_labels.csv)")
    p.add_argument("--budget", default="3m", help="each arm's time budget, e.g. 3m (default 3m)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds, one round each (default 1,2,3)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)} (default all of them), or also "
                   f"{','.join(EXTRA_ARMS)}")
    p.add_argument("--space", default="demo", help="the search space every arm shares (default demo)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "out", "peers.json"), help="JSON of all results")
    p.add_argument("--keep", action="store_true", help="keep every arm's models and checkpoints too (about 2 GB a round "
                   "at 90 s); without it only their logs stay, until the end")
    args = p.parse_args(argv)
    from tuner.duration import parse_duration

    def fail(message: str):
        print(f"peers.py: {message}", file=sys.stderr)
        raise SystemExit(2)

    try:
        args.budget_s = parse_duration(args.budget)
    except Exception:  # noqa: BLE001 - its own message is the line
        fail(f"--budget {args.budget!r} is not a duration; give e.g. 90s, 3m or 1h")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds {args.seeds!r}: give integers separated by commas, e.g. 1,2,3")
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arm_list if a not in ARMS + EXTRA_ARMS]
    if unknown or not args.arm_list or not args.seed_list:
        fail(f"--arms {args.arms!r}: choose from {','.join(ARMS + EXTRA_ARMS)}" if unknown or not args.arm_list
             else "--seeds: give at least one seed")
    import importlib.util

    if "optuna" in args.arm_list and importlib.util.find_spec("optuna_integration") is None:
        # found at the start, not an hour in when the arm's turn comes
        fail("the optuna arm needs optuna-integration (its KerasPruningCallback): pip install -e \".[bench]\", "
             "or leave optuna out of --arms")
    if args.data and not os.path.isdir(args.data):
        fail(f"--data {args.data}: no such folder; give the root holding tfrecords-jpeg-SxS/")
    labels = args.labels or (os.path.join(args.data, "test_labels.csv") if args.data else None)
    if labels and not os.path.isfile(labels):
        fail(f"no test labels at {labels}: pass --labels CSV (id,label) with the test split's true labels "
             "(Kaggle's test split has none; the demo data writes test_labels.csv)")
    args.labels_path = labels
    return args


def main(args: argparse.Namespace) -> None:
    header("peers: flower-tuner against the notebook, Keras Tuner and Optuna at one budget")
    results: list[dict] = []
    with workdir(args.keep, prefix="flower-peers-") as tmp:
        root = demo_data(args.data, tmp, (64,), 0.1)
        args.labels_path = args.labels_path or os.path.join(root, "test_labels.csv")
        from tuner.data.classes import NUM_CLASSES

        args.num_classes = NUM_CLASSES
        order = rounds(args.arm_list, args.seed_list)
        print(f"budget {args.budget_s:.0f} s per arm; {len(order)} runs in this order: "
              + ", ".join(f"{a}/{s}" for s, a in order), flush=True)
        for n, (seed, arm) in enumerate(order, 1):
            r = run_arm(arm, seed, args, root, os.path.join(tmp, f"seed{seed}-{arm}"))
            r["order"], r["load_after"] = n, load()
            if not args.keep:
                prune(r["dir"])
            results.append(r)
            said = f"F1 {r['f1']:.4f}" if r["f1"] is not None else f"FAILED ({r.get('error', '')})"
            print(f"[{n}/{len(order)}] {arm} seed {seed}: {said}, {timing(r, args.budget_s)}"
                  + "".join(f", {k} {r[k]}" for k in ("trials", "completed", "pruned", "epochs") if k in r)
                  + f", load {r['load_after']}", flush=True)
    summary = summarize(results, args.arm_list)
    print(report(summary, args.budget_s, args.seed_list))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"budget_s": args.budget_s, "seeds": args.seed_list, "arms": args.arm_list, "space": args.space,
                   "data": args.data or "demo (generated, 64 px, scale 0.1)", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "runs": results, "summary": summary, "ratios": ratios(summary), "goal_met": goal_met(summary)},
                  f, indent=1, default=str)
    print(f"results: {args.out}")


if __name__ == "__main__":
    parsed = parse()
    run(lambda: main(parsed))
