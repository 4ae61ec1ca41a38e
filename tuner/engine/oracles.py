"""Keras Tuner's oracles as thin adapters: leases on their trials (`tuner.engine.leases`)
and our scheduler's decisions (`tuner.engine.scheduler`) in Keras Tuner's statuses."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from keras_tuner import oracles as kt_oracles
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.oracle import Oracle as KTOracle

from tuner.engine.budget import COLD, LATER, WARM, Deadline, EpochCosts, fmt_seconds
from tuner.engine.checkpoint import atomic_write
from tuner.engine.leases import LEASE_PREFIX, LEASES_FILE, lease_key
from tuner.engine.rungs import CONTINUE, PAUSE, STOP, EarlyTermination, describe_decision
from tuner.engine.scheduler import NEW, RESUME, WAIT, Scheduler
from tuner.engine.sync import synchronized

TS = trial_module.TrialStatus


class LeasedOracleMixin:
    """Put before a Keras Tuner oracle class (and after the scheduler's
    adapter): leases on its trials. A trial whose lease runs out goes back
    to the scheduler's queue (`Scheduler.on_trial_lost`)."""

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
        if trial.trial_id not in self._owner and self.scheduler.is_queued(trial.trial_id):
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
                self.scheduler.on_trial_lost(tid)
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


