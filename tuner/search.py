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

    from tuner.checkpoint import TrialCheckpoint, clean_float

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
                "replicas": self.tuner.hypermodel.strategy_info.replicas,
            })
            self.progress.epoch_end(epoch + 1, self.epochs, logs, seconds)
            why = self.stopper.requested()
            if why:
                raise Stopped(f"{why}: trial {self.trial.trial_id} stopped after epoch {epoch + 1}")

    class FlowerTunerMixin:
        def __init__(self, *args, progress=None, stopper=None, **kwargs):
            self.progress = progress
            self.stopper = stopper
            self.statuses: dict[str, str] = {}
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(*args, **kwargs)

        def on_search_begin(self):
            # KT writes its tuner file only after a trial ends, so a project
            # whose first trial was interrupted would not reload at all.
            self.save()
            super().on_search_begin()

        def pre_create_trial(self):
            why = self.stopper.requested() if self.stopper else None
            if why:
                raise Stopped(f"{why}: stopped between trials")

        def run_trial(self, trial, *args, **kwargs):
            import tensorflow as tf

            hp = trial.hyperparameters
            kwargs.pop("verbose", None)
            if "tuner/epochs" in hp.values:  # Hyperband's budget
                kwargs["epochs"] = hp.values["tuner/epochs"]
                kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
            keras.utils.set_random_seed((self.hypermodel.seed + int(trial.trial_id)) % (2**31))
            model = self._try_build(hp)
            ckpt = TrialCheckpoint(self.get_trial_dir(trial.trial_id))
            with maybe_distribute(self.distribution_strategy):
                state = ckpt.restore(model)
            if state and state.get("done"):
                state = None  # a finished trial run again (KT retry): start clean
            values = self.hypermodel.values(hp)
            epochs = int(kwargs.pop("epochs", None) or values.get("epochs") or self.hypermodel.space.train.epochs)
            initial = int(state["epoch"]) if state else int(kwargs.pop("initial_epoch", 0))
            kwargs.pop("initial_epoch", None)
            save_best = tuner_utils.SaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id))
            watched: list = []
            epoch_state = EpochState(self, trial, ckpt, state, epochs, self.progress, self.stopper, save_best, watched)
            shown = {k: values[k] for k in self.hypermodel.space.varying if k in values}
            number = len(self.oracle.start_order) if hasattr(self.oracle, "start_order") else 0
            self.progress.trial_begin(trial.trial_id, number, self.oracle.max_trials, shown, epochs, initial)
            if initial < epochs:
                try:
                    self.hypermodel.fit(
                        hp, model, callbacks=[save_best, epoch_state], initial_epoch=initial, epochs=epochs,
                        watched=watched,
                    )
                except (kt.errors.FatalError, kt.errors.FailedTrialError):
                    raise
                except TunerError as e:
                    raise Fatal(e) from None
                except tf.errors.ResourceExhaustedError as e:
                    raise kt.errors.FailedTrialError(
                        f"out of memory ({str(e).splitlines()[0][:100]}); try a smaller batch or image size")
                except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
                    data = self.hypermodel.data_factory(int(values["image_size"]))
                    raise Fatal(data.locate_corruption(None, e)) from None
            rows = epoch_state.rows
            try:
                utils_save_build_config(self, trial, model)
            except Exception:  # Hyperband only needs it for promoted trials
                pass
            ckpt.finish({"rows": rows})
            return best_metrics(rows, self.oracle.objective.name, self.oracle.objective.direction)

        def on_trial_end(self, trial):
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

    classes = {
        "random": type("FlowerRandomSearch", (FlowerTunerMixin, kt.RandomSearch), {}),
        "bayes": type("FlowerBayesianOptimization", (FlowerTunerMixin, kt.BayesianOptimization), {}),
        "hyperband": type("FlowerHyperband", (FlowerTunerMixin, kt.Hyperband), {}),
    }
    return classes, Fatal, Stopped


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


def prepare(opts: SearchOptions, log=print):
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
    root, is_demo = resolve_data_root(opts.data, space)
    return space, project, root, is_demo


def run_search(opts: SearchOptions, progress=None) -> SearchResult:
    """Run (or resume) a search to the end or to a clean stop."""
    from tuner.progress import Progress

    progress = progress or Progress(plain=opts.plain)
    # Keras warns about tf.data inputs it cannot shuffle or count; ours are
    # shuffled and repeated by design.
    warnings.filterwarnings("ignore", message=r".*shuffle=True.*was passed")
    warnings.filterwarnings("ignore", message=r".*input ran out of data")
    space, project, root, is_demo = prepare(opts, log=progress.log)
    from tuner import project as proj

    with proj.ProjectLock(project):
        if is_demo:
            ensure_demo_data(root, _image_sizes(space), progress.log)
        if opts.overwrite:
            _wipe(project)
        stopper = Stopper(opts.max_time)
        stopper.install()
        try:
            return _search(opts, space, project, root, progress, stopper)
        finally:
            stopper.uninstall()
            progress.stop()


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
    from tuner.strategy import detect

    info = detect(opts.strategy, opts.cpu_replicas)
    datasets: dict[int, FlowerData] = {}

    def data_factory(size: int) -> FlowerData:
        if size not in datasets:
            datasets[size] = FlowerData(root, size, log=progress.log)
        return datasets[size]

    for size in _image_sizes(space):
        data_factory(size).check()
    check_weights_available(space)

    if proj.read_meta(project) is None:
        proj.write_meta(project, {"space": space.to_dict(), "space_text": space.text, "data": root,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")})

    classes, Fatal, Stopped = _tuner_classes()
    hypermodel = FlowerHyperModel(space, data_factory, info, seed=space.seed)
    objective = kt.Objective(space.objective_name, space.goal)
    common = dict(
        hypermodel=hypermodel, objective=objective, seed=space.seed,
        directory=os.path.dirname(os.path.abspath(project)) if "://" not in project else project.rsplit("/", 1)[0],
        project_name=os.path.basename(project.rstrip("/")),
        distribution_strategy=info.strategy if info.replicas > 1 or info.kind == "tpu" else None,
        max_consecutive_failed_trials=max(3, space.run_cap + 1),
        progress=progress, stopper=stopper,
    )
    if space.method == "hyperband":
        tuner = classes["hyperband"](max_epochs=space.train.epochs, factor=space.hyperband.factor,
                                     hyperband_iterations=space.hyperband.iterations, **common)
    else:
        tuner = classes[space.method](max_trials=space.run_cap, **common)

    done = sum(1 for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
    progress.search_begin(space.name, space.method, info.describe(), project, done,
                          space.run_cap if space.method != "hyperband" else None, root)
    result = SearchResult(project=project, stopped=None)
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
    result.trials = {tid: t.status for tid, t in tuner.oracle.trials.items()}
    best = tuner.oracle.get_best_trials(1)
    if best:
        result.best_trial, result.best_score = best[0].trial_id, best[0].score
    if result.stopped is None:
        progress.log(
            f"search done: {len(result.trials)} trials; best {space.objective_name} "
            + (f"{result.best_score:.4f} (trial {result.best_trial})" if result.best_trial else "none")
            + f"; see `python -m tuner best --project {project}`"
        )
    return result
