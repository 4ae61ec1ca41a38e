"""Running a search: Keras Tuner's own tuners and oracles, with the resume,
stop and failure handling flower-tuner adds on top.

What we add to Keras Tuner (1.4.x):
- an interrupted trial continues from its last finished epoch (KT restarts
  it), also when it is the very first trial (KT does not reload at all then,
  because its tuner file is only written after a trial ends);
- a clean stop at an epoch end on --max-time, SIGTERM or Ctrl-C;
- a refused resume when the space changed (KT silently ignores that);
- a NaN loss fails only that trial, with a one-line reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import DataError, ProjectError, TunerError

STATE_COLUMNS = ("loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall")


@dataclass
class SearchOptions:
    """Everything `python -m tuner search` takes; usable from Python as is."""

    space: str = "default"
    data: str | None = None
    project: str | None = None
    max_trials: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    method: str | None = None
    strategy: str = "auto"
    cpu_replicas: int | None = None
    max_time: float | None = None  # seconds
    weights: str | None = None
    seed: int | None = None
    overwrite: bool = False
    plain: bool | None = None
    chief: str | None = None  # HOST:PORT: run Keras Tuner's oracle service here
    connect: str | None = None  # HOST:PORT: run as a worker of that chief
    worker_id: str | None = None
    lease: float = 300.0  # seconds a worker may stay silent before its trial is handed on

    @property
    def role(self) -> str:
        return "chief" if self.chief else ("worker" if self.connect else "local")


@dataclass
class SearchResult:
    project: str
    stopped: str | None  # None when the search finished; else why it stopped
    trials: dict[str, str] = field(default_factory=dict)  # trial id -> status
    best_trial: str | None = None
    best_score: float | None = None


class Stopper:
    """A stop asked for by a deadline or a signal, honoured at the next epoch
    end (after the checkpoint), so no finished work is lost."""

    def __init__(self, max_time: float | None = None):
        self.deadline = time.monotonic() + max_time if max_time else None
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def requested(self) -> str | None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "max-time reached"
        return self.reason

    def _handle(self, signum, frame):
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.reason = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        print(f"\n{self.reason}: stopping at the end of this epoch (Ctrl-C again to stop at once)", flush=True)

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def resolve_data_root(flag: str | None, space) -> tuple[str, bool]:
    """(root, is_demo): --data, $TUNER_DATA, the Kaggle input folder, the
    space's own `data:`; demo data is generated when missing."""
    from tuner.flowers import KAGGLE_INPUT_DIRS

    if flag:
        return flag, False
    if os.environ.get("TUNER_DATA"):
        return os.environ["TUNER_DATA"], False
    for d in KAGGLE_INPUT_DIRS:
        if os.path.isdir(d):
            return d, False
    if space.data == "demo":
        from tuner.demo import default_demo_dir

        return default_demo_dir(), True
    if space.data:
        return space.data, False
    raise DataError(
        "no data given: pass --data ROOT (the folder holding tfrecords-jpeg-SxS/), set TUNER_DATA, "
        "or use --space demo with the generated demo data"
    )


def ensure_demo_data(root: str, sizes: list[int], log) -> None:
    from tuner import demo

    if demo.is_complete(root):
        from tuner.data import available_sizes

        if set(sizes) <= set(available_sizes(root)):
            return
    log(f"demo data not found at {root}: generating it (sizes {','.join(map(str, sizes))})")
    demo.generate(root, sizes=tuple(sorted(set(sizes))), log=log)


def _image_sizes(space) -> list[int]:
    p = space.params["image_size"]
    if p.kind == "fixed":
        return [int(p.value)]
    if p.kind == "choice":
        return sorted(int(v) for v in p.values)
    return [int(p.max)]


# --------------------------------------------------------------------------
# Keras Tuner pieces (imported lazily: they pull in TensorFlow)


