"""The trial's input pipeline: validation_steps scores (and caches) the
first k batches, the val cache follows `train.cache`, the shuffle and
augmentation seed moves on after a resume, and only errors from reading or
decoding a record are taken for corrupt data."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_space
from tuner.data import reader
from tuner.data.reader import FlowerData, is_record_error


def hypermodel(tmp_path: Path, root: Path, train: str = "", extra: str = ""):
    import keras_tuner as kt

    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.model.strategy import StrategyInfo
    from tuner.spaces import load_space

    path = tiny_space(tmp_path, epochs=2, steps=2, extra=extra)
    if train:
        path.write_text(path.read_text().replace("jit_compile: false}", f"jit_compile: false, {train}}}"))
    space = load_space(path)
    datasets: dict[int, FlowerData] = {}

    def factory(size: int) -> FlowerData:
        return datasets.setdefault(size, FlowerData(str(root), size, log=None))

    hm = FlowerHyperModel(space, factory, StrategyInfo(tf.distribute.get_strategy(), "cpu", 1, ()), seed=5)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    return hm, hp


def _labels(ds) -> list[int]:
    return [int(i) for _, y in ds for i in np.argmax(y.numpy(), axis=1)]


def _move_records_away(root: Path) -> None:
    shutil.move(root / "tfrecords-jpeg-32x32" / "val", root / "val-away")


@pytest.fixture
def root(flower_root, tmp_path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(flower_root / "tfrecords-jpeg-32x32", dest / "tfrecords-jpeg-32x32")
    return dest


def test_validation_steps_scores_and_caches_the_first_batches(root, tmp_path):
    hm, hp = hypermodel(tmp_path, root, train="validation_steps: 2, cache: true")
    data, _, val = hm.datasets(hp)
    first = [int(lab) for _, lab in data.decoded("val").take(16)]
    assert _labels(val) == first  # batch 8: exactly the first two batches, in file order
    _move_records_away(root)
    assert _labels(val) == first  # the first pass read them to the end: all of it is in RAM


def test_val_cache_follows_train_cache(root, tmp_path):
    hm, hp = hypermodel(tmp_path, root, train="cache: false")
    _, _, val = hm.datasets(hp)
    assert len(_labels(val)) == 104
    _move_records_away(root)
    with pytest.raises(tf.errors.NotFoundError):
        _labels(val)  # not kept in RAM: read from the files again


def test_auto_cache_keeps_val_only_when_it_fits_beside_train(flower_root, monkeypatch):
    data = FlowerData(str(flower_root), 32, log=None)
    train, val = data.cache_bytes("train"), data.cache_bytes("val")
    for free, want in [(0, (False, False)), (10 * (train + val), (True, True)),
                       ((train + val / 2) / 0.4, (True, False)), ((val + 1) / 0.4, (False, True))]:
        monkeypatch.setattr(reader, "_available_bytes", lambda f=free: f)
        assert data.cache_splits("auto") == want, free
    assert data.cache_splits(True) == (True, True) and data.cache_splits(False) == (False, False)
    monkeypatch.setattr(reader, "_available_bytes", lambda: (train + 16 * 32 * 32 * 3 + 1) / 0.4)
    assert data.cache_splits("auto", val_images=16) == (True, True)  # only what validation_steps reads


def _machine(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


MEMINFO = "MemTotal:       8000000 kB\nMemFree:         100000 kB\nMemAvailable:   4000000 kB\n"
AVAILABLE = 4000000 * 1024  # the MemAvailable above, in bytes


@pytest.mark.parametrize("cgroup, want", [
    ({}, AVAILABLE),  # MemAvailable, not MemFree (the page cache is reclaimable)
    ({"sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory.current": "123\n"}, AVAILABLE),  # v2, no limit
    ({"sys/fs/cgroup/memory.max": "1000000000\n", "sys/fs/cgroup/memory.current": "400000000\n",
      "sys/fs/cgroup/memory.stat": "anon 300000000\ninactive_file 100000000\n"}, 700000000),  # v2 limit lower
    ({"sys/fs/cgroup/memory.max": str(2 * AVAILABLE), "sys/fs/cgroup/memory.current": "1000"},
     AVAILABLE),  # v2 limit higher
    ({"sys/fs/cgroup/memory/memory.limit_in_bytes": "2000000000\n",
      "sys/fs/cgroup/memory/memory.usage_in_bytes": "500000000\n",
      "sys/fs/cgroup/memory/memory.stat": "cache 1\ntotal_inactive_file 200000000\n"}, 1700000000),  # v1
    ({"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
      "sys/fs/cgroup/memory/memory.usage_in_bytes": "500000000\n"}, AVAILABLE),
])
def test_free_memory_is_memavailable_or_the_cgroup_limit_whichever_is_lower(tmp_path, cgroup, want):
    assert reader._available_bytes(_machine(tmp_path, {"proc/meminfo": MEMINFO, **cgroup})) == want


@contextlib.contextmanager
def deterministic_tf_data():
    """tf.data's debug mode: every stage in order, so equal seeds give equal
    batches (the real pipeline reads files in parallel and in any order)."""
    from tensorflow.python.data.ops import debug_mode

    debug_mode.toggle_debug_mode(True)
    try:
        yield
    finally:
        debug_mode.toggle_debug_mode(False)


def test_resumed_epochs_get_new_shuffle_and_augmentation_draws(root, tmp_path):
    hm, hp = hypermodel(tmp_path, root, extra="  flip_left_right: {value: true}\n  brightness: {value: 0.3}\n")

    def first_batch(initial_epoch: int):
        with deterministic_tf_data():
            _, train, _ = hm.datasets(hp, initial_epoch)
            x, y = next(iter(train))
        return x.numpy(), y.numpy()

    at0, at3, again3 = first_batch(0), first_batch(3), first_batch(3)
    np.testing.assert_array_equal(at3[0], again3[0])
    np.testing.assert_array_equal(at3[1], again3[1])
    assert not np.array_equal(at0[1], at3[1]), "epoch 4 starts with epoch 1's order"


def _unknown_length(t):
    """t's values as a vector whose length only run time knows (so a bad
    reshape fails in the graph, as a model error, not while tracing)."""
    return tf.boolean_mask(t, tf.math.is_finite(t))


def _fit_error(data: FlowerData, model_fn=None) -> tf.errors.OpError:
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    if model_fn is not None:
        x = keras.layers.Lambda(model_fn)(x)
    model = keras.Model(inputs, keras.layers.Dense(data.num_classes, activation="softmax")(x))
    model.compile("adam", "categorical_crossentropy", jit_compile=False)
    with pytest.raises(tf.errors.OpError) as e:
        model.fit(data.train_dataset(8, cache=False, seed=0), steps_per_epoch=30, epochs=1, verbose=0)
    return e.value


def _damage(root: Path, how: str) -> None:
    from tuner.data import records

    victim = sorted((root / "tfrecords-jpeg-32x32" / "train").glob("*.tfrec"))[1]
    n = records.count_from_name(str(victim))
    if how == "truncated":
        raw = victim.read_bytes()
        victim.write_bytes(raw[: len(raw) // 2])
    elif how == "missing":
        victim.unlink()
    else:
        image = b"not a jpeg" if how == "garbage" else records.encode_jpeg([np.zeros((40, 40, 3), np.uint8)])[0]
        with tf.io.TFRecordWriter(str(victim)) as w:
            for i in range(n):
                w.write(records.encode_example(image, f"x{i}", 3))


@pytest.mark.parametrize("how", ["garbage", "wrong-size", "truncated", "missing"])
def test_reading_and_decoding_errors_in_fit_are_record_errors(root, how):
    data = FlowerData(str(root), 32, log=None)
    data.check()  # lists the files and counts the labels while all are sound
    _damage(root, how)
    assert is_record_error(_fit_error(data))


def test_a_model_error_in_fit_is_not_a_record_error(root):
    data = FlowerData(str(root), 32, log=None)
    error = _fit_error(data, lambda t: t + tf.reduce_mean(tf.reshape(_unknown_length(t), [-1, 5])))  # 24 values
    assert isinstance(error, tf.errors.InvalidArgumentError) and "Input to reshape" in str(error)
    assert not is_record_error(error)


def test_a_model_error_fails_the_trial_with_its_own_line(root, tmp_path, monkeypatch):
    """A real search whose model fails at run time (a reshape, as a wrong-size
    record would): the trial fails with that error, no scan, no DataError."""
    import json

    import keras

    from tuner.model import hypermodel as hm_module
    from tuner.search import SearchOptions, run_search

    real = hm_module.build_model

    def broken(v, jit_compile="auto", num_classes=104, **kwargs):
        model = real(v, jit_compile=jit_compile, num_classes=num_classes, **kwargs)
        out = keras.layers.Lambda(lambda t: t + 0 * tf.reduce_mean(tf.reshape(_unknown_length(t), [-1, 5])))(
            model.output)  # 8 x 104 values: not a multiple of 5, found at run time
        bad = keras.Model(model.inputs, out)
        bad.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=False,
                    **hm_module.compile_metrics(num_classes))
        return bad

    monkeypatch.setattr(hm_module, "build_model", broken)
    project = tmp_path / "proj"
    space = tiny_space(tmp_path, epochs=1, steps=2)
    result = run_search(SearchOptions(space=str(space), data=str(root), project=str(project), max_trials=1,
                                      plain=True))
    assert result.trials == {"0": "FAILED"}, result
    message = json.loads((project / "trial_0" / "trial.json").read_text())["message"]
    assert "Input to reshape" in message and "corrupt" not in message and "\n" not in message.strip(), message
