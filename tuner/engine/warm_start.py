"""`--warm-start OTHER_PROJECT`: the finished trials of an earlier search seed
a tpe search's study, so that what one search learned (a CPU search) informs
the next (the TPU search) from its first trial.

Compatible means the same varying dimensions with the same ranges or
choices (Optuna's distributions must match for TPE to model the trials
together); fixed dimensions may differ (image size, batch, epochs). Read from
the other project's files only (Keras Tuner's trial.json, oracle.json and
our flower_tuner.json), so it works whatever method that search used.
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any

from tuner.errors import TunerError


def _varying(params: dict[str, Any]) -> dict[str, Any]:
    return {n: spec for n, spec in params.items() if isinstance(spec, dict) and "value" not in spec}


def check_compatible(other: dict[str, Any], ours: dict[str, Any], source: str) -> None:
    """One line naming the first dimension that differs."""
    theirs, mine = _varying(other.get("parameters", {})), _varying(ours.get("parameters", {}))
    for name in mine:
        if name not in theirs:
            raise TunerError(f"--warm-start {source}: its space fixes {name}, which this space varies; "
                             "warm start needs the same varying dimensions")
    for name in theirs:
        if name not in mine:
            raise TunerError(f"--warm-start {source}: its space varies {name}, which this space fixes; "
                             "warm start needs the same varying dimensions")
    for name, spec in mine.items():
        if theirs[name] != spec:
            raise TunerError(f"--warm-start {source}: parameters.{name} changed ({_spec(theirs[name])} there, "
                             f"{_spec(spec)} here); warm start needs the same ranges and choices")


def _spec(spec: dict[str, Any]) -> str:
    if "values" in spec:
        return "values " + ", ".join(map(str, spec["values"]))
    return f"[{spec.get('min')}, {spec.get('max')}]" + (f" step {spec['q']}" if spec.get("q") else "")


def load(source: str, ours: dict[str, Any], objective: str) -> list[dict[str, Any]]:
    """The other project's finished trials as `sampler.Study.add_finished`
    takes them: completed ones COMPLETE with their score, ones stopped at a
    rung PRUNED; paused, running and failed ones are left out."""
    from tuner.engine import project as proj

    if "://" in source or not os.path.isdir(source):
        raise TunerError(f"--warm-start {source}: no project there; give the directory of an earlier search")
    meta = proj.read_meta(source)
    if meta is None:
        raise TunerError(f"--warm-start {source}: not a flower-tuner project (no {proj.META}); "
                         "give the directory of an earlier search")
    check_compatible(meta.get("space", {}), ours, source)
    decisions: dict[str, Any] = {}
    try:
        with open(os.path.join(source, "oracle.json")) as f:
            state = json.load(f)
        decisions = ((state.get("flower_tuner") or {}).get("early_terminate") or {}).get("decisions", {})
    except (OSError, ValueError):
        pass
    names = list(_varying(ours.get("parameters", {})))
    out = []
    for path in sorted(glob.glob(os.path.join(source, "trial_*", "trial.json"))):
        try:
            with open(path) as f:
                t = json.load(f)
        except (OSError, ValueError):
            continue
        decision = decisions.get(t.get("trial_id"), {}).get("state")
        if t.get("status") != "COMPLETED" or decision == "paused":
            continue
        obs = ((t.get("metrics") or {}).get("metrics") or {}).get(objective, {}).get("observations", [])
        inter = {int(o["step"]): float(o["value"][0]) for o in obs if o.get("value")}
        values = (t.get("hyperparameters") or {}).get("values", {})
        score = t.get("score")
        if any(n not in values for n in names) or score is None or math.isnan(score):
            continue
        out.append({"params": {n: values[n] for n in names}, "value": float(score), "intermediate": inter,
                    "state": "PRUNED" if decision == "stopped" else "COMPLETE"})
    if not out:
        raise TunerError(f"--warm-start {source}: no finished trial there to learn from")
    return out