def _tuner_classes():
    import keras
    import keras_tuner as kt
    from keras_tuner.src.engine import tuner_utils
    from keras_tuner.src.engine.tuner import maybe_distribute

    from keras_tuner.src import config as kt_config

    from tuner.checkpoint import DiskFull, TrialCheckpoint, atomic_write, clean_float, disk_full

    # Keras Tuner prints every failed trial's traceback by default; the
    # reason goes to the trial's status line instead.
    kt_config.DEBUG = False

    class Fatal(kt.errors.FatalError):
        """Carries a TunerError (or a stop) through Keras Tuner's loop, which
        re-raises FatalError and swallows everything else into the trial."""

        def __init__(self, error: BaseException):
            super().__init__(str(error))
            self.error = error

    class Stopped(kt.errors.FatalError):
        pass

    class EpochState(keras.callbacks.Callback):
        """Checkpoint after each epoch, fail on NaN, report, honour stops."""

        def __init__(self, tuner, trial, ckpt, state, epochs, progress, stopper, save_best, watched):
            super().__init__()
            self.tuner, self.trial, self.ckpt = tuner, trial, ckpt
            self.rows: list[dict[str, Any]] = list((state or {}).get("rows", []))
            self.saved_callbacks = (state or {}).get("callbacks", {})
            self.epochs, self.progress, self.stopper = epochs, progress, stopper
            self.save_best, self.watched = save_best, watched
            self._t0 = time.monotonic()

        def on_train_begin(self, logs=None):
            # Runs after the trial's own callbacks reset themselves: put their
            # state back as it was at the checkpoint.
            for cb in self.watched:
                for k, v in self.saved_callbacks.get(type(cb).__name__, {}).items():
                    setattr(cb, k, v)
            if "save_best" in self.saved_callbacks:
                self.save_best.best_value = self.saved_callbacks["save_best"]

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            loss = clean_float(logs.get("loss"))
            if loss is None or math.isinf(loss):
                raise kt.errors.FailedTrialError(f"loss became NaN in epoch {epoch + 1}; lower the learning rate")
            seconds = time.monotonic() - self._t0
            row = {"epoch": epoch + 1, **{k: clean_float(logs.get(k)) for k in STATE_COLUMNS}}
            row["learning_rate"] = clean_float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row["seconds"] = round(seconds, 3)
            self.rows.append(row)
            cb_state = {type(cb).__name__: _callback_state(cb) for cb in self.watched}
            cb_state["save_best"] = self.save_best.best_value
            self.ckpt.save(self.model, epoch + 1, {
                "rows": self.rows, "callbacks": cb_state, "trial_id": self.trial.trial_id,
                "replicas": self.tuner.hypermodel.strategy_info.replicas, "worker": self.tuner.tuner_id,
            })
            self.progress.epoch_end(epoch + 1, self.epochs, logs, seconds)
            why = self.stopper.requested()
            if why:
                raise Stopped(f"{why}: trial {self.trial.trial_id} stopped after epoch {epoch + 1}")

    class LeaseLost(Exception):
        """This worker no longer holds the trial: drop it, write nothing."""

    class Heartbeat:
        """Renews this worker's lease on a trial every `every` seconds while
        the trial runs (model build and graph compilation included), and
        reports after each epoch before any file is written. A reply saying
        the trial went to another worker stops this one at once."""

        def __init__(self, tuner, trial, every: float):
            import threading

            self.tuner, self.trial, self.every = tuner, trial, every
            self.lost = False
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.trial_id}", daemon=True)

        def report(self, metrics: dict[str, float], step: int) -> None:
            from tuner.lease import lease_key

            if self.tuner.oracle.objective.name not in metrics:
                metrics = {}  # a heartbeat only: Keras Tuner insists on the objective
            metrics[lease_key(self.tuner.tuner_id)] = float(step)
            reply = self.tuner.oracle.update_trial(self.trial.trial_id, metrics, step=step)
            if reply is not None and reply.status == "STOPPED":
                self.lost = True
            if self.lost:
                raise LeaseLost(f"trial {self.trial.trial_id} was handed to another worker")

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

    class LeaseCheck(keras.callbacks.Callback):
        """First of the trial's callbacks at each epoch end: report, and stop
        if the lease was lost, before the checkpoint callbacks write."""

        def __init__(self, heartbeat):
            super().__init__()
            self.heartbeat = heartbeat

        def on_train_batch_end(self, batch, logs=None):
            if self.heartbeat.lost:
                raise LeaseLost(f"trial {self.heartbeat.trial.trial_id} was handed to another worker")

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items() if clean_float(v) is not None}
            self.heartbeat.report(metrics, epoch)

    class FlowerTunerMixin:
        def __init__(self, *args, progress=None, stopper=None, **kwargs):
            self.progress = progress
            self.stopper = stopper
            self.statuses: dict[str, str] = {}
            self._lease_lost = False
            self._idle_polls = 0
            self.heartbeat = kwargs.pop("heartbeat", 60.0)
            with contextlib.redirect_stdout(io.StringIO()):
                # Keras Tuner's own tuner classes only build their oracle; ours
                # comes ready (with leases), so go straight to Tuner.
                kt.Tuner.__init__(self, *args, **kwargs)

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
            hp = trial.hyperparameters
            if "tuner/epochs" in hp.values:  # Hyperband's budget
                kwargs["epochs"] = hp.values["tuner/epochs"]
                kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
            known = _gradient_registry_keys()
            try:
                with Heartbeat(self, trial, self.heartbeat) as beat:
                    return self._train(trial, beat, epochs=kwargs.get("epochs"),
                                       initial_epoch=int(kwargs.get("initial_epoch") or 0))
            except LeaseLost:
                self._lease_lost = True
                raise
            finally:
                _forget_trial_graphs(known)

        def _train(self, trial, beat, epochs: int | None, initial_epoch: int) -> dict[str, float]:
            """Build, restore the last epoch checkpoint if any, fit the rest."""
            hp = trial.hyperparameters
            keras.utils.set_random_seed((self.hypermodel.seed + int(trial.trial_id)) % (2**31))
            model = self._try_build(hp)
            ckpt = TrialCheckpoint(self.get_trial_dir(trial.trial_id))
            with maybe_distribute(self.distribution_strategy):
                state = ckpt.restore(model)
            if state and state.get("done"):
                # Trained to the end before an interruption kept Keras Tuner
                # from recording it: report what was measured, train nothing.
                self.progress.log(f"trial {trial.trial_id} had finished training; recording its results")
                return best_metrics(state.get("rows", []), self.oracle.objective.name,
                                    self.oracle.objective.direction)
            values = self.hypermodel.values(hp)
            epochs = int(epochs or values.get("epochs") or self.hypermodel.space.train.epochs)
            initial = int(state["epoch"]) if state else initial_epoch
            save_best = tuner_utils.SaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id))
            watched: list = []
            epoch_state = EpochState(self, trial, ckpt, state, epochs, self.progress, self.stopper, save_best, watched)
            shown = {k: values[k] for k in self.hypermodel.space.varying if k in values}
            parent = None if state else hp.values.get("tuner/trial_id")  # Hyperband promotion
            self.progress.trial_begin(trial.trial_id, self._trial_number(), self.oracle.max_trials, shown, epochs,
                                      initial, parent=parent)
            if initial < epochs:
                self._fit(hp, model, values, [LeaseCheck(beat), save_best, epoch_state], initial, epochs, watched)
            rows = epoch_state.rows
            try:
                utils_save_build_config(self, trial, model)
            except Exception:  # Hyperband only needs it for promoted trials
                pass
            ckpt.finish({"rows": rows})
            return best_metrics(rows, self.oracle.objective.name, self.oracle.objective.direction)

        def _fit(self, hp, model, values, callbacks, initial, epochs, watched) -> None:
            """The hypermodel's fit, with TensorFlow's errors sorted into
            fatal (bad data: stop with the file's name) and trial failures."""
            import tensorflow as tf

            try:
                self.hypermodel.fit(hp, model, callbacks=callbacks, initial_epoch=initial, epochs=epochs,
                                    watched=watched)
            except (kt.errors.FatalError, kt.errors.FailedTrialError, LeaseLost):
                raise
            except TunerError as e:
                raise Fatal(e) from None
            except (OSError, tf.errors.OpError) as e:
                if disk_full(e):
                    raise Fatal(DiskFull(f"no space left on the device ({str(e).splitlines()[0][:80]}); free "
                                         "some space and run the same command again")) from None
                if isinstance(e, tf.errors.ResourceExhaustedError):
                    raise kt.errors.FailedTrialError(
                        f"out of memory ({str(e).splitlines()[0][:100]}); try a smaller batch or image size")
                if isinstance(e, (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError)):
                    data = self.hypermodel.data_factory(int(values["image_size"]))
                    raise Fatal(data.locate_corruption(None, e)) from None
                raise

        def _trial_number(self) -> int | None:
            """n in 'trial n of N'; a worker's oracle client cannot tell."""
            try:
                return len(self.oracle.start_order)
            except AttributeError:
                return None

        def on_trial_end(self, trial):
            if self._lease_lost:
                self.progress.trial_end(trial.trial_id, "handed over", None,
                                        "its lease ran out; another worker continues it")
                return  # not ours any more: report nothing, write nothing
            if trial.message:
                trial.message = _last_line(trial.message)
            super().on_trial_end(trial)
            t = self.oracle.get_trial(trial.trial_id)
            self.statuses[trial.trial_id] = t.status
            self.progress.trial_end(trial.trial_id, t.status, t.score, t.message if t.status != "COMPLETED" else None,
                                    goal=self.oracle.objective.direction)

    def utils_save_build_config(tuner, trial, model):
        from keras_tuner.src import utils

        utils.save_json(tuner._get_build_config_fname(trial.trial_id), model.get_build_config())

    from keras_tuner import oracles

    from tuner.lease import leased

    # method -> (tuner class, oracle class with leases)
    classes = {
        "random": (type("FlowerRandomSearch", (FlowerTunerMixin, kt.Tuner), {}),
                   leased(oracles.RandomSearchOracle)),
        "bayes": (type("FlowerBayesianOptimization", (FlowerTunerMixin, kt.Tuner), {}),
                  leased(oracles.BayesianOptimizationOracle)),
        # Hyperband's tuner loads the previous bracket's weights when a trial is promoted.
        "hyperband": (type("FlowerHyperband", (FlowerTunerMixin, kt.Hyperband), {}),
                      leased(oracles.HyperbandOracle)),
    }
    return classes, Fatal, Stopped


