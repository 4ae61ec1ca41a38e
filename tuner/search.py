"""Running a search: Keras Tuner's own tuners and oracles, with the resume,
stop and failure handling flower-tuner adds on top.

What we add to Keras Tuner (1.4.x):
- an interrupted trial continues from its last finished epoch (KT restarts
  it), also when it is the very first trial (KT does not reload at all then,
  because its tuner file is only written after a trial ends);
- a clean stop at an epoch end on SIGTERM or Ctrl-C, and on --max-time
  with the budget's last epoch cut to fit (tuner.engine.pace);
- a refused resume when the space changed (KT silently ignores that);
- a NaN loss fails only that trial, with a one-line reason.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

from tuner.errors import DataError, ProjectError, TunerError


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
    #: an earlier project whose finished trials seed a tpe search's sampler
    warm_start: str | None = None
    token: str | None = None  # the chief's and its workers' shared secret; default $TUNER_TOKEN
    tls_cert: str | None = None  # chief: its certificate and key (PEM)
    tls_key: str | None = None
    tls_ca: str | None = None  # worker: the chief's certificate (or its CA)
    insecure: bool = False  # allow a chief on / a worker to another machine without TLS
    #: when --max-time began, in time.monotonic()'s clock: the command's own
    #: start (tuner.engine.clock.process_start); None: when run_search is called
    started: float | None = None
    #: Keras backend: auto | tensorflow | jax (tuner.backend); None: auto
    backend: str | None = None

    @property
    def role(self) -> str:
        return "chief" if self.chief else ("worker" if self.connect else "local")


@dataclass
class SearchResult:
    project: str
    stopped: str | None  # None when the search finished; else why it stopped
    trials: dict[str, str] = field(default_factory=dict)  # trial id -> status (PAUSED: waits at a rung)
    decisions: dict[str, str] = field(default_factory=dict)  # trial id -> "stopped at epoch 2 (rung 1)", ...
    best_trial: str | None = None  # as `best` ranks (tuner.engine.ranking): paused and interrupted trials count
    best_score: float | None = None  # its best epoch's objective value; None while no trial has one
    best_epoch: int | None = None  # the epoch best_score was reached at


def resolve_data_root(flag: str | None, space) -> tuple[str, bool]:
    """(root, is_demo): --data, $TUNER_DATA, the Kaggle input folder, the
    space's own `data:`; demo data is generated when missing."""
    from tuner.data.classes import KAGGLE_INPUT_DIRS

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
        from tuner.data.reader import available_sizes

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


def prepare(opts: SearchOptions, log=print, need_data: bool = True):
    """Validated space, data root and project directory for `opts`; checks the
    project against the space before anything is trained."""
    from tuner.engine import project as proj
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
            changes = diff(old, _without_new_defaults(old, new))
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


def _without_new_defaults(old: dict, new: dict) -> dict:
    """`new` less the dimensions and train keys a later flower-tuner added
    that the project does not know and that stay at their default: a project
    begun before they existed (e.g. `batchnorm`, `train.precision`) resumes
    as it was."""
    from tuner.spaces import TrainConfig, dimensions

    dims = dimensions()
    known = old.get("parameters", {})
    params = {n: p for n, p in new.get("parameters", {}).items()
              if n in known or n not in dims or p != {"value": dims[n].default}}
    defaults, was = TrainConfig().to_dict(), old.get("train", {})
    train = {k: v for k, v in new.get("train", {}).items() if k in was or k not in defaults or v != defaults[k]}
    return {**new, "parameters": params, "train": train}


