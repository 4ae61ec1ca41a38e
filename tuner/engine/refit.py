"""`best --export DIR --refit`: a trial trained again from scratch on train +
val, the way it trained in the search (its values, seed, steps per epoch and
learning rate epoch by epoch), for the epochs at which it was best.

It is a long job, so it runs like a trial: an epoch checkpoint in the project
(`refit/trial_<id>-<epochs>ep/`, through `TrialCheckpoint`), a stop at an
epoch end for --max-time or a signal, and the same command continues it.
Nothing here is scored: the model has seen the validation images."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import keras

from tuner.engine.checkpoint import TrialCheckpoint, read_history
from tuner.engine.ranking import clean_float
from tuner.engine.errors import Stopped
from tuner.errors import ProjectError, TunerError

#: the refit's final weights, in its folder (linked from the last epoch's file)
WEIGHTS = "model.weights.h5"


@dataclass(frozen=True)
class RefitPlan:
    trial_id: str
    values: dict[str, Any]
    epochs: int
    #: the learning rate in effect at the start of each epoch, as the search's
    #: run of the trial had it (ReduceLROnPlateau's cuts included); empty when
    #: the trial's own schedule sets it (`lr_schedule` needs no val data)
    start_lrs: tuple[float, ...]
    folder: str

    @property
    def weights(self) -> str:
        return f"{self.folder}/{WEIGHTS}"


def plan(project: str, trial, values: dict[str, Any], epochs: int | None = None) -> RefitPlan:
    """What to train: `epochs` (--refit-epochs) or the trial's best epoch.
    The folder is named by the epochs too, so asking for another count starts
    a refit of its own instead of mixing two."""
    rows = read_history(trial.trial_dir)
    n = int(epochs or trial.best_epoch or len(rows) or 0)
    if n < 1:
        raise ProjectError(f"trial {trial.trial_id} has no finished epoch to refit; give --refit-epochs N")
    lrs: tuple[float, ...] = ()
    if values.get("callback") != "lr_schedule":
        start = [float(values["learning_rate"])]
        for row in rows[: n - 1]:  # a row's rate is the one its epoch's callbacks left for the next
            lr = clean_float(row.get("learning_rate"))
            start.append(lr if lr is not None else start[-1])
        lrs = tuple(start + [start[-1]] * (n - len(start)))
    folder = f"{project.rstrip('/')}/refit/trial_{trial.trial_id}-{n}ep"
    return RefitPlan(trial.trial_id, values, n, lrs, folder)


class ReplayLearningRate(keras.callbacks.Callback):
    """Sets each epoch's starting learning rate to the search's."""

    def __init__(self, start_lrs: tuple[float, ...]):
        super().__init__()
        self.start_lrs = start_lrs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.start_lrs[min(epoch, len(self.start_lrs) - 1)]


class RefitEpoch(keras.callbacks.Callback):
    """Checkpoint, progress line and stop check after each epoch, in the
    order a trial's `EpochState` keeps (the checkpoint before the stop)."""

    def __init__(self, plan: RefitPlan, ckpt: TrialCheckpoint, rows: list, log, stopper):
        super().__init__()
        self.plan, self.ckpt, self.rows, self.log, self.stopper = plan, ckpt, rows, log, stopper
        self._t0 = time.monotonic()
        self._run: list[float] = []  # this run's epochs' seconds (its first holds the trace)
        #: why the refit stops here (--max-time, a signal): `refit` raises
        #: Stopped once fit has returned, as a trial's stop does (raised from
        #: a callback, the traceback would hold fit's frames and their teardown)
        self.stopped: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = clean_float(logs.get("loss"))
        if loss is None or math.isinf(loss):
            raise TunerError(f"refit of trial {self.plan.trial_id}: the loss became NaN in epoch {epoch + 1}; "
                             "refit another trial or fewer epochs (--refit-epochs)")
        seconds = time.monotonic() - self._t0
        lr = clean_float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.rows.append({"epoch": epoch + 1, "loss": loss, "accuracy": clean_float(logs.get("accuracy")),
                          "learning_rate": lr, "seconds": round(seconds, 3)})
        last = epoch + 1 == self.plan.epochs
        # On the last epoch `best_epoch` lets a restore finish linking the
        # final weights if a kill came between the pointer and the link.
        self.ckpt.save(self.model, epoch + 1, {"rows": self.rows, "trial_id": self.plan.trial_id, "refit": True,
                                               "best_epoch": self.plan.epochs},
                       best_file=self.plan.weights if last else None)
        self.log(f"  refit epoch {epoch + 1}/{self.plan.epochs}: loss {loss:.4f} accuracy "
                 f"{logs.get('accuracy', float('nan')):.4f} learning rate {lr:.3g} ({seconds:.1f}s)")
        self._run.append(seconds)
        # the next epoch's estimate: the run's later epochs, else its first (an upper bound: it traced)
        later = self._run[1:] or self._run
        why = self.stopper.requested(statistics.median(later[-5:])) if self.stopper else None
        if why and not last:
            self.ckpt.flush()
            self.stopped = (f"{why}: refit of trial {self.plan.trial_id} stopped after epoch {epoch + 1} of "
                            f"{self.plan.epochs}")
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped:
            import sys

            from tuner.engine.graphs import hold_input_pipeline

            hold_input_pipeline(sys._getframe(1))  # freed after the command's last line


