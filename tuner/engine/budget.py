"""What the time left buys: seconds per epoch measured on the trials already
run, per backbone and image size, with the first epoch of each run apart
(it holds the model build, the checkpoint restore and graph tracing)."""

from __future__ import annotations

import statistics
import time
from typing import Any


def cost_key(values: dict[str, Any]) -> str:
    """Trials with the same backbone and image size cost about the same."""
    return f"{values.get('backbone', '?')}@{values.get('image_size', '?')}"


class EpochCosts:
    def __init__(self) -> None:
        self.first: dict[str, list[float]] = {}
        self.later: dict[str, list[float]] = {}

    def add(self, key: str, seconds: float, first: bool) -> None:
        (self.first if first else self.later).setdefault(key, []).append(round(float(seconds), 3))

    def keys(self) -> set[str]:
        return set(self.first) | set(self.later)

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
        """Cost of one run of `epochs` epochs (a fresh start or a resume);
        `warm`: its graph is already traced in this process, so its first
        epoch costs about what a later one does."""
        est = self.estimate(key)
        if est is None or epochs <= 0:
            return None if est is None else 0.0
        first, later = est
        return (later if warm else first) + (epochs - 1) * later

    def get_state(self) -> dict[str, Any]:
        return {"first": self.first, "later": self.later}

    def set_state(self, state: dict[str, Any]) -> None:
        self.first = {k: list(v) for k, v in state.get("first", {}).items()}
        self.later = {k: list(v) for k, v in state.get("later", {}).items()}


class Deadline:
    """The end of this run's --max-time, in this process's monotonic clock."""

    def __init__(self, at: float | None = None):
        self.at = at

    def left(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s >= 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{s:.0f}s"
