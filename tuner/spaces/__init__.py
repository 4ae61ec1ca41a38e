"""Search-space files: what a search varies, in W&B sweep vocabulary.

A space is a YAML file (the shipped ones live in ``search_spaces/``)::

    name: default
    method: bayes                 # random | bayes | hyperband
    metric: {name: val_f1, goal: maximize}
    run_cap: 20                   # trials
    train: {epochs: 90, steps_per_epoch: 10, batch_per_replica: 16}
    parameters:
      optimizer:     {values: [nadam, rmsprop, adam]}          # choice
      learning_rate: {min: 1.0e-5, max: 1.0e-3,
                      distribution: log_uniform_values}        # range
      image_size:    {value: 192}                              # fixed
      weights:       imagenet                                  # fixed (bare)

`load_space` validates the whole file up front, before anything slow runs:
every problem is one `SpaceError` line naming the file, the key and what is
allowed. The resulting `Space` carries *every* dimension of `DIMENSIONS`
(the ones a file leaves out are fixed at their defaults), so a hypermodel can
rely on finding each name in the values `Space.declare` returns.

Importing this module imports neither TensorFlow nor Keras Tuner:
`Param.declare` imports keras_tuner only when called.
"""

from __future__ import annotations

from typing import Any

from tuner.spaces.compare import LABEL_KEYS, diff, fingerprint
from tuner.spaces.defaults import FROM_TRAIN, default_value, train_settings, with_defaults
from tuner.spaces.files import SHIPPED_DIR, list_spaces, load_space, parse_space, resolve
from tuner.spaces.space import HyperbandConfig, Param, Space, TrainConfig
from tuner.spaces.table import (
    CACHE_VALUES,
    DISTRIBUTIONS,
    EARLY_KEYS,
    GOALS,
    HYPERBAND_KEYS,
    METHODS,
    METRIC_KEYS,
    METRICS,
    PRECISIONS,
    SPEC_KEYS,
    TOP_KEYS,
    TRAIN_KEYS,
    WEIGHT_SUFFIXES,
    Dimension,
    dimensions,
)

__all__ = [
    "CACHE_VALUES", "DIMENSIONS", "DISTRIBUTIONS", "EARLY_KEYS", "FROM_TRAIN", "GOALS", "HYPERBAND_KEYS",
    "LABEL_KEYS", "METHODS", "METRIC_KEYS", "METRICS", "PRECISIONS", "SHIPPED_DIR", "SPEC_KEYS",
    "TOP_KEYS", "TRAIN_KEYS", "WEIGHT_SUFFIXES", "Dimension", "HyperbandConfig", "Param", "Space",
    "TrainConfig", "default_value", "diff", "dimensions", "fingerprint", "list_spaces", "load_space",
    "parse_space", "resolve", "train_settings", "with_defaults",
]


def __getattr__(name: str) -> Any:
    # DIMENSIONS is computed on access (PEP 562): it needs the backbone
    # registry and the augmentation metadata, which may still be growing.
    if name == "DIMENSIONS":
        return dimensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
