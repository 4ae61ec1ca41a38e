"""Leases on trials, so a worker that dies loses nothing and blocks no one.

Keras Tuner's chief waits forever for a worker that died: its trial stays
"ongoing" and its tuner id keeps the chief alive. Here the chief's oracle
remembers who holds each trial and when that worker last reported (it reports
after every epoch, through Keras Tuner's own `UpdateTrial` call). A monitor
thread puts a trial whose worker has been silent for longer than the lease
back into Keras Tuner's retry queue; the next free worker continues it from
its last epoch checkpoint on the shared project storage.

The reporter's id travels as one extra metric key (`lease/<worker id>`), so
no protocol changes are needed. A report from a worker that no longer holds
the trial is answered with status INVALID (STOPPED and IDLE answer an epoch
report with a rung decision, see `tuner.engine.rungs`): that worker drops the
trial before writing anything, so a late worker never overwrites newer state.
Workers with nothing to do while other trials still run are told IDLE rather
than STOPPED, so they stay to take over a trial whose lease runs out. They
ask again every few seconds; one silent for the lease is no longer waited
for, since Keras Tuner's chief exits only when no worker is left.
"""

from __future__ import annotations

import os
import threading
from typing import Any

LEASE_PREFIX = "lease/"
LEASES_FILE = "leases.json"


def lease_key(tuner_id: str) -> str:
    return f"{LEASE_PREFIX}{tuner_id}"


class LeaseMonitor(threading.Thread):
    """Checks the leases a few times per lease period, on the chief."""

    def __init__(self, oracle: Any, interval: float | None = None):
        super().__init__(name="lease-monitor", daemon=True)
        self.oracle = oracle
        self.interval = interval or max(0.5, min(10.0, oracle.lease_seconds / 4))
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.oracle.expire_leases()

    def stop(self) -> None:
        self._stop.set()


def read_leases(project: str) -> dict[str, dict[str, Any]]:
    from tuner.engine.storage import read_json

    leases = read_json(os.path.join(project, LEASES_FILE))
    return leases if isinstance(leases, dict) else {}
