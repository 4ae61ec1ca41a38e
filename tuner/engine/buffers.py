"""Memory that the epoch checkpoint reuses from one save to the next.

On a small cloud VM, memory touched for the first time costs about 10 us a
page. An epoch checkpoint of ResNet50V2 with Nadam holds 285 MB, and a save
that allocates its copies afresh (numpy copies of every variable, a growing
`BytesIO` for the HDF5 image, `bytes` chunks for the write) touches 70,000
new pages 3-4 times over: 5-7 CPU-s an epoch, measured on 2 cores, taken
from training by the background write. Here the copies and the image go into
buffers kept from the last save, so their pages are already mapped.

The pools hold the last save's buffers only (another model's shapes replace
them), so they cost one checkpoint's memory between saves and never grow.
A buffer goes back only once the write that read it is over; `save()` waits
for the previous write before it takes the next snapshot.
"""

from __future__ import annotations

import io
import mmap
import threading

import numpy as np

PAGE = mmap.PAGESIZE

_lock = threading.Lock()
_arrays: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}
_images: list[mmap.mmap] = []


def array_like(value: np.ndarray) -> np.ndarray:
    """An array of `value`'s shape and dtype, from the last save if it had one."""
    key = (value.shape, value.dtype)
    with _lock:
        spare = _arrays.get(key)
        if spare:
            return spare.pop()
    return np.empty(value.shape, value.dtype)


def give_back_arrays(arrays: list[np.ndarray]) -> None:
    """The arrays of a written snapshot, for the next one (they replace the pool)."""
    pool: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}
    for a in arrays:
        pool.setdefault((a.shape, a.dtype), []).append(a)
    global _arrays
    with _lock:
        _arrays = pool


def _round_up(n: int) -> int:
    return max(PAGE, -(-n // PAGE) * PAGE)


class ImageBuffer(io.BytesIO):
    """A file in memory for h5py (Keras' `H5IOStore` takes only a `BytesIO`),
    held in a page-aligned anonymous mapping that is reused from save to save
    and grows by doubling. Page alignment also lets the file be written with
    `O_DIRECT` (see `storage.DirectFile`) straight from these pages."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        with _lock:
            spare = _images.pop() if _images else None
        if spare is not None and len(spare) < capacity:
            spare.close()
            spare = None
        self._mm = spare or mmap.mmap(-1, _round_up(capacity))
        self._size = 0
        self._pos = 0

    # h5py's file-object driver calls these.
    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _reserve(self, end: int) -> None:
        if end <= len(self._mm):
            return
        grown = mmap.mmap(-1, _round_up(max(end, 2 * len(self._mm))))
        grown[: self._size] = self._mm[: self._size]
        self._mm.close()
        self._mm = grown

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        end = self._pos + len(view)
        self._reserve(end)
        if self._pos > self._size:  # a write past the end: the gap reads as zeros
            self._mm[self._size:self._pos] = bytes(self._pos - self._size)
        self._mm[self._pos:end] = view
        self._pos, self._size = end, max(self._size, end)
        return len(view)

    def readinto(self, target) -> int:
        view = memoryview(target).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        view[:n] = self._mm[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        out = self._mm[self._pos:end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return out

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if size > self._size:
            self._reserve(size)
            self._mm[self._size:size] = bytes(size - self._size)
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def getbuffer(self) -> memoryview:
        """The file's bytes, in place (release the view before `give_back`)."""
        return memoryview(self._mm)[: self._size]

    def getvalue(self) -> bytes:
        return self._mm[: self._size]

    def give_back(self) -> None:
        """Keep the mapping for the next save (one is kept; a larger one wins)."""
        mm, self._mm = self._mm, None
        if mm is None:
            return
        with _lock:
            if _images and len(_images[0]) >= len(mm):
                mm.close()
                return
            for old in _images:
                old.close()
            _images[:] = [mm]
