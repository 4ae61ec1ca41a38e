"""tuner.results.plots: each function writes a real PNG, returns what it promises and
survives the edge cases an export folder meets (one epoch, failed trials)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tuner.results import plots
from tuner.data.classes import CLASS_NAMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_width: int = 400, min_height: int = 200):
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    height, width = img.shape[:2]
    assert width >= min_width and height >= min_height, (width, height)
    assert img.std() > 0, "blank image"
    return width, height


def noisy_predictions(rng, n=2000, classes=104, noise=0.3):
    y_true = rng.integers(0, classes, n)
    y_pred = y_true.copy()
    flip = rng.random(n) < noise
    y_pred[flip] = rng.integers(0, classes, int(flip.sum()))
    return y_true, y_pred


def history(epochs: int):
    rows = []
    for e in range(1, epochs + 1):
        rows.append({
            "epoch": e,
            "loss": 3.0 * math.exp(-e / 3) + 0.2,
            "val_loss": 3.1 * math.exp(-e / 4) + 0.4,
            "accuracy": 1 - 0.9 * math.exp(-e / 3),
            "val_accuracy": 0.95 - 0.9 * math.exp(-e / 4),
            "f1": 0.97 - 0.9 * math.exp(-e / 3),
            "val_f1": 0.9 - 0.9 * math.exp(-e / 4),
            "val_precision": 0.92 - 0.9 * math.exp(-e / 4),
            "val_recall": 0.88 - 0.9 * math.exp(-e / 4),
            "learning_rate": 1e-3 * 0.5 ** e,
        })
    return rows


# -------------------------------------------------------------- module hygiene


def test_import_is_lazy_and_tensorflow_free():
    code = (
        "import sys, tuner.results.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert 'optuna' not in sys.modules, 'optuna imported eagerly'\n"
        "import numpy as np\n"
        "from tuner.results.plots import plot_search\n"
        "plot_search([('a', 0.5), ('b', 0.6)], sys.argv[1])\n"
        "import matplotlib\n"
        "assert matplotlib.get_backend().lower() == 'agg', matplotlib.get_backend()\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "s.png")
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        env["DISPLAY"] = ""
        subprocess.run([sys.executable, "-c", code, out], check=True, env=env, timeout=120)
        assert_png(out)


# -------------------------------------------------------------------- curves


def test_curves_full_history(tmp_path):
    out = plots.plot_curves(history(12), tmp_path / "curves.png")
    assert out == str(tmp_path / "curves.png")
    width, _ = assert_png(out)
    assert width >= 1000


def test_curves_single_epoch_missing_keys_and_nan(tmp_path):
    assert_png(plots.plot_curves(history(1), tmp_path / "one.png"))
    sparse = [{"loss": 1.2, "val_loss": float("nan")}, {"loss": 0.9, "accuracy": None}]
    assert_png(plots.plot_curves(sparse, tmp_path / "sparse.png"))
    assert_png(plots.plot_curves([{}], tmp_path / "blank_epoch.png"))
    assert_png(plots.plot_curves([], tmp_path / "empty.png"))


def test_creates_missing_folders(tmp_path):
    out = tmp_path / "export" / "deep" / "curves.png"
    assert_png(plots.plot_curves(history(3), out))
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temp leftovers


# ----------------------------------------------------------------- confusion


def test_confusion_104_classes(tmp_path):
    rng = np.random.default_rng(0)
    y_true, y_pred = noisy_predictions(rng)
    pairs = plots.plot_confusion(y_true, y_pred, CLASS_NAMES, tmp_path / "cm.png")
    width, height = assert_png(tmp_path / "cm.png", min_width=1500, min_height=1500)
    assert len(pairs) == 12
    counts = [c for _, _, c in pairs]
    assert counts == sorted(counts, reverse=True)
    assert all(t != p for t, p, _ in pairs)


def test_confusion_pairs_are_the_most_frequent(tmp_path):
    rng = np.random.default_rng(1)
    y_true = np.repeat(np.arange(104), 10)
    y_pred = y_true.copy()
    # planted confusions with known counts, larger than anything else
    planted = {(49, 48): 9, (3, 30): 7, (100, 99): 5}
    for (t, p), count in planted.items():
        rows = np.flatnonzero(y_true == t)[:count]
        y_pred[rows] = p
    # plus single scattered mistakes elsewhere
    others = rng.choice(np.flatnonzero(~np.isin(y_true, [49, 3, 100])), 20, replace=False)
    y_pred[others] = (y_true[others] + 7) % 104

    full = plots.plot_confusion(y_true, y_pred, CLASS_NAMES, tmp_path / "cm.png", top_pairs=50)
    assert full[:3] == [
        (CLASS_NAMES[49], CLASS_NAMES[48], 9),
        (CLASS_NAMES[3], CLASS_NAMES[30], 7),
        (CLASS_NAMES[100], CLASS_NAMES[99], 5),
    ]
    assert all(type(c) is int for _, _, c in full)
    # the full list agrees with a brute-force count
    brute = {}
    for t, p in zip(y_true, y_pred):
        if t != p:
            brute[(CLASS_NAMES[t], CLASS_NAMES[p])] = brute.get((CLASS_NAMES[t], CLASS_NAMES[p]), 0) + 1
    assert len(full) == len(brute) >= 4
    assert {(t, p): c for t, p, c in full} == brute


def test_confusion_absent_classes_no_warnings(tmp_path):
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 3, 1, 2, 5, 5])  # classes 3..11 never true
    names = CLASS_NAMES[:12]
    with np.errstate(all="raise"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pairs = plots.plot_confusion(y_true, y_pred, names, tmp_path / "cm.png")
    assert_png(tmp_path / "cm.png")
    assert pairs[0] == (CLASS_NAMES[2], CLASS_NAMES[5], 2)
    assert pairs[1] == (CLASS_NAMES[0], CLASS_NAMES[3], 1)


def test_confusion_small_and_probabilities(tmp_path):
    names = ["a", "b", "c"]
    probs = np.eye(3)[[0, 1, 1, 2]]
    pairs = plots.plot_confusion([0, 1, 2, 2], probs, names, tmp_path / "cm.png")
    assert pairs == [("c", "b", 1)]
    assert_png(tmp_path / "cm.png")
    assert plots.plot_confusion([], [], names, tmp_path / "none.png") == []


def test_confusion_rejects_bad_ids(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_confusion([0, 104], [0, 1], CLASS_NAMES, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_confusion([0, 1, 2], [0, 1], CLASS_NAMES, tmp_path / "x.png")


# --------------------------------------------------------------- predictions


def test_predictions_grid(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    y_true, y_pred = noisy_predictions(rng, n=30, noise=0.4)
    out = plots.plot_predictions(images, y_true, y_pred, CLASS_NAMES, tmp_path / "p.png")
    assert_png(out, min_width=1000)


def test_predictions_float_and_odd_inputs(tmp_path):
    rng = np.random.default_rng(3)
    floats = rng.uniform(0, 255, (5, 32, 32, 3))
    assert_png(plots.plot_predictions(floats, [1, 2, 3, 4, 5], [1, 2, 0, 4, 5],
                                      CLASS_NAMES, tmp_path / "f.png"))
    unit = [rng.uniform(0, 1, (40, 30, 3)), rng.uniform(0, 1, (20, 20, 1))]
    assert_png(plots.plot_predictions(unit, [0, 1], [0, 0], CLASS_NAMES, tmp_path / "u.png"))
    one = np.zeros((1, 16, 16, 3), np.uint8)
    assert_png(plots.plot_predictions(one, [7], [8], CLASS_NAMES, tmp_path / "one.png"))
    assert_png(plots.plot_predictions(one[:0], [], [], CLASS_NAMES, tmp_path / "zero.png"))


# -------------------------------------------------------------------- search


def test_search_mixed(tmp_path):
    rng = np.random.default_rng(4)
    trials = [(f"trial_{i:03d}", None if i % 5 == 3 else float(rng.uniform(0.4, 0.9)))
              for i in range(40)]
    assert_png(plots.plot_search(trials, tmp_path / "s.png"), min_width=800)
    assert_png(plots.plot_search(trials, tmp_path / "s_min.png", goal="min"))


def test_search_edge_cases(tmp_path):
    assert_png(plots.plot_search([("00", None), ("01", None)], tmp_path / "failed.png"))
    assert_png(plots.plot_search([("00", 0.71)], tmp_path / "one.png"))
    assert_png(plots.plot_search([("00", None)], tmp_path / "one_failed.png"))
    assert_png(plots.plot_search([("00", float("nan")), ("01", 0.5)], tmp_path / "nan.png"))
    assert_png(plots.plot_search([], tmp_path / "none.png"))
    with pytest.raises(ValueError):
        plots.plot_search([("00", 0.5)], tmp_path / "bad.png", goal="maximise")


# ---------------------------------------------------------------- importance


#: a space's varying dimensions as a project saves them, and one fixed one
PARAMETERS = {
    "learning_rate": {"min": 1.0e-5, "max": 1.0e-2, "distribution": "log_uniform_values"},
    "dropout": {"min": 0.0, "max": 0.5},
    "optimizer": {"values": ["adam", "nadam", "sgd"]},
    "flip_left_right": {"values": [True, False]},
    "batch_per_replica": {"value": 64},
}


def dists(parameters=PARAMETERS):
    from tuner.results.importance import distributions_for

    return distributions_for(parameters)


def importance_case(n=40, seed=5, signal="learning_rate"):
    """Trials whose score depends on `signal` alone (plus a little noise)."""
    rng = np.random.default_rng(seed)
    rows, scores = [], []
    for i in range(n):
        row = {
            "learning_rate": float(10 ** rng.uniform(-5, -2)),
            "dropout": float(rng.uniform(0, 0.5)),
            "optimizer": str(rng.choice(["adam", "nadam", "sgd"])),
            "flip_left_right": bool(rng.random() < 0.5),
            "batch_per_replica": 64,
        }
        rows.append(row)
        if signal == "learning_rate":
            score = 0.95 - 0.15 * abs(math.log10(row["learning_rate"]) + 3.5)
        else:
            score = {"adam": 0.9, "nadam": 0.6, "sgd": 0.75}[row["optimizer"]]
        scores.append(None if i % 7 == 6 else score + float(rng.normal(0, 0.005)))
    return rows, scores


def test_importance_uses_the_samplers_distributions():
    """Only the varying dimensions, each as the TPE sampler models it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    d = dists()
    assert set(d) == {"learning_rate", "dropout", "optimizer", "flip_left_right"}
    assert d["learning_rate"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert d["optimizer"] == CategoricalDistribution(["adam", "nadam", "sgd"])


def test_importance_ranks_the_one_dimension_the_score_depends_on_first(tmp_path):
    rows, scores = importance_case()
    result = plots.plot_importance(rows, scores, tmp_path / "imp.png", dists(), compared_at="epoch 3")
    assert_png(tmp_path / "imp.png")
    assert list(result)[0] == "learning_rate"
    assert result["learning_rate"] > 0.6 and all(result[k] < 0.2 for k in result if k != "learning_rate")
    assert set(result) == {"learning_rate", "dropout", "optimizer", "flip_left_right"}  # the fixed one: not a dimension
    assert math.isclose(sum(result.values()), 1.0, rel_tol=1e-9)
    values = list(result.values())
    assert values == sorted(values, reverse=True)


def test_importance_categorical_signal(tmp_path):
    rows, scores = importance_case(n=30, seed=6, signal="optimizer")
    result = plots.plot_importance(rows, scores, tmp_path / "imp.png", dists())
    assert list(result)[0] == "optimizer" and result["optimizer"] > 0.6


def test_importance_leaves_out_what_does_not_vary_or_fit(tmp_path):
    rows, scores = importance_case(n=20)
    for r in rows:
        r["flip_left_right"] = True  # declared varying, constant over these trials
    result = plots.plot_importance(rows, scores, tmp_path / "c.png", dists())
    assert "flip_left_right" not in result and list(result)[0] == "learning_rate"
    # a trial of an older, wider range is not one of this space's points
    rows[0]["learning_rate"] = 0.5
    bad = plots.plot_importance(rows[:9], scores[:9], tmp_path / "b.png", dists())
    assert bad == {}  # 8 scored (one failed), one of them outside the range: 7 left
    assert_png(tmp_path / "b.png")


def test_importance_not_enough(tmp_path):
    rows, scores = importance_case(n=10)
    d = dists()
    assert plots.plot_importance(rows[:2], scores[:2], tmp_path / "few.png", d) == {}
    assert_png(tmp_path / "few.png")
    assert plots.plot_importance(rows[:4], [0.5, None, None, None], tmp_path / "f2.png", d) == {}
    same = [dict(rows[0])] * 8
    assert plots.plot_importance(same, [0.1 * i for i in range(8)], tmp_path / "const.png", d) == {}
    assert_png(tmp_path / "const.png")
    assert plots.plot_importance(rows[:8], [0.5] * 8, tmp_path / "flat.png", d) == {}
    assert plots.plot_importance(rows[:8], [0.1 * i for i in range(8)], tmp_path / "nod.png", {}) == {}
    assert plots.plot_importance([], [], tmp_path / "empty.png", d) == {}
    with pytest.raises(ValueError):
        plots.plot_importance(rows[:3], [0.1, 0.2], tmp_path / "bad.png", d)


def test_importance_needs_eight_scored_trials(tmp_path):
    """Seven trials with a clean learning-rate signal still get no ranking
    (importances over so few trials rank noise); failed trials do not count."""
    rows, scores = importance_case(n=40)
    scored = [(r, s) for r, s in zip(rows, scores) if s is not None]
    seven_rows, seven_scores = map(list, zip(*scored[:7]))
    few = plots.plot_importance(seven_rows + [rows[6]], seven_scores + [None], tmp_path / "seven.png", dists())
    assert few == {}
    assert_png(tmp_path / "seven.png")
    eight_rows, eight_scores = map(list, zip(*scored[:8]))
    assert "learning_rate" in plots.plot_importance(eight_rows, eight_scores, tmp_path / "eight.png", dists())


def test_importance_compares_trials_at_one_epoch():
    """The largest epoch at least 8 trials reached, each scored by its best
    value up to it: a trial stopped earlier is not among them."""
    from tuner.results.importance import comparable_epoch, score_at

    long = [[(e, 0.1 * e) for e in range(1, 7)] for _ in range(8)]
    short = [[(1, 0.05), (2, 0.5)] for _ in range(4)]
    failed = [[(1, None)], []]
    assert comparable_epoch(long + short + failed) == 6
    assert comparable_epoch(long[:5] + short + failed) == 2  # 9 trials reached epoch 2
    assert comparable_epoch(long[:4] + short[:3] + failed) is None
    assert score_at(long[0], 6) == pytest.approx(0.6) and score_at(short[0], 6) is None
    assert score_at(short[0], 2) == 0.5 and score_at([(1, 0.3), (2, 0.2)], 2) == 0.3
    assert score_at([(1, 0.3), (2, 0.2)], 2, goal="min") == 0.2 and score_at(failed[0], 1) is None


# ------------------------------------------------------------------- leaks


def test_no_open_figures_after_many_calls(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for i in range(20):
        plots.plot_search([("a", 0.5), ("b", None), ("c", 0.7)], tmp_path / "s.png")
    plots.plot_curves(history(2), tmp_path / "c.png")
    plots.plot_confusion([0, 1, 2], [0, 2, 2], CLASS_NAMES[:3], tmp_path / "cm.png")
    plots.plot_importance([{"x": 1}, {"x": 2}], [0.1, 0.2], tmp_path / "i.png", {})
    assert plt.get_fignums() == before == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "cm.png", "i.png", "s.png"]


def test_intermediate_plot_marks_stopped_and_paused_trials(tmp_path):
    curves = [("0", [(1, 0.1), (2, 0.2), (3, 0.4)], "completed"), ("1", [(1, 0.05)], "stopped"),
              ("2", [(1, 0.12), (2, 0.3)], "paused"), ("3", [], "failed")]
    out = plots.plot_intermediate(curves, tmp_path / "i.png", rungs=[1, 2])
    assert os.path.getsize(out) > 5000
    assert plots.plot_intermediate([("0", [], "failed")], tmp_path / "e.png").endswith("e.png")
