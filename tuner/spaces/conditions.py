"""Which dimensions a trial's model reads only for some value of another.

Why: `plateau_factor` does nothing in a trial whose callback is
`linear_decay`. A sampler told that trial's plateau_factor learns from a
value that had no effect (TPE then models noise in 2 of the demo space's 5
dimensions), and `status` shows a setting the trial never used. The table
mirrors `tuner.model.hypermodel`: where that reads a value under a
condition, the condition is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_LR_SCHEDULE = ("lr_start", "lr_min", "lr_max", "lr_rampup_epochs", "lr_sustain_epochs", "lr_decay")

#: dimension -> (the dimension it depends on, the values of that one where it is read)
CONDITIONS: dict[str, tuple[str, frozenset]] = {
    "es_patience": ("callback", frozenset({"early_stopping"})),
    "plateau_patience": ("callback", frozenset({"reduce_lr_on_plateau"})),
    "plateau_factor": ("callback", frozenset({"reduce_lr_on_plateau"})),
    **{name: ("callback", frozenset({"lr_schedule"})) for name in _LR_SCHEDULE},
    "fine_tune_blocks": ("fine_tune", frozenset({"top"})),
    "weight_decay": ("optimizer", frozenset({"adamw", "sgd"})),
}


def is_active(name: str, values: Mapping[str, Any]) -> bool:
    """Whether a trial with `values` reads `name`. A parent missing from
    `values` counts as active: what cannot be decided is kept."""
    cond = CONDITIONS.get(name)
    if cond is None:
        return True
    parent, where = cond
    return parent not in values or values[parent] in where


def parents_first(names: Iterable[str]) -> list[str]:
    """`names` in their order, except that a dimension comes after the one it
    depends on: a define-by-run sampler must draw the callback before it can
    tell whether plateau_factor is drawn at all."""
    names = list(names)
    children = [n for n in names if n in CONDITIONS]
    return [n for n in names if n not in CONDITIONS] + children
