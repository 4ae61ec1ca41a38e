"""Durations as people write them: '2h45m', '90m', '1.5h', '30s' or seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """Seconds; a ValueError that says what is accepted otherwise."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = _DURATION.findall(t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise ValueError(f"invalid duration {text!r}; use e.g. 2h45m, 90m, 30s")
    scale = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(float(n) * scale[u] for n, u in parts)
