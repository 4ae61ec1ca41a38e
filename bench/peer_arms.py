"""One arm of bench/peers.py, each in its own fresh process, written the way
its own users write it (the driver spawns it, times it, and scores the model
it leaves; flower-tuner's arm is the CLI itself, spawned by the driver):

    python bench/peer_arms.py notebook|notebook-linear|kt-hyperband|kt-bayes|optuna \\
        --data ROOT --dir DIR --budget SECONDS --seed S [--space demo]
    python bench/peer_arms.py score --model MODEL --data ROOT --labels CSV

Every arm reuses flower-tuner's model-building function and datasets
(tuner.model.hypermodel.FlowerHyperModel over the space file), so what
differs is only how each tool spends the budget. The budget counts from this
process's start (tuner.engine.clock.process_start, the clock `search
--max-time` uses), so TensorFlow's import is in it for every arm alike; a
run is stopped at the first batch end past it (then Keras validates that
epoch and the checkpoints see it). Each arm leaves DIR/final.keras (the
network only, uncompiled, as `best --export` writes model.keras) and
DIR/arm.json (what it did, and when its final model was ready).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(1, os.path.dirname(BENCH))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (this process is an arm: TensorFlow is what it is for)
import keras_tuner as kt  # noqa: E402

from tuner.engine.clock import process_start  # noqa: E402
from tuner.model.hypermodel import FlowerHyperModel  # noqa: E402

ARMS = ("notebook", "notebook-linear", "kt-hyperband", "kt-bayes", "optuna")

#: The original study's best CPU configuration (/work/shared/petals-dataset.md:
#: ResNet50V2, Nadam at Keras' default 1e-3, ReduceLROnPlateau(factor 0.1,
#: patience 10), flips left-right), the `start_with` of the `default` space.
#: The notebook arm takes each value where the space lets it, else the
#: space's nearest (demo: patience 5 and factor 0.2); fixed values win.
STUDY = {"backbone": "resnet50v2", "optimizer": "nadam", "learning_rate": 1e-3,
         "callback": "reduce_lr_on_plateau", "plateau_patience": 10, "plateau_factor": 0.1,
         "flip_left_right": True}

#: epochs of the notebook's fit: more than any budget here holds (the deadline stops it)
FOREVER = 100_000


class Deadline(keras.callbacks.Callback):
    """Stops fit at the first batch end past the budget, as a user with a
    fixed time writes it. Holds only a float: Keras Tuner deep-copies the
    callbacks it is given for every trial."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() >= self.deadline:
            self.model.stop_training = True


