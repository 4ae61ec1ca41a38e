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

SPACE = """
method: tpe
train: {epochs: 4}
parameters:
  backbone: {value: resnet50v2}
  learning_rate: {min: 1.0e-5, max: 1.0e-2, distribution: log_uniform_values}
  dropout: {min: 0.0, max: 0.6}
  optimizer: {values: [adam, nadam, rmsprop, sgd]}
"""
OPTIMIZER = {"adam": 1.0, "nadam": 0.95, "rmsprop": 0.8, "sgd": 0.55}


def quality(v: dict) -> float:
    """The true quality of a configuration, 1 at lr 10^-3.3, dropout 0.2, adam."""
    lr = math.exp(-((math.log10(v["learning_rate"]) + 3.3) ** 2) / (2 * 0.5 ** 2))
    return lr * (1.0 - 1.5 * (v["dropout"] - 0.2) ** 2) * OPTIMIZER[v["optimizer"]]


def epoch_score(v: dict, epoch: int, rng: random.Random) -> float:
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


def run(oracle, trials: int, epochs: int, seed: int) -> list[dict]:
    """Every trial of a search, one after another: asked, each epoch reported, ended."""
    rng = random.Random(seed)
    seen = []
    for _ in range(trials):
        t = oracle.create_trial("tuner0")
        if t.status != "RUNNING":
            break
        v = t.hyperparameters.values
        for e in range(1, epochs + 1):
            oracle.update_trial(t.trial_id, {"val_f1": epoch_score(v, e, rng)}, step=e)
        t.status = "COMPLETED"
        oracle.end_trial(t)
        seen.append(dict(v))
    return seen


def regret(method: str, seed: int, trials: int, epochs: int, directory: str) -> float:
    oracle, _ = make_oracle(method, seed, trials, directory)
    seen = run(oracle, trials, epochs, seed)
    return 1.0 - max(quality(v) for v in seen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--methods", default="tpe,random,bayes")
    args = p.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as d:
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            r = [regret(method, s, args.trials, args.epochs, d) for s in range(args.seeds)]
            print(f"{method:7s} regret {statistics.mean(r):.3f} ± {statistics.stdev(r):.3f} "
                  f"(median {statistics.median(r):.3f}; {args.seeds} seeds x {args.trials} trials, "
                  f"{time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
