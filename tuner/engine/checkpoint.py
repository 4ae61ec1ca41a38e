"""Epoch checkpoints that let an interrupted trial continue where it stopped.

Keras Tuner restarts an interrupted trial from scratch. Here every finished
epoch writes the weights and optimizer state to new files, then switches one
small pointer file (`resume.json`) atomically, then removes the previous
epoch's files. A kill at any moment leaves the pointer naming a complete
checkpoint. `history.csv` is rewritten from the pointer's rows, so each epoch
appears exactly once across interruptions.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tempfile
import time
from typing import Any

import keras
import numpy as np

from tuner.errors import TunerError

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1",
    "val_precision", "val_recall", "learning_rate", "seconds",
)
POINTER = "resume.json"
HISTORY = "history.csv"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


class DiskFull(TunerError):
    """The project's storage is full: stop the search, keep every checkpoint."""


def disk_full(error: BaseException) -> bool:
    """ENOSPC as Python or TensorFlow's file system reports it."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error).lower()
    return "no space left" in text or "disk full" in text or "quota exceeded" in text


def atomic_write(path: str, data: bytes | str) -> None:
    """Write then rename, so readers see the old or the new file, never half."""
    raw = data.encode() if isinstance(data, str) else data
    if "://" not in path:
        folder = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    gfile = _gfile()
    tmp = f"{path}.tmp-{os.getpid()}"
    with gfile.GFile(tmp, "wb") as f:
        f.write(raw)
    gfile.rename(tmp, path, overwrite=True)


def history_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_COLUMNS})
    return out.getvalue()


def read_history(trial_dir: str) -> list[dict[str, float]]:
    path = f"{trial_dir}/{HISTORY}"
    gfile = _gfile()
    if not gfile.exists(path):
        return []
    with gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]


class TrialCheckpoint:
    """The resume state of one trial folder.

    `owner` (a worker's id) goes into the names of the epoch files it
    writes, and a save removes only the previous file of the same owner: a
    late worker whose trial went to another can then never delete or
    overwrite the new owner's weights. The files a handover leaves behind go
    with the `resume/` folder when the trial finishes."""

    def __init__(self, trial_dir: str, owner: str | None = None):
        self.dir = str(trial_dir)
        self.pointer = f"{self.dir}/{POINTER}"
        #: the start of this owner's epoch file names (one machine: no owner)
        self.prefix = f"{_safe_name(owner)}-epoch-" if owner else "epoch-"

    def load(self) -> dict[str, Any] | None:
        gfile = _gfile()
        if not gfile.exists(self.pointer):
            return None
        with gfile.GFile(self.pointer) as f:
            return json.load(f)

    def _weights_name(self, epoch: int) -> str:
        return f"{self.prefix}{epoch:04d}.weights.h5"

    def save(self, model: keras.Model, epoch: int, state: dict[str, Any], best_file: str | None = None) -> None:
        """Persist the state after `epoch` finished epochs (1-based count).

        Order matters: the new weights file (Keras stores the optimizer's
        slots in it too), then history.csv, then the pointer; then, when
        this epoch is the trial's best, the best-epoch file (`best_file`)
        becomes a link to the same weights; only then are this owner's
        earlier epoch files removed. A kill or a full disk at any step
        leaves the pointer naming a complete checkpoint, and the best-epoch file whole
        (the pointer's `best_epoch` lets `restore` finish a publication that
        a kill cut short)."""
        gfile = _gfile()
        folder = f"{self.dir}/resume"
        name = self._weights_name(epoch)
        target = f"{folder}/{name}"
        partial = f"{folder}/part-{name}"  # Keras wants the .weights.h5 ending
        try:
            gfile.makedirs(folder)
            # HDF5 written straight into a full disk prints its own error
            # stack and crashes the interpreter at exit (seen on a full
            # tmpfs), so it writes to a local temporary file and the copy
            # into the project meets the full disk instead; object stores
            # need the upload anyway. It costs a second write per epoch.
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, name)
                model.save_weights(local)
                gfile.copy(local, partial, overwrite=True)
            gfile.rename(partial, target, overwrite=True)
            atomic_write(f"{self.dir}/{HISTORY}", history_csv(state.get("rows", [])))
            pointer = {"epoch": epoch, "weights": f"resume/{name}", "saved_at": time.time(), **state}
            atomic_write(self.pointer, json.dumps(pointer, indent=1, default=_json_default))
            if best_file:
                publish(target, best_file)
        except BaseException as e:
            if gfile.exists(partial):
                gfile.remove(partial)
            if disk_full(e):
                raise DiskFull(f"no space left on the device while saving epoch {epoch} of {self.dir}; "
                               f"free some space and run the same command again (the checkpoint of epoch "
                               f"{epoch - 1} is intact)") from None
            raise
        for stale in gfile.listdir(folder):
            if stale != name and stale.startswith(self.prefix):
                gfile.remove(f"{folder}/{stale}")

    def restore(self, model: keras.Model, best_file: str | None = None) -> dict[str, Any] | None:
        """Load weights and optimizer state into a freshly built model (and
        publish the checkpoint as the best epoch if a kill came between its
        pointer and that link)."""
        state = self.load()
        if not state or state.get("done"):
            return state
        if best_file and state.get("best_epoch") == state.get("epoch"):
            publish(f"{self.dir}/{state['weights']}", best_file)
        opt = model.optimizer
        if not opt.built:
            opt.build(model.trainable_variables)  # so load_weights fills its slots too
        from tuner.engine.storage import local_copy

        with local_copy(f"{self.dir}/{state['weights']}") as local:
            model.load_weights(local)
        return state

    def finish(self, state: dict[str, Any]) -> None:
        """Mark the trial done and drop its resume files (history stays)."""
        gfile = _gfile()
        old = self.load() or {}
        atomic_write(f"{self.dir}/{HISTORY}", history_csv(state.get("rows", old.get("rows", []))))
        atomic_write(self.pointer, json.dumps({**old, **state, "done": True}, indent=1, default=_json_default))
        folder = f"{self.dir}/resume"
        if gfile.exists(folder):
            gfile.rmtree(folder)


def _safe_name(owner: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in owner)


def publish(source: str, target: str) -> None:
    """Make `target` the same weights as `source`, atomically: a hard link on
    a local disk (no copy: the epoch's file was just written), a copy on an
    object store; then a rename over the old file, so a reader (export,
    Hyperband's promotion) sees the old best or the new one, never half."""
    tmp = f"{os.path.dirname(target)}/.part-{os.getpid()}-{os.path.basename(target)}"
    if "://" not in target:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed
            import shutil

            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return
    gfile = _gfile()
    gfile.copy(source, tmp, overwrite=True)
    gfile.rename(tmp, target, overwrite=True)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def clean_float(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
