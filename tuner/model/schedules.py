"""Learning-rate schedules a trial's `callback` names that need more than
the epoch number: `linear_decay` decays to the trial's last epoch, which
--max-time may bring forward.

Why linear to the end: in budgeted training (Li, Yumer and Ramanan, ICLR
2020, "Budgeted Training: Rethinking Deep Neural Network Training Under
Resource Constraints") a schedule that reaches zero exactly when the budget
ends beat step and plateau schedules at every budget they tried, most at
the smallest; a run that the budget ends mid-way through a constant or
plateau schedule never anneals. Only the tool knows where its budget ends,
so the tool sets the end."""

from __future__ import annotations

from typing import Callable

import keras


class LinearDecay(keras.callbacks.Callback):
    """Epoch e (0-based) of a run whose last epoch is H trains at
    `learning_rate x (H - e) / H`: the first at the trial's rate, the last at
    1/H of it. H is the trial's `epochs`, or sooner: `last_epoch(e)` (set by
    the tuner: tuner.engine.callbacks.EpochState.last_epoch_in_budget) says
    the last 1-based epoch that --max-time holds from epoch e on at the run's
    pace, or None when it cannot tell (no budget, or nothing timed yet).

    The rate is set at the end of each epoch for the next one, as
    ReduceLROnPlateau sets its cuts: the epoch checkpoint then holds the rate
    the next epoch trains at, history.csv's row the rate its epoch left (what
    a refit replays), and a resume goes on from it. The rate never rises: a
    budget estimate that grows again (a faster pace, a longer --max-time on a
    resume) keeps the rate already reached."""

    def __init__(self, learning_rate: float, epochs: int):
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.epochs = max(1, int(epochs))
        self.last_epoch: Callable[[int], int | None] | None = None

    def horizon(self, epoch: int) -> int:
        """The last 1-based epoch the decay reaches, seen from 0-based `epoch`."""
        h = self.last_epoch(epoch) if self.last_epoch is not None else None
        return self.epochs if h is None else max(epoch + 1, min(self.epochs, int(h)))

    def rate(self, epoch: int) -> float:
        h = self.horizon(epoch)
        return self.learning_rate * max(h - epoch, 1) / h

    def on_epoch_end(self, epoch, logs=None):
        nxt = epoch + 1
        if nxt >= self.epochs:
            return
        now = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.model.optimizer.learning_rate = min(now, self.rate(nxt))
