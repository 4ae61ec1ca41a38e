"""Keras Tuner's oracles with leases on their trials (see `tuner.engine.leases`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from keras_tuner import oracles as kt_oracles
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.oracle import Oracle as KTOracle

from tuner.engine.budget import COLD, LATER, WARM, Deadline, EpochCosts, cost_key, fmt_seconds
from tuner.engine.checkpoint import atomic_write
from tuner.engine.leases import LEASE_PREFIX, LEASES_FILE, lease_key
from tuner.engine.rungs import CONTINUE, PAUSE, STOP, EarlyTermination, describe_decision
from tuner.engine.sync import synchronized

TS = trial_module.TrialStatus


class LeasedOracleMixin:
    """Put before a Keras Tuner oracle class: leases on its trials."""

    def __init__(self, *args, lease_seconds: float = 300.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.lease_seconds = float(lease_seconds)
        self.log: Callable[[str], None] = lambda m: None
        self._owner: dict[str, str] = {}
        self._last: dict[str, float] = {}
        self._seen: dict[str, float] = {}  # tuner id -> when it last asked or reported

    # -- bookkeeping -------------------------------------------------
    def _write_leases(self) -> None:
        if not getattr(self, "_directory", None):
            return
        data = {tid: {"worker": w, "last_report": self._last.get(tid)} for tid, w in self._owner.items()}
        try:
            atomic_write(os.path.join(self._project_dir, LEASES_FILE), json.dumps(data, indent=1))
        except OSError:
            pass

    def _busy_elsewhere(self, tuner_id: str) -> bool:
        return any(t != tuner_id for t in self.ongoing_trials) or bool(self._retry_queue)

    # -- Keras Tuner's files, written atomically ---------------------
    def save(self):
        atomic_write(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial):
        atomic_write(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                     json.dumps(trial.get_state()))

    # -- Keras Tuner's calls -----------------------------------------
    @synchronized
    def create_trial(self, tuner_id):
        self._seen[tuner_id] = time.time()
        trial = super().create_trial(tuner_id)
        if trial.status == TS.STOPPED and self._busy_elsewhere(tuner_id) and not getattr(self, "budget_refused", False):
            # Not STOPPED yet: a running trial may still come back (unless
            # the budget has no room for anything more).
            self.tuner_ids.add(tuner_id)
            return trial_module.Trial(hyperparameters=self.hyperparameters.copy(), status=TS.IDLE)
        if trial.status == TS.RUNNING:
            self._owner[trial.trial_id] = tuner_id
            self._last[trial.trial_id] = time.time()
            self._write_leases()
        return trial

    @synchronized
    def update_trial(self, trial_id, metrics, step=0):
        metrics = dict(metrics)
        reporters = [k[len(LEASE_PREFIX):] for k in metrics if k.startswith(LEASE_PREFIX)]
        for r in reporters:
            metrics.pop(lease_key(r))
        trial = self.trials[trial_id]
        if reporters:
            self._seen[reporters[0]] = time.time()
            if self._owner.get(trial_id) != reporters[0]:
                # INVALID: "not yours any more" (STOPPED and IDLE answer an
                # epoch report with a rung decision).
                return trial_module.Trial(hyperparameters=trial.hyperparameters, trial_id=trial_id,
                                          status=TS.INVALID)
            self._last[trial_id] = time.time()
            self._write_leases()
        if not metrics:
            return trial
        return super().update_trial(trial_id, metrics, step=step)

    @synchronized
    def end_trial(self, trial):
        if trial.trial_id not in self._owner and trial.trial_id in self._retry_queue:
            return  # a late report for a trial already handed back to the queue
        known = self.trials.get(trial.trial_id)
        if (known is not None and known.status in (TS.COMPLETED, TS.FAILED, TS.INVALID)
                and all(t.trial_id != trial.trial_id for t in self.ongoing_trials.values())):
            # A late end from a worker whose trial was handed on and has
            # finished since (its end names no worker): the result stands.
            return
        super().end_trial(trial)
        owner = self._owner.pop(trial.trial_id, None)
        if owner is not None:
            self._seen[owner] = time.time()
        self._last.pop(trial.trial_id, None)
        self._write_leases()

    # -- the lease itself --------------------------------------------
    @synchronized
    def expire_leases(self, now: float | None = None) -> list[tuple[str, str]]:
        """Hand back every trial whose worker was silent too long, and stop
        waiting for idle workers that stopped asking (Keras Tuner's chief
        exits only once no tuner id is left)."""
        now = time.time() if now is None else now
        expired = []
        for tuner_id, trial in list(self.ongoing_trials.items()):
            tid = trial.trial_id
            last = self._last.setdefault(tid, now)
            if now - last > self.lease_seconds:
                self.ongoing_trials.pop(tuner_id)
                self.tuner_ids.discard(tuner_id)
                self._owner.pop(tid, None)
                self._last.pop(tid, None)
                if tid not in self._retry_queue:
                    self._retry_queue.append(tid)
                expired.append((tid, tuner_id))
        if expired:
            self.save()
            self._write_leases()
            for tid, who in expired:
                self.log(f"lease of trial {tid} held by {who} ran out after {self.lease_seconds:.0f}s "
                         "without a report: back in the queue")
        self._forget_idle(now)
        return expired

    def _forget_idle(self, now: float) -> None:
        """A waiting worker asks again every few seconds; one silent for the
        lease has vanished, and would keep the chief from exiting."""
        for tuner_id in sorted(self.tuner_ids):
            if tuner_id in self.ongoing_trials:
                continue  # its trial's lease covers it
            if now - self._seen.setdefault(tuner_id, now) > self.lease_seconds:
                self.tuner_ids.discard(tuner_id)
                self._seen.pop(tuner_id, None)
                self.log(f"worker {tuner_id} has not asked for a trial for {self.lease_seconds:.0f}s: "
                         "no longer waited for")


#: Extra keys of an epoch report: the run's epoch time, for the budget, and
#: which epoch of its run it was (0: a later one; 1: the first, in a graph
#: traced for it; 2: the first, in a graph kept traced from an earlier run).
SECONDS_KEY = "tuner/epoch_seconds"
FIRST_KEY = "tuner/first_epoch"
RUN_KINDS = {0: LATER, 1: COLD, 2: WARM}
#: 1.0 when the trial's own callback (EarlyStopping) ended it at this epoch:
#: it is finished, whatever a rung would say, and takes no rung's place.
FINISHED_KEY = "tuner/finished"


class BudgetedOracleMixin:
    """Early termination (`tuner.engine.rungs`) and a time budget on top of a
    Keras Tuner oracle, through Keras Tuner's own signals: `update_trial`
    answers each epoch's report with RUNNING, IDLE (pause here), STOPPED
    (finished: stopped early) or INVALID (lease lost, see the lease mixin);
    `create_trial` starts no trial that cannot reach its first decision in
    the time left, and continues paused trials instead."""

    def __init__(self, *args, early_terminate=None, epochs: int = 1, deadline: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.early = EarlyTermination(early_terminate, epochs, self.objective.direction) if early_terminate else None
        self.max_epochs = epochs
        self.costs = EpochCosts()
        # The search passes its Stopper's budget: one deadline, one tail.
        self.deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        self.budget_refused = False  # the search ended because nothing more fits in the time left
        self.epochs_this_run = 0
        #: set by the search on one machine: is a trial with these values one
        #: whose graph the tuner keeps traced (tuner.engine.warm)? A chief
        #: cannot know where a run lands and counts every run cold.
        self.is_warm: Callable[[dict], bool] | None = None
        self.log: Callable[[str], None] = lambda m: None

    # -- what the time left allows -------------------------------------
    def _values(self, tid: str) -> dict:
        return self.trials[tid].hyperparameters.values

    def _first_decision_epochs(self) -> int:
        """Epochs a new trial needs before it can be judged."""
        if self.early is None:
            return 1
        if self.early.rung_epochs:
            return self.early.rung_epochs[0]
        return min(self.early.config.min_iter, self.max_epochs)

    def _run_cost(self, values: dict, epochs: int) -> float | None:
        """Seconds for a run of `epochs` epochs of a trial with `values`,
        from its hand-out to its last epoch's end. On one machine the tuner
        keeps the graphs it traced last (tuner.engine.warm): a run of one
        still kept skips the tracing."""
        warm = bool(values) and self.is_warm is not None and self.is_warm(values)
        return self.costs.seconds(cost_key(values), epochs, warm=warm)

    def _fits(self, values: dict, epochs: int) -> bool:
        left = self.deadline.left()
        if left is None:
            return True
        cost = self._run_cost(values, epochs)
        if cost is None:
            cost = self._any_cost(epochs)
        return cost is None or cost <= left

    def _any_cost(self, epochs: int) -> float | None:
        """Before a trial of this kind has run: the dearest kind seen, or None
        (nothing seen: start one and measure)."""
        costs = [self.costs.seconds(k, epochs) for k in self.costs.keys()]
        costs = [c for c in costs if c is not None]
        return max(costs) if costs else None

    def _continue_epochs(self, tid: str) -> int:
        """Epochs from a paused trial's rung to its next decision (or its end)."""
        d = self.early.decisions.get(tid, {})
        rung = d.get("rung") or 0
        here = self.early.rung_epochs[rung]
        nxt = self.early.rung_epochs[rung + 1] if rung + 1 < len(self.early.rung_epochs) else self.max_epochs
        return max(1, nxt - here)

    def _cap_reached(self) -> bool:
        return bool(self.max_trials) and len(self.trials) >= self.max_trials

    def _endgame(self) -> bool:
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
        values = self._values(nxt[1])
        first = self._run_cost(values, self._first_decision_epochs())
        cont = self._run_cost(values, self._continue_epochs(nxt[1]))
        if first is None or cont is None:
            return False
        missing = max(1, eta - len(self.early.pending.get(0, [])))
        return left < missing * first + cont

    def may_start_new(self) -> bool:
        """Could one more new trial start and reach its first decision?"""
        return not self._cap_reached() and not self._endgame() and self._fits({}, self._first_decision_epochs())

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response.get("status") == TS.RUNNING and not self._fits(response.get("values") or {},
                                                                   self._first_decision_epochs()):
            self.budget_refused = True
            return {"status": TS.STOPPED, "values": None}
        return response

    # -- Keras Tuner's calls -------------------------------------------
    @synchronized
    def create_trial(self, tuner_id):
        if tuner_id in self.ongoing_trials or self._retry_queue:
            tid = self.ongoing_trials[tuner_id].trial_id if tuner_id in self.ongoing_trials else self._retry_queue[-1]
            if not self._fits(self._values(tid), 1):
                # Not even its next epoch fits: it waits, checkpoint and all,
                # for the same command with more time.
                self.budget_refused = True
                self.tuner_ids.discard(tuner_id)
                return trial_module.Trial(hyperparameters=self.hyperparameters.copy(), status=TS.STOPPED)
            return super().create_trial(tuner_id)
        if not self._cap_reached() and not self._endgame():
            self.budget_refused = False
            trial = super().create_trial(tuner_id)
            if trial.status != TS.STOPPED or self.early is None:
                return trial
            self.tuner_ids.add(tuner_id)  # Keras Tuner let it go; a promotion may follow
        if self._promote_paused():
            return super().create_trial(tuner_id)
        if self.early is not None and self.early.paused() and self.deadline.left() is not None:
            self.budget_refused = True
        self.tuner_ids.discard(tuner_id)
        return trial_module.Trial(hyperparameters=self.hyperparameters.copy(), status=TS.STOPPED)

    def _promote_paused(self) -> bool:
        """No new trial will start: decide the highest rung's waiting group
        now, if its best trial has time for at least one more epoch."""
        if self.early is None:
            return False
        nxt = self.early.next_promotion()
        if nxt is None or not self._fits(self._values(nxt[1]), 1):
            return False
        promote, stopped = self.early.close_highest()
        self._apply(promote, stopped)
        self.save()
        return bool(promote)

    def _apply(self, promote: list[str], stopped: list[str]) -> None:
        for tid in stopped:
            self._finish_paused(tid)
        for tid in promote:
            if tid not in self._retry_queue:
                self._retry_queue.append(tid)
            self.log(f"trial {tid} goes on from rung {self.early.decisions[tid]['rung'] + 1}")

    def _finish_paused(self, tid: str) -> None:
        """A paused trial that lost its rung: finished, scored by its best
        value so far, its resume files dropped (its best weights stay)."""
        from tuner.engine.checkpoint import TrialCheckpoint

        trial = self.trials[tid]
        trial.status = TS.COMPLETED
        self.score_trial(trial)
        if tid not in self.end_order:
            self.end_order.append(tid)
        self._save_trial(trial)
        try:
            TrialCheckpoint(self._get_trial_dir(tid)).finish({})
        except Exception:  # the chief may not reach the trial's storage; the files only cost space
            pass

    @synchronized
    def update_trial(self, trial_id, metrics, step=0):
        metrics = dict(metrics)
        seconds = metrics.pop(SECONDS_KEY, None)
        kind = RUN_KINDS.get(int(metrics.pop(FIRST_KEY, 0.0)), COLD)
        finished = bool(metrics.pop(FINISHED_KEY, 0.0))
        trial = self.trials[trial_id]
        if not metrics:
            return trial
        if seconds is not None:
            key = cost_key(trial.hyperparameters.values)
            known = bool(self.costs.later.get(key))
            self.costs.add(key, seconds, kind)
            self.epochs_this_run += 1
            left = self.deadline.left()
            if kind == LATER and not known and left is not None:
                f, e = self.costs.estimate(key)
                self.log(f"budget: {fmt_seconds(left)} left, about {int(left // e)} epochs at {e:.1f} s/epoch "
                         f"({key}; a new trial's first epoch took {f:.0f} s with its build and tracing)")
        if self.objective.name not in metrics:
            return trial  # an epoch without validation (tuner.engine.validation): its time, no score, no rung
        # An epoch trained again after an interruption replaces its first
        # report (Keras Tuner would average the two into the score).
        for name in metrics:
            if trial.metrics.exists(name):
                trial.metrics.metrics[name]._observations.pop(step, None)  # noqa: SLF001
        reply = super().update_trial(trial_id, metrics, step=step)
        name = self.objective.name
        if self.early is None or name not in metrics:
            return reply
        others_coming = any(t.trial_id != trial_id for t in self.ongoing_trials.values())
        # Asked with the arriving trial already waiting at its rung: when the
        # endgame would continue it at once, it goes on now instead of
        # pausing (a rebuild and a restore saved).
        decision, promote, stopped = self.early.report(
            trial_id, int(step), float(metrics[name]), may_start_new=lambda: others_coming or self.may_start_new(),
            finished=finished)
        self._apply(promote, stopped)
        if decision != CONTINUE or promote or stopped:
            self.save()
        status = {CONTINUE: TS.RUNNING, PAUSE: TS.IDLE, STOP: TS.STOPPED}[decision]
        return trial_module.Trial(hyperparameters=trial.hyperparameters, trial_id=trial_id, status=status)

    @synchronized
    def end_trial(self, trial):
        tid = trial.trial_id
        if self.early is not None and trial.status == TS.COMPLETED and self.early.state_of(tid) == "paused":
            # Paused, not finished: scored so far, kept out of the end order.
            old = self.trials[tid]
            old.hyperparameters = trial.hyperparameters
            self.score_trial(old)
            old.status = TS.IDLE
            self._save_trial(old)
            for tuner_id, t in list(self.ongoing_trials.items()):
                if t.trial_id == tid:
                    self.ongoing_trials.pop(tuner_id)
            self.save()
            return
        if self.early is not None and trial.status in (TS.FAILED, TS.INVALID):
            self.early.forget(tid)
        super().end_trial(trial)

    # -- what the user is told ------------------------------------------
    def plan(self, max_time: float | None) -> str | None:
        """What the budget allows, said at the start of a search."""
        parts = []
        if self.early is not None:
            parts.append(self.early.config.describe(self.max_epochs))
        if max_time:
            known = [self.costs.estimate(k) for k in self.costs.keys()]
            known = [k for k in known if k]
            if known:
                first, later = max(known, key=lambda fe: fe[1])
                epochs = 1 + int(max(0.0, max_time - first) // later) if max_time >= first else 0
                parts.append(f"budget {fmt_seconds(max_time)}: about {epochs} epochs at {later:.1f} s/epoch "
                             f"({first:.0f} s for the first epoch of each run)")
            else:
                parts.append(f"budget {fmt_seconds(max_time)}: seconds per epoch not known yet "
                             "(the first trial measures them)")
        return "; ".join(parts) or None

    def decision_texts(self) -> dict[str, str]:
        if self.early is None:
            return {}
        out = {}
        for tid, d in self.early.decisions.items():
            text = describe_decision(d)
            if text:
                out[tid] = text
        return out

    def spending(self, seconds: float) -> str | None:
        """How this run's time went, said at the end of a search."""
        if not self.epochs_this_run and self.early is None:
            return None
        line = f"time spent: {self.epochs_this_run} epochs trained in {fmt_seconds(seconds)}"
        if self.early is None:
            return line
        states = [self.early.decisions.get(tid, {}) for tid in self.trials]
        done = sum(1 for tid, t in self.trials.items() if t.status == TS.COMPLETED
                   and self.early.state_of(tid) != "stopped")
        stopped: dict[str, int] = {}
        for d in states:
            if d.get("state") == "stopped":
                where = f"rung {d['rung'] + 1}" if d.get("rung") is not None else "the median"
                stopped[where] = stopped.get(where, 0) + 1
        paused = sum(1 for d in states if d.get("state") == "paused")
        bits = [f"{done} trained to the end"]
        bits += [f"{n} stopped at {where}" for where, n in sorted(stopped.items())]
        if paused:
            bits.append(f"{paused} paused (the same command with more --max-time continues them)")
        return f"{line}; {len(self.trials)} trials: " + ", ".join(bits)

    # -- state, saved in oracle.json -------------------------------------
    def get_state(self):
        state = super().get_state()
        state["flower_tuner"] = {"costs": self.costs.get_state(),
                                 "early_terminate": self.early.get_state() if self.early else None}
        return state

    def set_state(self, state):
        super().set_state(state)
        ours = state.get("flower_tuner") or {}
        self.costs.set_state(ours.get("costs") or {})
        if self.early is not None and ours.get("early_terminate"):
            self.early.set_state(ours["early_terminate"])


class StartWithMixin:
    """Put before a Keras Tuner oracle that draws values itself (random,
    bayes): the space's `start_with` configurations are its first trials, in
    order (dimensions a configuration leaves out are drawn as usual)."""

    def __init__(self, *args, start_with=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.start_with = [dict(c) for c in start_with or ()]

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        n = len(self.trials)  # the trials created before this one
        if response.get("status") == TS.RUNNING and n < len(self.start_with):
            names = {hp.name for hp in self.hyperparameters.space}
            given = {k: v for k, v in self.start_with[n].items() if k in names}
            response = {**response, "values": {**(response.get("values") or {}), **given}}
        return response


class TPEOracle(KTOracle):
    """Optuna's TPE (`tuner.engine.sampler`) asked for each new trial's values
    over the dimensions that vary, told every epoch's objective and each
    trial's end. The study is the project's `optuna.journal`, opened on first
    use: only the oracle's process (one machine's, or the chief's) writes it."""

    def __init__(self, *args, study_name: str = "flower-tuner", start_with=(), warm_start=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.study_name = study_name
        self.start_with = [dict(c) for c in start_with or ()]
        #: (source, [trial dicts]) from `tuner.engine.warm_start`, added once
        self.warm_start = warm_start
        self._study = None

    @property
    def study(self):
        from tuner.engine import sampler

        if self._study is None:
            self._study = sampler.Study(
                sampler.journal_path(self._project_dir), self.study_name, self.objective.direction, self.seed,
                sampler.distributions(self.hyperparameters.space), sampler.startup_trials(self.max_trials),
                self.start_with)
            if self.warm_start:
                source, trials = self.warm_start
                added = self._study.add_finished(trials, source)
                if added:
                    getattr(self, "log", lambda m: None)(
                        f"warm start: {added} finished trials of {source} seed the TPE model")
        return self._study

    def populate_space(self, trial_id):
        values = {hp.name: hp.default for hp in self.hyperparameters.space}
        values.update(self.study.ask(trial_id))
        return {"status": TS.RUNNING, "values": values}

    def update_trial(self, trial_id, metrics, step=0):
        name = self.objective.name
        if name in metrics and step:
            self.study.report(trial_id, int(step), float(metrics[name]))
        return super().update_trial(trial_id, metrics, step=step)

    def _tell_end(self, tid: str) -> None:
        """Tell the study how a trial ended, once it is decided: stopped at a
        rung PRUNED, completed COMPLETE with its score, failed FAIL; a paused
        one or one waiting for a retry is not told."""
        from tuner.engine import sampler

        trial = self.trials[tid]
        early = getattr(self, "early", None)
        if early is not None and early.state_of(tid) == "stopped":
            self.study.tell(tid, sampler.PRUNED)
        elif trial.status == TS.COMPLETED:
            self.study.tell(tid, sampler.COMPLETE, trial.score)
        elif trial.status == TS.FAILED:
            self.study.tell(tid, sampler.FAIL)

    def end_trial(self, trial):
        super().end_trial(trial)
        self._tell_end(trial.trial_id)


class FlowerTPEOracle(LeasedOracleMixin, BudgetedOracleMixin, TPEOracle):
    """TPE with leases, early termination and the budget: a trial stopped at
    a rung is told PRUNED as soon as it is decided, a paused one when it is."""

    @synchronized
    def update_trial(self, trial_id, metrics, step=0):
        reply = super().update_trial(trial_id, metrics, step=step)
        if reply.status == TS.STOPPED and trial_id in self.trials:
            self._tell_end(trial_id)
        return reply

    def _finish_paused(self, tid: str) -> None:
        super()._finish_paused(tid)
        self._tell_end(tid)


# Leases outermost: a report from a worker that lost its trial goes no further.
class FlowerRandomSearchOracle(LeasedOracleMixin, BudgetedOracleMixin, StartWithMixin, kt_oracles.RandomSearchOracle):
    pass


class FlowerBayesianOptimizationOracle(LeasedOracleMixin, BudgetedOracleMixin, StartWithMixin,
                                       kt_oracles.BayesianOptimizationOracle):
    """Keras Tuner's Gaussian process, with its random start counted over the
    dimensions that vary (Keras Tuner counts every declared one: 3 x 38 =
    114 random trials in any shipped space) and paused trials left out of
    its fit until they are decided."""

    def populate_space(self, trial_id):
        if not self.num_initial_points:
            self.num_initial_points = max(3, 3 * len(self._nonfixed_space()))
        return super().populate_space(trial_id)

    def _vectorize_trials(self):
        # Keras Tuner has no case for an IDLE (paused) trial: first in the
        # dict it raised UnboundLocalError, later it took the previous
        # trial's score.
        trials = self.trials
        self.trials = {tid: t for tid, t in trials.items() if t.status != TS.IDLE}
        try:
            return super()._vectorize_trials()
        finally:
            self.trials = trials


class FlowerHyperbandOracle(LeasedOracleMixin, BudgetedOracleMixin, kt_oracles.HyperbandOracle):
    """Keras Tuner's Hyperband allots epochs itself: no early_terminate here."""
