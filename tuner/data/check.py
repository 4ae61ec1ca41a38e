"""`python -m tuner check`: what the input pipeline sees in a data root."""

from __future__ import annotations

import time
from collections.abc import Iterator


def check_data(root: str, image_size: int, batch: int, scan: bool = False, batches: int = 20) -> Iterator[str]:
    import tensorflow as tf

    from tuner.data.reader import FlowerData, available_sizes

    yield f"data root {root}: sizes {', '.join(map(str, available_sizes(root)))}"
    data = FlowerData(root, image_size, log=lambda m: None)
    if data.source_size != image_size:
        yield f"no {image_size} px records: reading {data.source_size} px and resizing"
    for split in ("train", "val", "test"):
        if data.has_split(split):
            yield f"{split}: {data.count(split)} records in {len(data.files(split))} files"
        else:
            yield f"{split}: none"
    if scan:
        err = data.find_corruption()
        if err is not None:
            raise err
        yield "scan: every record of every split decodes and every file holds the count its name says"
    data.check()
    counts, names = data.class_counts("train"), data.class_names
    order = counts.argsort()
    yield (f"train classes: {int((counts > 0).sum())} of {len(counts)} present; smallest "
           f"{names[order[0]]} ({counts[order[0]]}), largest {names[order[-1]]} ({counts[order[-1]]})")
    ds = data.train_dataset(batch, cache=False)
    t0 = time.perf_counter()
    n = 0
    try:
        for x, _ in ds.take(batches):
            n += int(x.shape[0])
    except tf.errors.OpError as e:
        raise data.locate_corruption("train", e) from None
    dt = time.perf_counter() - t0
    yield f"train pipeline: {n} images in {dt:.2f}s ({n / dt:.0f} img/s at {image_size} px, batch {batch}, cache off)"
