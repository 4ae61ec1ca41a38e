"""flower-tuner's tuners: Keras Tuner's own, with exact mid-trial resume,
clean stops, leases and one-line failures (see `tuner.search`)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.engine.tuner import maybe_distribute

from tuner.engine import oracles
from tuner.engine.callbacks import STATE_COLUMNS, EpochState
from tuner.engine.checkpoint import DiskFull, TrialCheckpoint, atomic_write, disk_full
from tuner.engine.errors import Fatal, LeaseLost, Stopped
from tuner.engine.events import TrialEvents
from tuner.engine.graphs import forget_trial_graphs, gradient_registry_keys
from tuner.engine.heartbeat import Heartbeat
from tuner.engine.auth import given_token
from tuner.engine.ledger import TimeLedger
from tuner.engine.ranking import best_of, best_row, oracle_scores
from tuner.engine.service import ServiceConfig, serve
from tuner.engine.warm import WarmModels, adopt, graph_key
from tuner.errors import TunerError

# Keras Tuner prints every failed trial's traceback by default; the
# reason goes to the trial's status line instead.
kt_config.DEBUG = False


class FlowerTunerMixin:
    def __init__(self, *args, progress=None, stopper=None, **kwargs):
        self.progress = progress
        self.stopper = stopper
        self.statuses: dict[str, str] = {}
        self._lease_lost = False
        self._idle_polls = 0
        self._decision: tuple[str | None, int] | None = None  # the oracle's word on the last trial run
        self._warm = WarmModels(self.KEEP_WARM)
        self.ledger = TimeLedger()  # where this process's time went (tuner.engine.ledger)
        self.heartbeat = kwargs.pop("heartbeat", 60.0)
        #: the chief's server and a worker's channel (tuner.engine.service)
        self.security = kwargs.pop("security", None) or ServiceConfig(token=given_token(None))
        with contextlib.redirect_stdout(io.StringIO()):
            # Keras Tuner's own tuner classes only build their oracle; ours
            # comes ready (with leases), so go straight to Tuner.
            kt.Tuner.__init__(self, *args, **kwargs)
        if self._is_worker():  # Keras Tuner's client is insecure: ours carries the token
            from tuner.engine.client import secure_client

            self.oracle = secure_client(self.oracle, self.security)

    def search(self, *fit_args, **fit_kwargs):
        """Keras Tuner's search; as the chief, served by our server, not
        Keras Tuner's `start_server` (tuner.engine.service)."""
        from keras_tuner.src.distribute import utils as dist_utils

        if not dist_utils.is_chief_oracle():
            return super().search(*fit_args, **fit_kwargs)
        if "verbose" in fit_kwargs:
            self.oracle.verbose = fit_kwargs["verbose"]
        self.save()
        serve(self.oracle, self.security)

    def save(self):
        """Keras Tuner's own save, written atomically (it writes in place,
        so a kill mid-write would leave a torn file no resume could read)."""
        if not self._is_worker():
            self.oracle.save()
        atomic_write(self._get_tuner_fname(), json.dumps(self.get_state()))

    def on_search_begin(self):
        # KT writes its tuner file only after a trial ends, so a project
        # whose first trial was interrupted would not reload at all.
        self.save()
        super().on_search_begin()

    def pre_create_trial(self):
        why = self.stopper.requested() if self.stopper else None
        if why:
            raise Stopped(f"{why}: stopped between trials")
        # Keras Tuner asks again at once after an IDLE answer; a worker
        # waiting for other workers' trials asks every two seconds.
        if self._idle_polls:
            time.sleep(2.0)
        self._idle_polls += 1

    def on_trial_begin(self, trial):
        self._idle_polls = 0
        self._lease_lost = False
        super().on_trial_begin(trial)

    def run_trial(self, trial, *args, **kwargs):
        kwargs.pop("verbose", None)
        started = time.monotonic()
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:  # Hyperband's budget
            kwargs["epochs"] = hp.values["tuner/epochs"]
            kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
        known = gradient_registry_keys()
        self._decision = None
        try:
            with Heartbeat(self, trial, self.heartbeat) as beat:
                return self._train(trial, beat, epochs=kwargs.get("epochs"),
                                   initial_epoch=int(kwargs.get("initial_epoch") or 0), started=started)
        except LeaseLost:
            self._lease_lost = True
            raise
        except Stopped:
            known = None  # the search ends here: freeing the run's graphs (seconds of gc) is the exit's job
            raise
        finally:
            if known is not None:
                with self.ledger.timing("cleanup"):
                    forget_trial_graphs(known)

    def _train(self, trial, beat, epochs: int | None, initial_epoch: int, started: float) -> dict[str, float]:
        """Build, restore the last epoch checkpoint if any, fit the rest
        (up to where the oracle pauses or stops the trial)."""
        hp = trial.hyperparameters
        objective = self.oracle.objective
        keras.utils.set_random_seed((self.hypermodel.seed + int(trial.trial_id)) % (2**31))
        # A worker's epoch files carry its id: see TrialCheckpoint.
        ckpt = TrialCheckpoint(self.get_trial_dir(trial.trial_id), owner=self.tuner_id if beat.leased else None)
        values = self.hypermodel.values(hp)
        key = graph_key(values)
        # Built as if alone (cheap), then, when a model of the same graph is
        # at hand, that fresh state goes into the traced model (no tracing);
        # a continued trial's checkpoint then overwrites it, as it would a
        # fresh build's.
        with self.ledger.timing("build"):
            model = self._try_build(hp)
        with maybe_distribute(self.distribution_strategy):
            with self.ledger.timing("build"):
                warm = self._warm.take(key)
                if warm is not None and adopt(warm, model):
                    model = warm
                else:
                    warm = None
            with self.ledger.timing("restore"):
                state = ckpt.restore(model, best_file=self._get_checkpoint_fname(trial.trial_id))
        if state and state.get("done"):
            # Trained to the end before an interruption kept Keras Tuner
            # from recording it: report what was measured, train nothing.
            self.progress.log(f"trial {trial.trial_id} had finished training; recording its results")
            self._warm.put(key, model)
            return best_metrics(state.get("rows", []), objective.name, objective.direction)
        epochs = int(epochs or values["epochs"])
        initial = int(state["epoch"]) if state else initial_epoch
        watched: list = []
        # A warm model's first epoch holds no tracing: the budget counts it
        # as any later epoch (a new trial's estimate stays the traced one).
        shown = {k: values[k] for k in self.hypermodel.space.varying if k in values}
        epoch_state = EpochState(self, trial, ckpt, state, epochs, beat, watched, started,
                                 built=warm is None, events=None, ledger=self.ledger,
                                 validated=self.hypermodel.validation_epochs(values, epochs, self._rungs()),
                                 val_share=self.hypermodel.validation_share(values))
        # made after EpochState, so that its time counts as the run's set-up
        epoch_state.events = TrialEvents(ckpt.dir, trial.trial_id, shown, objective.name, objective.direction)
        epoch_state.write_events()  # what a kill after the last checkpoint kept from TensorBoard
        stopped_early = bool(state and state.get("stop_training"))
        if state and epoch_state.rows:
            # The decision on the last saved epoch may have been lost with
            # the process (or made while it was away): ask again. The oracle
            # answers a repeated report with the decision it already made.
            epoch_state.act(epoch_state.report(epoch_state.rows[-1], finished=stopped_early), initial)
        parent = None if state else hp.values.get("tuner/trial_id")  # Hyperband promotion
        if epoch_state.decision is None:
            self.progress.trial_begin(trial.trial_id, self._trial_number(trial.trial_id), self.oracle.max_trials, shown, epochs,
                                      initial, parent=parent)
            if warm is not None:
                self.progress.log("  (the graph traced for an earlier trial is reused: no tracing)")
        if initial < epochs and epoch_state.decision is None and not stopped_early:
            try:
                self._fit(hp, model, values, [epoch_state], initial, epochs, watched)
            except kt.errors.FailedTrialError:
                self._warm.put(key, model)  # its graph is sound; the next trial overwrites its state
                raise
            finally:
                ckpt.wait()  # a failed or interrupted fit leaves no write behind it
        if epoch_state.stopped:
            self._warm.put(key, model)
            raise Stopped(epoch_state.stopped)
        rows = epoch_state.rows
        self._decision = (epoch_state.decision, len(rows))
        self._warm.put(key, model)  # its state is on disk: the next trial of this graph may take it
        if epoch_state.decision == "paused":
            return best_metrics(rows, objective.name, objective.direction)  # not finished: keep its checkpoint
        if beat.leased:
            beat.check()  # a late worker leaves the finished trial's files to their new owner
        try:
            save_build_config(self, trial, model)
        except Exception:  # Hyperband only needs it for promoted trials
            pass
        ckpt.finish({"rows": rows, "worker": self.tuner_id})
        return best_metrics(rows, objective.name, objective.direction)

    #: traced models kept for the next run of the same graph (tuner.engine.warm):
    #: one per graph, about 0.5 GB each for ResNet50V2 with Nadam's slots
    KEEP_WARM = 3

    def _fit(self, hp, model, values, callbacks, initial, epochs, watched) -> None:
        """The hypermodel's fit, with TensorFlow's errors sorted into
        fatal (bad data: stop with the file's name) and trial failures.
        tf.errors only where TensorFlow is loaded (under JAX: by tf.data)."""
        tf = sys.modules.get("tensorflow")
        op_error = tf.errors.OpError if tf is not None else OSError
        try:
            self.hypermodel.fit(hp, model, callbacks=callbacks, initial_epoch=initial, epochs=epochs,
                                watched=watched, rungs=self._rungs())
        except (kt.errors.FatalError, kt.errors.FailedTrialError, LeaseLost):
            raise
        except TunerError as e:
            raise Fatal(e) from None
        except Exception as e:
            if type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in str(e):
                raise kt.errors.FailedTrialError(
                    f"out of memory ({str(e).splitlines()[0][:100]}); try a smaller batch or image size") from None
            if not isinstance(e, (OSError, op_error)):
                raise
            if disk_full(e):
                raise Fatal(DiskFull(f"no space left on the device ({str(e).splitlines()[0][:80]}); free "
                                     "some space and run the same command again")) from None
            if tf is None:
                raise
            if isinstance(e, tf.errors.ResourceExhaustedError):
                raise kt.errors.FailedTrialError(
                    f"out of memory ({str(e).splitlines()[0][:100]}); try a smaller batch or image size")
            if isinstance(e, (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError)):
                from tuner.data.reader import is_record_error
                from tuner.errors import op_error_line

                if not is_record_error(e):  # a model, XLA or augmentation error: this trial's own
                    raise kt.errors.FailedTrialError(op_error_line(e)) from None
                data = self.hypermodel.data_factory(int(values["image_size"]))
                raise Fatal(data.locate_corruption(None, e)) from None
            raise

    def _rungs(self) -> list[int] | None:
        """The rungs the oracle decides at now (None at a worker: its oracle
        is the chief's, out of reach)."""
        early = getattr(self.oracle, "early", None)
        return list(early.rung_epochs) if early is not None else None

    def _trial_number(self, trial_id: str) -> int | None:
        """n in 'trial n of N' (a continued trial keeps its n); a worker's
        oracle client cannot tell."""
        try:
            order = self.oracle.start_order
        except AttributeError:
            return None
        return order.index(trial_id) + 1 if trial_id in order else len(order)

    def on_trial_end(self, trial):
        if self._lease_lost:
            self.progress.trial_end(trial.trial_id, "handed over", None,
                                    "its lease ran out; another worker continues it")
            return  # not ours any more: report nothing, write nothing
        if trial.message:
            trial.message = last_line(trial.message)
        decision, epoch = self._decision or (None, 0)
        if trial.status != "COMPLETED":  # failed after all
            decision = None
        super().on_trial_end(trial)
        t = self.oracle.get_trial(trial.trial_id)
        status = {"paused": "paused", "stopped": "stopped"}.get(decision, t.status)
        self.statuses[trial.trial_id] = status
        why = t.message if t.status not in ("COMPLETED", "IDLE") else None
        if decision:
            why = f"at epoch {epoch}" + (" until more trials reach it" if decision == "paused" else
                                         " (early termination)")
        objective = self.oracle.objective
        mine = oracle_scores({t.trial_id: t}, objective.name, objective.direction)[0]
        score = mine.score if mine.state != "failed" else None
        trials = getattr(self.oracle, "trials", None)  # a worker's oracle client sees only its own trials
        top = best_of(oracle_scores(trials, objective.name, objective.direction), objective.direction) \
            if trials is not None else None
        self.progress.trial_end(trial.trial_id, status, score, why, goal=objective.direction, epoch=mine.best_epoch,
                                best=(top.trial_id, top.score, top.best_epoch) if top else None)
        self._decision = None

    def _populate_initial_space(self):
        """The whole space from the hypermodel's declaration alone. Keras
        Tuner also builds the model (to find conditional parameters, which
        our spaces have none of): the chief would then need the backbone's
        weights, which it never uses."""
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)


