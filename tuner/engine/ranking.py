"""Which epoch of a trial and which trial of a search is best: one answer for
the tuner (the best-epoch weights, the score it reports), the search's result
and progress lines, `status`, `best`, `export`, a refit and TensorBoard.

A trial's score is its best epoch's objective value (`val_f1` by default),
whatever the epochs it trained: a trial stopped at a rung is ranked by its
best epoch as one trained to the end, so every score is shown with the epoch
it was reached at. Pure Python (no TensorFlow, no Keras Tuner): the engine
and the readers of a project's files both import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def clean_float(v: Any) -> float | None:
    """A comparable value, or None (missing or NaN: never the best)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "min" else a > b


def best_row(rows: Iterable[Mapping[str, Any]], objective: str, direction: str) -> Mapping[str, Any] | None:
    """The row (one per epoch, with its "epoch") of the best epoch. Ties go
    to the earlier epoch: it reached the score first, and its weights are
    the best-epoch file's."""
    best, value = None, None
    for row in sorted(rows, key=lambda r: float(r.get("epoch") or 0)):
        v = clean_float(row.get(objective))
        if v is not None and (value is None or _better(v, value, direction)):
            best, value = row, v
    return best


def best_epoch(rows: Iterable[Mapping[str, Any]], objective: str, direction: str) -> int | None:
    row = best_row(rows, objective, direction)
    return None if row is None else int(row["epoch"])


def has_result(state: str, epoch: int | None) -> bool:
    """Completed (stopped at a rung included) or paused, or cut by --max-time
    or a signal (or still running) after a finished epoch: its best epoch's
    weights are saved, so it counts. Failed and pending trials do not."""
    return state in ("completed", "paused") or (state in ("interrupted", "running") and epoch is not None)


def trial_order(trial_id: str) -> tuple[int, str]:
    """Trial ids in start order ("2" before "10"; Keras Tuner pads them)."""
    return len(trial_id), trial_id


def rank(trials: Iterable[T], direction: str) -> list[T]:
    """The trials (with `trial_id`, `state`, `best_epoch` and `score`, as
    `TrialInfo` and `Scored` have) that have a result, best first by score;
    ties go to the earlier trial, and trials with no score (NaN, None) come
    last."""

    def key(t: Any) -> tuple:
        s = clean_float(t.score)
        if s is None:
            return (1, 0.0, trial_order(t.trial_id))
        return (0, s if direction == "min" else -s, trial_order(t.trial_id))

    return sorted((t for t in trials if has_result(t.state, t.best_epoch)), key=key)


@dataclass(frozen=True)
class Scored:
    """One trial as `rank` sees it: what a search's oracle knows of it."""

    trial_id: str
    state: str
    best_epoch: int | None
    score: float | None


#: Keras Tuner's trial statuses as the states `has_result` takes (IDLE is a
#: trial paused at a rung, RUNNING one being or last trained)
_STATES = {"COMPLETED": "completed", "IDLE": "paused", "RUNNING": "interrupted"}


def oracle_scores(trials: Mapping[str, Any], objective: str, direction: str) -> list[Scored]:
    """A Keras Tuner oracle's trials (`oracle.trials`), scored from the
    epochs reported to it: the same epochs, values and rule as the
    project's files give `status` and `best`."""
    out = []
    for tid, t in trials.items():
        rows: list[dict[str, Any]] = []
        if t.metrics.exists(objective):
            rows = [{"epoch": o.step, objective: o.mean()} for o in t.metrics.get_history(objective)]
        row = best_row(rows, objective, direction)
        out.append(Scored(tid, _STATES.get(t.status, "failed"), None if row is None else int(row["epoch"]),
                          None if row is None else clean_float(row[objective])))
    return out


def best_of(scored: Iterable[Scored], direction: str) -> Scored | None:
    """The best trial with a score, or None when no trial has one."""
    top = rank(scored, direction)
    return top[0] if top and top[0].score is not None else None