class ScheduledOracleMixin:
    """The adapter between Keras Tuner's oracle and our `Scheduler`
    (`tuner.engine.scheduler`), which decides; this class only speaks Keras
    Tuner's signals: `update_trial` answers each epoch's report with RUNNING
    (CONTINUE), IDLE (PAUSE) or STOPPED (STOP; INVALID comes from the lease
    mixin); `create_trial` answers the scheduler's NEW (the sampler, through
    Keras Tuner's own create_trial), RESUME (the trial, RUNNING), WAIT (IDLE,
    the worker stays and asks again) and NONE (STOPPED, the worker leaves)."""

    def __init__(self, *args, early_terminate=None, epochs: int = 1, deadline: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("seed") is not None:
            # Keras Tuner takes `seed or random.randint(...)`: `seed: 0` would
            # draw a different search each run.
            self.seed = self._seed_state = int(kwargs["seed"])
        self.early = EarlyTermination(early_terminate, epochs, self.objective.direction) if early_terminate else None
        self.max_epochs = epochs
        self.log: Callable[[str], None] = lambda m: None
        # The search passes its Stopper's budget: one deadline, one tail.
        self.scheduler = Scheduler(
            self.early, epochs, deadline if isinstance(deadline, Deadline) else Deadline(deadline),
            values_of=lambda tid: self.trials[tid].hyperparameters.values,
            cap_reached=lambda: bool(self.max_trials) and len(self.trials) >= self.max_trials,
            log=lambda m: self.log(m))

    # -- the scheduler's values, as the search and the tests name them ---
    @property
    def deadline(self) -> Deadline:
        return self.scheduler.deadline

    @property
    def costs(self) -> EpochCosts:
        return self.scheduler.costs

    @property
    def budget_refused(self) -> bool:
        """The search ended because nothing more fits in the time left."""
        return self.scheduler.budget_refused

    @property
    def epochs_this_run(self) -> int:
        return self.scheduler.epochs_this_run

    @property
    def is_warm(self) -> Callable[[dict], bool] | None:
        """Set by the search on one machine: is a trial with these values one
        whose graph the tuner keeps traced (tuner.engine.warm)? A chief
        cannot know where a run lands and counts every run cold."""
        return self.scheduler.is_warm

    @is_warm.setter
    def is_warm(self, fn: Callable[[dict], bool] | None) -> None:
        self.scheduler.is_warm = fn

    def may_start_new(self) -> bool:
        return self.scheduler.may_start_new()

    def _running_elsewhere(self, tuner_id: str | None) -> list[str]:
        return [t.trial_id for w, t in self.ongoing_trials.items() if w != tuner_id]

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response.get("status") == TS.RUNNING and not self.scheduler.new_trial_fits(response.get("values") or {}):
            return {"status": TS.STOPPED, "values": None}
        return response

    # -- Keras Tuner's calls -------------------------------------------
    @synchronized
    def create_trial(self, tuner_id):
        self._take_retries()
        current = self.ongoing_trials[tuner_id].trial_id if tuner_id in self.ongoing_trials else None
        choice = self.scheduler.choose_trial_to_run(self._running_elsewhere(tuner_id), current=current)
        if choice.action == NEW:
            trial = super().create_trial(tuner_id)
            if trial.status != TS.STOPPED:
                return trial
            # The sampler (or the budget, seeing its values) gave nothing new.
            self.tuner_ids.add(tuner_id)
            choice = self.scheduler.choose_trial_to_run(self._running_elsewhere(tuner_id), sampler_declined=True)
        for tid in choice.stopped:
            self._finish_paused(tid)
        if choice.stopped or choice.action == RESUME:
            self.save()
        if choice.action == RESUME:
            return self._hand_out(tuner_id, choice.trial_id)
        if choice.action == WAIT:
            # Not over yet: a running trial may still pause at a rung or come
            # back from a lost worker.
            self.tuner_ids.add(tuner_id)
            return trial_module.Trial(hyperparameters=self.hyperparameters.copy(), status=TS.IDLE)
        self.tuner_ids.discard(tuner_id)
        return trial_module.Trial(hyperparameters=self.hyperparameters.copy(), status=TS.STOPPED)

    def _hand_out(self, tuner_id: str, tid: str):
        """Continue trial `tid` on this worker (Keras Tuner's own hand-out of
        a retried trial, without its retry queue)."""
        if self.ongoing_trials.get(tuner_id) is not None and self.ongoing_trials[tuner_id].trial_id == tid:
            return self.ongoing_trials[tuner_id]
        self.tuner_ids.add(tuner_id)
        trial = self.trials[tid]
        trial.status = TS.RUNNING
        self.ongoing_trials[tuner_id] = trial
        self.save()
        self._display.on_trial_begin(trial)
        return trial

    def _take_retries(self) -> None:
        """Keras Tuner queues a trial for a retry itself (max_retries_per_trial):
        the scheduler's queue is the only one."""
        while self._retry_queue:
            self.scheduler.on_trial_lost(self._retry_queue.pop(0))

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
            self.scheduler.on_epoch_cost(trial_id, seconds, kind)
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
        running = [t.trial_id for t in self.ongoing_trials.values()]
        result = self.scheduler.on_trial_result(trial_id, int(step), float(metrics[name]), finished=finished,
                                                running=running)
        for tid in result.stopped:
            self._finish_paused(tid)
        if result.changed:
            self.save()
        status = {CONTINUE: TS.RUNNING, PAUSE: TS.IDLE, STOP: TS.STOPPED}[result.decision]
        return trial_module.Trial(hyperparameters=trial.hyperparameters, trial_id=trial_id, status=status)

    @synchronized
    def end_trial(self, trial):
        tid = trial.trial_id
        if trial.status == TS.COMPLETED and self.scheduler.on_trial_complete(tid) == "paused":
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
        if trial.status in (TS.FAILED, TS.INVALID):
            self.scheduler.on_trial_error(tid)
        super().end_trial(trial)
        self._take_retries()

    # -- what the user is told ------------------------------------------
    def plan(self, max_time: float | None) -> str | None:
        """What the budget allows, said at the start of a search."""
        parts = []
        self.scheduler.begin(max_time)
        if self.early is not None:
            parts.append(self.early.config.describe(self.max_epochs, self.early.rung_epochs))
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
        n = len(self.trials)
        return f"{line}; {n} trial{'' if n == 1 else 's'}: " + ", ".join(bits)

    # -- state, saved in oracle.json -------------------------------------
    def get_state(self):
        state = super().get_state()
        state["flower_tuner"] = self.scheduler.get_state()
        return state

    def set_state(self, state):
        super().set_state(state)
        # Before the scheduler, its queue was Keras Tuner's retry queue.
        self.scheduler.set_state(state.get("flower_tuner") or {}, legacy_queue=list(self._retry_queue))
        self._retry_queue = []


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
        values.update(self.study.ask(trial_id, fixed=values))
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


class FlowerTPEOracle(LeasedOracleMixin, ScheduledOracleMixin, TPEOracle):
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
class FlowerRandomSearchOracle(LeasedOracleMixin, ScheduledOracleMixin, StartWithMixin, kt_oracles.RandomSearchOracle):
    pass


class FlowerBayesianOptimizationOracle(LeasedOracleMixin, ScheduledOracleMixin, StartWithMixin,
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


class FlowerHyperbandOracle(LeasedOracleMixin, ScheduledOracleMixin, kt_oracles.HyperbandOracle):
    """Keras Tuner's Hyperband allots epochs itself: no early_terminate here."""
