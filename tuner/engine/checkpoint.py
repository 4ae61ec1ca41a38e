"""Epoch checkpoints that let an interrupted trial continue where it stopped.

Keras Tuner restarts an interrupted trial from scratch. Here every finished
epoch writes the weights and optimizer state to new files, then switches one
small pointer file (`resume.json`) atomically, then removes the previous
epoch's files. A kill at any moment leaves the pointer naming a complete
checkpoint. The writing happens in a background thread from a snapshot
taken at the epoch's end, so the next epoch does not wait for the disk.
`history.csv` is rewritten from the pointer's rows, so each epoch appears
exactly once across interruptions.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
import threading
import time
from typing import Any, Callable

import keras
import numpy as np

from tuner.engine.snapshot import Snapshot, restore_seeds, snapshot
from tuner.engine.storage import is_remote
from tuner.errors import TunerError

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1",
    "val_precision", "val_recall", "learning_rate", "seconds",
)
POINTER = "resume.json"
HISTORY = "history.csv"
#: write epoch checkpoints from a background thread (False: on the training
#: thread, as bench/overhead.py compares)
ASYNC = True
WRITE_CHUNK = 64 << 20


def _gfile():
    from tuner.engine.storage import files

    return files()


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
    if not is_remote(path):
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
        self._pending: threading.Thread | None = None
        self._error: BaseException | None = None
        #: the last epoch whose checkpoint is on disk (as far as this object knows)
        self.durable: int | None = None
        #: seconds the last write took (a stop at an epoch end waits for one)
        self.write_seconds: float | None = None

    def load(self) -> dict[str, Any] | None:
        self.flush()
        gfile = _gfile()
        if not gfile.exists(self.pointer):
            return None
        with gfile.GFile(self.pointer) as f:
            return json.load(f)

    def _weights_name(self, epoch: int) -> str:
        return f"{self.prefix}{epoch:04d}.weights.h5"

    def save(self, model: keras.Model, epoch: int, state: dict[str, Any], best_file: str | None = None,
             guard: Callable[[], None] | None = None) -> None:
        """Persist the state after `epoch` finished epochs (1-based count).

        Here, on the training thread, only a snapshot is taken (numpy copies
        of every variable, the optimizer's slots and the random layers' seed
        states included, and the pointer's text); a background thread
        writes it (see `_write`) while the next epoch trains. One write is in flight at a time: the next save, a
        restore, `finish` and `flush` wait for it and raise its error.
        `guard` runs just before the new weights are put in place and may
        raise to abandon the write (a worker that lost its trial's lease)."""
        self.flush()
        snap = snapshot(model)
        history = history_csv(state.get("rows", []))
        # The seed states (a few integers) go into the pointer: they become
        # current with the weights they belong to, in the same rename.
        pointer = json.dumps({"epoch": epoch, "weights": f"resume/{self._weights_name(epoch)}",
                              "seeds": snap.seeds, "saved_at": time.time(), **state},
                             indent=1, default=_json_default)
        job = (snap, epoch, history, pointer, best_file, guard)
        if not ASYNC:
            self._write(*job)
            return
        self._error = None
        self._pending = threading.Thread(target=self._write_in_background, args=job,
                                         name=f"checkpoint-{epoch}", daemon=False)
        self._pending.start()

    def flush(self) -> None:
        """Wait for the write in flight, if any, and raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        """Wait for the write in flight; its error, if any, stays for `flush`."""
        if self._pending is not None:
            self._pending.join()

    def _write_in_background(self, *job) -> None:
        try:
            self._write(*job)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread by flush()
            self._error = e

    def _write(self, snap: Snapshot, epoch: int, history: str, pointer: str, best_file: str | None,
               guard: Callable[[], None] | None = None) -> None:
        """Order matters: the new weights file (the optimizer's slots are in
        it too), then history.csv, then the pointer; then, when this epoch
        is the trial's best, the best-epoch file (`best_file`) becomes a link
        to the same weights; only then are this owner's earlier epoch files
        removed. A kill or a full disk at any step leaves the pointer naming
        a complete checkpoint, and the best-epoch file whole (the pointer's
        `best_epoch` lets `restore` finish a publication that a kill cut
        short). The weights are serialized in memory and written with one
        plain write: HDF5 writing straight into a full disk prints its own
        error stack and crashes the interpreter at exit (seen on a full
        tmpfs), and an object store needs the upload anyway."""
        gfile = _gfile()
        folder = f"{self.dir}/resume"
        name = self._weights_name(epoch)
        target = f"{folder}/{name}"
        partial = f"{folder}/part-{name}"
        began = time.monotonic()
        try:
            gfile.makedirs(folder)
            data = snap.h5_file()
            try:
                with gfile.GFile(partial, "wb") as f:
                    if not is_remote(partial):
                        f.write(data)  # in place, with O_DIRECT where it can (storage.DirectFile)
                    else:  # tf.io.gfile takes bytes: in chunks, no third copy of a large file
                        for start in range(0, len(data), WRITE_CHUNK):
                            f.write(bytes(data[start:start + WRITE_CHUNK]))
            finally:
                data.release()
                snap.release()
            if guard is not None:
                guard()
            gfile.rename(partial, target, overwrite=True)
            atomic_write(f"{self.dir}/{HISTORY}", history)
            atomic_write(self.pointer, pointer)
            self.durable = epoch
            self.write_seconds = time.monotonic() - began  # what a stop waits for at most
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
        """Load weights, optimizer and seed states into a freshly built model
        (so its dropout masks continue where the checkpoint stopped), and
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
        restore_seeds(model, state.get("seeds"))
        self.durable = int(state["epoch"])
        return state

    def finish(self, state: dict[str, Any]) -> None:
        """Mark the trial done and drop its resume files (history stays)."""
        self.flush()
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
    if not is_remote(target):
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