class FlowerRandomSearch(FlowerTunerMixin, kt.Tuner):
    pass


class FlowerBayesianOptimization(FlowerTunerMixin, kt.Tuner):
    pass


class FlowerTPESearch(FlowerTunerMixin, kt.Tuner):
    """Optuna's TPE asked through the oracle (tuner.engine.oracles.FlowerTPEOracle)."""


class FlowerHyperband(FlowerTunerMixin, kt.Hyperband):
    """Hyperband's tuner loads the previous bracket's weights when a trial is promoted."""


#: method -> (tuner class, oracle class with leases)
TUNERS = {
    "tpe": (FlowerTPESearch, oracles.FlowerTPEOracle),
    "random": (FlowerRandomSearch, oracles.FlowerRandomSearchOracle),
    "bayes": (FlowerBayesianOptimization, oracles.FlowerBayesianOptimizationOracle),
    "hyperband": (FlowerHyperband, oracles.FlowerHyperbandOracle),
}


def save_build_config(tuner, trial, model) -> None:
    kt_utils.save_json(tuner._get_build_config_fname(trial.trial_id), model.get_build_config())


def last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else message
    for prefix in ("keras_tuner.src.errors.FailedTrialError: ", "FailedTrialError: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
    return last


def best_metrics(rows: list[dict[str, Any]], objective: str, direction: str) -> dict[str, float]:
    """Metrics of the best epoch (`engine.ranking`), what Keras Tuner scores
    a trial by when no epoch of it was reported."""
    best = best_row(rows, objective, direction)
    if best is None:
        return {objective: float("nan")}
    return {k: float(best[k]) for k in STATE_COLUMNS if best.get(k) is not None}

