"""The procedural demo generator: Kaggle's layout, record format and counts,
determinism, and atomic writing. Small (scale 0.02, 32 px) to stay fast."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tuner import demo
from tuner.data import records
from tuner.errors import TunerError
from tuner.data.classes import NUM_CLASSES, TRAIN_CLASS_COUNTS

SCALE = 0.02
SIZE = 32
SEED = 1
NAME_RE = re.compile(rf"^(\d\d)-{SIZE}x{SIZE}-(\d+)\.tfrec$")
HEX_ID = re.compile(r"^[0-9a-f]{9}$")


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> demo.DemoSummary:
    out = tmp_path_factory.mktemp("demo") / "data"
    logs: list[str] = []
    summary = demo.generate(str(out), sizes=(SIZE,), scale=SCALE, seed=SEED, log=logs.append)
    assert summary.root == str(out)
    assert summary.sizes == (SIZE,)
    assert summary.seconds > 0
    assert logs, "generate should report progress through log"
    return summary


@pytest.fixture(scope="module")
def root(summary) -> Path:
    return Path(summary.root)


class Interrupted(BaseException):
    """Stands in for Ctrl-C or a kill part-way through a generation."""


def split_files(root: Path, split: str, size: int = SIZE) -> list[Path]:
    return sorted((root / records.size_dir(size) / split).iterdir())


def read_examples(files: list[Path]) -> list[dict]:
    out = []
    for f in files:
        for raw in tf.data.TFRecordDataset(str(f)):
            ex = tf.train.Example.FromString(raw.numpy())
            feats = ex.features.feature
            d = {"keys": set(feats.keys()), "image": feats["image"].bytes_list.value[0],
                 "id": feats["id"].bytes_list.value[0].decode()}
            if "class" in feats:
                d["class"] = int(feats["class"].int64_list.value[0])
            out.append(d)
    return out


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def expected_counts() -> dict[str, int]:
    train = sum(max(3, round(c * SCALE)) for c in TRAIN_CLASS_COUNTS)
    return {"train": train, "val": max(2 * NUM_CLASSES, round(3712 * SCALE)),
            "test": round(7382 * SCALE)}


def test_layout_and_file_names(root):
    assert demo.is_complete(str(root))
    assert sorted(os.listdir(root)) == sorted(
        [demo.COMPLETE_MARKER, "sample_submission.csv", "test_labels.csv", records.size_dir(SIZE)])
    assert sorted(os.listdir(root / records.size_dir(SIZE))) == ["test", "train", "val"]
    for split in records.SPLITS:
        files = split_files(root, split)
        assert 1 <= len(files) <= 16
        matches = [NAME_RE.match(f.name) for f in files]
        assert all(matches), [f.name for f in files]
        assert [int(m.group(1)) for m in matches] == list(range(len(files)))
        counts = [int(m.group(2)) for m in matches]
        # As Kaggle splits them: all files equally full but the last.
        assert len(set(counts[:-1])) <= 1 and counts[-1] <= counts[0]
    # No temporary or replaced trees left beside the output.
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_counts_in_names_match_records(root, summary):
    want = expected_counts()
    assert summary.counts == want
    for split in records.SPLITS:
        files = split_files(root, split)
        total = 0
        for f in files:
            n = sum(1 for _ in tf.data.TFRecordDataset(str(f)))
            assert records.count_from_name(str(f)) == n
            total += n
        assert total == want[split]


def test_record_features_and_images(root):
    seen_ids: set[str] = set()
    for split in records.SPLITS:
        exs = read_examples(split_files(root, split))
        want_keys = {"image", "id"} if split == "test" else {"image", "id", "class"}
        for ex in exs:
            assert ex["keys"] == want_keys
            assert HEX_ID.match(ex["id"]), ex["id"]
            assert ex["id"] not in seen_ids
            seen_ids.add(ex["id"])
            if split != "test":
                assert 0 <= ex["class"] < NUM_CLASSES
            img = tf.io.decode_jpeg(ex["image"], channels=3)
            assert tuple(img.shape) == (SIZE, SIZE, 3)
            assert img.dtype == tf.uint8


def test_class_counts(root):
    train = np.array([ex["class"] for ex in read_examples(split_files(root, "train"))])
    val = np.array([ex["class"] for ex in read_examples(split_files(root, "val"))])
    tc = np.bincount(train, minlength=NUM_CLASSES)
    assert (tc == [max(3, round(c * SCALE)) for c in TRAIN_CLASS_COUNTS]).all()
    assert set(train.tolist()) == set(range(NUM_CLASSES))
    vc = np.bincount(val, minlength=NUM_CLASSES)
    assert vc.min() >= 2 and vc.max() - vc.min() <= 1
    # Shuffled, not grouped by class.
    assert (np.diff(train) != 0).sum() > len(train) // 2


def test_submission_and_test_labels_follow_record_order(root):
    ids = [ex["id"] for ex in read_examples(split_files(root, "test"))]
    sub = read_csv(root / "sample_submission.csv")
    assert sub[0] == ["id", "label"]
    assert [r[0] for r in sub[1:]] == ids
    assert {r[1] for r in sub[1:]} == {"0"}
    lab = read_csv(root / "test_labels.csv")
    assert lab[0] == ["id", "label"]
    assert [r[0] for r in lab[1:]] == ids
    labels = np.array([int(r[1]) for r in lab[1:]])
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1  # roughly balanced


def test_deterministic_for_a_seed_and_replaces_an_earlier_demo(root, tmp_path):
    out = tmp_path / "again"
    demo.generate(str(out), sizes=(SIZE,), scale=SCALE, seed=SEED + 1)
    other = tree_digest(out)
    first = tree_digest(root)
    assert other.keys() == first.keys()
    tfrecs = [k for k in first if k.endswith(".tfrec")]
    assert all(other[k] != first[k] for k in tfrecs)
    # Same seed into a folder holding an earlier complete demo: replaced, byte for byte.
    demo.generate(str(out), sizes=(SIZE,), scale=SCALE, seed=SEED)
    assert tree_digest(out) == first
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_sizes_show_the_same_instances(tmp_path):
    out = tmp_path / "two"
    demo.generate(str(out), sizes=(32, 16), scale=0.01, seed=3, num_files=3)
    small = read_examples(split_files(out, "val", 16))
    large = read_examples(split_files(out, "val", 32))
    assert [e["id"] for e in small] == [e["id"] for e in large]
    assert [e["class"] for e in small] == [e["class"] for e in large]
    assert len(split_files(out, "train", 16)) == 3

    def img(e, size):
        im = tf.io.decode_jpeg(e["image"], channels=3)
        return tf.image.resize(tf.cast(im, tf.float32), (8, 8), antialias=True).numpy()

    same = np.mean([np.abs(img(a, 16) - img(b, 32)).mean() for a, b in zip(small, large)])
    shifted = np.mean([np.abs(img(a, 16) - img(b, 32)).mean() for a, b in zip(small, large[1:])])
    assert same < 0.25 * shifted


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = demo.render

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise Interrupted
        return real(*a, **k)

    monkeypatch.setattr("tuner.demo.writer.render", failing)  # where generate looks it up
    out = tmp_path / "half"
    with pytest.raises(Interrupted):
        demo.generate(str(out), sizes=(SIZE,), scale=SCALE)
    assert not demo.is_complete(str(out))
    assert list(tmp_path.iterdir()) == []

    # What a killed run leaves (no pid can be this large) is not complete, and
    # the next run clears it away.
    (tmp_path / "half.tmp-999999999" / records.size_dir(SIZE)).mkdir(parents=True)
    monkeypatch.setattr("tuner.demo.writer.render", real)
    calls["n"] = 0
    demo.generate(str(out), sizes=(SIZE,), scale=0.005, num_files=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]
    assert demo.is_complete(str(out))


def test_refuses_a_folder_that_is_not_a_demo(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert not demo.is_complete(str(out))
    with pytest.raises(TunerError):
        demo.generate(str(out), sizes=(SIZE,), scale=SCALE)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_bad_arguments(tmp_path):
    with pytest.raises(TunerError):
        demo.generate(str(tmp_path / "a"), scale=0)
    with pytest.raises(TunerError):
        demo.generate(str(tmp_path / "b"), sizes=())
    assert list(tmp_path.iterdir()) == []


def test_default_demo_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNER_DEMO_DATA", str(tmp_path / "x"))
    assert demo.default_demo_dir() == str(tmp_path / "x")
    monkeypatch.delenv("TUNER_DEMO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert demo.default_demo_dir() == str(tmp_path / "cache" / "flower-tuner" / "demo")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo.default_demo_dir() == str(tmp_path / "home" / ".cache" / "flower-tuner" / "demo")


def test_species_are_fixed_and_distinct():
    looks = [demo.species(c) for c in range(NUM_CLASSES)]
    assert demo.species(7) is looks[7]
    keys = {(s.shape, s.petals, s.layers[0].base, s.centre) for s in looks}
    assert len(keys) == NUM_CLASSES
    a = demo.sample_image(5, size=24, seed=0)
    assert a.shape == (24, 24, 3) and a.dtype == np.uint8
    assert (demo.sample_image(5, size=24, seed=0) == a).all()
    assert not (demo.sample_image(5, size=24, seed=1) == a).all()
