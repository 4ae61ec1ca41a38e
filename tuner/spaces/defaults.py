"""Each dimension's and train setting's default, read from one place (the
table and `TrainConfig`): a dimension a space leaves out and one a trial saved
before it existed (an older project's trial.json) lacks get the same value in
the search, the refit and the export."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.spaces.space import TrainConfig
from tuner.spaces.table import Dimension, dimensions

#: Dimensions whose default is the `train` setting of the same name.
FROM_TRAIN = ("epochs", "batch_per_replica", "precision")

#: A `TrainConfig`, or its dict as a project's meta saved it, or None.
Train = TrainConfig | Mapping[str, Any] | None


def train_settings(train: Train = None) -> dict[str, Any]:
    """`train` as a dict, the settings it lacks (a project begun before they
    existed) at `TrainConfig`'s defaults."""
    if isinstance(train, TrainConfig):
        return train.to_dict()
    return {**TrainConfig().to_dict(), **dict(train or {})}


def default_value(dim: Dimension, train: Train = None) -> Any:
    """The value `dim` takes where a space or a trial leaves it out."""
    return train_settings(train)[dim.name] if dim.name in FROM_TRAIN else dim.default


def with_defaults(values: Mapping[str, Any], train: Train = None) -> dict[str, Any]:
    """`values` with every dimension of the table, the missing (or null) ones
    at their defaults; other keys (Keras Tuner's ``tuner/epochs`` ...) kept."""
    settings = train_settings(train)
    out = dict(values)
    for name, dim in dimensions().items():
        if out.get(name) is None:
            out[name] = default_value(dim, settings)
    return out
