"""Which hyperparameters mattered, as Optuna's fANOVA evaluator says, over
trials compared at one epoch.

Why one epoch: with early termination, a trial stopped at epoch 2 and one
trained 40 epochs have scores of different lengths, and an importance fit to
both learns "survived the rung" rather than "is a good configuration". So
every trial is scored by its best value up to the same epoch: the largest
epoch that at least `MIN_TRIALS` trials reached (a search without early
termination: its last epoch).

Why fANOVA (`optuna.importance.FanovaImportanceEvaluator`) and not PED-ANOVA:
PED-ANOVA compares the top 10% of the trials with the rest, one or two
trials in the 8-30 a search here has (its own docs ask for at least 5 above
the quantile); fANOVA's forest uses every trial. The trials are built in
memory (`optuna.trial.create_trial`) with the distributions the search's
sampler uses (`tuner.engine.sampler.distributions`), over the varying
dimensions only. Optuna and Keras Tuner are imported on use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuner.spaces.conditions import is_active

#: Below this many trials at a common epoch the importances are noise (with 3
#: trials every split is one trial), so none are claimed.
MIN_TRIALS = 8
#: The evaluator, as report.md names it.
EVALUATOR = "Optuna's fANOVA"


def distributions_for(parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A project's `space.parameters` (as `Space.to_dict` saved them) -> name ->
    Optuna distribution for the varying ones, declared on Keras Tuner as the
    search declares them and mapped as its sampler maps them."""
    import keras_tuner as kt

    from tuner.engine.sampler import distributions
    from tuner.spaces.space import Param

    hp = kt.HyperParameters()
    for name, spec in parameters.items():
        if not isinstance(spec, Mapping) or "value" in spec:
            continue
        if "values" in spec:
            param = Param(name, "choice", values=tuple(spec["values"]))
        else:
            param = Param(name, "range", min=spec["min"], max=spec["max"],
                          distribution=spec.get("distribution"), q=spec.get("q"))
        param.declare(hp)
    return distributions(hp.space)


def comparable_epoch(curves: Sequence[Sequence[tuple[int, float | None]]],
                     min_trials: int = MIN_TRIALS) -> int | None:
    """The largest epoch that at least `min_trials` curves reached with a
    score (a finite value at or before it); None when fewer curves have one."""
    firsts, lasts = [], []
    for pts in curves:
        scored = [int(e) for e, v in pts if v is not None and math.isfinite(v)]
        if scored:
            firsts.append(min(scored))
            lasts.append(max(int(e) for e, _ in pts))
    best = None
    for e in sorted(set(lasts), reverse=True):
        if sum(1 for f, last in zip(firsts, lasts) if f <= e <= last) >= min_trials:
            best = e
            break
    return best


def score_at(pts: Sequence[tuple[int, float | None]], epoch: int, goal: str = "max") -> float | None:
    """A curve's best value up to `epoch` (what a rung ranks by); None when it
    did not reach `epoch` or has no finite value by then."""
    if not pts or max(int(e) for e, _ in pts) < epoch:
        return None
    values = [float(v) for e, v in pts if int(e) <= epoch and v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(values) if goal == "max" else min(values)


def evaluate(rows: Sequence[Mapping[str, Any]], scores: Sequence[float | None],
             dists: Mapping[str, Any], goal: str = "max") -> tuple[dict[str, float], list[str], int]:
    """(importance by dimension, descending, summing to 1; the varying
    dimensions left out, as constant over these trials or as read by only
    some of them; the trials used).

    A trial is used when its score is finite and its values lie in the
    distributions (a trial of an older range does not). A dimension that some
    used trial's model did not read (`tuner.spaces.conditions`: plateau_factor
    beside linear_decay trials) is left out, as Optuna leaves out a parameter
    not in every trial: its value there is a default that did nothing."""
    import warnings

    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if goal == "max" else "minimize")
    used: list[Mapping[str, Any]] = []
    for row, s in zip(rows, scores):
        if s is None or not math.isfinite(float(s)) or any(row.get(n) is None for n in dists):
            continue
        try:
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=float(s),
                                         params={n: row[n] for n in dists}, distributions=dict(dists)))
        except ValueError:
            continue
        used.append(row)
    constant = [n for n in dists if len({repr(r[n]) for r in used}) <= 1
                or not all(is_active(n, r) for r in used)]
    names = [n for n in dists if n not in constant]
    if not names or len(used) < 2:
        return {}, constant, len(used)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=names)
    return dict(sorted(result.items(), key=lambda kv: (-kv[1], kv[0]))), constant, len(used)