class EpochClock(keras.callbacks.Callback):
    """When each epoch began and ended, in seconds from the process start (the
    budget's clock), and the learning rate it trained at, so that an arm's
    epochs can be set beside a search's history.csv: where the time went, not
    only how many epochs it held. One line per event in a file: Keras Tuner
    deep-copies its callbacks for every trial, so lists held here would be
    lost with the copies."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _mark(self, kind: str, extra: str = "") -> None:
        with open(self.path, "a") as f:
            f.write(f"{kind} {time.monotonic() - process_start():.2f}\n{extra}")

    def on_epoch_begin(self, epoch, logs=None):
        # and the rate this epoch trains at (Keras 3's history has none)
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._mark("begin", f"rate {rate:.6g}\n")

    def on_epoch_end(self, epoch, logs=None):
        self._mark("end")


class BudgetHorizon(keras.callbacks.Callback):
    """The notebook-linear arm's `linear_decay` horizon, as a user who times
    the epochs sets it: the epoch the deadline falls in, at the mean of this
    run's epochs after the first (the first holds the trace). The search
    sets its own from its pace (EpochState.last_epoch_in_budget)."""

    def __init__(self, deadline: float, own: list):
        super().__init__()
        self.deadline, self.own, self.begins = deadline, own, []

    def on_train_begin(self, logs=None):
        from tuner.model.schedules import LinearDecay

        for cb in self.own:
            if isinstance(cb, LinearDecay):
                cb.last_epoch = self.last_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(time.monotonic())

    def last_epoch(self, epoch: int) -> int | None:
        """Asked at the end of 0-based epoch `epoch - 1`, validation included."""
        if not self.begins:
            return None
        now = time.monotonic()
        took = [b - a for a, b in zip(self.begins, self.begins[1:])] + [now - self.begins[-1]]
        per = sum(took[1:]) / len(took[1:]) if len(took) > 1 else took[0]
        return epoch + max(1, math.ceil((self.deadline - now) / per))


def epoch_times(path: str) -> dict[str, Any]:
    """An EpochClock file as the arm's figures: epochs ended, and every begin
    and end (across trials, in order)."""
    marks: dict[str, list[float]] = {"begin": [], "end": [], "rate": []}
    if os.path.exists(path):
        for line in open(path):
            kind, at = line.split()
            marks[kind].append(float(at))
    return {"epochs": len(marks["end"]), "epoch_begins_s": marks["begin"], "epoch_ends_s": marks["end"],
            "epoch_rates": marks["rate"]}


class VaryingHyperModel(FlowerHyperModel):
    """Our hypermodel declaring only the dimensions that vary, the way a
    Keras Tuner user writes a build function (hp.Float/hp.Choice for what is
    searched, constants for the rest): FlowerHyperModel declares all 38, and
    BayesianOptimization then draws 3 x 38 random trials before its Gaussian
    process is used (issue 20), which would make that arm random search."""

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        for name in self.space.varying:
            self.space.params[name].declare(hp)

    def values(self, hp: kt.HyperParameters) -> dict[str, Any]:
        from tuner.spaces import with_defaults

        out = {}
        for name, param in self.space.params.items():
            if not param.varying:
                out[name] = param.value
            else:
                out[name] = hp.values[name] if name in hp.values else param.declare(hp)
        return with_defaults(self.space.coerce(out), self.space.train)


class TimedTunerMixin:
    """Ends Keras Tuner's search loop once the budget is spent: its oracle
    stops creating trials at max_trials, so that is set to the trials so far
    (the running one was stopped by `Deadline`)."""

    deadline: float = math.inf

    def pre_create_trial(self):
        if time.monotonic() >= self.deadline and self.oracle.trials:
            self.oracle.max_trials = len(self.oracle.trials)
        return super().pre_create_trial()


class TimedHyperband(TimedTunerMixin, kt.Hyperband):
    pass


class TimedBayesianOptimization(TimedTunerMixin, kt.BayesianOptimization):
    pass


def setup(space_name: str, root: str, seed: int, cls: type = FlowerHyperModel):
    """(space, hypermodel) as tuner/search.py builds them from a space file."""
    from tuner.data.reader import FlowerData
    from tuner.model.strategy import detect
    from tuner.spaces import load_space

    space = load_space(space_name).with_overrides(seed=seed)
    datasets: dict[int, FlowerData] = {}

    def data_factory(size: int) -> FlowerData:
        if size not in datasets:
            datasets[size] = FlowerData(root, size, log=None)
        return datasets[size]

    return space, cls(space, data_factory, detect("auto"), seed=seed)


def nearest(param, want: Any) -> Any:
    """`want` if the dimension allows it, else the closest value it allows."""
    if param.kind == "fixed":
        return param.value
    if param.kind == "range":
        return min(max(want, param.min), param.max)
    if want in param.values:
        return want
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return min(param.values, key=lambda v: abs(math.log(v / want)) if v > 0 and want > 0 else abs(v - want))
    return param.values[0]


def notebook_values(space) -> dict[str, Any]:
    """The study's configuration inside `space` (see STUDY)."""
    values = space.defaults()
    for name, want in STUDY.items():
        if name in space.params:
            values[name] = nearest(space.params[name], want)
    return space.coerce(values)


def as_hp(values: dict[str, Any]) -> kt.HyperParameters:
    """Fixed values as a HyperParameters our hypermodel reads (nothing declared)."""
    hp = kt.HyperParameters()
    hp.values.update(values)
    return hp


