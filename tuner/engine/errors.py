"""Errors that travel through Keras Tuner's trial loop.

Keras Tuner re-raises a `FatalError` and swallows everything else into the
trial, so a stop or a user's error is carried as a `FatalError` subclass."""

from __future__ import annotations

import keras_tuner as kt


class Fatal(kt.errors.FatalError):
    """Carries a TunerError (or a stop) through Keras Tuner's loop, which
    re-raises FatalError and swallows everything else into the trial."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


class Stopped(kt.errors.FatalError):
    """A clean stop (deadline or signal) at an epoch end or between trials."""


class LeaseLost(Exception):
    """This worker no longer holds the trial: drop it, write nothing."""
