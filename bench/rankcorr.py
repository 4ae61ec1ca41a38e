"""Which epoch's rank predicts the end: from the epoch curves of searches whose
trials all trained to their last epoch, how well a trial's rank at epoch k
(by each signal) predicts its rank at the end (Spearman's rho).

    python bench/rankcorr.py [--searches 1] [--trials 20] [--epochs 10] [--out DIR]
    python bench/rankcorr.py --project DIR [--project DIR2 ...]   # recompute, no training

Training runs `python -m tuner search` over bench/rank_space.yaml (random
search, no early termination, no EarlyStopping) on the demo data (or --data
ROOT), one search per seed, into --out. Signals at epoch k:
- val_f1: that epoch's value;
- best val_f1: the best value up to k (what a hyperband rung ranks by);
- val_accuracy: that epoch's value;
- val_loss: that epoch's value (lower ranks higher);
- log fit: least squares of val_f1 = a + b*log(epoch) over epochs 1..k,
  extrapolated to the last epoch (from k = 2).
The end: each trial's score as the search ranks it (its best val_f1 over all
epochs), and, in a second table, its last epoch's val_f1. With one search the
spread is a bootstrap over its trials; with several, the standard deviation
over searches.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

import numpy as np  # noqa: E402

SPACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rank_space.yaml")
SIGNALS = ("val_f1", "best val_f1", "val_accuracy", "val_loss", "log fit")
#: rho from which a rung is taken to tell trials apart
INFORMATIVE = 0.6


def curves(project: str) -> tuple[list[dict[str, np.ndarray]], int]:
    """Every trial of `project` that trained all its planned epochs, as
    {metric: values by epoch}, and that epoch count (the most common one)."""
    from tuner.results.trials import load_trials

    _, trials = load_trials(project)
    out = []
    for t in trials:
        path = os.path.join(t.trial_dir, "history.csv")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows or t.state != "completed" or len(rows) != t.epochs_planned:
            continue
        rows.sort(key=lambda r: int(float(r["epoch"])))
        out.append({k: np.asarray([float(r[k]) if r.get(k) not in ("", None) else math.nan for r in rows])
                    for k in ("val_f1", "val_accuracy", "val_loss")})
    if not out:
        return [], 0
    lengths = [len(c["val_f1"]) for c in out]
    epochs = max(set(lengths), key=lengths.count)
    return [c for c in out if len(c["val_f1"]) == epochs], epochs


def log_fit(values: np.ndarray, k: int, last: int) -> float:
    """a + b*log(epoch) fitted to epochs 1..k of `values`, at epoch `last`."""
    e = np.arange(1, k + 1, dtype=float)
    y = values[:k]
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return float(y[ok][-1]) if ok.any() else math.nan
    b, a = np.polyfit(np.log(e[ok]), y[ok], 1)
    return float(a + b * math.log(last))


def signal(c: dict[str, np.ndarray], name: str, k: int, last: int) -> float:
    """Trial `c`'s value of signal `name` after epoch k (higher = better)."""
    f1 = c["val_f1"]
    if name == "val_f1":
        return float(f1[k - 1])
    if name == "best val_f1":
        return float(np.nanmax(f1[:k])) if np.isfinite(f1[:k]).any() else math.nan
    if name == "val_accuracy":
        return float(c["val_accuracy"][k - 1])
    if name == "val_loss":
        return -float(c["val_loss"][k - 1])
    if name == "log fit":
        return log_fit(f1, k, last)
    raise ValueError(name)


