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

    def requested(self) -> str | None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "max-time reached"
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


