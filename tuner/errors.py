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
