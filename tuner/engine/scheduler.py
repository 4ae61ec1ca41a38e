"""What runs next, and what a trial does after each epoch: one object of
ours, pure Python (no Keras Tuner, no TensorFlow), in the shape of Ray
Tune's TrialScheduler.

- `on_trial_result` answers each epoch's report with CONTINUE, PAUSE or
  STOP (the rung decisions of `tuner.engine.rungs`), and names the paused
  trials that the report promoted or stopped;
- `choose_trial_to_run` answers a free worker with an explicit choice:
  NEW (ask the sampler for a new trial), RESUME a trial (a promoted one, or
  one a lost worker left), WAIT (nothing now, but running trials may still
  pause or come back) or NONE (the search is over for this worker);
- `on_trial_complete`, `on_trial_error` and `on_trial_lost` keep the queue
  and the rungs in step with how runs end;
- the end of a --max-time budget (`endgame`): time left is spent on the
  best paused trial rather than on a new trial that could not be judged.

The Keras Tuner oracle (`tuner.engine.oracles`) is a thin adapter: it turns
these answers into Keras Tuner's statuses and files, on one machine and at
a chief alike. Budget and costs come in as plain values and callables (the
Deadline, the EpochCosts, `is_warm`, the trial cap), so every decision can
be scripted and tested alone (tests/test_scheduler.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from tuner.engine.budget import LATER, Deadline, EpochCosts, cost_key, fmt_seconds
from tuner.engine.rungs import CONTINUE, PAUSE, STOP, EarlyTermination, auto_min_iter

__all__ = ["CONTINUE", "PAUSE", "STOP", "NEW", "RESUME", "WAIT", "NONE", "Choice", "Result", "Scheduler"]

#: what a free worker is told to do
NEW, RESUME, WAIT, NONE = "new", "continue", "wait", "none"


@dataclass
class Choice:
    """`choose_trial_to_run`'s answer. `stopped`: paused trials that lost
    their rung while the choice was made (the adapter finishes them)."""

    action: str
    trial_id: str | None = None
    stopped: list[str] = field(default_factory=list)

    def pair(self) -> tuple[str, str | None]:
        return self.action, self.trial_id


@dataclass
class Result:
    """`on_trial_result`'s answer: the reporting trial's decision, the paused
    trials promoted (now queued) and those stopped (the adapter finishes
    them: scored by their best value, told to the sampler)."""

    decision: str = CONTINUE
    promoted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Worth saving: a decision other than going on, or another trial's."""
        return self.decision != CONTINUE or bool(self.promoted or self.stopped)