def run_search(opts: SearchOptions, progress=None) -> SearchResult:
    """Run (or resume) a search to the end or to a clean stop; as the chief
    or a worker of a distributed search when `opts.chief`/`opts.connect`."""
    from tuner.engine.graphs import release_input_pipelines
    from tuner.engine.progress import Progress
    from tuner.engine.stopper import Stopper
    from tuner.quiet import quiet_fit_warnings

    release_input_pipelines()  # an earlier stopped search's, in this process (tests, notebooks)
    # The budget counts from here (or from the command's start): the checks,
    # the demo data, the imports still to come and the first trace are in it.
    stopper = Stopper(opts.max_time, started=opts.started)
    progress = progress or Progress(plain=opts.plain)
    quiet_fit_warnings()
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
    _security(opts)  # a bad --token or --tls-* flag is one line before anything loads
    space, project, root, is_demo = prepare(opts, log=progress.log, need_data=opts.role != "chief")
    from tuner.backend import describe, select

    chosen = select(opts.backend)  # before _search imports Keras
    backend_line = describe(*chosen)
    if chosen[0] == "jax" and "://" not in project and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        # JAX's persistent compilation cache in the project: a resumed search
        # (after a kill, or a new process) loads its train steps instead of
        # compiling them again (a 32 px MobileNetV2 trial: 281 s -> 91 s here)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.path.abspath(project), ".jax-cache")
        if "jax" in sys.modules:  # already imported (a notebook): it read its environment then
            sys.modules["jax"].config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    warm = _warm_start(opts, space, project)
    from tuner.engine import project as proj

    lock = proj.ProjectLock(project) if opts.role != "worker" else contextlib.nullcontext()
    with lock, _distributed_env(opts):
        if is_demo:
            ensure_demo_data(root, _image_sizes(space), progress.log)
        if opts.overwrite and opts.role != "worker":
            _wipe(project)
        if opts.role != "chief":  # the chief's state is saved at every change: a plain kill is fine
            stopper.install()
        try:
            return _search(opts, space, project, root, progress, stopper, warm=warm, backend_line=backend_line)
        finally:
            stopper.uninstall()
            progress.stop()


def _precision_line(space, hypermodel) -> str:
    """What each trial will compute in on this machine (raising for a
    precision it cannot run), as the line the search starts with."""
    param = space.params.get("precision")
    asked = sorted({p or space.train.precision for p in (param.possible() if param else [None])})
    chosen = [hypermodel.precision({"precision": a}) for a in asked]
    if len(chosen) == 1:
        return f"precision: {chosen[0][0]} ({chosen[0][1]})"
    return "precision: by trial (" + ", ".join(f"{a} -> {c[0]}" for a, c in zip(asked, chosen)) + ")"


def _steps_line(space, hypermodel) -> str | None:
    """The steps per device call the trials get, when more than one is
    asked for (the search's second line, after the precision)."""
    from tuner.model.strategy import steps_per_execution, steps_per_execution_why

    asked, kind = space.train.steps_per_execution, hypermodel.strategy_info.kind
    if steps_per_execution(asked, kind) == 1:
        return None
    param = space.params.get("batch_per_replica")
    batches = [None] if space.train.steps_per_epoch or param is None or not param.varying else param.possible()
    sizes = space.params["image_size"].possible()
    steps = sorted({hypermodel.steps_per_epoch({"image_size": sizes[0], "batch_per_replica": b}) for b in batches})
    if len(steps) == 1:
        return f"steps_per_execution: {steps_per_execution_why(asked, kind, steps[0])}"
    return ("steps_per_execution: by trial (the largest divisor of its steps per epoch not above "
            f"{steps_per_execution(asked, kind)}, so that every epoch trains exactly its steps)")


def _validation_line(space, hypermodel) -> str | None:
    """Which epochs validate, when not every one (`train.validate_every`)."""
    from tuner.engine import validation

    if space.train.validate_every == 1:
        return None
    p = space.params
    v = {k: p[k].possible()[0] for k in ("image_size", "batch_per_replica", "fine_tune", "weights")}
    val, train = hypermodel.validation_images(v)
    epochs = space.train.epochs
    every = hypermodel.validation_every(v)
    et = space.early_terminate
    eta = et.eta if et is not None and et.type == "hyperband" else None
    return validation.describe(epochs, every, hypermodel.rungs(), val, train, hypermodel.validation_cost(v), eta)


def _parse_address(text: str, flag: str) -> tuple[str, str]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TunerError(f"{flag} expects HOST:PORT, e.g. 10.0.0.5:8000 or 127.0.0.1:8000; got {text!r}")
    return host.strip("[]"), port


