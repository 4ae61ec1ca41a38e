"""A stop asked for by a deadline or a signal."""

from __future__ import annotations

import signal
import time
from typing import Any


class Stopper:
    """A stop asked for by a deadline or a signal, honoured at the next epoch
    end (after the checkpoint), so no finished work is lost."""

    def __init__(self, max_time: float | None = None):
        self.deadline = time.monotonic() + max_time if max_time else None
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def requested(self, next_seconds: float | None = None) -> str | None:
        """The reason to stop, if any. `next_seconds`: what the next epoch
        is expected to take; when it would end past the deadline the stop
        comes now, so that --max-time is a ceiling (a notebook's "stop when
        the next epoch would overrun") and not a floor plus one epoch."""
        if self.reason is None and self.deadline is not None:
            now = time.monotonic()
            if now >= self.deadline:
                self.reason = "max-time reached"
            elif next_seconds is not None and now + next_seconds > self.deadline:
                self.reason = (f"max-time reached: {self.deadline - now:.0f}s left, "
                               f"less than an epoch (about {next_seconds:.0f}s)")
        return self.reason

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