def refit(plan: RefitPlan, meta: dict[str, Any], root: str, log=print, stopper=None,
          strategy: str = "auto") -> str:
    """Train what is left of `plan` and return the path of its weights."""
    from tuner.data.reader import FlowerData
    from tuner.model.hypermodel import build_model, pipeline_seed, train_dataset, trial_callbacks
    from tuner.model.precision import choose, this_device
    from tuner.model.strategy import detect, steps_per_execution
    from tuner.quiet import quiet_fit_warnings
    from tuner.spaces import train_settings, with_defaults

    ckpt = TrialCheckpoint(plan.folder)
    state = ckpt.load()
    if state and state.get("done"):
        log(f"refit of trial {plan.trial_id} ({plan.epochs} epochs on train + val) was finished before: "
            f"{plan.weights}")
        return plan.weights
    space = meta["space"]
    # what an older project's meta or trial lacks is at today's defaults, as the search has them
    train = train_settings(space.get("train"))
    values = with_defaults(plan.values, train)
    data = FlowerData(root, int(values["image_size"]), log=None)
    quiet_fit_warnings()
    info = detect(strategy)
    seed = int(space.get("seed") or 0)
    keras.utils.set_random_seed((seed + int(plan.trial_id)) % (2**31))
    scope = info.scope()
    policy, _ = choose(values["precision"], this_device(info.kind))
    batch = info.global_batch(int(values["batch_per_replica"]))
    steps = int(train["steps_per_epoch"] or max(1, (data.count("train") + data.count("val")) // batch))
    with scope:
        model = build_model(values, jit_compile=train["jit_compile"], num_classes=data.num_classes,
                            precision=policy,
                            steps_per_execution=steps_per_execution(train["steps_per_execution"], info.kind, steps))
        state = ckpt.restore(model, best_file=plan.weights)
    initial = int(state["epoch"]) if state else 0
    rows = list((state or {}).get("rows", []))
    ds = train_dataset(data, values, batch, train["cache"],
                       pipeline_seed(seed, ["refit", plan.trial_id], initial), splits=("train", "val"))
    again = f", continuing after epoch {initial}" if initial else ""
    calls = f" ({model.steps_per_execution} per device call)" if model.steps_per_execution > 1 else ""
    log(f"refit of trial {plan.trial_id} on train + val ({data.count('train') + data.count('val')} images): "
        f"{plan.epochs} epochs of {steps} steps{calls}{again}")
    lr = [ReplayLearningRate(plan.start_lrs)] if plan.start_lrs else trial_callbacks(values)
    if initial < plan.epochs:
        if stopper:
            stopper.install()
        epoch_cb = RefitEpoch(plan, ckpt, rows, log, stopper)
        try:
            model.fit(ds, epochs=plan.epochs, initial_epoch=initial, steps_per_epoch=steps, verbose=0, shuffle=False,
                      callbacks=lr + [epoch_cb])
        finally:
            ckpt.wait()
            if stopper:
                stopper.uninstall()
        if epoch_cb.stopped:
            raise Stopped(epoch_cb.stopped)
    ckpt.finish({"rows": rows})
    return plan.weights

