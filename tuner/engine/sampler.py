"""Optuna's TPE sampler behind a Keras Tuner oracle: the space's varying
dimensions as Optuna distributions, and the study the oracle asks and tells.

Keras Tuner trial ids and Optuna trial numbers differ (a paused trial, a
trial started again after a kill, trials of a warm start): each Optuna trial
holds its Keras Tuner id as the user attribute `KT_ID`, so the mapping is in
the journal and survives a resume. Optuna is imported here only, when a tpe
search opens its study (`import tuner` stays light).

Dimension kinds (as `Param.declare` hands them to Keras Tuner) -> Optuna:
- fixed (`Fixed`): a constant, never a distribution;
- choice (`Choice`, `Boolean`): `CategoricalDistribution`;
- range, int_uniform / log_uniform_values over ints (`Int`): `IntDistribution`
  (step `q`, log);
- range, uniform / log_uniform_values (`Float`): `FloatDistribution` (step `q`
  with its top cut to the last step, as Keras Tuner's grid, log).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from tuner.spaces.conditions import is_active, parents_first

#: the Optuna trial's user attribute holding its Keras Tuner trial id
KT_ID = "kt_trial_id"
#: where a warm-started trial came from (user attribute)
WARM_FROM = "warm_start_from"
#: the file in the project that holds the study
JOURNAL = "optuna.journal"
#: study user attribute: the space's start_with configurations were enqueued
ENQUEUED = "start_with_enqueued"

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"


def distribution(hp: Any) -> Any | None:
    """The Optuna distribution of one Keras Tuner hyperparameter; None for a
    fixed one (a constant)."""
    from keras_tuner.src.engine import hyperparameters as hps
    from optuna import distributions as d

    if isinstance(hp, hps.Fixed):
        return None
    if isinstance(hp, hps.Boolean):
        return d.CategoricalDistribution([False, True])
    if isinstance(hp, hps.Choice):
        return d.CategoricalDistribution(list(hp.values))
    log = getattr(hp, "sampling", "linear") == "log"
    if isinstance(hp, hps.Int):
        step = 1 if log or not hp.step else int(hp.step)
        high = hp.min_value + (hp.max_value - hp.min_value) // step * step
        return d.IntDistribution(int(hp.min_value), int(high), log=log, step=step)
    if isinstance(hp, hps.Float):
        if hp.step and not log:
            high = hp.min_value + math.floor((hp.max_value - hp.min_value) / hp.step + 1e-9) * hp.step
            return d.FloatDistribution(float(hp.min_value), float(high), step=float(hp.step))
        return d.FloatDistribution(float(hp.min_value), float(hp.max_value), log=log)
    raise TypeError(f"{hp.name}: no Optuna distribution for {type(hp).__name__}")


def distributions(space: Iterable[Any]) -> dict[str, Any]:
    """name -> Optuna distribution, for the dimensions that vary only."""
    out = {}
    for hp in space:
        dist = distribution(hp)
        if dist is not None:
            out[hp.name] = dist
    return out


def startup_trials(run_cap: int | None) -> int:
    """TPE's random start: Optuna's 10, but never more than a third of the
    trials a search may start (at least 3), so that `cpu`'s 8 trials and
    `kaggle-tpu`'s 12 are modelled for most of their budget."""
    if not run_cap:
        return 10
    return max(3, min(10, run_cap // 3))


def make_sampler(seed: int | None, n_startup_trials: int = 10) -> Any:
    """TPE as the issue asks: multivariate over the varying dimensions,
    grouped (conditional dimensions), a constant liar for the trials still
    running or paused."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                          group=True, constant_liar=True)


def open_storage(path: str) -> Any:
    """Optuna's journal in a file (appended to, one operation a line;
    `optuna-dashboard PATH` reads it). The lock is a file opened beside it:
    only the oracle's process (the chief's) writes it."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def journal_path(project_dir: str) -> str:
    """`<project>/optuna.journal`; a gs:// project keeps it in the local cache
    (Optuna's file journal needs a local file), under the project's name."""
    if "://" not in project_dir:
        return os.path.join(project_dir, JOURNAL)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in project_dir)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flower-tuner", "optuna", safe + ".journal")


