"""What the chief accepts from a worker, checked before its oracle sees it.

Keras Tuner's servicer hands every request to the oracle as it comes: a
trial id names a folder in the project, a report may carry NaN or a metric
nobody asked for, an ended trial may bring hyperparameters the space never
had (its `end_trial` merges them into the space), an unknown trial id raises
inside the server. Each `check_*` here raises `Refused` (the service answers
INVALID_ARGUMENT) and touches nothing; the service calls them under the
oracle's lock, so what they read cannot change before the oracle acts.
"""

from __future__ import annotations

import math
import re
from typing import Any

from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine.hyperparameters import hp_types

from tuner.engine.auth import WORKER_ID
from tuner.engine.callbacks import STATE_COLUMNS
from tuner.engine.leases import LEASE_PREFIX
from tuner.engine.oracles import FINISHED_KEY, FIRST_KEY, SECONDS_KEY

#: Keras Tuner's trial ids: the trial's number, zero-padded
TRIAL_ID = re.compile(r"[0-9]{1,12}")
#: the largest request each call may send, in bytes (gRPC's own
#: max_receive_message_length, in tuner.engine.service, caps them all)
MAX_BYTES = {"GetSpace": 1024, "CreateTrial": 1024, "GetTrial": 1024, "GetBestTrials": 1024,
             "UpdateTrial": 16 * 1024, "EndTrial": 1024 * 1024, "UpdateSpace": 1024 * 1024}
MAX_BEST = 10_000
MAX_STEP = 1_000_000
#: the statuses a worker may end a trial with (Keras Tuner's end_trial)
END_STATUSES = {"COMPLETED", "INVALID", "FAILED"}
BUDGET_KEYS = {SECONDS_KEY: (0.0, 1e9), FIRST_KEY: (0.0, 2.0), FINISHED_KEY: (0.0, 1.0)}


class Refused(ValueError):
    """A request the chief answers with INVALID_ARGUMENT, changing nothing."""


def check_tuner_id(tuner_id: str) -> None:
    if not WORKER_ID.fullmatch(tuner_id) or "chief" in tuner_id:
        raise Refused(f"worker id {tuner_id[:80]!r} is not 1-64 letters, digits or ._- (without 'chief')")


def check_trial_id(oracle: Any, trial_id: str) -> None:
    if not TRIAL_ID.fullmatch(trial_id):
        raise Refused(f"trial id {trial_id[:80]!r} is not one of Keras Tuner's (digits only)")
    if trial_id not in oracle.trials:
        raise Refused(f"no trial {trial_id}")


#: Keras Tuner keeps metric observations as 32-bit floats: beyond, a value comes back infinite
FLOAT32_MAX = 3.4028234663852886e38


def _finite(name: str, value: float) -> None:
    if not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        raise Refused(f"{name} is {value}: metrics must be finite numbers")


def objective_names(oracle: Any) -> set[str]:
    obj = oracle.objective
    names = getattr(obj, "name_to_direction", None)
    return set(names) if names else {obj.name}


def max_step(oracle: Any, trial_id: str) -> int:
    """The last epoch a report on this trial may be for."""
    values = oracle.trials[trial_id].hyperparameters.values
    epochs = [v for v in (getattr(oracle, "max_epochs", None), values.get("epochs"), values.get("tuner/epochs"))
              if isinstance(v, int) and not isinstance(v, bool)]
    return max(epochs) if epochs else MAX_STEP


def _step(oracle: Any, trial_id: str, step: int) -> None:
    top = max_step(oracle, trial_id)
    if not 0 <= step <= top:
        raise Refused(f"step {step} is outside trial {trial_id}'s epochs 0..{top}")


def check_update_trial(oracle: Any, trial_id: str, metrics: dict[str, float], step: int) -> None:
    """An epoch report or a heartbeat (`tuner.engine.heartbeat`)."""
    check_trial_id(oracle, trial_id)
    _step(oracle, trial_id, step)
    known = objective_names(oracle) | set(STATE_COLUMNS)
    plain = []
    leases = 0
    for name, value in metrics.items():
        _finite(repr(name[:80]), value)
        if name.startswith(LEASE_PREFIX):
            check_tuner_id(name[len(LEASE_PREFIX):])
            leases += 1
        elif name in BUDGET_KEYS:
            low, high = BUDGET_KEYS[name]
            if not low <= value <= high:
                raise Refused(f"{name} is {value}, outside {low}..{high}")
        elif name in known:
            plain.append(name)
        else:
            raise Refused(f"unknown metric {name[:80]!r} (known: {', '.join(sorted(known))})")
    if leases > 1:
        raise Refused("a report names one worker")
    missing = objective_names(oracle) - set(plain)
    if plain and missing:
        raise Refused(f"a report with metrics needs the objective ({', '.join(sorted(missing))})")


