"""Where the demo tree lives and how it is written: built in `<out>.tmp-<pid>`,
renamed into place when complete, its marker written last."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner.errors import TunerError
from tuner.demo.draw import _instance, render
from tuner.demo.splits import _ids, split_labels

COMPLETE_MARKER = ".complete"
DEMO_FORMAT = 1


def default_demo_dir() -> str:
    """`$TUNER_DEMO_DATA`, else `${XDG_CACHE_HOME:-~/.cache}/flower-tuner/demo`."""
    env = os.environ.get("TUNER_DEMO_DATA")
    if env:
        return os.path.expanduser(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flower-tuner", "demo")


def is_complete(out: str) -> bool:
    """True when `out` holds a finished demo tree (its marker is written last)."""
    return os.path.isfile(os.path.join(out, COMPLETE_MARKER))


@dataclass
class DemoSummary:
    root: str
    sizes: tuple[int, ...]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _check_target(out: str) -> None:
    if os.path.exists(out) and not (
        os.path.isdir(out) and (is_complete(out) or not os.listdir(out))
    ):
        raise TunerError(
            f"{out} exists and is not a demo data folder; choose another path or remove it"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or cannot tell
        return True
    return True


def _remove_stale(out: str) -> None:
    """Remove `<out>.tmp-PID` / `<out>.old-PID` left by runs that were killed."""
    parent, base = os.path.split(out)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        for tag in (".tmp-", ".old-"):
            pid = name[len(base) + len(tag):] if name.startswith(base + tag) else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def generate(
    out: str,
    sizes: Sequence[int] = (64,),
    scale: float = 0.1,
    seed: int = 0,
    num_files: int = 16,
    log: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write a procedural flower dataset in Kaggle's layout under `out`.

    `out` must be absent, empty, or an earlier complete demo tree (replaced).
    The tree is built in `<out>.tmp-<pid>` and renamed into place when done.
    """
    from tuner.data.records import encode_jpeg, write_split

    start = time.perf_counter()
    say = log or (lambda _msg: None)
    sizes_t = tuple(sorted({int(s) for s in sizes}))
    if not sizes_t or any(s < 8 for s in sizes_t):
        raise TunerError(f"demo sizes must be integers >= 8, got {list(sizes)}")
    if num_files < 1:
        raise TunerError(f"num_files must be >= 1, got {num_files}")
    out = os.path.abspath(os.path.expanduser(out))
    _check_target(out)
    labels = split_labels(scale, seed)
    id_rng = np.random.default_rng([seed, 0x1D5])
    all_ids = _ids(sum(len(v) for v in labels.values()), id_rng)

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    _remove_stale(out)
    tmp = f"{out}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        pos = 0
        ids_by_split: dict[str, list[str]] = {}
        for split_index, split in enumerate(("train", "val", "test")):
            y = labels[split]
            ids = all_ids[pos : pos + len(y)]
            pos += len(y)
            ids_by_split[split] = ids
            t0 = time.perf_counter()
            jpegs_by_size: dict[int, list[bytes]] = {s: [] for s in sizes_t}
            for i, cls in enumerate(y.tolist()):
                inst = _instance(cls, seed, split_index, i)
                for s in sizes_t:
                    # Encoded one by one: only the JPEG bytes are held in memory.
                    jpegs_by_size[s].extend(encode_jpeg([render(cls, inst, s)]))
            for s in sizes_t:
                jpegs = jpegs_by_size[s]
                labeled = split != "test"
                examples = [
                    (jpg, id_, int(c) if labeled else None)
                    for jpg, id_, c in zip(jpegs, ids, y.tolist())
                ]
                write_split(tmp, s, split, examples, num_files=num_files)
            say(f"demo: {split}: {len(y)} images at {', '.join(f'{s}px' for s in sizes_t)} "
                f"in {time.perf_counter() - t0:.1f}s")

        with open(os.path.join(tmp, "sample_submission.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["id", "label"])
            w.writerows([id_, 0] for id_ in ids_by_split["test"])
        with open(os.path.join(tmp, "test_labels.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["id", "label"])
            w.writerows([id_, int(c)] for id_, c in zip(ids_by_split["test"], labels["test"].tolist()))
        counts = {k: int(len(v)) for k, v in labels.items()}
        with open(os.path.join(tmp, COMPLETE_MARKER), "w") as fh:
            json.dump({"format": DEMO_FORMAT, "seed": seed, "scale": scale,
                       "sizes": list(sizes_t), "counts": counts}, fh, sort_keys=True)
            fh.write("\n")

        _check_target(out)
        old = None
        if os.path.exists(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    say(f"demo: wrote {out} ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test) in {seconds:.1f}s")
    return DemoSummary(root=out, sizes=sizes_t, counts=counts, seconds=seconds)
