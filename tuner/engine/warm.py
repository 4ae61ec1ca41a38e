"""Traced models kept for the next trial of the same graph.

Building a Keras model is cheap; tracing its train step is not. ResNet50V2's
first batch at 32 px takes about 36 s on 2 CPU cores (most of it tracing the
optimizer's update of each of its 348 variables), while its model builds in
under 2 s: in a short budget the tracing of each new trial costs several
epochs. Two trials whose values differ only in what the traced step reads
from a variable (the learning rate) or what runs outside it (the trial's
callback, the input pipeline's augmentations, the epoch count) run the same
graph. The later trial is still built as if alone (same seed, so the same
initial weights), then that fresh state is copied into the earlier trial's
traced model, which trains it: the numbers are those of a fresh build, the
tracing is skipped.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from tuner.data.augment import AUGMENTATIONS

#: dimensions the traced train and test steps do not depend on
NOT_IN_GRAPH = frozenset({
    "learning_rate",  # an optimizer variable
    "callback", "es_patience", "plateau_patience", "plateau_factor",
    "lr_start", "lr_min", "lr_max", "lr_rampup_epochs", "lr_sustain_epochs", "lr_decay",
    "epochs",
    *AUGMENTATIONS,  # applied in the tf.data pipeline
})


def graph_key(values: dict[str, Any]) -> str:
    """Trials with equal keys trace the same train step."""
    kept = {k: v for k, v in values.items() if k not in NOT_IN_GRAPH and not k.startswith("tuner/")}
    return json.dumps(kept, sort_keys=True, default=str)


def adopt(warm, fresh) -> bool:
    """Give the traced model `warm` the whole state of `fresh`, just built
    for this trial: weights, BatchNorm statistics, random-seed states,
    optimizer step, slots and learning rate. False (nothing changed) when
    their variables do not match one to one; then `fresh` trains."""
    if type(warm.optimizer) is not type(fresh.optimizer):
        return False
    for m in (warm, fresh):
        if not m.optimizer.built:
            m.optimizer.build(m.trainable_variables)
    # `variables` holds the seed generators' states too (Dropout's masks):
    # without them the warm model would go on with the last trial's draws.
    pairs = list(zip(warm.variables, fresh.variables)) + list(zip(warm.optimizer.variables,
                                                                  fresh.optimizer.variables))
    if (len(warm.variables) != len(fresh.variables)
            or len(warm.optimizer.variables) != len(fresh.optimizer.variables)
            or any(tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype for a, b in pairs)):
        return False
    for a, b in pairs:
        a.assign(b)
    return True


class WarmModels:
    """Traced models not in use, one per graph key, the `size` most recently
    handed back."""

    def __init__(self, size: int = 1):
        self.size = size
        self._models: OrderedDict[str, Any] = OrderedDict()

    def put(self, key: str, model) -> None:
        self._models.pop(key, None)
        self._models[key] = model
        while len(self._models) > self.size:
            self._models.popitem(last=False)

    def take(self, key: str):
        return self._models.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self._models