class Study:
    """An Optuna study asked and told in Keras Tuner's terms: trial ids,
    epochs, and the oracle's decisions."""

    def __init__(self, path: str, name: str, direction: str, seed: int | None,
                 distributions: dict[str, Any], n_startup_trials: int = 10,
                 start_with: Iterable[dict[str, Any]] = ()) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.path = path
        self.distributions = distributions
        self.study = optuna.create_study(
            storage=open_storage(path), study_name=name, load_if_exists=True,
            direction="maximize" if direction == "max" else "minimize",
            sampler=make_sampler(seed, n_startup_trials))
        trials = self.study.get_trials(deepcopy=False)
        if trials and seed is not None:
            # Resumed: a sampler seeded as at the start would draw the start's
            # random trials again.
            self.study.sampler = make_sampler(seed + len(trials), n_startup_trials)
        if not self.study.user_attrs.get(ENQUEUED):
            for values in start_with:
                params = {k: v for k, v in values.items() if k in distributions}
                if params:
                    self.study.enqueue_trial(params)
            self.study.set_user_attr(ENQUEUED, True)

    # -- the mapping -------------------------------------------------------
    def _trial(self, trial_id: str) -> Any | None:
        for t in self.study.get_trials(deepcopy=False):
            if t.user_attrs.get(KT_ID) == trial_id:
                return t
        return None

    def number(self, trial_id: str) -> int | None:
        t = self._trial(trial_id)
        return None if t is None else t.number

    # -- ask and tell ------------------------------------------------------
    def ask(self, trial_id: str, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Values for the varying dimensions of Keras Tuner trial `trial_id`
        that its model reads (`tuner.spaces.conditions`: no plateau_factor
        for a linear_decay trial), given the `fixed` values of the others;
        the same Optuna trial's when it was asked already (a trial id handed
        out again: Keras Tuner reuses an id it did not record)."""
        from optuna.trial import Trial, TrialState

        known = self._trial(trial_id)
        if known is not None:
            return dict(known.params)
        # An Optuna trial asked but killed before it was tagged is adopted.
        orphan = next((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if KT_ID not in t.user_attrs), None)
        trial = Trial(self.study, orphan._trial_id) if orphan is not None else self.study.ask()  # noqa: SLF001
        self._draw(trial, fixed or {})
        trial.set_user_attr(KT_ID, trial_id)
        return dict(trial.params)

    def _draw(self, trial: Any, fixed: Mapping[str, Any]) -> None:
        """Define-by-run, parents first: a dimension is drawn only where the
        values drawn so far make the model read it, so TPE's `group` models
        each callback's own dimensions apart."""
        for name in parents_first(self.distributions):
            if is_active(name, {**fixed, **trial.params}):
                trial._suggest(name, self.distributions[name])  # noqa: SLF001  (what ask(fixed_distributions) does)

    def report(self, trial_id: str, epoch: int, value: float) -> None:
        """Epoch `epoch`'s value as the trial's intermediate value: once per
        epoch; an epoch trained again after a kill replaces its first value,
        as in Keras Tuner's own record."""
        from optuna.trial import TrialState

        t = self._trial(trial_id)
        if t is None or t.state != TrialState.RUNNING or value is None or math.isnan(value):
            return
        if t.intermediate_values.get(int(epoch)) == float(value):
            return
        self.study._storage.set_trial_intermediate_value(t._trial_id, int(epoch), float(value))  # noqa: SLF001

    def tell(self, trial_id: str, state: str, value: float | None = None) -> None:
        """The trial's end: COMPLETE with its score, PRUNED (stopped at a
        rung: Optuna keeps its last intermediate value as its value) or
        FAIL. A trial told already is left as it is."""
        from optuna.trial import TrialState

        t = self._trial(trial_id)
        if t is None or t.state != TrialState.RUNNING:
            return
        if state == COMPLETE and (value is None or math.isnan(value)):
            state = FAIL
        self.study.tell(t.number, state=getattr(TrialState, state),
                        values=float(value) if state == COMPLETE else None)

    def add_finished(self, trials: Iterable[dict[str, Any]], source: str) -> int:
        """Seed the study with trials of an earlier search (`--warm-start`),
        each {"params", "state", "value", "intermediate"}; once per source."""
        import optuna
        from optuna.trial import TrialState

        done = {t.user_attrs.get(WARM_FROM) for t in self.study.get_trials(deepcopy=False)}
        if source in done:
            return 0
        n = 0
        for tr in trials:
            state = getattr(TrialState, tr["state"])
            inter = {int(k): float(v) for k, v in tr.get("intermediate", {}).items() if not math.isnan(v)}
            value = tr.get("value")
            if state == TrialState.PRUNED:
                value = inter[max(inter)] if inter else None
            names = [k for k in self.distributions if is_active(k, tr["params"])]
            self.study.add_trial(optuna.trial.create_trial(
                state=state, value=value if state != TrialState.FAIL else None,
                params={k: tr["params"][k] for k in names},
                distributions={k: self.distributions[k] for k in names}, intermediate_values=inter,
                user_attrs={WARM_FROM: source}))
            n += 1
        return n
