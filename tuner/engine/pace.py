"""A run's pace inside its epochs: what one call into the device takes, what
a validation takes, and so whether what is left of --max-time holds the
next epoch, a part of it, or nothing.

A stop only at epoch ends leaves up to one epoch of the budget unused (on 2
CPU cores at 64 px, 20-80 s of a 3-minute budget), and after a run's first
epoch, which holds the tracing, it had no estimate of the next one at all.
Timing the calls within the epoch gives both: the first call of a run holds
the trace and is left out, every later one is one step's (or one
`steps_per_execution` group's) cost. The last epoch of a budget is then cut
at the call after which its validation would no longer fit, and it is
validated and checkpointed like any other (Keras validates an epoch that a
callback stopped): the budget buys training up to its end, as a notebook's
"stop at the deadline" does, and the command still ends within it. Pure
bookkeeping, no Keras."""

from __future__ import annotations

import statistics
from collections import deque

#: an epoch is started at the budget's end only if at least this share of
#: its training fits beside its validation: a sliver of training would pay
#: a whole validation for little
MIN_PART = 0.25

#: a validation never timed yet is taken as this many times its estimate
#: from the images it scores, plus `EVAL_TRACE` of the train step's
#: tracing (the run's first validation traces the test step: 5% of the
#: train step's trace for ResNet50V2 at 64 px here, more for small models)
UNTIMED_VALIDATION = 1.5
EVAL_TRACE = 0.15


class Pace:
    """Calls per epoch and their seconds, over this run of `fit`.

    `val_share`: a validation's cost as a share of an epoch's training,
    estimated from the images each scores (tuner.engine.validation), used
    until a validation has been timed."""

    def __init__(self, val_share: float, calls_per_epoch: int):
        self.val_share = max(0.0, float(val_share))
        self.calls_per_epoch = max(1, int(calls_per_epoch))
        self._calls: deque[float] = deque(maxlen=64)  # the seconds of recent calls, none a run's first
        self._vals: list[float] = []  # this run's validations, in seconds, its first (traced) included
        self._last: float | None = None  # when the last call ended
        self.done = 0  # calls done in this epoch
        self._run_first = True
        self._first_call: float | None = None  # the run's first call: the trace, the pipeline's start

    def epoch_begin(self, now: float) -> None:
        self._last, self.done = now, 0

    def call_end(self, now: float) -> None:
        if self._last is not None:
            if self._run_first:
                self._first_call = now - self._last
            else:
                self._calls.append(now - self._last)
        self._run_first = False
        self._last = now
        self.done += 1

    def validation(self, seconds: float) -> None:
        self._vals.append(float(seconds))

    @property
    def call_seconds(self) -> float | None:
        return statistics.median(self._calls) if self._calls else None

    def validation_seconds(self) -> float | None:
        """What the next validation takes: the median of the later ones,
        else the first (an upper bound: it traced), else the estimate from
        the images it scores, with a margin."""
        if len(self._vals) > 1:
            return statistics.median(self._vals[1:][-5:])
        if self._vals:
            return self._vals[0]
        train = self.train_seconds()
        if train is None:
            return None
        trace = max(0.0, (self._first_call or 0.0) - (self.call_seconds or 0.0))
        return UNTIMED_VALIDATION * self.val_share * train + EVAL_TRACE * trace

    def train_seconds(self) -> float | None:
        """A whole epoch's training at the current pace."""
        rate = self.call_seconds
        return None if rate is None else rate * self.calls_per_epoch

    def least_worth_starting(self, validates: bool) -> float | None:
        """The fewest seconds for which the next epoch is worth starting:
        `MIN_PART` of its training (one call at least) and its validation."""
        rate, train = self.call_seconds, self.train_seconds()
        if rate is None or train is None:
            return None
        val = (self.validation_seconds() or 0.0) if validates else 0.0
        return max(rate, MIN_PART * train) + val

    def cut_now(self, left: float | None, validates: bool) -> bool:
        """After a call: stop this epoch here, because its next call and then
        its validation would end past the budget's `left` seconds."""
        if left is None or self.done >= self.calls_per_epoch:
            return False
        val = (self.validation_seconds() or 0.0) if validates else 0.0
        if left <= val:
            return True
        rate = self.call_seconds
        return rate is not None and rate + val > left
