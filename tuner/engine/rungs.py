"""Early termination of trials: successive halving that pauses, and the
median stopping rule, decided from each trial's `val_f1` after every epoch.

Pure bookkeeping, no Keras Tuner or TensorFlow: the scheduler
(`tuner.engine.scheduler`) feeds it every epoch's report and asks it what to
do when it must pick the next trial, and saves its state with its own
(`EarlyTermination.get_state`).

Why pausing: on one machine trials run one after another, so the
asynchronous rule (ASHA, W&B's `early_terminate`: go on while fewer than
`eta` trials have reached the rung) lets the first trial run all its epochs
before a second one is tried. Here a trial that reaches a rung before
`eta - 1` others pauses there (its epoch checkpoint is on disk); once `eta`
trials have reached the rung, the best `1/eta` continue from their
checkpoints, optimizer state and all, and the others stop. That is
synchronous successive halving with no work thrown away.

Decisions, as the oracle answers a report:
- CONTINUE: train on;
- PAUSE: end this run of the trial, keep its checkpoint; it is continued
  later if promoted (the oracle queues it);
- STOP: the trial is finished and scored by its best value so far.

A trial is stopped only when it is worse than the cut-off by more than its
own noise (`EarlyTermination.noise`); within it, it is a tie and the trial
stays paused (hyperband) or goes on (median).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"
TYPES = ("hyperband", "median")
#: a trial's noise is the standard deviation of its last NOISE_DIFFS
#: epoch-to-epoch differences of the signal (at least 2 are needed)
NOISE_DIFFS = 4


#: `min_iter: auto`
AUTO = "auto"
#: `min_iter: auto` puts the first rung at this fraction of a trial's epochs
#: (at least epoch 2): where a trial's rank starts to say something about its
#: final rank. bench/rankcorr.py measured it (BENCHMARKS.md, "Which epoch's
#: rank predicts the end"): Spearman rho 0.1-0.25 at 20% of the epochs, 0.7
#: and more from 40%, for every signal.
AUTO_FRACTION = 0.4


def auto_min_iter(epochs: int, eta: int, budget: float | None = None,
                  run_seconds: Callable[[int], float | None] | None = None) -> int | None:
    """The first rung of `min_iter: auto`: max(2, ceil(AUTO_FRACTION x
    epochs)), where trials can be told apart. None when the budget
    (`--max-time`, seconds) and the cost of a run (`run_seconds(r)`: seconds
    for a trial to train r epochs) say that `eta` trials, the first rung's
    group, cannot reach it in half the budget: then no rung can tell them
    apart, and exploring would spend the budget on epochs whose ranks are
    noise (a rung lowered to fit decided on chance-level scores: BENCHMARKS.md,
    peers at 3 minutes). The search then trains without early termination:
    its first trial (a `start_with`) to its end or to the budget's. The
    rung is never lowered or raised."""
    r = max(2, math.ceil(AUTO_FRACTION * epochs))
    if budget and run_seconds is not None:
        cost = run_seconds(r)
        if cost is not None and eta * cost > budget / 2:
            return None
    return r


@dataclass(frozen=True)
class EarlyTerminate:
    """A space's `early_terminate:`, validated (W&B sweep vocabulary);
    `min_iter` is an int or AUTO (hyperband only, see `auto_min_iter`)."""

    type: str
    min_iter: int | str
    eta: int = 3
    max_iter: int | None = None

    def rungs(self, epochs: int, first: int | None = None) -> list[int]:
        """Epoch counts where hyperband decides: min_iter * eta**k, below the
        trial's last epoch (a trial that trains to the end needs no decision)
        and not beyond max_iter. `first`: the first rung, for `min_iter:
        auto` (without it, auto is its fraction of the epochs)."""
        if self.type != "hyperband":
            return []
        if first is None:
            first = auto_min_iter(epochs, self.eta) if self.min_iter == AUTO else int(self.min_iter)
        top = min(epochs, self.max_iter) if self.max_iter else epochs
        out, r = [], first
        while r < top:
            out.append(r)
            r *= self.eta
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "min_iter": self.min_iter, "eta": self.eta}
        if self.max_iter is not None:
            d["max_iter"] = self.max_iter
        return d

    def describe(self, epochs: int, rungs: list[int] | None = None) -> str:
        """`rungs`: the ones in use (`min_iter: auto` may have lowered them)."""
        if self.type == "hyperband":
            rungs = self.rungs(epochs) if rungs is None else rungs
            at = ", ".join(map(str, rungs)) if rungs else "none (min_iter >= epochs)"
            auto = " (min_iter auto)" if self.min_iter == AUTO else ""
            return f"hyperband early termination: rungs at epochs {at}{auto}, best 1/{self.eta} go on"
        return (f"median stopping: from epoch {self.min_iter}, once {self.eta} trials got there, "
                "a trial below their median stops")


def _number(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


class EarlyTermination:
    """Rung records and decisions for every trial of a search.

    State (all JSON-able, saved with the oracle):
    - `curves[tid][epoch]`: the trial's val metric at each epoch;
    - `records[rung][tid]`: its best value up to that rung's epoch;
    - `decisions[tid]`: {"state": running|paused|promoted|stopped,
      "rung": k, "epoch": e} for the latest rung it reached;
    - `pending[rung]`: paused trials at that rung waiting for a decision."""

    def __init__(self, config: EarlyTerminate, epochs: int, goal: str = "max"):
        self.config = config
        self.epochs = epochs
        self.goal = goal
        self.rung_epochs = config.rungs(epochs)
        self.curves: dict[str, dict[int, float]] = {}
        self.records: dict[int, dict[str, float]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.pending: dict[int, list[str]] = {}

    # ------------------------------------------------------------ helpers

    def best_so_far(self, tid: str, epoch: int) -> float | None:
        """Its best value up to `epoch`; NaN epochs count as none (None if
        all are), so the median rule neither counts nor keeps a NaN trial."""
        vals = [v for e, v in self.curves.get(tid, {}).items() if e <= epoch and _number(v)]
        if not vals:
            return None
        return max(vals) if self.goal == "max" else min(vals)

    def noise(self, tid: str, epoch: int) -> float | None:
        """How much the trial's own signal moves from one epoch to the next
        by chance, up to `epoch`: the standard deviation of its last
        NOISE_DIFFS epoch-to-epoch differences (a steady trend adds to each
        difference alike and drops out; what is left is the noise of a
        difference between two measurements, which is what comparing a
        value with a cut-off is). None with fewer than 2 differences: no
        estimate, the ranking alone decides."""
        vals = [v for e, v in sorted(self.curves.get(tid, {}).items()) if e <= epoch and _number(v)]
        diffs = [b - a for a, b in zip(vals, vals[1:])][-NOISE_DIFFS:]
        if len(diffs) < 2:
            return None
        return statistics.stdev(diffs)

    def _worse_by(self, value: float, than: float) -> float:
        """How much worse `value` is than `than` (negative: better)."""
        return than - value if self.goal == "max" else value - than

    def _within_noise(self, tid: str, epoch: int, value: float | None, cut: float | None) -> float | None:
        """The trial's noise when it is worse than the cut-off by no more
        than that noise (a tie within it: kept), else None."""
        if not _number(value) or not _number(cut):
            return None
        noise = self.noise(tid, epoch)
        if noise is None or self._worse_by(value, cut) > noise:
            return None
        return noise

    def _ranked(self, rung: int, tids: list[str]) -> list[str]:
        """Best first; ties go to the trial that reached the rung first; a
        NaN record (no value) ranks last: NaN compares false both ways, so
        sorting on it would put it anywhere."""
        rec = self.records.get(rung, {})
        order = list(rec)
        sign = -1.0 if self.goal == "max" else 1.0

        def key(t: str) -> tuple[bool, float, int]:
            v = rec.get(t)
            return (not _number(v), sign * v if _number(v) else 0.0, order.index(t))

        return sorted(tids, key=key)

    def state_of(self, tid: str) -> str:
        return self.decisions.get(tid, {}).get("state", "running")

    def first_epoch(self) -> int:
        """The epoch of the first decision (the first rung, or the median
        rule's first epoch)."""
        if self.rung_epochs:
            return self.rung_epochs[0]
        # auto's rungs dropped by the budget: no decision comes before a trial's
        # end, so, as without early termination, a new trial is worth starting
        # once its first epoch fits (its best epoch counts; requiring all its
        # epochs left half of a 25-minute demo budget unused, BENCHMARKS "Peers")
        return 1 if self.config.min_iter == AUTO else int(self.config.min_iter)

    def settle_auto(self, budget: float | None, run_seconds: Callable[[int], float | None] | None,
                    reached: int = 0) -> bool:
        """`min_iter: auto`: keep the first rung where `auto_min_iter` puts
        it, or drop the rungs when the budget cannot fill the first (no
        exploration this run), while no trial has been judged at a rung and
        no trial is past the rung to restore (`reached`, and the curves: the
        highest epoch reported so far). A later run with more budget may
        bring the rungs back. True when they changed."""
        if self.config.min_iter != AUTO or self.config.type != "hyperband" or self.records:
            return False
        reached = max([reached] + [e for c in self.curves.values() for e in c])
        first = auto_min_iter(self.epochs, self.config.eta, budget, run_seconds)
        rungs = [] if first is None else self.config.rungs(self.epochs, first=first)
        if rungs == self.rung_epochs or (rungs and rungs[0] < reached):
            return False
        self.rung_epochs = rungs
        return True

    def paused(self) -> list[str]:
        return [t for r in sorted(self.pending) for t in self.pending[r]]

    # ------------------------------------------------------------ reports

    def report(self, tid: str, epoch: int, value: float | None,
               may_start_new: bool | Callable[[], bool] = True,
               finished: bool = False) -> tuple[str, list[str], list[str]]:
        """One finished epoch of trial `tid` (1-based) with its val metric.

        Returns (decision for `tid`, trials to promote, trials stopped while
        paused). A report repeated after an interruption (same trial, same
        rung) gets the decision already made, and changes nothing.
        `may_start_new` may be a callable: it is then asked with `tid`
        already waiting at its rung, so that an endgame that would continue
        it at once lets it go on instead. `finished`: the trial's own
        callback ended it here (EarlyStopping): it trains no further, so it
        takes no place in a rung's group (promoted, it would train nothing
        and waste the slot)."""
        self.curves.setdefault(tid, {})[int(epoch)] = value
        if finished:
            return CONTINUE, [], []
        if self.config.type == "median":
            return self._median(tid, epoch), [], []
        if epoch not in self.rung_epochs:
            return CONTINUE, [], []
        rung = self.rung_epochs.index(epoch)
        if tid in self.records.get(rung, {}):
            d = self.decisions.get(tid, {})
            if d.get("rung") == rung:
                return {"paused": PAUSE, "stopped": STOP}.get(d["state"], CONTINUE), [], []
            return CONTINUE, [], []  # decided at this rung and then promoted past it
        best = self.best_so_far(tid, epoch)
        self.records.setdefault(rung, {})[tid] = best if best is not None else float("nan")
        waiting = self.pending.setdefault(rung, [])
        group = waiting + [tid]
        if len(group) < self.config.eta:
            self.pending[rung] = group
            self.decisions[tid] = {"state": "paused", "rung": rung, "epoch": epoch}
            if may_start_new() if callable(may_start_new) else may_start_new:
                return PAUSE, [], []
            self.pending[rung] = waiting  # _close decides it with the others
        return self._close(rung, group, tid)

    def _close(self, rung: int, group: list[str], arriving: str | None) -> tuple[str, list[str], list[str]]:
        """The best len/eta (at least one) of `group` go on; of the others,
        one worse than the last kept (the cut-off) by no more than its own
        noise (`noise`) stays paused at the rung, to be judged again with
        the next trials there (or, when none will come, promoted next); the
        rest stop."""
        keep_n = max(1, len(group) // self.config.eta)
        ranked = self._ranked(rung, group)
        keep, drop = ranked[:keep_n], ranked[keep_n:]
        epoch = self.rung_epochs[rung]
        rec = self.records.get(rung, {})
        cut = rec.get(keep[-1])
        self.pending[rung] = []
        promote, stopped = [], []
        decision = CONTINUE
        for t in keep:
            self.decisions[t] = {"state": "promoted", "rung": rung, "epoch": epoch}
            if t != arriving:
                promote.append(t)
        for t in drop:
            noise = self._within_noise(t, epoch, rec.get(t), cut)
            if noise is not None:
                self.pending[rung].append(t)
                self.decisions[t] = {"state": "paused", "rung": rung, "epoch": epoch, "noise": round(noise, 6)}
                if t == arriving:
                    decision = PAUSE
                continue
            self.decisions[t] = {"state": "stopped", "rung": rung, "epoch": epoch}
            if t == arriving:
                decision = STOP
            else:
                stopped.append(t)
        return decision, promote, stopped

    def _median(self, tid: str, epoch: int) -> str:
        cfg = self.config
        if epoch < cfg.min_iter or epoch >= self.epochs:
            return CONTINUE
        others = [self.best_so_far(t, epoch) for t, c in self.curves.items()
                  if t != tid and epoch in c]
        others = [v for v in others if v is not None]
        if len(others) < cfg.eta:
            return CONTINUE
        mine = self.best_so_far(tid, epoch)
        median = statistics.median(others)
        noise = self.noise(tid, epoch) or 0.0
        if mine is None or self._worse_by(mine, median) > noise:
            self.decisions[tid] = {"state": "stopped", "rung": None, "epoch": epoch, "median": median}
            return STOP
        return CONTINUE

    # ------------------------------------------------------------ endgame

    def next_promotion(self) -> tuple[int, str] | None:
        """The paused trial to continue when no new trial will start: the
        best one at the highest rung that has any."""
        for rung in sorted(self.pending, reverse=True):
            if self.pending[rung]:
                return rung, self._ranked(rung, self.pending[rung])[0]
        return None

    def close_highest(self) -> tuple[list[str], list[str]]:
        """Decide the highest rung's waiting group with fewer than eta
        trials: (promoted, stopped)."""
        nxt = self.next_promotion()
        if nxt is None:
            return [], []
        rung, _ = nxt
        _, promote, stopped = self._close(rung, list(self.pending[rung]), None)
        return promote, stopped

    def forget(self, tid: str) -> None:
        """A trial that failed: it waits for nothing."""
        for rung in self.pending:
            if tid in self.pending[rung]:
                self.pending[rung].remove(tid)

    # ------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "rung_epochs": self.rung_epochs,
            "curves": {t: {str(e): v for e, v in c.items()} for t, c in self.curves.items()},
            "records": {str(r): d for r, d in self.records.items()},
            "decisions": self.decisions,
            "pending": {str(r): ts for r, ts in self.pending.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if self.config.min_iter == AUTO and state.get("rung_epochs") is not None:
            self.rung_epochs = [int(r) for r in state["rung_epochs"]]  # settled by the budget: they stay
        self.curves = {t: {int(e): v for e, v in c.items()} for t, c in state.get("curves", {}).items()}
        self.records = {int(r): dict(d) for r, d in state.get("records", {}).items()}
        self.decisions = dict(state.get("decisions", {}))
        self.pending = {int(r): list(ts) for r, ts in state.get("pending", {}).items()}


def describe_decision(d: dict[str, Any] | None) -> str | None:
    """'stopped at epoch 2 (rung 1)', 'paused at rung 1 (epoch 2)' (with ', within its
    noise (0.120) of the cut-off' when the noise rule kept it) or None."""
    if not d:
        return None
    rung = d.get("rung")
    if d.get("state") == "stopped":
        where = f" (rung {rung + 1})" if rung is not None else " (below the median)"
        return f"stopped at epoch {d['epoch']}{where}"
    if d.get("state") == "paused":
        text = f"paused at rung {rung + 1} (epoch {d['epoch']})"
        if d.get("noise") is not None:
            # kept by the noise rule: say so, or a pause after a decided rung reads as a bug
            text += f", within its noise ({d['noise']:.3f}) of the cut-off"
        return text
    return None