def _security(opts: SearchOptions):
    """The chief's server / the worker's channel settings, checked."""
    from tuner.engine import auth
    from tuner.engine.service import ServiceConfig, check_options

    if opts.role == "worker" and not auth.WORKER_ID.fullmatch(opts.worker_id):
        raise TunerError(f"--worker-id {opts.worker_id!r}: 1 to 64 letters, digits or ._- (the chief refuses others)")
    if opts.role == "local" and opts.token:
        raise TunerError("--token is for a search on several machines (with --chief or --connect)")
    config = ServiceConfig(token=auth.given_token(opts.token) if opts.role != "local" else None,
                           tls_cert=opts.tls_cert, tls_key=opts.tls_key, tls_ca=opts.tls_ca, insecure=opts.insecure)
    address = opts.chief or opts.connect
    check_options(opts.role, _parse_address(address, "--chief" if opts.chief else "--connect")[0] if address else None,
                  config)
    return config


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


def _account(tuner, project: str, opts: SearchOptions, stopper) -> str:
    """This run's time, by part, added to the project's time.json; the line
    the search ends with."""
    from tuner.engine import ledger

    total = time.monotonic() - stopper.started
    record = tuner.ledger.close(total)
    try:
        ledger.record_run(project, str(tuner.tuner_id), record)
    except OSError:
        pass  # the time is only told, then
    return "time: " + (ledger.describe(record) or "none")


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


def _warm_start(opts: SearchOptions, space, project: str) -> tuple[str, list] | None:
    """--warm-start's trials, checked before anything slow runs (a worker
    has no sampler: the chief's oracle asks it)."""
    if not opts.warm_start or opts.role == "worker":
        return None
    if space.method != "tpe":
        raise TunerError(f"--warm-start seeds TPE's model, and this search's method is {space.method}; "
                         "use --method tpe (or method: tpe in the space)")
    source = os.path.abspath(opts.warm_start)
    if source == os.path.abspath(project):
        raise TunerError(f"--warm-start {opts.warm_start}: that is this search's own project; "
                         "give an earlier search's project")
    from tuner.engine import warm_start

    return source, warm_start.load(source, space.to_dict(), space.objective_name)


