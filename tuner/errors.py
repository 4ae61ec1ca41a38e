"""Errors split the way Keras Tuner splits them: what a user must fix (fatal,
exit code 2 with one line) and what only fails one trial (the search goes on)."""

from __future__ import annotations


class TunerError(Exception):
    """Bad input or state the user must fix. The CLI prints `str(e)` as one
    line and exits with `exit_code`; nothing already finished is touched."""

    exit_code = 2


class DataError(TunerError):
    """The data root, a split or a record cannot be read as Kaggle's format."""


class SpaceError(TunerError):
    """A search-space file is malformed: names the file, key and what is allowed."""


class ProjectError(TunerError):
    """A project directory is missing, locked, changed or incompatible."""


class TrialFailed(Exception):
    """One trial cannot go on (NaN loss, oversize model); the search continues."""


def op_error_line(error: BaseException) -> str:
    """One line for a TensorFlow error raised inside a graph: the message
    without 'Graph execution error:', the Python stack and the [[node]]
    lines, naming the op it failed at (its first line alone says nothing)."""
    import re

    text = getattr(error, "message", None) or str(error)
    node = re.search(r"Detected at node (\S+)", text)
    skip = ("Graph execution error", "Detected at node", "File ", "<stack traces", "[[")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(skip)]
    line = re.sub(r"\{\{[^}]*\}\}", "", lines[0] if lines else "").strip()
    line = re.sub(r"^Error in user-defined function .*? with iterator: \S+: ", "", line)
    where = f" (at {node.group(1)})" if node else ""
    return f"{type(error).__name__}: {line[:200] or 'no message'}{where}"
