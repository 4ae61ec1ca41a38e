"""When the time a user gave `--max-time` began: the start of the process.

A user whose server stops at a fixed time gives `--max-time` the time they
have, so the budget holds Python's start, the imports (TensorFlow's 5-15 s),
the data checks and the first build and trace, not only the trials. Read off
the kernel (`/proc/self/stat`), with the moment this module was imported as
the fallback where there is no /proc.
"""

from __future__ import annotations

import os
import time

_IMPORTED = time.monotonic()


def process_start() -> float:
    """The process's start in `time.monotonic()`'s clock (both count from
    the boot on Linux). A process that lived a minute before importing this
    module is no command run for a budget (a notebook's kernel): there the
    import's moment counts."""
    try:
        with open("/proc/self/stat", "rb") as f:
            # Field 22 (starttime, in clock ticks since boot) follows the
            # command name, which may itself hold spaces and parentheses.
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED
    now = time.monotonic()
    before_import = age - (now - _IMPORTED)
    if not 0.0 <= before_import < 60.0:  # a long-lived process (a notebook's kernel), or clocks that disagree
        return _IMPORTED
    return now - age
