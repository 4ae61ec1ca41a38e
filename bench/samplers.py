"""tpe against random and bayes on a cheap objective with a known optimum:
the real oracles (tuner.engine.oracles) over a real space (all 38 dimensions
declared, 3 of them varying), asked and told as a search does, with a fake
trial whose per-epoch val_f1 is a known noisy function of its values. No
training: seconds per search.

    python bench/samplers.py [--seeds 20] [--trials 20] [--epochs 4]

Prints each method's mean regret (1 - the true quality of the best trial it
found; 0 is the optimum) with its standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: What both objectives' spaces begin with: the method, 4 epochs, the
#: backbone and the learning rate (`learning_rate_term`).
_HEAD = """
method: tpe
train: {epochs: 4}
parameters:
  backbone: {value: resnet50v2}
  learning_rate: {min: 1.0e-5, max: 1.0e-2, distribution: log_uniform_values}
"""
SPACE = _HEAD + """\
  dropout: {min: 0.0, max: 0.6}
  optimizer: {values: [adam, nadam, rmsprop, sgd]}
"""
OPTIMIZER = {"adam": 1.0, "nadam": 0.95, "rmsprop": 0.8, "sgd": 0.55}


def learning_rate_term(v: dict) -> float:
    """1 at lr 10^-3.3, falling as a Gaussian in log10(lr) (sd 0.5)."""
    return math.exp(-((math.log10(v["learning_rate"]) + 3.3) ** 2) / (2 * 0.5 ** 2))


def quality(v: dict) -> float:
    """The true quality of a configuration, 1 at lr 10^-3.3, dropout 0.2, adam."""
    return learning_rate_term(v) * (1.0 - 1.5 * (v["dropout"] - 0.2) ** 2) * OPTIMIZER[v["optimizer"]]


#: The demo space's shape: a learning rate, and a callback whose plateau_*
#: dimensions matter only under reduce_lr_on_plateau (`tuner.spaces.conditions`).
CALLBACK_SPACE = _HEAD + """\
  callback: {values: [linear_decay, reduce_lr_on_plateau, none]}
  plateau_patience: {values: [2, 3, 5]}
  plateau_factor: {min: 0.05, max: 0.9}
  flip_left_right: {values: [true, false]}
"""
CALLBACK = {"linear_decay": 0.9, "none": 0.6}


def callback_quality(v: dict) -> float:
    """1 at lr 10^-3.3 under reduce_lr_on_plateau with patience 3 and factor
    0.3; linear_decay 0.9 whatever the plateau's values; flips do nothing."""
    lr = learning_rate_term(v)
    if v["callback"] != "reduce_lr_on_plateau":
        return lr * CALLBACK[v["callback"]]
    plateau = {2: 0.8, 3: 1.0, 5: 0.7}[int(v["plateau_patience"])]
    return lr * plateau * (1.0 - 2.0 * (float(v["plateau_factor"]) - 0.3) ** 2)


#: --objective: (space, quality)
OBJECTIVES = {"cheap": (SPACE, quality), "callbacks": (CALLBACK_SPACE, callback_quality)}


def epoch_score(v: dict, epoch: int, rng: random.Random, quality=quality) -> float:
    """val_f1 after `epoch` epochs: the quality, approached over epochs, plus noise."""
    return quality(v) * (1.0 - math.exp(-epoch / 1.5)) + rng.gauss(0.0, 0.03)


def make_oracle(method: str, seed: int, trials: int, directory: str, space_text: str = SPACE):
    import keras_tuner as kt

    from tuner.engine.tuner import TUNERS
    from tuner.spaces import parse_space

    space = parse_space(space_text.replace("method: tpe", f"method: {method}"))
    cls = TUNERS[method][1]
    kwargs = dict(objective=kt.Objective("val_f1", "max"), max_trials=trials, seed=seed,
                  epochs=space.train.epochs, start_with=space.start_with)
    if method == "tpe":
        kwargs["study_name"] = "bench"
    oracle = cls(**kwargs)
    hp = kt.HyperParameters()
    space.declare(hp)
    oracle.update_space(hp)
    oracle.verbose = 0  # Keras Tuner prints a table per trial otherwise
    oracle._set_project_dir(directory, f"{method}-{seed}")  # noqa: SLF001
    return oracle, space


def run(oracle, trials: int, epochs: int, seed: int, quality=quality) -> list[dict]:
    """Every trial of a search, one after another: asked, each epoch reported, ended."""
    rng = random.Random(seed)
    seen = []
    for _ in range(trials):
        t = oracle.create_trial("tuner0")
        if t.status != "RUNNING":
            break
        v = t.hyperparameters.values
        for e in range(1, epochs + 1):
            oracle.update_trial(t.trial_id, {"val_f1": epoch_score(v, e, rng, quality)}, step=e)
        t.status = "COMPLETED"
        oracle.end_trial(t)
        seen.append(dict(v))
    return seen


def regret(method: str, seed: int, trials: int, epochs: int, directory: str, objective: str = "cheap") -> float:
    """`method` tpe-flat: tpe told every varying dimension of every trial, as
    before `tuner.spaces.conditions` (plateau_factor of a linear_decay trial too)."""
    from tuner.spaces import conditions

    text, q = OBJECTIVES[objective]
    kept, where = conditions.CONDITIONS, os.path.join(directory, objective, method)
    if method == "tpe-flat":
        method, conditions.CONDITIONS = "tpe", {}
    try:
        oracle, _ = make_oracle(method, seed, trials, where, space_text=text)
        seen = run(oracle, trials, epochs, seed, q)
    finally:
        conditions.CONDITIONS = kept
    return 1.0 - max(q(v) for v in seen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--methods", default="tpe,random,bayes",
                   help="comma-separated: tpe, tpe-flat (tpe without the conditions), random, bayes")
    p.add_argument("--objective", default="cheap", choices=sorted(OBJECTIVES),
                   help="cheap: lr, dropout, optimizer; callbacks: the demo space's shape, "
                        "plateau_* read only under reduce_lr_on_plateau")
    args = p.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as d:
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            r = [regret(method, s, args.trials, args.epochs, d, args.objective) for s in range(args.seeds)]
            print(f"{method:7s} regret {statistics.mean(r):.3f} ± {statistics.stdev(r):.3f} "
                  f"(median {statistics.median(r):.3f}; {args.seeds} seeds x {args.trials} trials, "
                  f"{time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
