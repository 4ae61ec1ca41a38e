"""What the time left buys: seconds per epoch measured on the trials already
run, per kind of trial (`cost_key`), with the first epoch of each run apart:
it also holds what a run costs before training starts (the model build, the
state copy into a reused graph, the checkpoint restore, refilling the
decoded-image cache and the shuffle buffer) and, unless the run reuses a
graph traced in this process, the tracing. A run that reuses one ("warm")
is measured apart from one that traces ("cold")."""

from __future__ import annotations

import statistics
import time
from typing import Any


def cost_key(values: dict[str, Any]) -> str:
    """Trials that agree on what sets an epoch's time (the backbone, the
    image size, how much of the backbone trains, the batch, the precision)
    cost about the same; the learning rate or a callback change nothing."""
    fine_tune = values.get("fine_tune", "full") if values.get("weights", "none") not in ("none", None) else "full"
    if fine_tune == "top":
        fine_tune = f"top{values.get('fine_tune_blocks', '')}"
    return (f"{values.get('backbone', '?')}@{values.get('image_size', '?')}/{fine_tune}"
            f"/b{values.get('batch_per_replica', '?')}/{values.get('precision') or 'auto'}")


#: how a run began: its first epoch is counted apart by kind
COLD, WARM, LATER = "cold", "warm", "later"


class EpochCosts:
    def __init__(self) -> None:
        self.first: dict[str, list[float]] = {}  # a run's first epoch with its build and tracing
        self.warm: dict[str, list[float]] = {}  # a run's first epoch in a graph traced before
        self.later: dict[str, list[float]] = {}

    def add(self, key: str, seconds: float, kind: str) -> None:
        table = {COLD: self.first, WARM: self.warm, LATER: self.later}[kind]
        table.setdefault(key, []).append(round(float(seconds), 3))

    def keys(self) -> set[str]:
        return set(self.first) | set(self.later) | set(self.warm)

    def estimate(self, key: str) -> tuple[float, float] | None:
        """(first epoch of a run, each later epoch) in seconds, or None when
        no trial of this kind has finished an epoch yet."""
        first, later = self.first.get(key), self.later.get(key)
        if not first and not later:
            return None
        f = statistics.median(first) if first else None
        e = statistics.median(later) if later else None
        if f is None:
            f = e
        if e is None:
            e = f  # only first epochs seen: an upper bound
        return f, e

    def seconds(self, key: str, epochs: int, warm: bool = False) -> float | None:
        """Cost of one run of `epochs` epochs (a fresh start or a resume),
        from the moment it is handed out to its last epoch's end; `warm`:
        its graph is kept traced in this process. A warm run not measured
        yet is counted as a cold one (an upper bound: the budget is a
        ceiling)."""
        est = self.estimate(key)
        if est is None or epochs <= 0:
            return None if est is None else 0.0
        first, later = est
        if warm and self.warm.get(key):
            first = statistics.median(self.warm[key][-5:])
        return first + (epochs - 1) * later

    def get_state(self) -> dict[str, Any]:
        return {"first": self.first, "warm": self.warm, "later": self.later}

    def set_state(self, state: dict[str, Any]) -> None:
        self.first = {k: list(v) for k, v in state.get("first", {}).items()}
        self.warm = {k: list(v) for k, v in state.get("warm", {}).items()}
        self.later = {k: list(v) for k, v in state.get("later", {}).items()}


#: seconds from the last epoch's end to the process's exit, the checkpoint
#: flush apart: the trial's and the oracle's files, TensorBoard's writer,
#: the search's last lines, and the interpreter's exit (which `python -m
#: tuner search` skips with os._exit once everything is on disk)
EXIT_SECONDS = 2.0


class Deadline:
    """The end of this run's --max-time, in this process's monotonic clock,
    less what stopping takes (`tail`: the last checkpoint's flush and the
    exit), so that the command itself ends by `at`."""

    def __init__(self, at: float | None = None, tail: float = 0.0):
        self.at = at
        self.tail = tail

    def left(self) -> float | None:
        return None if self.at is None else self.at - self.tail - time.monotonic()


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s >= 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{s:.0f}s"
