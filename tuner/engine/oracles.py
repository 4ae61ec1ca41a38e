"""Keras Tuner's oracles with leases on their trials (see `tuner.engine.leases`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from keras_tuner import oracles as kt_oracles
from keras_tuner.src.engine import trial as trial_module

from tuner.engine.checkpoint import atomic_write
from tuner.engine.leases import LEASE_PREFIX, LEASES_FILE, lease_key
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
        if trial.status == TS.STOPPED and self._busy_elsewhere(tuner_id):
            # Not STOPPED yet: a running trial may still come back.
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
                return trial_module.Trial(hyperparameters=trial.hyperparameters, trial_id=trial_id,
                                          status=TS.STOPPED)
            self._last[trial_id] = time.time()
            self._write_leases()
        if not metrics:
            return trial
        return super().update_trial(trial_id, metrics, step=step)

    @synchronized
    def end_trial(self, trial):
        if trial.trial_id not in self._owner and trial.trial_id in self._retry_queue:
            return  # a late report for a trial already handed back to the queue
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


class LeasedRandomSearchOracle(LeasedOracleMixin, kt_oracles.RandomSearchOracle):
    pass


class LeasedBayesianOptimizationOracle(LeasedOracleMixin, kt_oracles.BayesianOptimizationOracle):
    pass


class LeasedHyperbandOracle(LeasedOracleMixin, kt_oracles.HyperbandOracle):
    pass
