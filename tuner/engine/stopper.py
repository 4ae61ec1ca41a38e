"""A stop asked for by a deadline or a signal."""

from __future__ import annotations

import signal
import time
from collections import deque
from typing import Any


class Stopper:
    """A stop asked for by a deadline or a signal, honoured at the next epoch
    end (after the checkpoint), so no finished work is lost.

    `started`: when the budget began (`tuner.engine.clock.process_start()`
    for a command: its imports and data checks count); `budget.left()` is
    the time left for training, the stop's own cost (`budget.tail`) taken
    off, so that the command exits by `started + max_time`."""

    def __init__(self, max_time: float | None = None, started: float | None = None):
        from tuner.engine.budget import EXIT_SECONDS, Deadline

        start = time.monotonic() if started is None else started
        self.started = start
        self.budget = Deadline(start + max_time if max_time else None, tail=EXIT_SECONDS)
        self.reason: str | None = None
        self._flushes: deque[float] = deque(maxlen=5)  # the last few checkpoint writes' seconds
        self._old: dict[int, Any] = {}

    @property
    def deadline(self) -> float | None:
        return self.budget.at

    def note_flush(self, seconds: float | None) -> None:
        """The last checkpoint write took `seconds`: stopping waits for one.
        The slowest of the last few counts: on a shared disk one write in
        several can take many times the others (the stop's wait is the one
        write that happens to be in flight)."""
        from tuner.engine.budget import EXIT_SECONDS

        if seconds is not None:
            self._flushes.append(float(seconds))
            self.budget.tail = EXIT_SECONDS + max(self._flushes)

    def requested(self, next_seconds: float | None = None, what: str = "an epoch") -> str | None:
        """The reason to stop, if any. `next_seconds`: what the next epoch
        is expected to take; when it would end past the deadline the stop
        comes now, so that --max-time is a ceiling (a notebook's "stop when
        the next epoch would overrun") and not a floor plus one epoch."""
        left = self.budget.left()
        if self.reason is None and left is not None:
            if left <= 0:
                self.reason = "max-time reached"
            elif next_seconds is not None and next_seconds > left:
                self.reason = f"max-time reached: {left:.0f}s left, less than {what} (about {next_seconds:.0f}s)"
        return self.reason

    def stop(self, reason: str) -> None:
        """Stop for `reason` unless a stop is already asked for."""
        if self.reason is None:
            self.reason = reason

    def _handle(self, signum, frame):
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.reason = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        print(f"\n{self.reason}: stopping at the end of this epoch (Ctrl-C again to stop at once)", flush=True)

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


