"""Where a search's time went: training, validation, builds, tracing,
checkpoint waits, restores, the start-up and the rest.

A budget is only as good as what it is spent on; in the original study's
schedule most of an epoch is validation, which nothing showed. Each run of
`search` (one process) keeps one ledger and adds it to the project's
`time.json` at its end, one record per run and per tuner id (a worker's
runs beside the chief's), which `status` sums up. Pure bookkeeping: no
TensorFlow, no Keras.

Tracing has no callback of its own: it is the excess of a run's first epoch
(its train and its validation part apart) over the median of the later
epochs, which also holds the refill of the decoded-image cache and the
shuffle buffer ("tracing and warm-up").
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

PARTS = ("startup", "build", "restore", "setup", "tracing", "training", "validation", "checkpoint", "cleanup",
         "other")
LABELS = {
    "startup": "start-up (imports, data checks)",
    "build": "builds",
    "restore": "restores",
    "setup": "input pipelines and fit's set-up",
    "tracing": "tracing and warm-up",
    "training": "training",
    "validation": "validation",
    "checkpoint": "checkpoint waits",
    "cleanup": "freeing a finished run's graphs",
    "other": "other and idle",
}
TIME_FILE = "time.json"


class TimeLedger:
    def __init__(self) -> None:
        self.parts: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        # later epochs' train and validation seconds, for a run of one epoch
        self._later: list[float] = []
        self._later_val: list[float] = []

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] += max(0.0, float(seconds))

    @contextlib.contextmanager
    def timing(self, part: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.add(part, time.monotonic() - t0)

    def add_run(self, epochs: list[tuple[float, float]], first_of_build: bool) -> None:
        """One run's epochs as (train, validation) seconds. The first epoch
        of a run whose model was built for it holds the tracing: its excess
        over the median later epoch goes there (a run of a kept, traced
        model still refills its caches: the same rule). Train and validation
        parts apart, and the validation part over the epochs that validated
        only: with `train.validate_every` the evaluation is traced at the
        run's first validated epoch, which need not be its first."""
        if not epochs:
            return
        self._first("training", [t for t, _ in epochs], self._later)
        self._first("validation", [v for _, v in epochs if v > 0], self._later_val)

    def _first(self, part: str, seconds: list[float], seen: list[float]) -> None:
        if not seconds:
            return
        later = seconds[1:] or seen[-5:]
        seen.extend(seconds[1:])
        for s in seconds[1:]:
            self.add(part, s)
        first = seconds[0]
        if later:
            base = statistics.median(later)
            self.add("tracing", max(0.0, first - base))
            first = min(first, base)
        self.add(part, first)

    def close(self, total: float) -> dict[str, float]:
        """The record of a run of `total` seconds: what no part holds is
        "other and idle" (reports, between trials, a worker's waits)."""
        parts = {k: round(v, 2) for k, v in self.parts.items() if k != "other"}
        parts["other"] = round(max(0.0, total - sum(parts.values())), 2)
        return {"total": round(total, 2), **parts}


def record_run(project: str, tuner_id: str, record: dict[str, Any]) -> None:
    """Add one run's record to the project's time.json (local or gs://)."""
    from tuner.engine import storage
    from tuner.engine.checkpoint import atomic_write

    path = f"{project.rstrip('/')}/{TIME_FILE}"
    data = storage.read_json(path)
    data = data if isinstance(data, dict) else {}
    data.setdefault(tuner_id, []).append({"ended": time.strftime("%Y-%m-%dT%H:%M:%S"), **record})
    atomic_write(path, json.dumps(data, indent=1))


def load_runs(project: str) -> list[dict[str, Any]]:
    """Every run's record, all tuner ids together."""
    from tuner.engine import storage

    data = storage.read_json(f"{project.rstrip('/')}/{TIME_FILE}")
    if not isinstance(data, dict):
        return []
    return [r for runs in data.values() if isinstance(runs, list) for r in runs if isinstance(r, dict)]


def totals(runs: list[dict[str, Any]]) -> dict[str, float]:
    out = dict.fromkeys(("total", *PARTS), 0.0)
    for r in runs:
        for k in out:
            out[k] += float(r.get(k) or 0.0)
    return out


def describe(parts: dict[str, float], runs: int | None = None) -> str | None:
    """'7m02s (2 runs): training 41%, validation 30%, ...', largest first."""
    from tuner.engine.budget import fmt_seconds

    total = parts.get("total") or 0.0
    if total <= 0:
        return None
    shares = sorted(((parts.get(k, 0.0), k) for k in PARTS), reverse=True)
    bits = [f"{LABELS[k]} {100 * v / total:.0f}%" for v, k in shares if v >= 0.005 * total]
    where = f" ({runs} runs)" if runs and runs > 1 else ""
    return f"{fmt_seconds(total)}{where}: " + ", ".join(bits)
