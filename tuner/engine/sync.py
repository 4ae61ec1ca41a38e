"""Keras Tuner's `synchronized`, with the lock released on every path.

Keras Tuner's own decorator releases the oracle's lock only when the call
returns: an exception inside (a full disk in `_save_trial`, its own
"consecutive failures" RuntimeError in `end_trial`) leaves it held, and the
chief's lease monitor, its exit check and every later worker call then wait
forever. This one shares Keras Tuner's LOCKS and THREADS, so Keras Tuner's
decorated methods called inside ours (through `super()`) and its own
`exit_chief` still take the same lock and nest as before.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from keras_tuner.src.engine.oracle import LOCKS, THREADS


def synchronized(func: Callable[..., Any]) -> Callable[..., Any]:
    """One call at a time per oracle (re-entrant within a thread)."""

    @functools.wraps(func)
    def wrapped(oracle, *args, **kwargs):
        me = threading.current_thread().name
        if THREADS[oracle] == me:  # nested inside a call that holds the lock
            return func(oracle, *args, **kwargs)
        with LOCKS[oracle]:
            THREADS[oracle] = me
            try:
                return func(oracle, *args, **kwargs)
            finally:
                THREADS[oracle] = None

    return wrapped
