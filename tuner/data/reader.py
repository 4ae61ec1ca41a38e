"""Reading Kaggle's flower TFRecords into tf.data pipelines.

Local paths and `gs://` both go through `tf.io.gfile`. Record counts come from
the file names (as the public notebooks count them), so opening a data root
costs one directory listing per split, not a scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuner.data import labels, records
from tuner.errors import DataError

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow here
HINT = "pass --data ROOT (the folder that holds tfrecords-jpeg-SxS/), or run `python -m tuner demo-data`"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def available_sizes(root: str) -> list[int]:
    """Image sizes present under `root` (from the `tfrecords-jpeg-SxS` folders)."""
    gfile = _gfile()
    if not gfile.exists(root):
        raise DataError(f"data folder {root} not found; {HINT}")
    if not gfile.isdir(root):
        raise DataError(f"data path {root} is not a folder; {HINT}")
    sizes = []
    for name in gfile.listdir(root):
        m = records.SIZE_DIR_RE.match(name.rstrip("/"))
        if m and m.group(1) == m.group(2):
            sizes.append(int(m.group(1)))
    return sorted(sizes)


def choose_source_size(root: str, image_size: int) -> int:
    """The folder to read for `image_size`: the exact one, else the smallest
    larger one (downscaling keeps detail), else the largest smaller one."""
    sizes = available_sizes(root)
    if not sizes:
        raise DataError(f"no tfrecords-jpeg-SxS folder in {root}; {HINT}")
    if image_size in sizes:
        return image_size
    larger = [s for s in sizes if s > image_size]
    return min(larger) if larger else max(sizes)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat(text: str | None, key: str) -> int:
    """One `key value` line of a cgroup memory.stat (0 when absent)."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_free(root: str) -> int | None:
    """Bytes left under this container's memory limit (cgroup v2, else v1),
    or None without a limit. The inactive file cache counts as free, as the
    kernel reclaims it before it would kill the process."""
    for limit, usage, stat, inactive in (
            ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory.current", "sys/fs/cgroup/memory.stat",
             "inactive_file"),
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", "sys/fs/cgroup/memory/memory.usage_in_bytes",
             "sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        cap, used = _read(os.path.join(root, limit)), _read(os.path.join(root, usage))
        if cap is None or used is None or not used.strip().isdigit():
            continue
        if not cap.strip().isdigit():  # "max": no limit
            return None
        reclaimable = _stat(_read(os.path.join(root, stat)), inactive)
        return max(0, int(cap) - max(0, int(used) - reclaimable))
    return None


def _available_bytes(root: str = "/") -> int:
    """Memory this process can still take: the kernel's MemAvailable (free
    plus reclaimable cache; the free pages alone undercount it) or, in a
    container, what is left under its cgroup limit, whichever is lower.
    `root` is where /proc and /sys are found."""
    meminfo = _read(os.path.join(root, "proc/meminfo")) or ""
    m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.M)
    host = int(m.group(1)) * 1024 if m else None
    if host is None:
        try:
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            host = 0
    cgroup = _cgroup_free(root)
    return host if cgroup is None else min(host, cgroup)


#: Name scope of the ops that parse and decode a record: an error raised at
#: one of them names a damaged record, not a model or augmentation problem.
RECORD_SCOPE = "flower_records"


def is_record_error(error: BaseException) -> bool:
    """True when a TensorFlow error raised during `fit` came from reading,
    parsing or decoding a record (so scanning the files can name it): a
    DataLossError, an error at a parse/decode op, or one at the iterator
    itself, which is where the TFRecord reader's own failures surface."""
    import tensorflow as tf

    if isinstance(error, tf.errors.DataLossError):
        return True
    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError)):
        return False
    text = getattr(error, "message", "") or str(error)
    if re.search(rf"node {RECORD_SCOPE}(_\d+)?/", text):  # TensorFlow numbers a reused scope
        return True
    return re.search(r"Detected at node \S*IteratorGetNext\b", text) is not None