class Scheduler:
    """Owns the queue of trials to continue, the rungs and the budget's use.

    `values_of(tid)`: a trial's hyperparameter values (its cost kind);
    `cap_reached()`: no new trial may be created (max trials);
    `is_warm(values)`: on one machine, is a run of these values one whose
    graph is kept traced (None at a chief: every run counts cold)."""

    def __init__(self, early: EarlyTermination | None, epochs: int, deadline: Deadline | None = None,
                 costs: EpochCosts | None = None, values_of: Callable[[str], dict] = lambda tid: {},
                 cap_reached: Callable[[], bool] = lambda: False,
                 is_warm: Callable[[dict], bool] | None = None,
                 log: Callable[[str], None] = lambda m: None):
        self.early = early
        self.max_epochs = epochs
        self.deadline = deadline if deadline is not None else Deadline(None)
        self.costs = costs if costs is not None else EpochCosts()
        self.values_of = values_of
        self.cap_reached = cap_reached
        self.is_warm = is_warm
        self.log = log
        #: trials ready to continue, first ready first run: promoted at a
        #: rung, or handed back by a lost worker
        self.queue: list[str] = []
        #: this run ended (or will) because nothing more fits in the time left
        self.budget_refused = False
        #: what did not fit, in figures, for the search's last lines
        self.refused_why: str | None = None
        self.epochs_this_run = 0
        #: this run's --max-time in seconds (None: no budget), for `min_iter: auto`
        self.budget: float | None = None

    def begin(self, budget: float | None) -> None:
        """The run starts with `budget` seconds (--max-time, or None)."""
        self.budget = float(budget) if budget else None
        self._settle_auto(0)

    def _settle_auto(self, reached: int) -> None:
        """`min_iter: auto` lowered to what the budget allows, once epoch
        costs are measured (`EarlyTermination.settle_auto`)."""
        if self.early is None or self.budget is None:
            return
        if not self.early.settle_auto(self.budget, self._measured_run_seconds, reached):
            return
        eta = self.early.config.eta
        if self.early.rung_epochs:
            at = ", ".join(map(str, self.early.rung_epochs))
            self.log(f"min_iter auto: rungs at epochs {at}; {eta} trials reach the first in half of the "
                     f"{fmt_seconds(self.budget)} budget")
            return
        r = auto_min_iter(self.max_epochs, eta)
        cost = self._measured_run_seconds(r) or 0.0
        self.log(f"min_iter auto: {eta} trials to epoch {r}, where ranks start to predict the end, take about "
                 f"{fmt_seconds(eta * cost)}, more than half of the {fmt_seconds(self.budget)} budget: no early "
                 f"termination this run; each trial trains to its end or the budget's (more --max-time explores)")

    def _measured_run_seconds(self, epochs: int) -> float | None:
        """A run of `epochs` epochs of the dearest kind with a measured later
        epoch (a first epoch alone holds the tracing: no estimate)."""
        costs = [self.costs.seconds(k, epochs) for k in self.costs.keys() if self.costs.later.get(k)]
        costs = [c for c in costs if c is not None]
        return max(costs) if costs else None

    # ------------------------------------------------------------ costs

    def first_decision_epochs(self) -> int:
        """Epochs a new trial needs before it can be judged."""
        if self.early is None:
            return 1
        if self.early.rung_epochs:
            return self.early.rung_epochs[0]
        return min(self.early.first_epoch(), self.max_epochs)

    def run_cost(self, values: dict, epochs: int) -> float | None:
        """Seconds for a run of `epochs` epochs of a trial with `values`,
        from its hand-out to its last epoch's end. On one machine the tuner
        keeps the graphs it traced last (tuner.engine.warm): a run of one
        still kept skips the tracing."""
        warm = bool(values) and self.is_warm is not None and self.is_warm(values)
        return self.costs.seconds(cost_key(values), epochs, warm=warm)

    def any_cost(self, epochs: int) -> float | None:
        """Before a trial of this kind has run: the dearest kind seen, or None
        (nothing seen: start one and measure)."""
        costs = [self.costs.seconds(k, epochs) for k in self.costs.keys()]
        costs = [c for c in costs if c is not None]
        return max(costs) if costs else None

    def fits(self, values: dict, epochs: int) -> bool:
        return self._shortfall(values, epochs) is None

    def _shortfall(self, values: dict, epochs: int) -> tuple[float, float] | None:
        """(seconds left, seconds needed) when `epochs` of `values` do not fit."""
        left = self.deadline.left()
        if left is None:
            return None
        cost = self.run_cost(values, epochs)
        if cost is None:
            cost = self.any_cost(epochs)
        return None if cost is None or cost <= left else (left, cost)

    def _refuse(self, short: tuple[float, float] | None, what: str) -> None:
        self.budget_refused = True
        if short is not None:
            left, cost = short
            self.refused_why = f"{fmt_seconds(max(0.0, left))} left, less than {what} (about {fmt_seconds(cost)})"

    def continue_epochs(self, tid: str) -> int:
        """Epochs from a paused trial's rung to its next decision (or its end)."""
        assert self.early is not None
        rung = self.early.decisions.get(tid, {}).get("rung") or 0
        here = self.early.rung_epochs[rung]
        nxt = self.early.rung_epochs[rung + 1] if rung + 1 < len(self.early.rung_epochs) else self.max_epochs
        return max(1, nxt - here)

    def new_trial_fits(self, values: dict) -> bool:
        """The sampler drew `values`: can such a trial reach its first
        decision in the time left? If not, the budget refused it."""
        n = self.first_decision_epochs()
        short = self._shortfall(values, n)
        if short is None:
            return True
        what = ("a new trial's first epoch" if n == 1
                else f"a new trial needs to reach its first decision at epoch {n}")
        self._refuse(short, what)
        return False

    # ------------------------------------------------------------ endgame

    def endgame(self) -> bool:
        """Time left is better spent continuing the best paused trial than
        starting one more that would leave no time to continue it. A new
        trial is only judged once `eta` trials meet at the first rung, so
        what it costs is the runs still missing from that group, not its
        own run alone: one started without time for the others waits there
        unjudged, its epochs lost to the trial that goes on. Never before
        `eta` trials have been compared at the first rung: a budget spent on
        one configuration is the trap early termination is for."""
        left = self.deadline.left()
        if left is None or self.early is None:
            return False
        eta = self.early.config.eta
        if len(self.early.records.get(0, {})) < eta:
            return False
        nxt = self.early.next_promotion()
        if nxt is None:
            return False
        values = self.values_of(nxt[1])
        first = self.run_cost(values, self.first_decision_epochs())
        cont = self.run_cost(values, self.continue_epochs(nxt[1]))
        if first is None or cont is None:
            return False
        missing = max(1, eta - len(self.early.pending.get(0, [])))
        return left < missing * first + cont

    def may_start_new(self) -> bool:
        """Could one more new trial start and reach its first decision?"""
        return not self.cap_reached() and not self.endgame() and self.fits({}, self.first_decision_epochs())

    def _promote_paused(self) -> Result:
        """No new trial will start: decide the highest rung's waiting group
        now, if its best trial has time for at least one more epoch."""
        if self.early is None:
            return Result()
        nxt = self.early.next_promotion()
        if nxt is None or not self.fits(self.values_of(nxt[1]), 1):
            return Result()
        promote, stopped = self.early.close_highest()
        self._queue_promoted(promote)
        return Result(CONTINUE, promote, stopped)

    def _queue_promoted(self, promote: list[str]) -> None:
        assert self.early is not None
        for tid in promote:
            if tid not in self.queue:
                self.queue.append(tid)
            self.log(f"trial {tid} goes on from rung {self.early.decisions[tid]['rung'] + 1}")

    # ------------------------------------------------------------ choices

    def choose_trial_to_run(self, running: Collection[str] = (), current: str | None = None,
                            sampler_declined: bool = False) -> Choice:
        """What a free worker does now.

        `running`: trials other workers hold now; `current`: the trial this
        worker already holds (Keras Tuner asks again after a restart);
        `sampler_declined`: asked again after NEW, the sampler having no new
        trial to give (space exhausted, or `new_trial_fits` refused its
        values). A trial to continue runs before any new one, as long as its
        next epoch fits; a new trial starts unless the cap or the endgame
        says no; otherwise the highest rung's waiting group is decided and
        its best continues; otherwise the worker waits while others run
        (one of their trials may pause at a rung or come back from a lost
        worker), unless the budget refused what is left."""
        if current is not None or self.queue:
            tid = current if current is not None else self.queue[0]
            short = self._shortfall(self.values_of(tid), 1)
            if short is not None:
                # Not even its next epoch fits: it waits, checkpoint and all,
                # for the same command with more time.
                self._refuse(short, f"trial {tid}'s next epoch")
                return Choice(NONE)
            if current is None:
                self.queue.pop(0)
            return Choice(RESUME, tid)
        if not sampler_declined:
            if not self.cap_reached() and not self.endgame():
                self.budget_refused, self.refused_why = False, None
                return Choice(NEW)
        promoted = self._promote_paused()
        if promoted.promoted:
            return Choice(RESUME, self.queue.pop(0), stopped=promoted.stopped)
        if self.early is not None and self.early.paused() and self.deadline.left() is not None:
            nxt = self.early.next_promotion()
            short = self._shortfall(self.values_of(nxt[1]), 1) if nxt is not None else None
            self._refuse(short, f"trial {nxt[1]}'s next epoch" if nxt is not None else "")
        if any(True for _ in running) and not self.budget_refused:
            return Choice(WAIT, stopped=promoted.stopped)
        return Choice(NONE, stopped=promoted.stopped)

    # ------------------------------------------------------------ reports

    def on_epoch_cost(self, tid: str, seconds: float, kind: str = LATER) -> None:
        """An epoch's seconds (`kind`: COLD, WARM or LATER, see budget)."""
        key = cost_key(self.values_of(tid))
        known = bool(self.costs.later.get(key))
        self.costs.add(key, seconds, kind)
        self.epochs_this_run += 1
        left = self.deadline.left()
        if kind == LATER and not known and left is not None:
            est = self.costs.estimate(key)
            if est:
                f, e = est
                self.log(f"budget: {fmt_seconds(left)} left, about {int(left // e)} epochs at {e:.1f} s/epoch "
                         f"({key}; a new trial's first epoch took {f:.0f} s with its build and tracing)")

    def on_trial_result(self, tid: str, epoch: int, value: float | None, finished: bool = False,
                        running: Collection[str] = ()) -> Result:
        """Epoch `epoch` (1-based) of `tid` ended with `value` of the
        objective. `finished`: the trial's own callback ended it there.
        `running`: the trials workers hold now (this one included): while
        another runs, a trial arriving alone at a rung may wait for it."""
        if self.early is None or value is None:
            return Result()
        reached = max([int(epoch)] + [e for c in self.early.curves.values() for e in c])
        self._settle_auto(reached)
        others_coming = any(t != tid for t in running)
        # Asked with the arriving trial already waiting at its rung: when the
        # endgame would continue it at once, it goes on now instead of
        # pausing (a rebuild and a restore saved).
        decision, promote, stopped = self.early.report(
            tid, int(epoch), float(value), may_start_new=lambda: others_coming or self.may_start_new(),
            finished=finished)
        self._queue_promoted(promote)
        return Result(decision, promote, stopped)

    def on_trial_complete(self, tid: str) -> str:
        """A run of `tid` ended normally: "paused" (it waits at its rung,
        scored so far, not finished) or "finished"."""
        if self.early is not None and self.early.state_of(tid) == "paused":
            return "paused"
        if tid in self.queue:
            self.queue.remove(tid)
        return "finished"

    def on_trial_error(self, tid: str) -> None:
        """A run failed for good: its trial waits for nothing, and nothing
        waits for it."""
        if self.early is not None:
            self.early.forget(tid)
        if tid in self.queue:
            self.queue.remove(tid)

    def on_trial_lost(self, tid: str) -> bool:
        """Its worker vanished (lease out) or Keras Tuner sends it for a
        retry: it continues from its checkpoint on the next free worker.
        False when it was queued already."""
        if tid in self.queue:
            return False
        self.queue.append(tid)
        return True

    def is_queued(self, tid: str) -> bool:
        return tid in self.queue

    def state_of(self, tid: str) -> str:
        """running, paused, promoted, stopped (its rung state) or queued."""
        if tid in self.queue:
            return "queued"
        return self.early.state_of(tid) if self.early is not None else "running"

    # ------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        """What the oracle saves under oracle.json's "flower_tuner" key."""
        return {"costs": self.costs.get_state(),
                "early_terminate": self.early.get_state() if self.early else None,
                "queue": list(self.queue)}

    def set_state(self, ours: dict[str, Any], legacy_queue: list[str] | None = None) -> None:
        """`ours`: what `get_state` saved. A project saved before this
        scheduler existed kept its queue in Keras Tuner's "retry_queue",
        popped from its end: `legacy_queue` is read in that order."""
        self.costs.set_state(ours.get("costs") or {})
        if self.early is not None and ours.get("early_terminate"):
            self.early.set_state(ours["early_terminate"])
        if "queue" in ours:
            self.queue = [str(t) for t in ours.get("queue") or []]
        else:
            self.queue = [str(t) for t in reversed(legacy_queue or [])]