def _kind(value: Any) -> type:
    return bool if isinstance(value, bool) else (str if isinstance(value, str) else float)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same kind (True is not 1, "1" is not 1)."""
    return _kind(a) is _kind(b) and a == b


def _within(hp: Any, value: Any) -> bool:
    if isinstance(hp, hp_types.Boolean):
        return isinstance(value, bool)
    if isinstance(hp, hp_types.Fixed):
        return _same(value, hp.value)
    if isinstance(hp, hp_types.Choice):
        return any(_same(value, v) for v in hp.values)
    if isinstance(value, (bool, str)):
        return False
    if isinstance(hp, hp_types.Int):
        return isinstance(value, int) and hp.min_value <= value <= hp.max_value
    if isinstance(hp, hp_types.Float):
        if not math.isfinite(value):
            return False
        slack = 1e-9 * (abs(hp.max_value - hp.min_value) + abs(hp.max_value))
        return hp.min_value - slack <= value <= hp.max_value + slack
    return False


def _parse_hyperparameters(proto: Any) -> hp_module.HyperParameters:
    try:
        return hp_module.HyperParameters.from_proto(proto)
    except Exception as e:  # Keras Tuner's own checks (empty choices, min above max, no value set...)
        raise Refused(f"malformed hyperparameters: {type(e).__name__}: {str(e)[:120]}") from None


def check_space(oracle: Any, hps: hp_module.HyperParameters) -> None:
    """No hyperparameter the chief's space lacks: Keras Tuner would merge it in."""
    mine = oracle.hyperparameters
    for hp in hps.space:
        if not mine._exists(hp.name, hp.conditions):  # noqa: SLF001
            raise Refused(f"unknown hyperparameter {hp.name[:80]!r}")


def check_values(oracle: Any, values: dict[str, Any], trial_id: str | None = None) -> None:
    """Every value within the chief's space; a name outside it (Hyperband's
    `tuner/...`) only with the value the chief gave that trial."""
    mine = oracle.hyperparameters
    given = oracle.trials[trial_id].hyperparameters.values if trial_id is not None else {}
    for name, value in values.items():
        hps = mine._hps.get(name)  # noqa: SLF001 (.get: it is a defaultdict)
        if hps:
            if not any(_within(hp, value) for hp in hps):
                raise Refused(f"{name}={str(value)[:80]} is outside the space")
        elif name in given:
            if not _same(given[name], value):
                raise Refused(f"{name}={str(value)[:80]} is not the value the chief gave trial {trial_id}")
        else:
            raise Refused(f"unknown hyperparameter {name[:80]!r}")
    missing = sorted(set(given) - set(values))
    if missing:  # Keras Tuner would fill them in from the request's own space
        raise Refused(f"trial {trial_id} comes back without {', '.join(m[:80] for m in missing[:5])}")


def check_update_space(oracle: Any, proto: Any) -> None:
    hps = _parse_hyperparameters(proto)
    check_space(oracle, hps)
    check_values(oracle, hps.values)


def check_end_trial(oracle: Any, proto: Any) -> None:
    """A worker's finished (or failed) trial, which Keras Tuner copies over
    the chief's record of it."""
    from keras_tuner.src.engine import trial as trial_module

    check_trial_id(oracle, proto.trial_id)
    try:
        status = trial_module.TrialStatus.from_proto(proto.status)
    except ValueError:
        status = None
    if status not in END_STATUSES:
        raise Refused(f"a trial ends COMPLETED, INVALID or FAILED, not {status or proto.status}")
    hps = _parse_hyperparameters(proto.hyperparameters)
    check_space(oracle, hps)
    check_values(oracle, hps.values, proto.trial_id)
    known = objective_names(oracle) | set(STATE_COLUMNS)
    top = max_step(oracle, proto.trial_id)
    for name, history in proto.metrics.metrics.items():
        if name not in known:
            raise Refused(f"unknown metric {name[:80]!r}")
        for obs in history.observations:
            if not 0 <= obs.step <= top:
                raise Refused(f"step {obs.step} of {name} is outside the trial's epochs 0..{top}")
            for v in obs.value:
                _finite(name, v)
    if proto.HasField("score"):
        _finite("the score", proto.score.value)
    if status == "COMPLETED":
        recorded = oracle.trials[proto.trial_id].metrics
        missing = [n for n in objective_names(oracle) if not recorded.exists(n)]
        if missing:
            raise Refused(f"trial {proto.trial_id} reported no {', '.join(missing)}: it cannot end COMPLETED")


def check_best_trials(num_trials: int) -> None:
    if not 0 <= num_trials <= MAX_BEST:
        raise Refused(f"num_trials {num_trials} is outside 0..{MAX_BEST}")


def check(oracle: Any, method: str, request: Any) -> None:
    """The checks for one call's request (a parsed protobuf message)."""
    if method == "CreateTrial":
        check_tuner_id(request.tuner_id)
    elif method == "UpdateTrial":
        check_update_trial(oracle, request.trial_id, dict(request.metrics), int(request.step))
    elif method == "EndTrial":
        check_end_trial(oracle, request.trial)
    elif method == "GetTrial":
        check_trial_id(oracle, request.trial_id)
    elif method == "GetBestTrials":
        check_best_trials(int(request.num_trials))
    elif method == "UpdateSpace":
        check_update_space(oracle, request.hyperparameters)
