"""Which epochs of a trial validate: `train.validate_every` in a space.

In the original study's schedule an epoch trains a few steps and validates
the whole split: in `default` (10 steps of 16 images, 3,712 val images) most
of each epoch was validation. Validating every k epochs on the whole split
keeps every score comparable (what `best` ranks and `export` measures is
always the whole split); the epochs that decide are always validated: each
early-termination rung (a decision on an epoch with no score would be a
decision on nothing) and the last epoch of the run asked for (the trial's
final score). The schedule is a function of the epoch number alone, so a
trial resumed after a kill validates the same epochs.

Pure Python: the hypermodel computes it from the data's counts, the tests and
the README's estimate from numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: The most of a trial's train + validation time `auto` lets validation take.
MAX_SHARE = 0.2
#: Seconds to validate one image over seconds to train on one, by how much
#: of the backbone trains: a forward pass against forward and backward (about
#: 1/3 by the usual rule when it all trains; measured 0.18-0.20 on this CPU),
#: while a frozen backbone's training step is little more than its forward
#: pass (measured 0.56 with 2 top blocks trained, 1.1 frozen: BENCHMARKS.md,
#: "Validation's share of the time"). Rounded up: `auto` errs towards less.
VAL_COSTS = {"full": 1 / 3, "top": 0.6, "frozen": 1.0}
VAL_COST = VAL_COSTS["full"]


def validation_epochs(epochs: int, every: int, rungs: Iterable[int] = ()) -> list[int]:
    """The 1-based epochs in 1..`epochs` that validate: every `every`-th, the
    rungs, and the last."""
    k = max(1, int(every))
    out = set(range(k, epochs + 1, k)) | {int(r) for r in rungs if 1 <= int(r) <= epochs} | {epochs}
    return sorted(e for e in out if e >= 1)


def share(epochs: int, every: int, rungs: Iterable[int], val_images: int, train_images: int,
          cost: float = VAL_COST) -> float:
    """Estimated fraction of a full-length trial's train + validation time
    spent validating."""
    val = len(validation_epochs(epochs, every, rungs)) * cost * val_images
    train = epochs * train_images
    return val / (val + train) if val + train > 0 else 0.0


def search_share(epochs: int, every: int, rungs: Iterable[int], eta: int, val_images: int, train_images: int,
                 cost: float = VAL_COST) -> float:
    """Estimated fraction of a whole search's train + validation time spent
    validating, under hyperband's rungs: of the trials reaching a rung,
    1/eta go on and the rest stop there, each having paid the validations up
    to its last epoch (a rung always validates: a trial stopped at an early
    rung spends more of its time validating than a full one)."""
    rungs = sorted(int(r) for r in rungs if 1 <= int(r) < epochs)
    ends = rungs + [epochs]
    at = validation_epochs(epochs, every, rungs)
    val = train = 0.0
    for i, end in enumerate(ends):
        share_of_trials = eta ** -i * (1 - 1 / eta) if i < len(rungs) else eta ** -len(rungs)
        val += share_of_trials * sum(1 for e in at if e <= end) * cost * val_images
        train += share_of_trials * end * train_images
    return val / (val + train) if val + train > 0 else 0.0


def auto_every(epochs: int, rungs: Iterable[int], val_images: int, train_images: int,
               max_share: float = MAX_SHARE, cost: float = VAL_COST) -> int:
    """The smallest k whose schedule keeps validation at or below `max_share`
    of a full-length trial (by `share`); `epochs` (the rungs and the last
    epoch only) when none does."""
    rungs = list(rungs)
    for k in range(1, max(1, epochs) + 1):
        if share(epochs, k, rungs, val_images, train_images, cost) <= max_share + 1e-12:
            return k
    return max(1, epochs)


def describe(epochs: int, every: int, rungs: Iterable[int], val_images: int, train_images: int,
             cost: float = VAL_COST, eta: int | None = None) -> str:
    """'validation every 9 epochs (and at each rung and the last): 7 of 40
    epochs, about 19% of a trial's time (...)' for the search's start; with
    hyperband's `eta`, the whole search's share too."""
    rungs = list(rungs)
    at = validation_epochs(epochs, every, rungs)
    pct = 100 * share(epochs, every, rungs, val_images, train_images, cost)
    how = "every epoch" if every == 1 else f"every {every} epochs (and at each rung and the last)"
    whole = ""
    if eta and rungs:
        whole = search_share(epochs, every, rungs, eta, val_images, train_images, cost)
        whole = f", about {math.floor(100 * whole + 0.5)}% of the search's with the rungs' stops"
    return (f"validation {how}: {len(at)} of {epochs} epochs, about {math.floor(pct + 0.5)}% of a full trial's "
            f"time{whole} ({val_images} val images against {train_images} trained per epoch)")
