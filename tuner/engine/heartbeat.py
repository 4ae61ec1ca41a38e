"""A worker's lease on its trial, kept alive while the trial runs."""

from __future__ import annotations

import threading

from tuner.engine.errors import LeaseLost
from tuner.engine.leases import lease_key


class Heartbeat:
    """Renews this worker's lease on a trial every `every` seconds while
    the trial runs (model build and graph compilation included), and
    carries each epoch's report to the oracle. A reply saying the trial
    went to another worker stops this one before it writes again."""

    def __init__(self, tuner, trial, every: float):
        self.tuner, self.trial, self.every = tuner, trial, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.trial_id}", daemon=True)

    @property
    def leased(self) -> bool:
        """A worker of a chief: its trial may be handed to another worker."""
        from keras_tuner.src.distribute import utils as dist_utils

        return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()

    def report(self, metrics: dict[str, float], step: int):
        """Send `metrics` (or only a sign of life) to the oracle; returns its
        answer, whose status carries the rung decision (RUNNING, IDLE: pause,
        STOPPED: stopped early). INVALID means the trial is someone else's."""
        from tuner.engine.oracles import SECONDS_KEY

        if self.tuner.oracle.objective.name not in metrics and SECONDS_KEY not in metrics:
            # A heartbeat only: Keras Tuner insists on the objective. An epoch
            # without validation still brings its time (our oracles take it).
            metrics = {}
        metrics[lease_key(self.tuner.tuner_id)] = float(step)
        reply = self.tuner.oracle.update_trial(self.trial.trial_id, metrics, step=step)
        if reply is not None and reply.status == "INVALID":
            self.lost = True
        if self.lost:
            raise LeaseLost(f"trial {self.trial.trial_id} was handed to another worker")
        return reply

    def check(self) -> None:
        """Raise LeaseLost unless this worker still holds the trial."""
        self.report({}, 0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.report({}, 0)
            except LeaseLost:
                return
            except Exception:  # a passing network fault: the next beat retries
                continue

    def __enter__(self) -> "Heartbeat":
        self.report({}, 0)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