def _reason(error) -> str:
    """TensorFlow's error in a few words, without its graph-node noise."""
    import tensorflow as tf

    text = re.sub(r"\{\{[^}]*\}\}", "", getattr(error, "message", str(error)) or "").strip()
    lower = text.lower()
    if isinstance(error, tf.errors.DataLossError) or "truncated" in lower or "corrupted record" in lower:
        return "truncated or corrupted record"
    if "jpeg" in lower or "decode" in lower or "unknown image file format" in lower:
        return "the image is not a valid JPEG"
    if "feature" in lower and ("key" in lower or "required" in lower):
        return "the record lacks Kaggle's keys (image, class, id)"
    if "reshape" in lower or "input to reshape" in lower:
        return "the image size differs from its folder's size"
    first = text.splitlines()[0] if text else type(error).__name__
    return first.rsplit(": ", 1)[-1][:160]


def deterministic_input() -> bool:
    """TUNER_DETERMINISTIC=1: training reads its records in one fixed order
    (a little slower), so two runs with the same seed see the same batches;
    the test comparing 4 devices with 1 relies on it."""
    return os.environ.get("TUNER_DETERMINISTIC") == "1"


@dataclass
class FlowerData:
    """One data root at one image size. Cheap to build: lists files only."""

    root: str
    image_size: int
    log: Callable[[str], None] | None = print
    source_size: int = field(init=False)
    _files: dict[str, list[str]] = field(init=False, default_factory=dict)
    _class_counts: dict[str, Any] = field(init=False, default_factory=dict)
    _label_counts: dict[str, Any] = field(init=False, default_factory=dict)
    _names: list[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.root = str(self.root).rstrip("/") or "/"
        self.source_size = choose_source_size(self.root, self.image_size)
        if self.source_size != self.image_size and self.log:
            how = "down" if self.source_size > self.image_size else "up"
            self.log(
                f"no {self.image_size}x{self.image_size} records in {self.root}; "
                f"resizing {how} from {self.source_size}x{self.source_size}"
            )
        for split in ("train", "val"):
            if not self.files(split):
                raise DataError(
                    f"no {split} records in {self._split_dir(split)}; "
                    f"expected files like {records.record_file_name(0, self.source_size, 798)}"
                )

    # ---- files and counts -------------------------------------------------
    def _split_dir(self, split: str) -> str:
        return f"{self.root}/{records.size_dir(self.source_size)}/{split}"

    def files(self, split: str) -> list[str]:
        if split not in self._files:
            gfile = _gfile()
            folder = self._split_dir(split)
            found = sorted(gfile.glob(f"{folder}/*.tfrec")) if gfile.exists(folder) else []
            self._files[split] = found
        return self._files[split]

    def has_split(self, split: str) -> bool:
        return bool(self.files(split))

    def count(self, split: str) -> int:
        """Records in a split, summed from the file names."""
        total = 0
        for path in self.files(split):
            n = records.count_from_name(path)
            if n is None:
                raise DataError(
                    f"cannot read the record count from the file name {path}; "
                    "Kaggle names files NN-SxS-COUNT.tfrec"
                )
            total += n
        return total

    def labels_seen(self, split: str):
        """Images per label as found (length: the largest label + 1), scanned
        once (labels only, no decoding) and kept in memory and in the user
        cache, keyed by the file list."""
        import numpy as np

        if split in self._label_counts:
            return self._label_counts[split]
        files = self.files(split)
        key = hashlib.sha256(json.dumps(["labels-v2", self.root, files]).encode()).hexdigest()[:16]
        cache_dir = os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
            "flower-tuner",
            "class-counts",
        )
        cache_file = os.path.join(cache_dir, f"{key}.json")
        counts = None
        try:
            with open(cache_file) as f:
                counts = np.array(json.load(f), dtype=np.int64).reshape(-1)
        except (OSError, ValueError):
            pass
        if counts is None:
            import tensorflow as tf

            spec = {"class": tf.io.FixedLenFeature([], tf.int64)}
            ds = tf.data.TFRecordDataset(files, num_parallel_reads=AUTOTUNE)
            ds = ds.map(lambda r: tf.io.parse_single_example(r, spec)["class"], AUTOTUNE)
            counts = np.zeros(0, dtype=np.int64)
            try:
                for batch in ds.batch(4096).as_numpy_iterator():
                    if batch.min() < 0:
                        raise self._label_error(split, lambda y: y < 0, "negative; class ids start at 0")
                    if batch.max() >= labels.MAX_CLASSES:
                        raise self._label_error(split, lambda y: y >= labels.MAX_CLASSES,
                                                f"not a class id (at most {labels.MAX_CLASSES - 1})")
                    found = np.bincount(batch)
                    if len(found) > len(counts):
                        counts = np.pad(counts, (0, len(found) - len(counts)))
                    counts[: len(found)] += found
            except tf.errors.OpError as e:
                raise self.locate_corruption(split, e) from None
            try:
                os.makedirs(cache_dir, exist_ok=True)
                with open(cache_file, "w") as f:
                    json.dump(counts.tolist(), f)
            except OSError:
                pass
        self._label_counts[split] = counts
        return counts

    @property
    def class_names(self) -> list[str]:
        """Names by class id: the root's names file, else the flower names
        for 104 classes, else 'class N'. Reading them checks every train and
        val label against them once."""
        if self._names is None:
            seen = {sp: len(self.labels_seen(sp)) for sp in records.LABELED_SPLITS}
            found = labels.read_names(self.root)
            if found is None:
                names = labels.default_names(max(seen.values()))
                if not names:
                    raise DataError(f"no labelled records under {self.root}: train and val are empty")
            else:
                names, path = found
                for sp, n in seen.items():
                    if n > len(names):
                        raise self._label_error(
                            sp, lambda y, k=len(names): y >= k,
                            f"outside the {len(names)} class names in {path} (ids 0..{len(names) - 1}); "
                            "fix the label or add the missing names")
            self._names = names
        return self._names

    @property
    def num_classes(self) -> int:
        """The model's output width: the data's classes, not always 104."""
        return len(self.class_names)

    def _label_error(self, split: str, bad: Callable, what: str) -> DataError:
        """The first record of `split` whose label is `bad`, as a DataError
        naming its file (a scan that runs only on failure)."""
        import tensorflow as tf

        spec = {"class": tf.io.FixedLenFeature([], tf.int64)}
        for path in self.files(split):
            for n, r in enumerate(tf.data.TFRecordDataset(path)):
                y = int(tf.io.parse_single_example(r, spec)["class"])
                if bad(y):
                    return DataError(f"label {y} of record {n} in {path} is {what}")
        return DataError(f"a label in the {split} split under {self.root} is {what}")

    def class_counts(self, split: str = "train"):
        """Images per class id, one entry per class of the data."""
        import numpy as np

        if split not in self._class_counts:
            seen = self.labels_seen(split)
            self._class_counts[split] = np.pad(seen, (0, self.num_classes - len(seen)))
        return self._class_counts[split]

    def class_weights(self, split: str | tuple[str, ...] = "train"):
        """sklearn's 'balanced' weights (n / (classes * count)) over the
        split(s) trained on (a refit: train + val); 0 for absent classes."""
        import numpy as np

        splits = (split,) if isinstance(split, str) else split
        counts = sum(self.class_counts(s).astype("float64") for s in splits)
        present = counts > 0
        w = np.zeros(len(counts))
        w[present] = counts.sum() / (present.sum() * counts[present])
        return w.astype("float32")

    def cache_bytes(self, split: str, images: int | None = None) -> int:
        n = self.count(split) if images is None else min(images, self.count(split))
        return n * self.image_size * self.image_size * 3

    def fits_in_memory(self, splits: tuple[str, ...], fraction: float = 0.4) -> bool:
        return sum(self.cache_bytes(s) for s in splits) < fraction * _available_bytes()

    def cache_splits(self, cache: bool | str = "auto", val_images: int | None = None,
                     fraction: float = 0.4) -> tuple[bool, bool]:
        """Whether train and val keep their decoded images in RAM: `cache`
        true or false decides both; "auto" keeps train when it fits in 40% of
        the free memory, then val (its first `val_images` when only those are
        scored) when both together still do."""
        if cache != "auto":
            return bool(cache), bool(cache)
        free = fraction * _available_bytes()
        train = self.cache_bytes("train") < free
        used = self.cache_bytes("train") if train else 0
        return train, used + self.cache_bytes("val", val_images) < free

    # ---- parsing ----------------------------------------------------------
    def _decode(self, jpeg):
        import tensorflow as tf

        s0, s = self.source_size, self.image_size
        with tf.name_scope(RECORD_SCOPE):  # so a failure is known as the record's (is_record_error)
            image = tf.io.decode_jpeg(jpeg, channels=3)
            image = tf.reshape(image, [s0, s0, 3])  # static shape: TPUs need it
            if s0 != s:
                image = tf.image.resize(image, [s, s], antialias=True)
                image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image

    def _parse(self, labeled: bool):
        import tensorflow as tf

        spec = records.feature_spec(labeled)

        def parse(record):
            with tf.name_scope(RECORD_SCOPE):
                ex = tf.io.parse_single_example(record, spec)
            image = self._decode(ex["image"])
            if labeled:
                return image, tf.cast(ex["class"], tf.int32)
            return image, ex["id"]

        return parse

    def _records(self, split: str | tuple[str, ...], ordered: bool):
        import tensorflow as tf

        splits = (split,) if isinstance(split, str) else split
        files = []
        for name in splits:
            if not self.files(name):
                raise DataError(f"no {name} records in {self._split_dir(name)}")
            files += self.files(name)
        options = tf.data.Options()
        options.deterministic = ordered or deterministic_input()
        if ordered:
            ds = tf.data.TFRecordDataset(files)
        else:
            ds = tf.data.Dataset.from_tensor_slices(files)
            ds = ds.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(len(files), 16),
                num_parallel_calls=AUTOTUNE,
                deterministic=deterministic_input(),
            )
        return ds.with_options(options)

    def decoded(self, split: str | tuple[str, ...], ordered: bool = True):
        """(uint8 image, label or id) pairs, one per record, no batching;
        several labelled splits read as one (a refit trains on train + val)."""
        labeled = all(s in records.LABELED_SPLITS for s in ((split,) if isinstance(split, str) else split))
        return self._records(split, ordered).map(
            self._parse(labeled), num_parallel_calls=AUTOTUNE, deterministic=ordered or deterministic_input()
        )

    # ---- pipelines --------------------------------------------------------
    def train_dataset(
        self,
        batch_size: int,
        augment: Callable | None = None,
        cache: bool | str = "auto",
        seed: int | None = None,
        shuffle_buffer: int = 2048,
        sample_weights=None,
        repeat: bool = True,
        drop_remainder: bool = True,
        splits: tuple[str, ...] = ("train",),
    ):
        """Yields (float32 0..255 images, one-hot labels[, sample weights]).

        Order is ignored for speed; the RAM cache holds decoded uint8 images
        (before augmentation, so every epoch is augmented afresh)."""
        import tensorflow as tf

        ds = self.decoded(splits, ordered=False)
        if cache == "auto":
            cache = self.fits_in_memory(splits)
        if cache:
            ds = ds.cache()
        ds = ds.shuffle(shuffle_buffer, seed=seed)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if augment is not None:
            seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda xy, s: (augment(tf.cast(xy[0], tf.float32), s), xy[1]),
                num_parallel_calls=AUTOTUNE,
            )
        return self._finish(ds, sample_weights)

    def eval_dataset(self, split: str, batch_size: int, cache: bool = True, sample_weights=None,
                     steps: int | None = None, static: bool = False):
        """Ordered, batched, optionally cached: (images, one-hot labels).
        With `steps`, only the first `steps` batches: the same ones every
        time, read to their end so the cache completes instead of being
        dropped and refilled each epoch.

        `static` (a TPU: every batch the same shape) pads the last batch
        with blank images and yields a third element, the sample weight: 1
        for an image, 0 for the padding, so every metric (the macro scores
        included, see tuner.model.metrics) counts each image once. Keras'
        `val_loss` is the one figure the padding still touches: the last
        batch's mean is taken over the whole batch."""
        import tensorflow as tf

        ds = self.decoded(split, ordered=True)
        # No autotuning thread: dropping an iterator waits for that thread's
        # model optimisation to finish, and Keras drops the validation
        # iterator at the start of every validation after the first. On 2
        # busy cores that wait was 15 s, uncounted and unforeseen, in about
        # a third of runs (seen in py-spy as RootDataset's iterator
        # destructor in `EpochIterator.reset`). The parallel maps keep the
        # parallelism AUTOTUNE starts them at; a cached split's later
        # passes hardly use them.
        off = tf.data.Options()
        off.autotune.enabled = False
        ds = ds.with_options(off)
        if steps:
            ds = ds.take(steps * batch_size)
        if cache:
            ds = ds.cache()
        if not static:
            return self._finish(ds.batch(batch_size), sample_weights)
        n = self.count(split) if not steps else min(steps * batch_size, self.count(split))
        ds = ds.map(lambda x, y: (x, y, tf.constant(1.0)))
        pad = -n % batch_size
        if pad:
            image, label, _ = ds.element_spec
            blank = (tf.zeros(image.shape, image.dtype), tf.zeros(label.shape, label.dtype), tf.constant(0.0))
            ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat(pad))
        return self._finish(ds.batch(batch_size, drop_remainder=True), sample_weights)

    def val_dataset(self, batch_size: int, cache: bool = True, steps: int | None = None, static: bool = False):
        return self.eval_dataset("val", batch_size, cache=cache, steps=steps, static=static)

    def test_dataset(self, batch_size: int):
        """Ordered (float32 images, ids): predictions line up with ids."""
        import tensorflow as tf

        if not self.has_split("test"):
            raise DataError(f"no test records in {self._split_dir('test')}")
        ds = self.decoded("test", ordered=True).batch(batch_size)
        return ds.map(lambda x, i: (tf.cast(x, tf.float32), i)).prefetch(AUTOTUNE)

    def _finish(self, ds, sample_weights):
        """float32 images and one-hot labels; the class weights of
        `sample_weights` as a third element, times the padding's weight
        where there is one."""
        import tensorflow as tf

        depth = self.num_classes
        table = None if sample_weights is None else tf.constant(sample_weights, tf.float32)

        def to_float(x, y, w=None):
            out = (tf.cast(x, tf.float32), tf.one_hot(y, depth))
            if table is not None:
                w = tf.gather(table, y) * (1.0 if w is None else w)
            return out if w is None else (*out, w)

        return ds.map(to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    # ---- corrupt input ----------------------------------------------------
    def locate_corruption(self, split: str | None = None, error: BaseException | None = None) -> DataError:
        """Find the first unreadable file after a read error, so the user gets
        its path instead of TensorFlow's stack. Scans only on failure."""
        found = self.find_corruption(split)
        if found is not None:
            return found
        detail = f": {str(error).splitlines()[0][:200]}" if error else ""
        return DataError(f"could not read the records under {self.root}{detail}")

    def find_corruption(self, split: str | None = None) -> DataError | None:
        """Read every record of `split` (or of every split); the first damaged
        or misnamed file as a DataError, or None when all are sound."""
        import tensorflow as tf

        splits = [split] if split else [s for s in records.SPLITS if self.has_split(s)]
        for sp in splits:
            labeled = sp in records.LABELED_SPLITS
            parse = self._parse(labeled)
            for path in self.files(sp):
                n = 0
                try:
                    for _ in tf.data.TFRecordDataset(path).map(parse):
                        n += 1
                except tf.errors.OpError as e:
                    return DataError(
                        f"corrupt record file {path} (record {n}): {_reason(e)}; "
                        "re-download or regenerate it, or move it out of the split"
                    )
                expected = records.count_from_name(path)
                if expected is not None and expected != n:
                    return DataError(
                        f"record file {path} holds {n} records but its name says {expected}; "
                        "the file is truncated or misnamed"
                    )
        return None

    def check(self, splits: tuple[str, ...] = ("train", "val")) -> None:
        """Decode the first record of each split and read the class names
        (checking every label against them): catches wrong formats, sizes
        and labels at start-up, before any trial begins."""
        import tensorflow as tf

        for sp in splits:
            if not self.has_split(sp):
                continue
            try:
                for _ in self.decoded(sp, ordered=True).take(1):
                    pass
            except tf.errors.OpError as e:
                raise self.locate_corruption(sp, e) from None
        _ = self.class_names  # scans every label once (then cached)
