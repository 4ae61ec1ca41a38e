"""The Kaggle record format: file naming, feature keys, writing and parsing.

Kept apart from `data` so that the demo generator and the tests write records
through exactly the code the reader's format is defined by.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

SPLITS = ("train", "val", "test")
LABELED_SPLITS = ("train", "val")
#: Notebooks count records with this regex over file names; so do we.
COUNT_RE = re.compile(r"-([0-9]*)\.")
SIZE_DIR_RE = re.compile(r"^tfrecords-jpeg-(\d+)x(\d+)$")


def size_dir(size: int) -> str:
    return f"tfrecords-jpeg-{size}x{size}"


def record_file_name(index: int, size: int, count: int) -> str:
    return f"{index:02d}-{size}x{size}-{count}.tfrec"


def count_from_name(path: str) -> int | None:
    """Number of records in a file, read from its name (no scan), or None."""
    m = COUNT_RE.search(os.path.basename(path))
    return int(m.group(1)) if m and m.group(1) else None


def feature_spec(labeled: bool) -> dict:
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "id": tf.io.FixedLenFeature([], tf.string),
    }
    if labeled:
        spec["class"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def encode_example(image_jpeg: bytes, id_: str, label: int | None) -> bytes:
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_jpeg])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[id_.encode()])),
    }
    if label is not None:
        feature["class"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(
    root: str,
    size: int,
    split: str,
    examples: Sequence[tuple[bytes, str, int | None]],
    num_files: int = 16,
) -> list[str]:
    """Write (jpeg, id, label) examples as `NN-SxS-COUNT.tfrec` files, split as
    evenly as Kaggle does (all files full but the last)."""
    import tensorflow as tf

    folder = os.path.join(root, size_dir(size), split)
    tf.io.gfile.makedirs(folder)
    n = len(examples)
    num_files = max(1, min(num_files, n)) if n else 1
    per_file = -(-n // num_files) if n else 0
    paths = []
    for i in range(num_files):
        chunk = examples[i * per_file : (i + 1) * per_file]
        if not chunk and n:
            break
        path = os.path.join(folder, record_file_name(i, size, len(chunk)))
        with tf.io.TFRecordWriter(path) as w:
            for jpeg, id_, label in chunk:
                w.write(encode_example(jpeg, id_, label))
        paths.append(path)
    return paths


def encode_jpeg(images: Iterable, quality: int = 90) -> list[bytes]:
    """uint8 HxWx3 arrays to JPEG bytes (TensorFlow's encoder, as Kaggle's were)."""
    import tensorflow as tf

    return [tf.io.encode_jpeg(img, quality=quality).numpy() for img in images]
