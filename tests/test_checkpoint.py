"""Epoch checkpoints written from a background thread (tuner.engine.checkpoint):
the file holds the state at the epoch's end, whatever trains meanwhile, and
holds what `model.save_weights` writes."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest


class SlowDisk:
    """The checkpoint's file system, whose writes of epoch weights wait until `release` is set."""

    def __init__(self, real):
        self.real, self.release, self.writing = real, threading.Event(), threading.Event()

    def GFile(self, name, mode="r"):
        f = self.real.GFile(name, mode)
        if "w" in mode and "part-" in str(name):
            self.writing.set()
            assert self.release.wait(30), "the test never released the write"
        return f

    def __getattr__(self, name):
        return getattr(self.real, name)


def _trained_model():
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 4)), np.ones((8, 3)), epochs=1, verbose=0)  # builds Adam's slots
    return model


def h5_content(path) -> dict:
    """Every group and dataset of an HDF5 file with its attributes and data
    (the layout `load_weights` reads; the bytes differ in HDF5's free-space
    bookkeeping between a file and an in-memory image)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            data = obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None
            out[name] = (type(obj).__name__, dict(obj.attrs), data)

        f.visititems(visit)
    return out


def _state(model):
    return ([np.array(w) for w in model.get_weights()], [np.array(v) for v in model.optimizer.variables])


def test_the_next_epoch_does_not_wait_for_the_disk_and_the_file_is_the_epoch_end(tmp_path, monkeypatch):
    import keras

    from tuner.engine import checkpoint
    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.storage import files

    model = _trained_model()
    at_end = _state(model)
    reference = tmp_path / "reference.weights.h5"
    model.save_weights(str(reference))
    disk = SlowDisk(files())
    monkeypatch.setattr(checkpoint, "_gfile", lambda: disk)
    ckpt = TrialCheckpoint(str(tmp_path / "trial"))
    t0 = time.monotonic()
    ckpt.save(model, 1, {"rows": [{"epoch": 1, "val_f1": 0.5}]}, best_file=str(tmp_path / "best.weights.h5"))
    returned = time.monotonic() - t0
    assert disk.writing.wait(30), "nothing was written"
    assert not (tmp_path / "trial" / "resume.json").exists()  # the write is held up, save() came back
    # The next epoch trains while the write waits: the weights and Adam's state move on.
    model.fit(np.random.default_rng(0).normal(size=(8, 4)), np.full((8, 3), 5.0), epochs=2, verbose=0)
    assert not np.array_equal(model.get_weights()[0], at_end[0][0])
    disk.release.set()
    ckpt.flush()
    pointer = json.loads((tmp_path / "trial" / "resume.json").read_text())
    assert pointer["epoch"] == 1 and pointer["rows"] == [{"epoch": 1, "val_f1": 0.5}]
    written = tmp_path / "trial" / pointer["weights"]
    assert h5_content(written) == h5_content(reference)  # what save_weights writes
    assert (tmp_path / "best.weights.h5").read_bytes() == written.read_bytes()
    fresh = keras.models.clone_model(model)
    fresh.compile(optimizer="adam", loss="mse")
    TrialCheckpoint(str(tmp_path / "trial")).restore(fresh)
    for got, want in zip(_state(fresh)[0] + _state(fresh)[1], at_end[0] + at_end[1], strict=True):
        np.testing.assert_array_equal(got, want)
    print(f"save() returned in {returned:.3f} s with the write held up")


def test_a_write_error_reaches_the_training_thread_and_the_previous_checkpoint_stays(tmp_path):
    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.errors import LeaseLost

    model = _trained_model()
    ckpt = TrialCheckpoint(str(tmp_path), owner="w1")
    ckpt.save(model, 1, {"rows": [{"epoch": 1}]})
    ckpt.flush()

    def lost() -> None:
        raise LeaseLost("trial 0 was handed to another worker")

    ckpt.save(model, 2, {"rows": [{"epoch": 1}, {"epoch": 2}]}, guard=lost)
    with pytest.raises(LeaseLost, match="handed to another worker"):
        ckpt.save(model, 3, {"rows": []})  # the next save waits for the last write and raises its error
    assert json.loads((tmp_path / "resume.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["w1-epoch-0001.weights.h5"]
    ckpt.flush()  # raised once, then gone


def test_the_synchronous_path_writes_the_same_file(tmp_path, monkeypatch):
    from tuner.engine import checkpoint
    from tuner.engine.checkpoint import TrialCheckpoint

    model = _trained_model()
    a, b = TrialCheckpoint(str(tmp_path / "a")), TrialCheckpoint(str(tmp_path / "b"))
    a.save(model, 1, {"rows": []})
    a.flush()
    monkeypatch.setattr(checkpoint, "ASYNC", False)
    b.save(model, 1, {"rows": []})
    assert b._pending is None
    files = [Path(c.dir) / "resume" / "epoch-0001.weights.h5" for c in (a, b)]
    assert h5_content(files[0]) == h5_content(files[1])


def _random_model(seed: int):
    """Dropout in the head and in a nested model (as EfficientNet's blocks
    have it in the backbone), and GaussianNoise: each draws from its own
    SeedGenerator, whose state no weights file holds."""
    import keras

    keras.utils.set_random_seed(seed)  # as the tuner does before each build
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.3)(keras.layers.Dense(12, activation="relu")(inner_in)))
    inputs = keras.Input((6,))
    h = keras.layers.GaussianNoise(0.2)(inner(inputs))
    h = keras.layers.Dropout(0.5)(keras.layers.Dense(16, activation="relu")(h))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    return model


@pytest.mark.parametrize("into", ["fresh", "warm"])
def test_losses_after_a_resume_are_those_of_an_uninterrupted_run(tmp_path, into):
    """Trained 2 epochs, checkpointed at each epoch's end, then a fresh
    build restored from the checkpoint trains epochs 3 and 4 (`warm`: the
    fresh build adopted by another trial's traced model first, as
    `_train` does): its losses are the uninterrupted run's, so its dropout
    masks and noise continue the stream instead of replaying epoch 1's.
    The same batches every epoch (no shuffle) and this CPU's deterministic
    kernels: equal to the last bit."""
    import keras

    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.warm import adopt

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 32), 3)
    fit = dict(batch_size=8, shuffle=False, verbose=0)
    straight = _random_model(7).fit(x, y, epochs=4, **fit).history["loss"]

    ckpt = TrialCheckpoint(str(tmp_path / "trial"))

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ckpt.save(self.model, epoch + 1, {"rows": []})

    first = _random_model(7).fit(x, y, epochs=2, callbacks=[Save()], **fit).history["loss"]
    ckpt.flush()
    assert first == straight[:2]
    assert len(ckpt.load()["seeds"]) == 3  # the nested model's Dropout too
    model = _random_model(7)
    if into == "warm":
        warm = _random_model(3)
        warm.fit(x, y, epochs=1, **fit)  # traced; its weights, slots and seed states moved on
        assert adopt(warm, model)
        model = warm
    assert TrialCheckpoint(str(tmp_path / "trial")).restore(model)["epoch"] == 2
    resumed = model.fit(x, y, epochs=4, initial_epoch=2, **fit).history["loss"]
    assert resumed == straight[2:], (straight, first, resumed)


def test_a_later_save_reuses_the_last_saves_memory_and_holds_its_own_epoch(tmp_path, monkeypatch):
    """The snapshot's arrays and the HDF5 image come back from the last
    save (fresh pages cost seconds a save on a small VM), and reusing them
    never lets a save see another epoch's values: training moves on while
    the second write is held up, and the file is still the second epoch's end."""
    from tuner.engine import buffers, checkpoint
    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.storage import files

    model = _trained_model()
    ckpt = TrialCheckpoint(str(tmp_path / "trial"))
    ckpt.save(model, 1, {"rows": []})
    ckpt.flush()
    arrays = {id(a) for spare in buffers._arrays.values() for a in spare}
    (image,) = buffers._images
    assert len(arrays) == len(model.weights) + len(model.optimizer.variables)

    model.fit(np.ones((8, 4)), np.zeros((8, 3)), epochs=1, verbose=0)
    reference = tmp_path / "epoch2.weights.h5"
    model.save_weights(str(reference))
    disk = SlowDisk(files())
    monkeypatch.setattr(checkpoint, "_gfile", lambda: disk)
    ckpt.save(model, 2, {"rows": []})
    assert disk.writing.wait(30), "nothing was written"
    model.fit(np.full((8, 4), 3.0), np.full((8, 3), 7.0), epochs=2, verbose=0)  # while the write waits
    disk.release.set()
    ckpt.flush()
    assert {id(a) for spare in buffers._arrays.values() for a in spare} == arrays  # the same arrays
    assert buffers._images == [image]  # and the same image buffer
    written = tmp_path / "trial" / "resume" / "epoch-0002.weights.h5"
    assert h5_content(written) == h5_content(reference)
    assert sorted(p.name for p in written.parent.iterdir()) == ["epoch-0002.weights.h5"]