def _search(opts, space, project, root, progress, stopper, warm=None, backend_line=None) -> SearchResult:
    import keras_tuner as kt

    from tuner.engine import project as proj
    from tuner.data.reader import FlowerData
    from tuner.model.hypermodel import FlowerHyperModel, check_weights_available
    from tuner.engine.leases import LeaseMonitor
    from tuner.engine.errors import Fatal, Stopped
    from tuner.engine.tuner import TUNERS, last_line
    from tuner.model.strategy import StrategyInfo, detect

    chief = opts.role == "chief"
    if chief:  # it trains nothing, so no strategy (and under JAX no TensorFlow)
        info = StrategyInfo(None, "none (chief: serves the oracle only)", 1, ())
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
    hypermodel = FlowerHyperModel(space, data_factory, info, seed=space.seed)
    # A precision this machine cannot run ends the search here, before any trial.
    precision = None if chief else _precision_line(space, hypermodel)
    steps_line = None if chief else _steps_line(space, hypermodel)
    val_line = None if chief else _validation_line(space, hypermodel)

    if opts.role != "worker" and proj.read_meta(project) is None:
        proj.write_meta(project, {"space": space.to_dict(), "space_text": space.text, "data": root,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")})

    tuner_cls, oracle_cls = TUNERS[space.method]
    objective = kt.Objective(space.objective_name, space.goal)
    oracle_args = dict(objective=objective, seed=space.seed, lease_seconds=opts.lease,
                       max_consecutive_failed_trials=max(3, space.run_cap + 1),
                       early_terminate=space.early_terminate, epochs=space.train.epochs,
                       deadline=stopper.budget)
    if space.method == "hyperband":
        oracle = oracle_cls(max_epochs=space.train.epochs, factor=space.hyperband.factor,
                            hyperband_iterations=space.hyperband.iterations, **oracle_args)
    else:
        if space.method == "tpe":
            oracle_args.update(study_name=space.name, warm_start=warm)
        oracle = oracle_cls(max_trials=space.run_cap, start_with=space.start_with, **oracle_args)
    oracle.log = progress.log
    try:
        tuner = tuner_cls(
            oracle=oracle, hypermodel=hypermodel,
            directory=os.path.dirname(os.path.abspath(project)) if "://" not in project else project.rsplit("/", 1)[0],
            project_name=os.path.basename(project.rstrip("/")),
            distribution_strategy=info.strategy if info.tf_strategy else None,
            progress=progress, stopper=stopper, heartbeat=max(1.0, opts.lease / 4), security=_security(opts),
        )
    except (ValueError, KeyError) as e:  # json.JSONDecodeError is a ValueError
        raise ProjectError(
            f"a Keras Tuner file in {project} is damaged ({type(e).__name__}: {str(e)[:80]}); restore it, "
            "or start afresh with --overwrite"
        ) from None

    # One machine keeps the graphs it traced last: the budget counts their runs warm.
    if not chief and opts.role != "worker" and tuner.KEEP_WARM > 0:
        from tuner.engine.warm import graph_key

        oracle.is_warm = lambda values: tuner._warm.has(graph_key(values))  # noqa: SLF001
    total = space.run_cap if space.method != "hyperband" else None
    if opts.role == "worker":
        progress.log(f"worker {opts.worker_id} of the chief at {opts.connect}; {info.describe()}; "
                     f"data {root}; project {project}")
    else:
        done = sum(1 for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
        where = info.describe() if not chief else f"chief at {opts.chief} (lease {opts.lease:.0f}s)"
        progress.search_begin(space.name, space.method, where, project, done, total, root or "(workers' own)")
        plan = oracle.plan(opts.max_time)
        if plan:
            progress.log(plan)
    if backend_line:
        progress.log(backend_line)
    if precision:
        progress.log(precision)
    if steps_line:
        progress.log(steps_line)
    if val_line:
        progress.log(val_line)
    if opts.role != "worker":
        from tuner.engine import events

        if events.available():
            events.write_config(project, list(space.varying))
        elif "://" not in project:
            progress.log("TensorBoard: no event files (the HParams summaries need the tensorboard package; "
                         "pip install tensorboard)")
    began = time.monotonic()
    tuner.ledger.add("startup", began - stopper.started)
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
            raise TunerError(f"too many failed trials in a row: {last_line(str(e))}") from None
        raise
    finally:
        if monitor:
            monitor.stop()
    if opts.role == "worker":
        result.trials = dict(tuner.statuses)
        progress.log(f"worker {opts.worker_id} done: ran {len(result.trials)} trial(s); the chief has the results")
        return result
    result.trials = {tid: t.status for tid, t in oracle.trials.items()}
    result.decisions = oracle.decision_texts()
    for tid, text in result.decisions.items():
        if text.startswith("paused"):
            result.trials[tid] = "PAUSED"
    if result.stopped is None and oracle.budget_refused:
        why = oracle.scheduler.refused_why
        result.stopped = f"max-time reached: {why}" if why else "max-time: nothing more fits in the time left"
        progress.log(f"{result.stopped}; the same command with more --max-time continues")
    spent = oracle.spending(time.monotonic() - began)
    if spent:
        progress.log(spent)
    from tuner.engine.ranking import best_of, oracle_scores

    # The trial `best` would name (not Keras Tuner's best completed one): paused
    # and interrupted trials count at their best epoch.
    best = best_of(oracle_scores(oracle.trials, space.objective_name, objective.direction), objective.direction)
    if best is not None:
        result.best_trial, result.best_score, result.best_epoch = best.trial_id, best.score, best.best_epoch
    said = (f"{result.best_score:.4f} at epoch {result.best_epoch} (trial {result.best_trial})" if best
            else "none (no trial finished an epoch)")
    if result.stopped is None:
        progress.log(f"search done: {len(result.trials)} trials; best {space.objective_name} {said}"
                     f"; see `python -m tuner best --project {project}`")
    else:
        progress.log(f"best {space.objective_name} so far: {said}")
    progress.log(_account(tuner, project, opts, stopper))
    return result
