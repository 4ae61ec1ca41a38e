"""Ensemble selection and its cross-fitted measurement (tuner/results/ensemble.py):
pure numpy, exact small cases."""

from __future__ import annotations

import numpy as np

from tuner.results.ensemble import cross_fitted, greedy_select, halves, macro_f1

C = 4


def onehot(labels, num_classes: int = C) -> np.ndarray:
    return np.eye(num_classes)[np.asarray(labels)]


def test_greedy_selection_starts_from_the_best_single_and_adds_what_helps():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    # a knows classes 0 and 1 and is undecided on the others; b knows 1, 2
    # and 3 and leans weakly to 1 on class 0: each alone errs, together they do not.
    a = onehot([0, 1, 0, 0, 0, 1, 0, 0]) * 0.6 + 0.1
    a[y >= 2] = 0.25
    b = onehot([1, 1, 2, 3, 1, 1, 2, 3]) * 0.6 + 0.1
    b[y == 0] = [0.2, 0.4, 0.2, 0.2]
    noise = np.full((8, C), 0.25)
    noise[:, 0] += 0.01
    sel = greedy_select([noise, b, a], y, k=5, num_classes=C)
    assert list(sel.weights)[0] == 1  # b scores best alone
    assert set(sel.weights) == {1, 2}  # noise never helps
    assert macro_f1(y, sel.average([noise, b, a]), C) == 1.0
    assert greedy_select([noise, b, a], y, k=1, num_classes=C).weights == {1: 1}


def test_selection_stops_when_nothing_improves():
    y = np.array([0, 1, 2, 3])
    perfect = onehot(y)
    assert greedy_select([perfect, onehot([1, 1, 1, 1])], y, k=3, num_classes=C).weights == {0: 1}


def test_cross_fitting_never_scores_a_choice_on_the_images_it_was_made_on():
    """Candidate 0 is right on half A only and candidate 1 on half B only:
    chosen on the images they score, either would look perfect; chosen on one
    half and scored on the other, each is wrong everywhere."""
    n = 40
    y = np.arange(n) % C
    a, b = halves(n, seed=0)
    wrong = (y + 1) % C
    c0, c1 = onehot(wrong), onehot(wrong)
    c0[a] = onehot(y[a])
    c1[b] = onehot(y[b])
    assert greedy_select([c0[a], c1[a]], y[a], 1, C).weights == {0: 1}  # in-sample: perfect
    fit = cross_fitted([c0, c1], y, k=3, num_classes=C, seed=0)
    assert fit.single_f1 == 0.0 and fit.ensemble_f1 == 0.0
    # and a model right everywhere is found whichever half chooses
    fit = cross_fitted([onehot(y), c0, c1], y, k=3, num_classes=C, seed=0)  # ties: the better-ranked
    assert fit.single_f1 == 1.0 and fit.gain == 0.0
