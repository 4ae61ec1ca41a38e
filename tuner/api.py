"""flower-tuner from Python (a notebook, a script): what the command line
does, as functions that return objects and raise `TunerError`s.

    import tuner
    result = tuner.search("demo", max_time="7m")
    tuner.status(result.project).to_frame()
    exported = tuner.export(result.project, "export/demo", ensemble=3)
    exported.metrics["macro_f1"]

Durations are seconds or text such as "2h45m". Nothing here imports
TensorFlow until a function needs it, so `import tuner` stays light.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tuner.duration import parse_duration
from tuner.errors import TunerError

class Trials(list):
    """A project's trials as a list of plain records (dicts, see
    `tuner.results.trials.trial_record`; the hyperparameters under
    "values"), best first for `best`, in trial order for `status`."""

    def __init__(self, records: Iterable[dict[str, Any]], project: str = ""):
        super().__init__(records)
        self.project = project

    def to_frame(self):
        """A pandas DataFrame, one row per trial and one column per
        hyperparameter (pandas is optional: installed on Kaggle and Colab)."""
        try:
            import pandas as pd
        except ModuleNotFoundError:
            raise TunerError("to_frame() needs pandas; pip install pandas, or use the records as they are") from None
        rows = [{**{k: v for k, v in r.items() if k != "values"}, **r["values"]} for r in self]
        return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


@dataclass
class Export:
    """What `export` wrote: the folder, its files by name, and metrics.json."""

    out: str
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def submission(self) -> str | None:
        return self.files.get("submission.csv")

    @property
    def model(self) -> str | None:
        return self.files.get("model.keras")


def _seconds(value: float | int | str | None, what: str) -> float | None:
    if value is None or isinstance(value, (int, float)):
        if value is not None and value <= 0:
            raise TunerError(f"{what} must be positive, got {value}")
        return None if value is None else float(value)
    try:
        return parse_duration(value)
    except ValueError as e:
        raise TunerError(f"{what}: {e}") from None


def _project(project: str | None, space: str | None) -> str:
    if project:
        return project
    from tuner.engine.project import default_project

    return default_project(space or "default")


def search(space: str = "default", *, data: str | None = None, project: str | None = None,
           max_time: float | str | None = None, max_trials: int | None = None, epochs: int | None = None,
           steps_per_epoch: int | None = None, method: str | None = None, strategy: str = "auto",
           weights: str | None = None, seed: int | None = None, overwrite: bool = False,
           plain: bool | None = None, cpu_replicas: int | None = None, warm_start: str | None = None,
           backend: str | None = None):
    """Run (or resume) a search, as `python -m tuner search`; returns its
    `SearchResult` (project, the best trial as `best` ranks it, its score and
    the epoch it was reached at, each trial's state, why it stopped). `plain=None` shows live progress where the output is a
    terminal or a notebook, plain lines elsewhere."""
    seconds = _seconds(max_time, "max_time")
    from tuner.quiet import import_tensorflow
    from tuner.search import SearchOptions, run_search
    from tuner.spaces import load_space

    load_space(space)  # a bad space file raises before TensorFlow loads
    from tuner.backend import installed, select

    if select(backend)[0] == "tensorflow" or installed("tensorflow"):  # tf.data reads the records under JAX too
        import_tensorflow()
    opts = SearchOptions(space=space, data=data, project=project, max_trials=max_trials, epochs=epochs,
                         steps_per_epoch=steps_per_epoch, method=method, strategy=strategy,
                         cpu_replicas=cpu_replicas, max_time=seconds, weights=weights,
                         seed=seed, overwrite=overwrite, plain=plain, warm_start=warm_start, backend=backend)
    try:
        return run_search(opts)
    finally:
        from tuner.engine.graphs import release_input_pipelines

        release_input_pipelines()  # a stop's input pipeline, held until its results were out


def status(project: str | None = None, *, space: str | None = None) -> Trials:
    """Every trial of a project, in trial order (reads files only: works
    while a search runs, and on a worker's shared storage)."""
    from tuner.results.trials import load_trials, trial_record

    project = _project(project, space)
    _, trials = load_trials(project)
    return Trials((trial_record(t) for t in trials), project)


def best(project: str | None = None, *, space: str | None = None, top: int = 1) -> Trials:
    """The `top` best finished trials, best first."""
    from tuner.results.trials import best_trials, load_trials, require_finished, trial_record

    if top < 1:
        raise TunerError(f"top must be at least 1, got {top}")
    project = _project(project, space)
    meta, trials = load_trials(project)
    require_finished(meta, trials, project)
    return Trials((trial_record(t) for t in best_trials(meta, trials, top)), project)


def export(project: str | None, out: str, *, space: str | None = None, data: str | None = None,
           ensemble: int = 1, tta: int = 1, refit: bool = False, refit_epochs: int | None = None,
           max_time: float | str | None = None, log: Callable[[str], None] | None = print,
           release: bool = True) -> Export:
    """Export the best model as `python -m tuner best --export OUT` does
    (with `ensemble`, `tta`, `refit` as its flags); `log` gets each line
    (None: silent). A refit stopped by `max_time` raises `Stopped`; call
    again to continue it. `release`: free a stopped refit's input pipeline
    before returning (its teardown can take 10-18 s); the CLI passes False
    and exits without that wait."""
    from tuner.quiet import import_tensorflow
    from tuner.results.export import RefitRequest, export_best

    if (refit_epochs or max_time) and not refit:
        raise TunerError(f"{'refit_epochs' if refit_epochs else 'max_time'} sets how the refit runs; "
                         "pass refit=True")
    import_tensorflow()
    project = _project(project, space)
    request = None
    if refit:
        from tuner.engine.stopper import Stopper

        request = RefitRequest(epochs=refit_epochs, stopper=Stopper(_seconds(max_time, "max_time")))
    result = Export(out=out)
    try:
        for line in export_best(project, out, data_root=data, ensemble=ensemble, tta=tta, refit=request):
            result.lines.append(line)
            if log:
                log(line)
    finally:
        if release:
            from tuner.engine.graphs import release_input_pipelines

            release_input_pipelines()  # a stopped refit's input pipeline, held until its lines were out
    for name in sorted(os.listdir(out)):
        result.files[name] = os.path.join(out, name)
    metrics = os.path.join(out, "metrics.json")
    if os.path.exists(metrics):
        with open(metrics) as f:
            result.metrics = json.load(f)
    return result
