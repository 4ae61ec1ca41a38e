"""Choosing an ensemble of trained trials from their validation predictions,
and measuring it honestly.

Greedy forward selection with replacement (Caruana et al. 2004, as
auto-sklearn builds its ensembles): start from the best single model, then
repeatedly add the member (possibly one already in) whose addition gives the
best macro F1 of the averaged probabilities, up to `k` additions. Weights are
the counts.

A choice scored on the images it was chosen on flatters it. `cross_fitted`
splits the validation images into two halves, chooses on one and predicts
the other, then swaps: every image is predicted by an ensemble (and by a
"best single trial") chosen without it, and the two macro F1s over the whole
split compare fairly.

Pure numpy and scikit-learn: the predictions come from `tuner.results.export`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


def macro_f1(y: np.ndarray, probs: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, np.argmax(probs, axis=-1), labels=list(range(num_classes)), average="macro",
                          zero_division=0))


@dataclass(frozen=True)
class Selection:
    #: member index -> weight (how many times greedy selection picked it)
    weights: dict[int, int]

    def average(self, probs: list[np.ndarray] | np.ndarray) -> np.ndarray:
        total = sum(self.weights.values())
        return sum(probs[i] * (w / total) for i, w in self.weights.items())

    @property
    def single(self) -> bool:
        return len(self.weights) == 1


def greedy_select(probs: list[np.ndarray] | np.ndarray, y: np.ndarray, k: int, num_classes: int) -> Selection:
    """Up to `k` picks (with replacement) among the candidates' probabilities
    `probs[i]` (images x classes) for labels `y`; stops early when no
    addition improves the score (ties keep the smaller ensemble)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    scores = [macro_f1(y, p, num_classes) for p in probs]
    first = int(np.argmax(scores))  # ties: the earlier candidate (the better-ranked trial)
    picks = [first]
    total = np.array(probs[first], dtype=np.float64)
    best = scores[first]
    while len(picks) < k:
        trial = [macro_f1(y, (total + p) / (len(picks) + 1), num_classes) for p in probs]
        i = int(np.argmax(trial))
        if trial[i] <= best:
            break
        picks.append(i)
        total += probs[i]
        best = trial[i]
    return Selection(dict(Counter(picks)))


@dataclass(frozen=True)
class CrossFit:
    ensemble_f1: float
    single_f1: float

    @property
    def gain(self) -> float:
        return self.ensemble_f1 - self.single_f1


def halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def cross_fitted(probs: list[np.ndarray] | np.ndarray, y: np.ndarray, k: int, num_classes: int,
                 seed: int = 0) -> CrossFit:
    """Macro F1 over the whole split of the ensemble and of the best single
    candidate, each image predicted by a choice made on the other half."""
    probs = [np.asarray(p) for p in probs]
    a, b = halves(len(y), seed)
    ens = np.zeros_like(probs[0], dtype=np.float64)
    one = np.zeros_like(probs[0], dtype=np.float64)
    for fit, held in ((a, b), (b, a)):
        chosen = greedy_select([p[fit] for p in probs], y[fit], k, num_classes)
        best_single = next(iter(chosen.weights))  # greedy selection starts from it
        ens[held] = chosen.average([p[held] for p in probs])
        one[held] = probs[best_single][held]
    return CrossFit(macro_f1(y, ens, num_classes), macro_f1(y, one, num_classes))


def member_at(model, size: int, name: str):
    """`model` (raw 0..255 images at its own size) taking images at `size`:
    a Keras `Resizing` in front when the sizes differ."""
    import keras

    own = int(model.input_shape[1])
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs if own == size else keras.layers.Resizing(own, own, name=f"{name}_resize")(inputs)
    out = model(x)
    if isinstance(out, (list, tuple)):  # a functional model built with outputs=[...]
        out = out[0]
    return keras.Model(inputs, out, name=name)


def ensemble_model(members: list, weights: list[float], size: int):
    """One Keras model averaging its members' softmax outputs with `weights`
    (normalised here), from built-in layers only, so `keras.models.load_model`
    reloads it without custom objects."""
    import keras

    total = float(sum(weights))
    inputs = keras.Input((size, size, 3), name="image")
    outs = [keras.layers.Rescaling(w / total, name=f"weight_{i}")(m(inputs))
            for i, (m, w) in enumerate(zip(members, weights, strict=True))]
    out = outs[0] if len(outs) == 1 else keras.layers.Add(name="ensemble")(outs)
    return keras.Model(inputs, out, name="flower_ensemble")
