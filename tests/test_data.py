"""The Kaggle TFRecord pipeline on records the tests write themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, write_dataset
from tuner.data import records
from tuner.data.reader import FlowerData, available_sizes, choose_source_size
from tuner.errors import DataError


def ids_in_files(files: list[str]) -> list[str]:
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    out = []
    for f in files:
        for r in tf.data.TFRecordDataset(f):
            out.append(tf.io.parse_single_example(r, spec)["id"].numpy().decode())
    return out


def test_counts_come_from_file_names_and_match_records(flower_root):
    assert available_sizes(str(flower_root)) == [32, 48]
    for size in (32, 48):
        data = FlowerData(str(flower_root), size, log=None)
        assert (data.count("train"), data.count("val"), data.count("test")) == (208, 104, 30)
        for split in ("train", "val", "test"):
            real = sum(1 for f in data.files(split) for _ in tf.data.TFRecordDataset(f))
            assert real == data.count(split)
            names = [os.path.basename(f) for f in data.files(split)]
            assert names[0].startswith(f"00-{size}x{size}-")


def test_labeled_and_unlabeled_records_parse(flower_root):
    data = FlowerData(str(flower_root), 32, log=None)
    image, label = next(iter(data.decoded("train")))
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8
    assert 0 <= int(label) < 104
    image, id_ = next(iter(data.decoded("test")))
    assert image.shape == (32, 32, 3) and len(id_.numpy()) == 9


def test_test_ids_stay_in_file_order(flower_root):
    data = FlowerData(str(flower_root), 32, log=None)
    ids = [i.decode() for _, batch in data.test_dataset(7) for i in batch.numpy()]
    assert ids == ids_in_files(data.files("test"))
    labels_csv = (flower_root / "test_labels.csv").read_text().splitlines()[1:]
    assert sorted(ids) == sorted(line.split(",")[0] for line in labels_csv)


def test_batches_are_global_and_labels_one_hot(flower_root):
    data = FlowerData(str(flower_root), 32, log=None)
    x, y = next(iter(data.train_dataset(16, seed=0)))
    assert x.shape == (16, 32, 32, 3) and x.dtype == tf.float32
    assert float(tf.reduce_max(x)) <= 255.0 and float(tf.reduce_min(x)) >= 0.0
    assert y.shape == (16, 104) and np.allclose(y.numpy().sum(axis=1), 1.0)
    weights = data.class_weights()
    x, y, w = next(iter(data.train_dataset(8, seed=0, sample_weights=weights)))
    assert w.shape == (8,)
    np.testing.assert_allclose(w.numpy(), weights[np.argmax(y.numpy(), axis=1)])


def test_cache_on_or_off_gives_the_same_pixels(flower_root):
    data = FlowerData(str(flower_root), 32, log=None)
    a = np.concatenate([x.numpy() for x, _ in data.eval_dataset("val", 32, cache=False)])
    cached = data.eval_dataset("val", 32, cache=True)
    b1 = np.concatenate([x.numpy() for x, _ in cached])
    b2 = np.concatenate([x.numpy() for x, _ in cached])  # served from the cache
    assert a.shape == (104, 32, 32, 3)
    np.testing.assert_array_equal(a, b1)
    np.testing.assert_array_equal(a, b2)
    # the train pipeline's cache holds decoded uint8 images before augmentation
    ordered = lambda c: sorted(  # noqa: E731
        (int(np.argmax(y)), x.tobytes()) for xb, yb in
        data.train_dataset(16, cache=c, seed=1, repeat=False, drop_remainder=False) for x, y in zip(xb.numpy(), yb.numpy()))
    assert ordered(False) == ordered(True)


def test_a_tpus_padded_validation_counts_every_image_once(flower_root):
    """static=True (what a TPU gets): every batch has the same shape, the
    last one padded with weight-0 blanks, and every metric a trial reports
    equals the unpadded figure."""
    import keras

    from tuner.model.metrics import compile_metrics

    data = FlowerData(str(flower_root), 32, log=None)
    batches = list(data.val_dataset(48, cache=False, static=True))  # 104 images: 48 + 48 + 8 and 40 blanks
    assert [tuple(x.shape) for x, _, _ in batches] == [(48, 32, 32, 3)] * 3
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    assert weights.sum() == 104 and (weights[104:] == 0).all() and (weights[:104] == 1).all()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(104, activation="softmax")])
    # compiled as build_model compiles a TPU's trial model
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy",
                  **compile_metrics(104, padded=True))
    model.fit(data.val_dataset(104, cache=False), epochs=20, verbose=0)  # learns val by heart: real figures
    plain = model.evaluate(data.val_dataset(48, cache=False), return_dict=True, verbose=0)
    padded = model.evaluate(data.val_dataset(48, cache=False, static=True), return_dict=True, verbose=0)
    for k in ("accuracy", "f1", "precision", "recall"):
        assert padded[k] == pytest.approx(plain[k], abs=1e-6), (k, plain, padded)
    unmasked = model.evaluate(data.val_dataset(48, cache=False, static=True).map(lambda x, y, w: (x, y)),
                              return_dict=True, verbose=0)
    assert plain["accuracy"] > 0.5 and unmasked["accuracy"] < plain["accuracy"]  # the blanks would count
    # with validation_steps the padding fills the chosen batches only
    assert [tuple(x.shape) for x, _, _ in data.val_dataset(48, cache=False, steps=1, static=True)] == [(48, 32, 32, 3)]


def test_missing_size_resizes_from_the_smallest_larger(flower_root):
    messages = []
    assert choose_source_size(str(flower_root), 40) == 48
    data = FlowerData(str(flower_root), 40, log=messages.append)
    assert data.source_size == 48 and "resizing down from 48x48" in messages[0]
    x, _ = next(iter(data.val_dataset(4)))
    assert x.shape == (4, 40, 40, 3)


def test_class_counts_are_computed_once_and_kept(flower_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = FlowerData(str(flower_root), 32, log=None)
    counts = data.class_counts()
    assert counts.sum() == 208 and (counts == 2).all()
    assert data.class_counts() is counts
    assert list((tmp_path / "flower-tuner" / "class-counts").glob("*.json"))
    w = data.class_weights()
    np.testing.assert_allclose(w, 1.0)


@pytest.mark.parametrize("case", ["missing-root", "no-size-folder", "empty-train"])
def test_bad_roots_raise_data_error(tmp_path, case):
    root = tmp_path / "root"
    if case != "missing-root":
        root.mkdir()
    if case == "empty-train":
        (root / "tfrecords-jpeg-32x32" / "train").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        FlowerData(str(root), 32, log=None)
    msg = str(e.value)
    assert str(root) in msg and "\n" not in msg
    assert {"missing-root": "not found", "no-size-folder": "no tfrecords-jpeg", "empty-train": "no train records"}[case] in msg


def _damaged_copy(flower_root, tmp_path, how: str):
    root = tmp_path / "damaged"
    shutil.copytree(flower_root, root)
    victim = sorted((root / "tfrecords-jpeg-32x32" / "train").glob("*.tfrec"))[1]
    if how == "truncated":
        raw = victim.read_bytes()
        victim.write_bytes(raw[: len(raw) // 2])
    else:  # a record whose image is not a JPEG
        n = records.count_from_name(str(victim))
        with tf.io.TFRecordWriter(str(victim)) as w:
            for i in range(n):
                w.write(records.encode_example(b"not a jpeg at all", f"x{i}", 3))
    return root, victim


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_file_is_named(flower_root, tmp_path, how):
    root, victim = _damaged_copy(flower_root, tmp_path, how)
    data = FlowerData(str(root), 32, log=None)
    err = data.locate_corruption("train")
    assert isinstance(err, DataError)
    assert str(victim) in str(err) and "\n" not in str(err)


def test_corrupt_file_ends_search_with_one_line(flower_root, tmp_path):
    from conftest import run_cli, tiny_space

    root, victim = _damaged_copy(flower_root, tmp_path, "garbage")
    space = tiny_space(tmp_path, epochs=1, steps=30)
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(root), "--project", str(tmp_path / "p"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(victim) in err[0], r.stderr


def test_check_command_reports_the_data(flower_root):
    r = subprocess.run([sys.executable, "-m", "tuner", "check", "--data", str(flower_root), "--image-size", "32",
                        "--scan"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "train: 208 records in 4 files" in r.stdout and "test: 30 records" in r.stdout
    assert "img/s" in r.stdout


def test_written_files_follow_kaggle_naming(tmp_path):
    root = write_dataset(tmp_path / "r", sizes=(32,), per_class_train=1, per_class_val=1, n_test=5, files=3, classes=104)
    names = sorted(p.name for p in (root / "tfrecords-jpeg-32x32" / "train").iterdir())
    assert names == ["00-32x32-35.tfrec", "01-32x32-35.tfrec", "02-32x32-34.tfrec"]
    assert [records.count_from_name(n) for n in names] == [35, 35, 34]