def end_score(c: dict[str, np.ndarray], target: str) -> float:
    return float(np.nanmax(c["val_f1"])) if target == "best" else float(c["val_f1"][-1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(spearmanr(x[ok], y[ok]).statistic)


def matrix(cs: list[dict[str, np.ndarray]], epochs: int, target: str) -> tuple[dict[str, list[float]], np.ndarray]:
    """{signal: rho at k = 1..epochs}, and the raw (signal, k, trial) values."""
    end = np.asarray([end_score(c, target) for c in cs])
    vals = np.asarray([[[signal(c, s, k, epochs) for c in cs] for k in range(1, epochs + 1)] for s in SIGNALS])
    rho = {s: [spearman(vals[i, k], end) for k in range(epochs)] for i, s in enumerate(SIGNALS)}
    return rho, vals


def bootstrap_sd(vals: np.ndarray, end: np.ndarray, reps: int = 500, seed: int = 0) -> np.ndarray:
    """Standard deviation of rho over trials resampled with replacement: (signal, k)."""
    rng = np.random.default_rng(seed)
    n = end.size
    out = np.zeros(vals.shape[:2])
    draws = [rng.integers(0, n, n) for _ in range(reps)]
    for i in range(vals.shape[0]):
        for k in range(vals.shape[1]):
            r = [spearman(vals[i, k, d], end[d]) for d in draws]
            r = [x for x in r if math.isfinite(x)]
            out[i, k] = statistics.stdev(r) if len(r) > 1 else math.nan
    return out


def summarise(projects: list[str], target: str) -> tuple[str, dict[str, int | None], int, int]:
    """The table k -> rho (mean ± spread) per signal, the first informative k
    per signal, the epoch count and the number of trials."""
    per_search, epochs, n = [], None, 0
    last = None
    for p in projects:
        cs, e = curves(p)
        if len(cs) < 4:
            print(f"{p}: {len(cs)} trials trained to the end, too few; left out")
            continue
        if epochs is not None and e != epochs:
            print(f"{p}: {e} epochs, not {epochs}; left out")
            continue
        epochs = e
        rho, vals = matrix(cs, e, target)
        per_search.append(rho)
        last = (vals, np.asarray([end_score(c, target) for c in cs]))
        n += len(cs)
    if not per_search:
        raise SystemExit("no project with at least 4 trials trained to the end")
    if len(per_search) == 1:
        spread = bootstrap_sd(*last)
        how = f"± bootstrap sd over the {n} trials"
    else:
        spread = np.asarray([[statistics.stdev([r[s][k] for r in per_search]) for k in range(epochs)]
                             for s in SIGNALS])
        how = f"mean ± sd over {len(per_search)} searches, {n} trials in all"
    mean = {s: [statistics.fmean([r[s][k] for r in per_search]) for k in range(epochs)] for s in SIGNALS}
    rows = []
    for k in range(epochs):
        rows.append([str(k + 1), f"{(k + 1) / epochs:.2f}"] +
                    [("-" if not math.isfinite(mean[s][k]) else f"{mean[s][k]:+.2f} ± {spread[i, k]:.2f}")
                     for i, s in enumerate(SIGNALS)])
    first = {s: next((k + 1 for k in range(epochs) if math.isfinite(mean[s][k]) and mean[s][k] >= INFORMATIVE
                      and all(math.isfinite(m) and m >= INFORMATIVE for m in mean[s][k:])), None)
             for s in SIGNALS}
    text = (f"Spearman rho of the rank at epoch k against the rank by {'best' if target == 'best' else 'last'} "
            f"val_f1 at the end ({how}):\n\n" + _common.table(rows, ["k", "k/E"] + list(SIGNALS)))
    return text, first, epochs, n


def train(args) -> list[str]:
    """One search per seed into --out, each trial trained all its epochs."""
    os.makedirs(args.out, exist_ok=True)
    data = args.data or _common.demo_data(None, args.out, [32], 0.1)
    projects = []
    for s in range(args.searches):
        project = os.path.join(args.out, f"search{s + 1}")
        rc, _ = _common.cli("search", "--space", SPACE, "--data", data, "--project", project,
                            "--max-trials", str(args.trials), "--epochs", str(args.epochs),
                            "--seed", str(args.seed + s), "--plain",
                            log=os.path.join(args.out, f"search{s + 1}.log"))
        print(f"search {s + 1}: exit {rc}, {project}")
        projects.append(project)
    return projects


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", action="append", default=[], help="read this project (repeatable); no training")
    p.add_argument("--data", help="data root (default: demo data generated under --out)")
    p.add_argument("--out", default="rankcorr-out", help="where trained searches go")
    p.add_argument("--searches", type=int, default=1)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    _common.header("which epoch's rank predicts the end")
    projects = args.project or train(args)
    for target in ("best", "last"):
        text, first, epochs, n = summarise(projects, target)
        print()
        print(text)
        print()
        for s in SIGNALS:
            k = first[s]
            print(f"{s:13s}: rho >= {INFORMATIVE} from epoch {k} of {epochs} ({k / epochs:.2f} of the epochs) on"
                  if k else f"{s:13s}: rho never stays >= {INFORMATIVE}")
        sys.stdout.flush()


if __name__ == "__main__":
    _common.run(main)
