"""The class of every record of each split and the records' ids: the real
data's class balance, scaled down."""

from __future__ import annotations

import numpy as np

from tuner.errors import TunerError
from tuner.data.classes import NUM_CLASSES, TRAIN_CLASS_COUNTS

#: Sizes of the real splits; the demo scales them by `scale`.
REAL_VAL = 3712
REAL_TEST = 7382
MIN_TRAIN_PER_CLASS = 3
MIN_VAL_PER_CLASS = 2


def _balanced(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels as even over the classes as possible, extras to random classes."""
    per, extra = divmod(n, NUM_CLASSES)
    counts = np.full(NUM_CLASSES, per)
    counts[rng.choice(NUM_CLASSES, size=extra, replace=False)] += 1
    return rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))


def split_labels(scale: float, seed: int) -> dict[str, np.ndarray]:
    """The class of every record of each split, in file order."""
    if not scale > 0:
        raise TunerError(f"demo scale must be > 0, got {scale}")
    rng = np.random.default_rng([seed, 0x1AB])
    train_counts = [max(MIN_TRAIN_PER_CLASS, round(c * scale)) for c in TRAIN_CLASS_COUNTS]
    train = rng.permutation(np.repeat(np.arange(NUM_CLASSES), train_counts))
    val = _balanced(max(MIN_VAL_PER_CLASS * NUM_CLASSES, round(REAL_VAL * scale)), rng)
    test = _balanced(max(1, round(REAL_TEST * scale)), rng)
    return {"train": train, "val": val, "test": test}


def _ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct 9-character lowercase hex ids."""
    seen: set[int] = set()
    out: list[str] = []
    while len(out) < n:
        for x in rng.integers(0, 16**9, size=2 * (n - len(out)) + 8).tolist():
            if x not in seen:
                seen.add(x)
                out.append(f"{x:09x}")
                if len(out) == n:
                    break
    return out