def test_the_image_buffer_is_a_file_for_h5py_and_grows():
    import h5py

    from tuner.engine.buffers import PAGE, ImageBuffer

    buf = ImageBuffer(0)  # one page: h5py's writes make it grow
    data = np.random.default_rng(0).normal(size=(300, 1000))
    with h5py.File(buf, "w") as f:
        f["a/x"] = data
        f["a"].attrs["note"] = "kept"
    view = buf.getbuffer()
    assert len(view) > data.nbytes and len(buf._mm) % PAGE == 0
    assert np.frombuffer(view, np.uint8).ctypes.data % PAGE == 0  # page-aligned, for O_DIRECT
    image = bytes(view)
    view.release()
    with h5py.File(buf, "r") as f:  # read back through the same buffer
        np.testing.assert_array_equal(f["a/x"][()], data)
        assert f["a"].attrs["note"] == "kept"
    buf.give_back()
    again = ImageBuffer(len(image))
    assert again._mm is not None and len(again._mm) >= len(image)
    again.write(b"abc")
    again.seek(10)
    again.write(b"z")
    assert again.getvalue() == b"abc" + bytes(7) + b"z"  # a gap reads as zeros, not the last save's bytes
    again.give_back()


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
@pytest.mark.parametrize("size", [4096 * 5, 4096 * 5 + 123, 100])
def test_a_direct_file_writes_exactly_the_bytes_aligned_or_not(tmp_path, where, size):
    """Page-aligned memory goes to the disk with O_DIRECT, the rest (an odd
    tail, unaligned memory) the ordinary way, into the same file."""
    import mmap
    import tempfile

    from tuner.engine.storage import DirectFile

    folder = str(tmp_path) if where == "disk" else "/dev/shm"
    if not os.path.isdir(folder):
        pytest.skip("no /dev/shm")
    payload = np.random.default_rng(size).integers(0, 256, size + 1, dtype=np.uint8).tobytes()
    aligned = mmap.mmap(-1, size + 4096)
    aligned[: size + 1] = payload
    fd, path = tempfile.mkstemp(dir=folder)
    os.close(fd)
    try:
        with DirectFile(path) as out:
            out.write(memoryview(aligned)[:size])  # page-aligned
            out.write(memoryview(payload)[1:5])  # unaligned, at an unaligned offset
            out.write(memoryview(aligned)[:size])  # page-aligned memory, at an unaligned offset
        with open(path, "rb") as f:
            assert f.read() == payload[:size] + payload[1:5] + payload[:size]
        if _takes_o_direct(folder):
            assert out.direct_bytes == size - size % 4096  # only the first write could go direct
    finally:
        os.unlink(path)


def _takes_o_direct(folder: str) -> bool:
    path = os.path.join(folder, f".probe-{os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except (OSError, AttributeError):
        return False
    os.close(fd)
    os.unlink(path)
    return True
