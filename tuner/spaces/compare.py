"""Whether two spaces search the same thing: a fingerprint of the canonical
content, and a line per change between two versions."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Keys of `Space.to_dict` that only label a space: ignored by the
#: fingerprint and by `diff` (renaming or re-describing is not a change).
LABEL_KEYS = ("name", "description")


def _canonical(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in LABEL_KEYS}


def fingerprint(d: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a `Space.to_dict`, labels left out."""
    blob = json.dumps(_canonical(d), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


_ABSENT = object()


def _fmt(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two `Space.to_dict` outputs, one line per
    change (``parameters.learning_rate.max: 0.001 -> 0.01``). Labels (name,
    description) are not compared: `diff` is empty exactly when the
    fingerprints are equal."""
    lines: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if path.startswith("parameters.") and path.count(".") == 1:
                # a spec: report a change of kind (value -> values) as one line
                if _spec_kind(a) != _spec_kind(b):
                    lines.append(f"{path}: {_fmt(a)} -> {_fmt(b)}")
                    return
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{path}.{k}" if path else k)
            return
        if a is _ABSENT or b is _ABSENT or _norm(a) != _norm(b):
            lines.append(f"{path}: {_fmt(a)} -> {_fmt(b)}")

    walk(_canonical(old), _canonical(new), "")
    return lines


def _spec_kind(d: dict[str, Any]) -> str:
    return "fixed" if "value" in d else "choice" if "values" in d else "range"


def _norm(v: Any) -> Any:
    return json.dumps(v, sort_keys=True)