def _gradient_registry_keys() -> set[str]:
    try:
        from tensorflow.python.framework import ops as tf_ops

        return set(tf_ops._gradient_registry._registry)  # noqa: SLF001
    except (ImportError, AttributeError):
        return set()


def _forget_trial_graphs(known: set[str]) -> None:
    """Free a finished trial's traced graphs.

    Keras' optimizer all-reduces inside each traced train step, which
    registers a `CustomGradient-N` closure in TensorFlow's global gradient
    registry that is never removed (keras #17458, tensorflow #61791); it holds
    the whole graph with the model's and optimizer's variables: about 450 MB
    per trial of ResNet50V2 here, 9 GB over a 20-trial search. Removing the
    entries the trial added keeps a long search flat (bench/memory.py). A
    private TensorFlow structure: if it moves, this quietly does nothing."""
    import gc

    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # noqa: SLF001
        for key in [k for k in registry if k not in known and k.startswith("CustomGradient-")]:
            del registry[key]
    except (ImportError, AttributeError):
        pass
    gc.collect()


def _callback_state(cb) -> dict[str, Any]:
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


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else message
    for prefix in ("keras_tuner.src.errors.FailedTrialError: ", "FailedTrialError: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
    return last


def best_metrics(rows: list[dict[str, Any]], objective: str, direction: str) -> dict[str, float]:
    """Metrics of the best epoch, the value Keras Tuner scores a trial by."""
    scored = [r for r in rows if r.get(objective) is not None]
    if not scored:
        return {objective: float("nan")}
    best = (max if direction == "max" else min)(scored, key=lambda r: r[objective])
    return {k: float(best[k]) for k in STATE_COLUMNS if best.get(k) is not None}


# --------------------------------------------------------------------------


def prepare(opts: SearchOptions, log=print, need_data: bool = True):
    """Validated space, data root and project directory for `opts`; checks the
    project against the space before anything is trained."""
    from tuner import project as proj
    from tuner.spaces import diff, load_space

    space = load_space(opts.space).with_overrides(
        epochs=opts.epochs, steps_per_epoch=opts.steps_per_epoch, method=opts.method,
        run_cap=opts.max_trials, seed=opts.seed, weights=opts.weights,
    )
    project = opts.project or proj.default_project(space.name)
    if not opts.overwrite:
        meta = proj.read_meta(project)
        if meta is not None:
            old, new = dict(meta["space"]), space.to_dict()
            old.pop("run_cap", None)
            new.pop("run_cap", None)
            changes = diff(old, new)
            if changes:
                raise ProjectError(
                    f"the space changed since the search in {project} began ({'; '.join(changes)}); "
                    "rerun with --overwrite to start afresh, or use another --project"
                )
    try:
        root, is_demo = resolve_data_root(opts.data, space)
    except DataError:
        if need_data:
            raise
        root, is_demo = None, False  # the chief only serves the oracle
    return space, project, root, is_demo


def run_search(opts: SearchOptions, progress=None) -> SearchResult:
    """Run (or resume) a search to the end or to a clean stop; as the chief
    or a worker of a distributed search when `opts.chief`/`opts.connect`."""
    from tuner.progress import Progress

    progress = progress or Progress(plain=opts.plain)
    # Keras warns about tf.data inputs it cannot shuffle or count; ours are
    # shuffled and repeated by design.
    warnings.filterwarnings("ignore", message=r".*shuffle=True.*was passed")
    warnings.filterwarnings("ignore", message=r".*input ran out of data")
    # Each epoch is reported to the oracle (for leases and live status), which
    # Keras Tuner 1.4 flags as a deprecated way to report a trial's metrics.
    warnings.filterwarnings("ignore", message=r".*calling `self.oracle.update_trial", category=DeprecationWarning)
    # Hyperband loads a parent trial's weights without its optimizer slots.
    warnings.filterwarnings("ignore", message=r".*Skipping variable loading for optimizer")
    if opts.chief and opts.connect:
        raise TunerError("--chief and --connect exclude each other: a process is the chief or a worker")
    if opts.connect and not opts.worker_id:
        raise TunerError("a worker needs a name: add --worker-id NAME (unique per worker)")
    if opts.role == "worker" and "chief" in opts.worker_id:
        raise TunerError(f"worker id {opts.worker_id!r} may not contain 'chief' (Keras Tuner reserves it)")
    space, project, root, is_demo = prepare(opts, log=progress.log, need_data=opts.role != "chief")
    from tuner import project as proj

    lock = proj.ProjectLock(project) if opts.role != "worker" else contextlib.nullcontext()
    with lock, _distributed_env(opts):
        if is_demo:
            ensure_demo_data(root, _image_sizes(space), progress.log)
        if opts.overwrite and opts.role != "worker":
            _wipe(project)
        stopper = Stopper(opts.max_time)
        if opts.role != "chief":  # the chief's state is saved at every change: a plain kill is fine
            stopper.install()
        try:
            return _search(opts, space, project, root, progress, stopper)
        finally:
            stopper.uninstall()
            progress.stop()


def _parse_address(text: str, flag: str) -> tuple[str, str]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TunerError(f"{flag} expects HOST:PORT, e.g. 10.0.0.5:8000 or 127.0.0.1:8000; got {text!r}")
    return host.strip("[]"), port


@contextlib.contextmanager
def _distributed_env(opts: SearchOptions):
    """Keras Tuner's own variables for its chief/worker service."""
    keys = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    old = {k: os.environ.get(k) for k in keys}
    if opts.role != "local":
        host, port = _parse_address(opts.chief or opts.connect, "--chief" if opts.chief else "--connect")
        os.environ.update({"KERASTUNER_TUNER_ID": "chief" if opts.chief else opts.worker_id,
                           "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": port})
    else:
        for k in keys:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wipe(project: str) -> None:
    import shutil

    if "://" in project:
        import tensorflow as tf

        for name in tf.io.gfile.listdir(project):
            tf.io.gfile.rmtree(f"{project}/{name}") if tf.io.gfile.isdir(f"{project}/{name}") else tf.io.gfile.remove(f"{project}/{name}")
        return
    for name in os.listdir(project):
        if name == ".lock":
            continue
        path = os.path.join(project, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


def _search(opts, space, project, root, progress, stopper) -> SearchResult:
    import keras_tuner as kt

    from tuner import project as proj
    from tuner.data import FlowerData
    from tuner.hypermodel import FlowerHyperModel, check_weights_available
    from tuner.lease import LeaseMonitor
    from tuner.strategy import StrategyInfo, detect

    chief = opts.role == "chief"
    if chief:
        import tensorflow as tf

        info = StrategyInfo(tf.distribute.get_strategy(), "none (chief: serves the oracle only)", 1, ())
    else:
        info = detect(opts.strategy, opts.cpu_replicas)
    datasets: dict[int, FlowerData] = {}

    def data_factory(size: int) -> FlowerData:
        if size not in datasets:
            datasets[size] = FlowerData(root, size, log=progress.log)
        return datasets[size]

    if not chief:
        for size in _image_sizes(space):
            data_factory(size).check()
        check_weights_available(space)

    if opts.role != "worker" and proj.read_meta(project) is None:
        proj.write_meta(project, {"space": space.to_dict(), "space_text": space.text, "data": root,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")})

    classes, Fatal, Stopped = _tuner_classes()
    tuner_cls, oracle_cls = classes[space.method]
    objective = kt.Objective(space.objective_name, space.goal)
    oracle_args = dict(objective=objective, seed=space.seed, lease_seconds=opts.lease,
                       max_consecutive_failed_trials=max(3, space.run_cap + 1))
    if space.method == "hyperband":
        oracle = oracle_cls(max_epochs=space.train.epochs, factor=space.hyperband.factor,
                            hyperband_iterations=space.hyperband.iterations, **oracle_args)
    else:
        oracle = oracle_cls(max_trials=space.run_cap, **oracle_args)
    oracle.log = progress.log
    try:
        tuner = tuner_cls(
            oracle=oracle, hypermodel=FlowerHyperModel(space, data_factory, info, seed=space.seed),
            directory=os.path.dirname(os.path.abspath(project)) if "://" not in project else project.rsplit("/", 1)[0],
            project_name=os.path.basename(project.rstrip("/")),
            distribution_strategy=info.strategy if info.replicas > 1 or info.kind == "tpu" else None,
            progress=progress, stopper=stopper, heartbeat=max(1.0, opts.lease / 4),
        )
    except (ValueError, KeyError) as e:  # json.JSONDecodeError is a ValueError
        raise ProjectError(
            f"a Keras Tuner file in {project} is damaged ({type(e).__name__}: {str(e)[:80]}); restore it, "
            "or start afresh with --overwrite"
        ) from None

    total = space.run_cap if space.method != "hyperband" else None
    if opts.role == "worker":
        progress.log(f"worker {opts.worker_id} of the chief at {opts.connect}; {info.describe()}; "
                     f"data {root}; project {project}")
    else:
        done = sum(1 for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
        where = info.describe() if not chief else f"chief at {opts.chief} (lease {opts.lease:.0f}s)"
        progress.search_begin(space.name, space.method, where, project, done, total, root or "(workers' own)")
    result = SearchResult(project=project, stopped=None)
    monitor = LeaseMonitor(oracle) if chief else None
    if monitor:
        monitor.start()
    try:
        tuner.search(verbose=0)
    except Stopped as e:
        result.stopped = str(e)
        progress.log(f"{e}; run the same command to continue")
    except Fatal as e:
        raise e.error from None
    except RuntimeError as e:
        if "consecutive failures" in str(e):
            raise TunerError(f"too many failed trials in a row: {_last_line(str(e))}") from None
        raise
    finally:
        if monitor:
            monitor.stop()
    if opts.role == "worker":
        result.trials = dict(tuner.statuses)
        progress.log(f"worker {opts.worker_id} done: ran {len(result.trials)} trial(s); the chief has the results")
        return result
    result.trials = {tid: t.status for tid, t in oracle.trials.items()}
    best = oracle.get_best_trials(1)
    if best and best[0].score is not None:
        result.best_trial, result.best_score = best[0].trial_id, best[0].score
    if result.stopped is None:
        progress.log(
            f"search done: {len(result.trials)} trials; best {space.objective_name} "
            + (f"{result.best_score:.4f} (trial {result.best_trial})" if result.best_trial else "none (no trial completed)")
            + f"; see `python -m tuner best --project {project}`"
        )
    return result