def save_final(model: keras.Model, out: str) -> str:
    """The network alone, uncompiled, as `best --export` writes model.keras."""
    path = os.path.join(out, "final.keras")
    keras.Model(model.inputs, model.outputs, name=model.name).save(path)
    return path


def checkpoint(path: str) -> keras.callbacks.ModelCheckpoint:
    """The best epoch's weights by val_f1, as a notebook keeps them."""
    return keras.callbacks.ModelCheckpoint(path, monitor="val_f1", mode="max", save_best_only=True,
                                           save_weights_only=True, verbose=0)


def notebook(space_name: str, root: str, out: str, seed: int, deadline: float, callback: str | None = None) -> dict:
    """(a): the study's configuration, one plain `model.fit` for the whole
    budget. `callback`: another in place of the study's (notebook-linear:
    `linear_decay` to the epoch the deadline falls in; BENCHMARKS.md,
    "Linear decay to the budget's end"), not an arm of issue 20's."""
    keras.utils.set_random_seed(seed)
    space, hm = setup(space_name, root, seed)
    values = notebook_values(space)
    if callback is not None:
        values = space.coerce({**values, "callback": callback})
    hp = as_hp(values)
    model = hm.build(hp)
    best = os.path.join(out, "best.weights.h5")
    clock = os.path.join(out, "epochs.txt")
    own: list = []
    history = hm.fit(hp, model, epochs=FOREVER, watched=own,
                     callbacks=[Deadline(deadline), checkpoint(best), EpochClock(clock), BudgetHorizon(deadline, own)])
    scores = history.history.get("val_f1", [])
    model.load_weights(best)
    return {"final": save_final(model, out), "trials": 1, **epoch_times(clock),
            "best_val_f1": max(scores) if scores else None,
            "values": {k: values[k] for k in space.varying}}


def kt_tuner(kind: str, space_name: str, root: str, out: str, seed: int, deadline: float) -> dict:
    """(b): Keras Tuner's own Hyperband or BayesianOptimization over the
    space's varying dimensions, stopped at the budget."""
    keras.utils.set_random_seed(seed)
    space, hm = setup(space_name, root, seed, cls=VaryingHyperModel)
    common = dict(hypermodel=hm, objective=kt.Objective("val_f1", "max"), seed=seed, directory=out,
                  project_name="kt", overwrite=True)
    if kind == "kt-hyperband":
        eta = space.early_terminate.eta if space.early_terminate else space.hyperband.factor
        tuner = TimedHyperband(max_epochs=space.train.epochs, factor=eta, **common)
    else:
        tuner = TimedBayesianOptimization(max_trials=space.run_cap, **common)
    tuner.deadline = deadline
    clock = os.path.join(out, "epochs.txt")
    tuner.search(callbacks=[Deadline(deadline), EpochClock(clock)], verbose=0)
    model = tuner.get_best_models(1)[0]
    trials = tuner.oracle.trials.values()
    best = tuner.oracle.get_best_trials(1)[0]
    return {"final": save_final(model, out), "trials": len(trials), **epoch_times(clock),
            "completed": sum(t.status == "COMPLETED" for t in trials),
            "best_val_f1": best.score, "values": {k: best.hyperparameters.values.get(k) for k in space.varying}}


def suggest(trial, param) -> Any:
    """One dimension of the space as Optuna's define-by-run call."""
    if param.kind == "choice":
        return trial.suggest_categorical(param.name, list(param.values))
    log = param.distribution == "log_uniform_values"
    if isinstance(param.min, int) and isinstance(param.max, int):
        return trial.suggest_int(param.name, param.min, param.max, log=log, step=int(param.q or 1))
    return trial.suggest_float(param.name, param.min, param.max, log=log, step=param.q)


