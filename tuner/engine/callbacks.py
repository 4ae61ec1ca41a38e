"""The callbacks a trial's `fit` gets from the tuner: the epoch checkpoint
(with NaN check, report and stop) and, on a worker, the lease check."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import keras
import keras_tuner as kt

from tuner.engine.ranking import clean_float
from tuner.engine import ranking

STATE_COLUMNS = ("loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall")


class EpochState(keras.callbacks.Callback):
    """The tuner's work after each epoch, in an order a kill cannot tear:
    fail on NaN; write the epoch checkpoint (and the best-epoch file when
    this epoch is the best); report the epoch to the oracle, which answers
    with its rung decision (go on, pause here, stop: see
    `tuner.engine.rungs`); then honour a stop asked for by --max-time or a
    signal. Reporting after the checkpoint means an epoch trained again
    after a kill is reported again, and the oracle replaces it."""

    def __init__(self, tuner, trial, ckpt, state, epochs: int, beat, watched: list, started: float,
                 built: bool = True, events=None, ledger=None, validated=None, val_share: float = 0.2):
        super().__init__()
        self.tuner, self.trial, self.ckpt, self.beat, self.events = tuner, trial, ckpt, beat, events
        self.rows: list[dict[str, Any]] = list((state or {}).get("rows", []))
        self.saved_callbacks = (state or {}).get("callbacks", {})
        self.epochs, self.watched = epochs, watched
        self.objective = tuner.oracle.objective
        self.best_file = tuner._get_checkpoint_fname(trial.trial_id)  # where Keras Tuner looks for it
        self.decision: str | None = None  # "paused" | "stopped" when the oracle said so
        self.stopped: str | None = None  # why the search stops here (--max-time, a signal)
        self._run_started = started
        # The first epoch of every run also holds what came before it (the
        # build, the state copy, the restore) and the caches' refill; with a
        # model built for it, the tracing too. The budget counts it apart,
        # by kind (see tuner.engine.budget).
        self._first_of_run = True
        self._built = built
        self._t0 = self._val0 = self._ready = time.monotonic()  # built and restored by now
        self._val_seconds = 0.0
        self.ledger = ledger
        self._epochs: list[tuple[float, float]] = []  # this run's (train, validation) seconds
        #: the 1-based epochs that validate (tuner.engine.validation); None: every one
        self.validated = None if validated is None else frozenset(int(e) for e in validated)
        self.val_share = val_share  # a validation's cost against an epoch's training, until one is timed
        self.pace = None  # tuner.engine.pace.Pace, once fit says its steps
        self.cut: tuple[int, int] | None = None  # (steps done, steps per epoch) of an epoch cut by --max-time

    def on_train_begin(self, logs=None):
        if self.ledger is not None:  # TensorBoard's writer, the input pipelines, fit's own set-up
            self.ledger.add("setup", time.monotonic() - self._ready)
        from tuner.engine.pace import Pace

        steps = int((self.params or {}).get("steps") or 1)
        per_call = max(1, int(getattr(self.model, "steps_per_execution", 1) or 1))
        self.pace = Pace(self.val_share, -(-steps // per_call))
        # Runs after the trial's own callbacks reset themselves: put their
        # state back as it was at the checkpoint.
        from tuner.model.schedules import LinearDecay

        for cb in self.watched:
            if isinstance(cb, LinearDecay):
                cb.last_epoch = self.last_epoch_in_budget
            for k, v in self.saved_callbacks.get(type(cb).__name__, {}).items():
                setattr(cb, k, v)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = self._val0 = time.monotonic()
        self._val_seconds = 0.0
        self._epoch = epoch
        if self.pace is not None:
            self.pace.epoch_begin(self._t0)

    def validates(self, epoch: int) -> bool:
        """Does 1-based `epoch` validate?"""
        return self.validated is None or epoch in self.validated

    def on_train_batch_end(self, batch, logs=None):
        """The budget's last epoch ends at the call after which its
        validation would not fit any more (tuner.engine.pace); Keras then
        validates it, and it is checkpointed like any other. A signal's
        stop still waits for the epoch's end."""
        if self.pace is None:
            return
        self.pace.call_end(time.monotonic())
        stopper = self.tuner.stopper
        if stopper is None or stopper.reason is not None or self.cut is not None or self.decision is not None:
            return
        if self.pace.cut_now(stopper.budget.left(), self.validates(self._epoch + 1)):
            self.cut = (int(batch) + 1, int(self.params.get("steps") or 0))  # Keras passes the call's last step
            self.model.stop_training = True

    # Keras runs the epoch's validation through `evaluate` with the same
    # callbacks: its test hooks bracket the validation pass.
    def on_test_begin(self, logs=None):
        self._val0 = time.monotonic()
        if self.cut is not None:
            # the cut is ours: what the trial's EarlyStopping decides after
            # this validation must stay its own (see `finished` below)
            self.model.stop_training = False

    def on_test_end(self, logs=None):
        seconds = time.monotonic() - self._val0
        self._val_seconds += seconds
        if self.pace is not None:
            self.pace.validation(seconds)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.cut is not None and not self.validates(epoch + 1):
            self.model.stop_training = False  # cut by us, and nothing validated that could stop it
        loss = clean_float(logs.get("loss"))
        if loss is None or math.isinf(loss):
            raise kt.errors.FailedTrialError(f"loss became NaN in epoch {epoch + 1}; lower the learning rate")
        now = time.monotonic()
        seconds = now - self._t0
        self._epochs.append((seconds - self._val_seconds, self._val_seconds))
        row = {"epoch": epoch + 1, **{k: clean_float(logs.get(k)) for k in STATE_COLUMNS}}
        row["learning_rate"] = clean_float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = round(seconds, 3)
        if self.cut:
            row["steps"] = self.cut[0]  # a part of an epoch: not an epoch's cost (resume.json keeps it)
        self.rows.append(row)
        best = self.best_epoch() == epoch + 1  # ties keep the earlier epoch
        if self.beat.leased:
            self.beat.check()  # a worker that lost its trial writes nothing
        cb_state = {type(cb).__name__: callback_state(cb) for cb in self.watched}
        saving = time.monotonic()
        self.ckpt.save(self.model, epoch + 1, {
            "rows": self.rows, "callbacks": cb_state, "trial_id": self.trial.trial_id,
            "replicas": self.tuner.hypermodel.strategy_info.replicas, "worker": self.tuner.tuner_id,
            "best_epoch": self.best_epoch(),
            "precision": self.model.dtype_policy.name,
            "backend": keras.backend.backend(),
            "steps_per_execution": int(self.model.steps_per_execution),
            # EarlyStopping (the trial's own callbacks run first) said stop:
            # a resume must not train another epoch.
            "stop_training": bool(self.model.stop_training),
        }, best_file=self.best_file if best else None, guard=self.beat.check if self.beat.leased else None)
        if self.ledger is not None:
            self.ledger.add("checkpoint", time.monotonic() - saving)  # the wait for the last write and the copy
        self.write_events()  # the epochs whose checkpoints are on disk by now
        self.tuner.progress.epoch_end(epoch + 1, self.epochs, logs, seconds)
        cost = now - self._run_started if self._first_of_run else seconds
        kind = 0 if not self._first_of_run else (1 if self._built else 2)
        self.act(self.report(row, None if self.cut else cost, kind, finished=bool(self.model.stop_training)),
                 epoch + 1)
        nxt, what = self.next_epoch_least(epoch + 2)
        self._first_of_run = False
        stopper = self.tuner.stopper
        if stopper is not None:
            stopper.note_flush(self.ckpt.write_seconds)
        if stopper is not None and self.cut:
            stopper.stop(f"max-time reached: epoch {epoch + 1} cut after {self.cut[0]} of {self.cut[1]} steps "
                         "to end within it")
        why = stopper.requested(nxt, what) if stopper else None
        if why and self.decision is None:
            self.flush()  # the checkpoint of this epoch is on disk before the search ends
            # fit ends as it does at a pause, and the tuner raises Stopped
            # after it: raised from here, the exception's traceback held fit's
            # frames, and freeing them (TensorFlow's iterators torn down
            # mid-epoch) took 15-45 s after the last epoch (measured with
            # py-spy on a 15-minute demo search).
            self.stopped = f"{why}: trial {self.trial.trial_id} stopped after epoch {epoch + 1}"
            self.model.stop_training = True

    def last_epoch_in_budget(self, epoch: int) -> int | None:
        """The last 1-based epoch this run reaches if it trains on from
        0-based `epoch` until --max-time, at this run's pace: each epoch its
        training, its validation (where it validates) and its checkpoint
        write; the last may be a part (`Pace.cut_now` cuts it), counted when
        the stopper would start it (`Pace.least_worth_starting`). None
        without a budget, or before a call of this run is timed. What
        `LinearDecay` decays to."""
        stopper = self.tuner.stopper
        left = stopper.budget.left() if stopper is not None else None
        train = self.pace.train_seconds() if self.pace is not None else None
        if left is None or train is None:
            return None
        val = self.pace.validation_seconds() or 0.0
        save = self.ckpt.write_seconds or 0.0
        e = epoch
        while e < self.epochs:
            validates = self.validates(e + 1)
            v = val if validates else 0.0
            if train + v + save > left:
                if left >= self.pace.least_worth_starting(validates):
                    e += 1
                break
            left -= train + v + save
            e += 1
        return max(e, epoch + 1)

    def next_epoch_least(self, epoch: int) -> tuple[float | None, str]:
        """The fewest seconds in which 1-based `epoch`, the next, is worth
        starting, and what they buy, for the stop's line: from the pace of
        this run's calls (a part of the epoch; the budget cuts it), else
        from the trial's recent whole epochs, else the one just trained
        (its first: an upper bound, it traced)."""
        least = self.pace.least_worth_starting(self.validates(epoch)) if self.pace is not None else None
        if least is not None:
            return least, "a quarter of an epoch and its validation"
        nxt = self.next_epoch_seconds(epoch)
        if nxt is None and self.rows and self.rows[-1].get("seconds"):
            nxt = float(self.rows[-1]["seconds"])
        return nxt, "an epoch"

    def on_train_end(self, logs=None):
        self.flush()  # the last epoch's checkpoint is on disk when fit returns
        if self.stopped:
            import sys

            from tuner.engine.graphs import hold_input_pipeline

            hold_input_pipeline(sys._getframe(1))  # freed after the search's last line

    def flush(self) -> None:
        """The run's end: its last checkpoint on disk, its events closed,
        its epochs in the ledger (once, whichever way the run ends)."""
        t0 = time.monotonic()
        self.ckpt.flush()
        self.write_events(close=True)
        if self.ledger is not None:
            self.ledger.add("checkpoint", time.monotonic() - t0)
            self.ledger.add_run(self._epochs, self._built)
            self._epochs = []

    def write_events(self, close: bool = False) -> None:
        """TensorBoard gets an epoch once its checkpoint is on disk: a kill
        can then never leave it there twice (see tuner.engine.events)."""
        if self.events is not None:
            self.events.write(self.rows, self.ckpt.durable)
            if close:
                self.events.close()

    def next_epoch_seconds(self, epoch: int | None = None) -> float | None:
        """Epoch `epoch`'s (the next one's) expected seconds: the median of
        the trial's recent epochs, leaving out its first (it holds the build
        and the tracing) and this one when it was the first of a run. When
        not every epoch validates, from the recent epochs that did (or did
        not) as `epoch` will: a validated epoch may cost twice another."""
        rows = self.rows[1:]
        if self._first_of_run and rows:
            rows = rows[:-1]
        rows = [r for r in rows if "steps" not in r]  # an epoch cut by the budget is not an epoch's cost
        past = [float(r["seconds"]) for r in rows if r.get("seconds")]
        if not past:
            return None
        if self.validated is not None and epoch is not None:
            will = epoch in self.validated
            alike = [float(r["seconds"]) for r in rows if r.get("seconds") and validated_row(r) == will]
            if alike:
                return statistics.median(alike[-5:])
            if will:
                return 2 * statistics.median(past[-5:])  # none validated yet: a ceiling
        return statistics.median(past[-5:])

    def best_epoch(self) -> int | None:
        """The epoch whose weights are the best-epoch file (`engine.ranking`)."""
        return ranking.best_epoch(self.rows, self.objective.name, self.objective.direction)

    def report(self, row: dict[str, Any], seconds: float | None = None, kind: int = 0, finished: bool = False):
        """One epoch to the oracle; its answer carries the rung decision.
        `kind`: 0 a later epoch of its run, 1 the first with a model built
        and traced for it, 2 the first in a kept, traced model; `finished`:
        the trial's own callback (EarlyStopping) ended it here."""
        from tuner.engine.oracles import FINISHED_KEY, FIRST_KEY, SECONDS_KEY

        metrics = {k: float(v) for k, v in row.items() if k in STATE_COLUMNS and v is not None}
        if seconds is not None:
            metrics[SECONDS_KEY] = float(seconds)
            metrics[FIRST_KEY] = float(kind)
        if finished:
            metrics[FINISHED_KEY] = 1.0
        return self.beat.report(metrics, int(row["epoch"]))

    def act(self, reply, epoch: int) -> None:
        status = getattr(reply, "status", "RUNNING")
        if status in ("IDLE", "STOPPED"):
            self.decision = "paused" if status == "IDLE" else "stopped"
            if self.model is not None:
                self.model.stop_training = True


def validated_row(row: dict[str, Any]) -> bool:
    """Did this epoch (a history row) validate? Its val_* are None if not."""
    return any(row.get(k) is not None for k in STATE_COLUMNS if k.startswith("val_"))


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


