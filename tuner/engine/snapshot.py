"""A copy of a model's state, taken between two epochs, to be written later.

`model.save_weights` walks the model (layers, then the optimizer) and writes
each variable into an HDF5 file as it goes: 0.5-0.9 s for ResNet50V2 with
Adam on 2 cores, all of it on the training thread. Here the same walk, with
Keras's own code, records numpy copies instead of writing (into arrays kept
from the last save: 0.1 s for 285 MB, see `buffers`), and `h5_file` later
lays them out with Keras's own HDF5 store in memory, so the file holds what
`save_weights` writes (the same groups, datasets and attributes) and
`load_weights` reads it. The walk and the store are Keras internals
(`keras.src.saving.saving_lib`); where they are missing, `snapshot` falls back
to `save_weights` into a temporary file, on the training thread.

That walk skips the random layers' seed states (a `SeedGenerator` is no
saveable: Dropout's group in the file is empty, and `load_weights` leaves a
fresh build's `[seed, 0]`), so the snapshot also holds them (`seeds`), and
`restore_seeds` puts them back: without them every resumed run would draw
its first epoch's dropout masks again.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import keras
import numpy as np

from tuner.engine.buffers import ImageBuffer, array_like, give_back_arrays

try:
    from keras.src.saving.saving_lib import H5IOStore, _save_state
except ImportError:  # another Keras layout: see the fallback in snapshot()
    H5IOStore = _save_state = None


class Snapshot:
    """Keras's weight-file entries: (path, metadata, {key: array}) in the
    order `save_weights` writes them, or the finished file's bytes."""

    def __init__(self, entries: list[tuple[str, dict | None, dict[str, np.ndarray]]] | None = None,
                 raw: bytes | None = None, seeds: list[list[int]] | None = None):
        self.entries = entries or []
        self.raw = raw
        self._image: ImageBuffer | None = None
        #: every seed generator's state, in `seed_states` order
        self.seeds = seeds or []

    def h5_file(self) -> memoryview:
        """The weights file's bytes, in a page-aligned buffer reused from the
        last save (`buffers.ImageBuffer`). The numpy copies go back to their
        pool once they are in it; call `release` when the bytes are written."""
        if self.raw is not None:
            return memoryview(self.raw)
        arrays = [value for _, _, values in self.entries for value in values.values()]
        self._image = buf = ImageBuffer(sum(a.nbytes for a in arrays) + (1 << 20) + 4096 * len(arrays))
        store = H5IOStore(buf, mode="w")
        try:
            for path, metadata, values in self.entries:
                entry = store.make(path, metadata=metadata)
                for key, value in values.items():
                    entry[key] = value
        finally:
            store.close()
            self.entries = []
            give_back_arrays(arrays)
        return buf.getbuffer()

    def release(self) -> None:
        """The image's buffer back to its pool, for the next save (every view
        of it returned by `h5_file` must be released first)."""
        image, self._image = self._image, None
        if image is not None:
            image.give_back()


if H5IOStore is not None:
    class _Recorder(H5IOStore):
        """The store `_save_state` writes into: it keeps copies, no file."""

        def __init__(self):  # no HDF5 file behind it
            self.entries: list[tuple[str, dict | None, dict[str, np.ndarray]]] = []

        def __bool__(self) -> bool:
            return True

        def make(self, path, metadata=None):
            self.entries.append((path, metadata, {}))
            return self

        def __setitem__(self, key, value):
            # A copy, which the next training step's in-place updates cannot
            # reach, into an array kept from the last save (see buffers).
            source = _host_view(value)
            copy = array_like(source)
            np.copyto(copy, source)
            self.entries[-1][2][key] = copy

        def close(self) -> None:
            pass


def _host_view(value: Any) -> np.ndarray:
    """The variable's values as a numpy array without a copy where the
    backend allows one (a TensorFlow or JAX array on the CPU shares its
    buffer), else `convert_to_numpy`'s copy."""
    if isinstance(value, keras.Variable):
        value = value.value  # the backend's own tensor
    if hasattr(value, "read_value"):  # a tf.Variable
        value = value.read_value()
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError):
        from keras.src import backend

        return backend.convert_to_numpy(value)


def snapshot(model: Any) -> Snapshot:
    """The model's weights, optimizer state and seed states as they are now."""
    seeds = [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in seed_states(model)]
    if H5IOStore is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "snapshot.weights.h5")
            model.save_weights(path)
            with open(path, "rb") as f:
                return Snapshot(raw=f.read(), seeds=seeds)
    recorder = _Recorder()
    _save_state(model, weights_store=recorder, assets_store=None, inner_path="", visited_saveables=set())
    return Snapshot(recorder.entries, seeds=seeds)


def seed_states(model: Any) -> list:
    """The state variable of every SeedGenerator in the model (Dropout's,
    any keras random layer's, nested models' too): what `model.variables`
    holds beyond `model.weights`, in its order (a walk of the layers, the
    same for every build of the same model; their auto-generated names are
    not)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def restore_seeds(model: Any, seeds: list[list[int]] | None) -> None:
    """Put `Snapshot.seeds` back (None: a checkpoint written before they
    were kept; the fresh build's states stay)."""
    if seeds is None:
        return
    states = seed_states(model)
    if len(states) != len(seeds):
        raise ValueError(f"the checkpoint holds {len(seeds)} random-seed states, the model has {len(states)}: "
                         "it was written for another model")
    for v, value in zip(states, seeds):
        v.assign(np.asarray(value, dtype=v.dtype))
