"""Pure plotting functions that write one PNG each for an export folder.

Every function takes plain data (numpy arrays, lists, dicts), writes one PNG,
frees its figure and returns the path written as a ``str``. Nothing here
imports TensorFlow, and matplotlib is imported lazily: importing this module
costs nothing.

Figures are built as :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas, never through ``pyplot``'s global figure registry, so no window is
opened, no display is needed and no figure outlives its call. The Agg backend
is selected when matplotlib is first used here, unless the caller already
imported ``pyplot`` (a notebook), whose backend is then left alone.

Files are written atomically (a temporary file in the same folder, then
``os.replace``); missing parent folders are created.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuner.results.importance import MIN_TRIALS

__all__ = [
    "plot_curves",
    "plot_confusion",
    "plot_predictions",
    "plot_search",
    "plot_importance",
]

DPI = 120
#: Below this many scored trials importances are noise (`tuner.results.importance`).
MIN_IMPORTANCE_TRIALS = MIN_TRIALS
CONFUSION_DPI = 150

_RED = "#d62728"
_GREEN = "#1a7f37"
_GREY = "#7f7f7f"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float], layout: str | None = "constrained"):
    """A fresh Figure outside pyplot's registry (no leaks, no display)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _save(fig, path: str | os.PathLike, dpi: int = DPI) -> str:
    """Write `fig` as PNG to `path` atomically, release it, return the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        fig.clear()
    return path


def _message_figure(path, title: str, message: str, figsize=(8.0, 4.0)) -> str:
    fig = _new_figure(figsize)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=13)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12,
            color=_GREY, wrap=True, transform=ax.transAxes)
    return _save(fig, path)


def _to_float(value: Any) -> float:
    """float(value), or NaN for None and anything that is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _labels(y: Any, name: str) -> np.ndarray:
    """Integer class ids from ids, one-hot rows or probability rows."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        arr = arr.argmax(axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids or 2-D scores, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise ValueError(f"{name} holds values that are not class ids")
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise ValueError(f"{name} holds non-integer class ids")
        arr = as_int
    return arr.astype(np.int64, copy=False)


def _check_ids(y: np.ndarray, n_classes: int, name: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} holds class ids outside 0..{n_classes - 1}: "
            f"min {int(y.min())}, max {int(y.max())}"
        )


# --------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------


def plot_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike) -> str:
    """Training curves, one dict per epoch -> PNG at `path`.

    Keys used (any may be missing or NaN): ``epoch, loss, val_loss,
    accuracy, val_accuracy, f1, val_f1, val_precision, val_recall,
    learning_rate`` (``lr`` is accepted for ``learning_rate``). Without
    ``epoch`` the x axis counts epochs from 1. Three panels (loss, accuracy,
    F1 with dashed val precision/recall); a small learning-rate panel below
    when any learning rate is recorded (log scale when it spans > 1 decade).
    """
    history = list(history or [])
    if not history:
        return _message_figure(path, "Training curves", "no epochs recorded")

    def column(*keys: str) -> np.ndarray:
        out = []
        for row in history:
            value = math.nan
            for key in keys:
                if key in row:
                    value = _to_float(row[key])
                    break
            out.append(value)
        return np.asarray(out, dtype=float)

    epochs = column("epoch")
    if not np.all(np.isfinite(epochs)):
        epochs = np.arange(1, len(history) + 1, dtype=float)
    lr = column("learning_rate", "lr")
    has_lr = bool(np.isfinite(lr).any())

    from matplotlib.ticker import MaxNLocator

    fig = _new_figure((15.0, 6.8 if has_lr else 5.0))
    if has_lr:
        grid = fig.add_gridspec(2, 3, height_ratios=[3.2, 1.0])
        axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
        ax_lr = fig.add_subplot(grid[1, :])
    else:
        grid = fig.add_gridspec(1, 3)
        axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
        ax_lr = None

    panels = [
        ("Loss", [("loss", "train", "C0", "-"), ("val_loss", "val", "C1", "-")], "min"),
        ("Accuracy", [("accuracy", "train", "C0", "-"), ("val_accuracy", "val", "C1", "-")], "max"),
        ("F1 (macro)", [("f1", "train", "C0", "-"), ("val_f1", "val", "C1", "-"),
                        ("val_precision", "val precision", "C2", "--"),
                        ("val_recall", "val recall", "C3", "--")], "max"),
    ]
    marker = "o" if len(history) <= 30 else None
    xlim = (float(epochs.min()) - 0.5, float(epochs.max()) + 0.5)
    for ax, (title, series, goal) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xlim(*xlim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        drawn = False
        for key, label, color, style in series:
            values = column(key)
            finite = np.isfinite(values)
            if not finite.any():
                continue
            drawn = True
            ax.plot(epochs[finite], values[finite], style, color=color, label=label,
                    marker=marker, markersize=3.5, linewidth=1.6 if style == "-" else 1.2)
        # mark the best validation epoch of the panel's headline val metric
        headline = column(series[1][0])
        if np.isfinite(headline).any():
            idx = int(np.nanargmin(headline) if goal == "min" else np.nanargmax(headline))
            ax.plot([epochs[idx]], [headline[idx]], marker="*", color="C1",
                    markersize=13, linestyle="none", markeredgecolor="black",
                    label=f"best val {headline[idx]:.4g} @ {epochs[idx]:g}")
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center",
                    color=_GREY, transform=ax.transAxes)
            ax.set_yticks([])
            ax.set_xticks([])
            continue
        if goal == "max":
            everything = np.concatenate([column(key) for key, *_ in series])
            everything = everything[np.isfinite(everything)]
            lo, hi = float(everything.min()), float(everything.max())
            if 0.0 <= lo and hi <= 1.0:
                ax.set_ylim(max(0.0, lo - 0.05), min(1.02, hi + 0.05))
        ax.legend(fontsize=8, loc="best")

    if ax_lr is not None:
        finite = np.isfinite(lr)
        ax_lr.plot(epochs[finite], lr[finite], color="C4", marker=marker, markersize=3)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("epoch")
        ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_lr.grid(True, alpha=0.3)
        positive = lr[finite]
        if positive.size and positive.min() > 0 and positive.max() / positive.min() > 10:
            ax_lr.set_yscale("log")
        ax_lr.set_xlim(*xlim)

    fig.suptitle(f"Training curves ({len(history)} epoch{'s' if len(history) != 1 else ''})")
    return _save(fig, path)


# --------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------


def _top_pairs(cm: np.ndarray, class_names: Sequence[str], k: int) -> list[tuple[str, str, int]]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    t_idx, p_idx = np.nonzero(off)
    counts = off[t_idx, p_idx]
    # highest count first; ties by true id, then predicted id (deterministic)
    order = np.lexsort((p_idx, t_idx, -counts))[: max(0, k)]
    return [(str(class_names[t_idx[i]]), str(class_names[p_idx[i]]), int(counts[i]))
            for i in order]


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    top_pairs: int = 12,
) -> list[tuple[str, str, int]]:
    """Row-normalised confusion matrix -> PNG; returns the most-confused pairs.

    `y_true`/`y_pred` are class ids (1-D) or one-hot / probability rows
    (2-D, argmax taken); ids must lie in ``0..len(class_names)-1``. Each row is
    divided by the number of true samples of that class; classes absent from
    `y_true` get a grey (empty) row. The side panel lists the `top_pairs`
    off-diagonal cells with the highest counts as "true → predicted (count)";
    the same list, ``[(true_name, predicted_name, count), ...]`` sorted by
    count descending (ties by true id, then predicted id), is returned.
    """
    names = [str(n) for n in class_names]
    n = len(names)
    if n == 0:
        raise ValueError("class_names is empty")
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    _check_ids(t, n, "y_true")
    _check_ids(p, n, "y_pred")

    cm = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    support = cm.sum(axis=1)
    norm = np.full((n, n), np.nan)
    present = support > 0
    norm[present] = cm[present] / support[present, None]
    pairs = _top_pairs(cm, names, top_pairs)
    total = int(t.size)

    import matplotlib

    if n > 60:
        tick_fs, height = 5.5, 14.0
    elif n > 30:
        tick_fs, height = 7.0, 10.0
    else:
        tick_fs, height = 9.0, max(6.0, 0.3 * n + 5.0)
    lines = [f"Most confused pairs (top {len(pairs)})", "true → predicted (count)", ""]
    if not pairs:
        lines.append("no samples" if not total else
                     "none requested" if top_pairs <= 0 else "no confusions")
    for rank, (true_name, pred_name, count) in enumerate(pairs, 1):
        lines.append(f"{rank:>2}. {true_name}")
        lines.append(f"    → {pred_name} ({count})")
    text_fs = 10.0
    # monospace glyphs are 0.6 em wide; leave a little slack
    side = max(2.6, max(len(line) for line in lines) * text_fs * 0.6 / 72 + 0.6)
    matrix_width = height + 0.9  # colour bar; the cell stays near square (aspect auto)
    fig = _new_figure((matrix_width + side, height))
    grid = fig.add_gridspec(1, 2, width_ratios=[matrix_width, side])
    ax = fig.add_subplot(grid[0, 0])
    ax_text = fig.add_subplot(grid[0, 1])

    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=1.0,
                   interpolation="nearest", aspect="auto")
    labels = [f"{i} {name}" for i, name in enumerate(names)]
    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(labels, rotation=90, fontsize=tick_fs)
    ax.set_yticklabels(labels, fontsize=tick_fs)
    ax.tick_params(length=2, pad=1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n > 20:  # faint guides every 10 classes to follow rows across the matrix
        for b in range(10, n, 10):
            ax.axhline(b - 0.5, color="#b0b0b0", linewidth=0.4)
            ax.axvline(b - 0.5, color="#b0b0b0", linewidth=0.4)
    elif n <= 20 and t.size:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    cbar = fig.colorbar(im, ax=ax, fraction=0.035, pad=0.01)
    cbar.set_label("fraction of the true class (row-normalised)")

    acc = float((t == p).mean()) if total else math.nan
    absent = int((~present).sum())
    title = f"Confusion matrix: {total} samples, accuracy {acc:.1%}" if total else \
        "Confusion matrix: no samples"
    if absent:
        title += f"\n{absent} class{'es' if absent != 1 else ''} absent from y_true (grey rows)"
    ax.set_title(title, fontsize=12)

    ax_text.set_axis_off()
    ax_text.text(0.0, 1.0, "\n".join(lines), ha="left", va="top", fontsize=text_fs,
                 family="monospace", transform=ax_text.transAxes, linespacing=1.45)
    _save(fig, path, dpi=CONFUSION_DPI)
    return pairs


# --------------------------------------------------------------------------
# prediction grid
# --------------------------------------------------------------------------


def _display_image(img: np.ndarray, unit_scale: bool) -> tuple[np.ndarray, str | None]:
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"images must be HxWx3, HxWx1 or HxW, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if unit_scale:
            arr = arr * 255.0
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        arr = np.clip(arr, 0.0, 255.0).round().astype(np.uint8)
    return arr, ("gray" if arr.ndim == 2 else None)


def plot_predictions(
    images: Any,
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    max_images: int = 24,
) -> str:
    """Grid of the first `max_images` images titled "pred\\n(true)" -> PNG.

    `images` is an NxHxWx3 array or a sequence of HxWx3 / HxWx1 / HxW arrays
    (sizes may differ), uint8 or float in 0..255; a float batch whose maximum
    is <= 1.0 is taken as 0..1 and scaled. Labels as in `plot_confusion`.
    Wrong predictions get a red title and a thick red frame, correct ones a
    green title and a thin green frame.
    """
    names = [str(c) for c in class_names]
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    count = len(images)
    if not (count == t.size == p.size):
        raise ValueError(f"got {count} images, {t.size} true labels, {p.size} predictions")
    _check_ids(t, len(names), "y_true")
    _check_ids(p, len(names), "y_pred")
    k = min(count, max(0, int(max_images)))
    if k == 0:
        return _message_figure(path, "Predictions", "no images")

    shown = [np.asarray(images[i]) for i in range(k)]
    floats = [im for im in shown if im.dtype != np.uint8]
    unit_scale = bool(floats) and all(
        (not im.size) or np.nanmax(im) <= 1.0 for im in floats)

    cols = min(6, k)
    rows = math.ceil(k / cols)
    fig = _new_figure((max(5.0, 2.6 * cols), 2.95 * rows + 0.5))
    wrong = 0
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        arr, cmap = _display_image(shown[i], unit_scale)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ok = bool(t[i] == p[i])
        wrong += not ok
        color = _GREEN if ok else _RED
        ax.set_title(f"{names[p[i]]}\n({names[t[i]]})", color=color, fontsize=9,
                     fontweight="normal" if ok else "bold")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_edgecolor(color)
            spine.set_linewidth(1.5 if ok else 4.0)
    fig.suptitle(f"Predictions: {wrong} of {k} wrong (title: predicted, then (true))",
                 fontsize=12)
    return _save(fig, path)


# --------------------------------------------------------------------------
# search progress
# --------------------------------------------------------------------------


def plot_search(
    trials: Sequence[tuple[str, float | None]],
    path: str | os.PathLike,
    goal: str = "max",
) -> str:
    """Score of each trial in run order with the best-so-far step line -> PNG.

    `trials` is ``[(trial_id, score_or_None), ...]``; None or NaN marks a
    failed trial, drawn as a red x on the x axis. `goal` is "max" or "min".
    """
    if goal not in ("max", "min"):
        raise ValueError(f"goal must be 'max' or 'min', got {goal!r}")
    trials = list(trials or [])
    if not trials:
        return _message_figure(path, "Search progress", "no trials yet")

    ids = [str(tid) for tid, _ in trials]
    scores = np.asarray([_to_float(s) for _, s in trials], dtype=float)
    x = np.arange(1, len(trials) + 1)
    ok = np.isfinite(scores)
    failed = ~ok

    best = np.full(len(trials), np.nan)
    running = math.nan
    for i, s in enumerate(scores):
        if math.isfinite(s) and (math.isnan(running) or
                                 (s > running if goal == "max" else s < running)):
            running = s
        best[i] = running

    fig = _new_figure((max(8.0, min(20.0, 0.28 * len(trials) + 4.0)), 5.0))
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    if ok.any():
        ax.plot(x[ok], scores[ok], "o", color="C0", markersize=6, label="trial F1")
        ax.step(x, best, where="post", color="C1", linewidth=2, label="best so far")
        b = int(np.nanargmax(scores) if goal == "max" else np.nanargmin(scores))
        ax.plot([x[b]], [scores[b]], marker="*", color="C1", markersize=16,
                markeredgecolor="black", linestyle="none",
                label=f"best: {ids[b]} ({scores[b]:.4f})")
        lo, hi = np.nanmin(scores), np.nanmax(scores)
        pad = 0.08 * (hi - lo) if hi > lo else max(0.02, 0.05 * abs(hi))
        ax.set_ylim(lo - pad, hi + pad)
    else:
        ax.set_ylim(0.0, 1.0)
        ax.text(0.5, 0.5, f"all {len(trials)} trial{'s' if len(trials) != 1 else ''} failed",
                ha="center", va="center", fontsize=14, color=_RED, transform=ax.transAxes)
    if failed.any():
        # on the x axis itself: x in data units, y in axes units
        ax.plot(x[failed], np.zeros(int(failed.sum())), "x", color=_RED, markersize=10,
                markeredgewidth=2.5, clip_on=False, transform=ax.get_xaxis_transform(),
                label=f"failed ({int(failed.sum())})", zorder=5)
    ax.set_xlim(0.4, len(trials) + 0.6)
    step = max(1, math.ceil(len(trials) / 60))
    ax.set_xticks(x[::step])
    ax.set_xticklabels(ids[::step], rotation=60 if len(trials) > 6 else 0,
                       ha="right" if len(trials) > 6 else "center", fontsize=8)
    ax.set_xlabel("trial (run order)")
    ax.set_ylabel("val F1")
    done = int(ok.sum())
    ax.set_title(f"Search progress: {len(trials)} trials, {done} scored, "
                 f"{len(trials) - done} failed (goal: {goal})")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def plot_intermediate(
    curves: Sequence[tuple[str, Sequence[tuple[int, float | None]], str]],
    path: str | os.PathLike,
    rungs: Sequence[int] = (),
    goal: str = "max",
) -> str:
    """Every trial's val F1 by epoch (Optuna's intermediate-values plot) -> PNG.

    `curves` is ``[(trial_id, [(epoch, value), ...], state), ...]`` with state
    "stopped", "paused" or anything else (trained on); stopped trials end in a
    red x at their rung, paused ones in a hollow circle. `rungs` draws the
    early-termination rungs as dotted lines."""
    curves = [c for c in (curves or []) if any(math.isfinite(_to_float(v)) for _, v in c[1])]
    if not curves:
        return _message_figure(path, "Val F1 by epoch", "no epochs yet")
    fig = _new_figure((9.0, 5.5))
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    for r in rungs:
        ax.axvline(r, color=_GREY, linestyle=":", linewidth=1)
    finals = [(tid, max(_to_float(v) for _, v in pts) if goal == "max" else min(_to_float(v) for _, v in pts))
              for tid, pts, _ in curves]
    best = (max if goal == "max" else min)(finals, key=lambda tv: tv[1])[0]
    shown = set()
    for i, (tid, pts, state) in enumerate(curves):
        e = np.asarray([p[0] for p in pts], dtype=float)
        v = np.asarray([_to_float(p[1]) for p in pts], dtype=float)
        color = "C1" if tid == best else "C0"
        ax.plot(e, v, "-", color=color, alpha=0.95 if tid == best else 0.45,
                linewidth=2.2 if tid == best else 1.2, label=f"best: trial {tid}" if tid == best else None)
        if state in ("stopped", "paused"):
            kw = ({"marker": "x", "color": _RED, "markersize": 8, "markeredgewidth": 2}
                  if state == "stopped" else
                  {"marker": "o", "markerfacecolor": "none", "markeredgecolor": "C2", "markersize": 8})
            ax.plot([e[-1]], [v[-1]], linestyle="none", label=None if state in shown else state, **kw)
            shown.add(state)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val F1")
    n_stop = sum(1 for c in curves if c[2] == "stopped")
    n_pause = sum(1 for c in curves if c[2] == "paused")
    ax.set_title(f"Val F1 by epoch: {len(curves)} trials, {n_stop} stopped early, {n_pause} paused")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------
# hyperparameter importance
# --------------------------------------------------------------------------


def plot_importance(
    rows: Sequence[Mapping[str, Any]],
    scores: Sequence[float | None],
    path: str | os.PathLike,
    distributions: Mapping[str, Any],
    goal: str = "max",
    compared_at: str = "",
) -> dict[str, float]:
    """Which hyperparameters mattered -> PNG; returns ``{name: importance}``.

    `rows[i]` holds trial i's hyperparameter values, `scores[i]` its score at
    the epoch all are compared at (None/NaN = none, skipped); `distributions`
    the varying dimensions' Optuna distributions (`tuner.results.importance`).
    Optuna's fANOVA ranks them (`importance.evaluate`); dimensions constant
    over the trials, or read by only some of them, are dropped. The dict is ordered by importance,
    descending, and sums to 1. With fewer than `MIN_IMPORTANCE_TRIALS` scored
    trials, no varying hyperparameter or equal scores, the PNG says so and
    ``{}`` is returned. `compared_at` ("epoch 4") goes into the title.
    """
    from tuner.results import importance as imp

    rows = list(rows)
    raw_scores = [_to_float(s) for s in scores]
    if len(rows) != len(raw_scores):
        raise ValueError(f"got {len(rows)} hyperparameter rows but {len(raw_scores)} scores")
    keep = [i for i, s in enumerate(raw_scores) if math.isfinite(s)]
    title = "Hyperparameter importance"
    if len(keep) < MIN_IMPORTANCE_TRIALS:
        _message_figure(path, title, f"needs at least {MIN_IMPORTANCE_TRIALS} scored trials, have {len(keep)}")
        return {}
    y = np.asarray([raw_scores[i] for i in keep])
    if not distributions:
        _message_figure(path, title, f"no hyperparameter varies across the {len(keep)} scored trials")
        return {}
    if np.ptp(y) == 0:
        _message_figure(path, title, f"all {len(keep)} scored trials have the same score "
                                     f"({y[0]:.4g}); nothing to attribute")
        return {}
    result, constant, used = imp.evaluate([rows[i] for i in keep], list(y), distributions, goal)
    if used < MIN_IMPORTANCE_TRIALS:
        _message_figure(path, title, f"needs at least {MIN_IMPORTANCE_TRIALS} scored trials with values in the "
                                     f"space's ranges, have {used}")
        return {}
    if not result:
        _message_figure(path, title, f"no hyperparameter varies across the {used} scored trials")
        return {}

    def label(name: str) -> str:
        return f"{name} (log)" if getattr(distributions[name], "log", False) else name

    labels = [label(k) for k in result]
    values = list(result.values())
    fig = _new_figure((8.5, 1.6 + 0.42 * len(result)))
    ax = fig.add_subplot()
    pos = np.arange(len(result))[::-1]
    ax.barh(pos, values, color="C0", height=0.65)
    ax.set_yticks(pos)
    ax.set_yticklabels(labels, fontsize=9)
    for yy, v in zip(pos, values):
        ax.text(v, yy, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.15 if max(values) > 0 else 1.0)
    xlabel = f"importance ({imp.EVALUATOR}, sums to 1)"
    if constant:
        listed = ", ".join(constant[:8]) + (f" and {len(constant) - 8} more" if len(constant) > 8 else "")
        xlabel += f"\nconstant over these trials or read by only some of them, not shown: {listed}"
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    skipped = len(rows) - used
    ax.set_title(f"{title}: {used} scored trials" + (f" at {compared_at}" if compared_at else "")
                 + (f", {skipped} left out" if skipped else ""), fontsize=11)
    _save(fig, path)
    return result
