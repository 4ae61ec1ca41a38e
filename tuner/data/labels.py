"""The data's classes: how many there are and what they are called.

Any dataset in Kaggle's layout works, not only the 104 flowers: the class
count is the largest label in train and val plus one (or the length of a
names file), and the names come from `classes.txt` (one name per line) or
`class_names.json` (a JSON list) beside the `tfrecords-jpeg-*` folders,
else Kaggle's flower names when there are exactly 104 classes, else
"class 0", "class 1", ...
"""

from __future__ import annotations

import json

from tuner.data.classes import CLASS_NAMES, NUM_CLASSES
from tuner.errors import DataError

#: Names files looked for in the data root, first found wins.
NAMES_FILES = ("classes.txt", "class_names.json")
#: Larger labels are damage, not classes (and would cost a huge count array).
MAX_CLASSES = 100_000


def read_names(root: str) -> tuple[list[str], str] | None:
    """(names by class id, the file's path) from the root's names file, or None."""
    import tensorflow as tf

    for name in NAMES_FILES:
        path = f"{root.rstrip('/')}/{name}"
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
        return _parse(text, path, json_list=name.endswith(".json")), path
    return None


def _parse(text: str, path: str, json_list: bool) -> list[str]:
    if json_list:
        try:
            names = json.loads(text)
        except ValueError as e:
            raise DataError(f"{path} is not valid JSON ({e}); give a list of class names") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path} must hold a JSON list of class names (strings), one per class id")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if not names:
        raise DataError(f"{path} names no classes; give one name per class id")
    if "" in names:
        raise DataError(f"{path}: class {names.index('')} has an empty name; give one name per class id")
    return names


def default_names(num_classes: int) -> list[str]:
    """Kaggle's flower names for 104 classes, else 'class N'."""
    if num_classes == NUM_CLASSES:
        return list(CLASS_NAMES)
    return [f"class {i}" for i in range(num_classes)]