def optuna_arm(space_name: str, root: str, out: str, seed: int, deadline: float) -> dict:
    """(c): Optuna's TPE with HyperbandPruner and optuna-integration's Keras
    pruning callback, `study.optimize(timeout=...)`, each trial's best epoch
    saved; the final model is the best trial's."""
    import optuna
    from optuna_integration import KerasPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras.utils.set_random_seed(seed)
    space, hm = setup(space_name, root, seed)
    et = space.early_terminate
    min_iter = getattr(et, "min_iter", 1)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=min_iter if isinstance(min_iter, int) else 1, max_resource=space.train.epochs,
        reduction_factor=getattr(et, "eta", 3))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    fixed = {n: p.value for n, p in space.params.items() if not p.varying}
    clock = os.path.join(out, "epochs.txt")

    def objective(trial) -> float:
        keras.backend.clear_session()  # as Optuna's Keras examples do
        values = space.coerce({**fixed, **{n: suggest(trial, space.params[n]) for n in space.varying}})
        hp = as_hp(values)
        model = hm.build(hp)
        history = hm.fit(hp, model, epochs=space.train.epochs,
                         callbacks=[Deadline(deadline), checkpoint(os.path.join(out, f"trial_{trial.number}.weights.h5")),
                                    KerasPruningCallback(trial, "val_f1"), EpochClock(clock)])
        return max(history.history["val_f1"])

    study.optimize(objective, timeout=max(0.0, deadline - time.monotonic()), gc_after_trial=True)
    best = study.best_trial
    values = space.coerce({**fixed, **best.params})
    model = hm.build(as_hp(values))
    model.load_weights(os.path.join(out, f"trial_{best.number}.weights.h5"))
    states = [t.state.name for t in study.trials]
    return {"final": save_final(model, out), "trials": len(states), **epoch_times(clock),
            "completed": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "best_val_f1": best.value,
            "values": {k: values[k] for k in space.varying}}


def score(model_path: str, root: str, labels_csv: str) -> dict:
    """The model's macro F1 on the test split's true labels (predictions on
    the test TFRecords, in record order; tuner.results.export's reader)."""
    from peers import macro_f1, read_labels
    from tuner.data.reader import FlowerData
    from tuner.results.export import load_any_model, predict_split

    predict, size = load_any_model(model_path)
    data = FlowerData(root, size, log=None)
    ids, probs = predict_split(predict, data, "test", 64)
    predicted = {(i.decode() if isinstance(i, bytes) else str(i)): int(p) for i, p in zip(ids, probs.argmax(1))}
    return macro_f1(predicted, read_labels(labels_csv), data.num_classes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arm", choices=(*ARMS, "score"))
    p.add_argument("--data", required=True)
    p.add_argument("--dir", help="the arm's own fresh directory")
    p.add_argument("--budget", type=float, help="seconds, from this process's start")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--space", default="demo")
    p.add_argument("--model", help="score: the model to score")
    p.add_argument("--labels", help="score: id,label CSV of the test split")
    args = p.parse_args()
    if args.arm == "score":
        print(json.dumps(score(args.model, args.data, args.labels)))
        return
    deadline = process_start() + args.budget
    os.makedirs(args.dir, exist_ok=True)
    from tuner.quiet import quiet_fit_warnings

    quiet_fit_warnings()  # the warnings a search hides (a validation split read to its end ...)
    import warnings

    # weights-only checkpoints loaded into a fresh model, whose optimizer has no slots yet
    warnings.filterwarnings("ignore", message=r".*Skipping variable loading for optimizer")
    if args.arm in ("notebook", "notebook-linear"):
        info = notebook(args.space, args.data, args.dir, args.seed, deadline,
                        "linear_decay" if args.arm == "notebook-linear" else None)
    elif args.arm == "optuna":
        info = optuna_arm(args.space, args.data, args.dir, args.seed, deadline)
    else:
        info = kt_tuner(args.arm, args.space, args.data, args.dir, args.seed, deadline)
    info["model_ready_s"] = time.monotonic() - process_start()
    with open(os.path.join(args.dir, "arm.json"), "w") as f:
        json.dump(info, f, indent=1, default=str)


if __name__ == "__main__":
    main()
