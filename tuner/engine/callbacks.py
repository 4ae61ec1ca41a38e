"""The callbacks a trial's `fit` gets from the tuner: the epoch checkpoint
(with NaN check, report and stop) and, on a worker, the lease check."""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import keras_tuner as kt

from tuner.engine.checkpoint import clean_float
from tuner.engine.errors import LeaseLost, Stopped

STATE_COLUMNS = ("loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall")


class EpochState(keras.callbacks.Callback):
    """Checkpoint after each epoch, fail on NaN, report, honour stops."""

    def __init__(self, tuner, trial, ckpt, state, epochs, progress, stopper, save_best, watched):
        super().__init__()
        self.tuner, self.trial, self.ckpt = tuner, trial, ckpt
        self.rows: list[dict[str, Any]] = list((state or {}).get("rows", []))
        self.saved_callbacks = (state or {}).get("callbacks", {})
        self.epochs, self.progress, self.stopper = epochs, progress, stopper
        self.save_best, self.watched = save_best, watched
        self._t0 = time.monotonic()

    def on_train_begin(self, logs=None):
        # Runs after the trial's own callbacks reset themselves: put their
        # state back as it was at the checkpoint.
        for cb in self.watched:
            for k, v in self.saved_callbacks.get(type(cb).__name__, {}).items():
                setattr(cb, k, v)
        if "save_best" in self.saved_callbacks:
            self.save_best.best_value = self.saved_callbacks["save_best"]

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = clean_float(logs.get("loss"))
        if loss is None or math.isinf(loss):
            raise kt.errors.FailedTrialError(f"loss became NaN in epoch {epoch + 1}; lower the learning rate")
        seconds = time.monotonic() - self._t0
        row = {"epoch": epoch + 1, **{k: clean_float(logs.get(k)) for k in STATE_COLUMNS}}
        row["learning_rate"] = clean_float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = round(seconds, 3)
        self.rows.append(row)
        cb_state = {type(cb).__name__: callback_state(cb) for cb in self.watched}
        cb_state["save_best"] = self.save_best.best_value
        self.ckpt.save(self.model, epoch + 1, {
            "rows": self.rows, "callbacks": cb_state, "trial_id": self.trial.trial_id,
            "replicas": self.tuner.hypermodel.strategy_info.replicas, "worker": self.tuner.tuner_id,
        })
        self.progress.epoch_end(epoch + 1, self.epochs, logs, seconds)
        why = self.stopper.requested()
        if why:
            raise Stopped(f"{why}: trial {self.trial.trial_id} stopped after epoch {epoch + 1}")


class LeaseCheck(keras.callbacks.Callback):
    """First of the trial's callbacks at each epoch end: report, and stop
    if the lease was lost, before the checkpoint callbacks write."""

    def __init__(self, heartbeat):
        super().__init__()
        self.heartbeat = heartbeat

    def on_train_batch_end(self, batch, logs=None):
        if self.heartbeat.lost:
            raise LeaseLost(f"trial {self.heartbeat.trial.trial_id} was handed to another worker")

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items() if clean_float(v) is not None}
        self.heartbeat.report(metrics, epoch)


def callback_state(cb) -> dict[str, Any]:
    keys = ("wait", "best", "stopped_epoch", "cooldown_counter", "best_epoch")
    out = {}
    for k in keys:
        if hasattr(cb, k):
            v = getattr(cb, k)
            try:
                out[k] = float(v) if not isinstance(v, int) else v
            except (TypeError, ValueError):
                pass
    return out


