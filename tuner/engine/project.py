"""A search's project directory: what it was started with, and who holds it.

`flower_tuner.json` records the validated space, the data root and the tool's
format version, so a resume can tell when the space file changed (Keras Tuner
silently ignores that) and `best`/`status` can rebuild trials later.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from tuner.engine import storage
from tuner.errors import ProjectError

META = "flower_tuner.json"
FORMAT_VERSION = 1
LOCK = ".lock"


def default_project(space_name: str) -> str:
    return os.path.join("runs", space_name)


def read_meta(project: str) -> dict[str, Any] | None:
    path = os.path.join(project, META)
    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        raise ProjectError(f"{path} is not valid JSON; restore it or use another --project") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ProjectError(
            f"{project} was written by an incompatible flower-tuner (format {meta.get('format')}, "
            f"this one reads {FORMAT_VERSION}); use another --project or --overwrite"
        )
    return meta


def write_meta(project: str, meta: dict[str, Any]) -> None:
    from tuner.engine.checkpoint import atomic_write

    if "://" not in project:
        os.makedirs(project, exist_ok=True)
    atomic_write(os.path.join(project, META), json.dumps({"format": FORMAT_VERSION, **meta}, indent=1))


def require_project(project: str) -> dict[str, Any]:
    """Meta of an existing project, or one clear error."""
    if not storage.isdir(project):
        raise ProjectError(f"no project at {project}; run `python -m tuner search` first or pass --project DIR")
    meta = read_meta(project)
    if meta is None:
        raise ProjectError(f"{project} is not a flower-tuner project (no {META}); pass --project DIR")
    return meta


@dataclass
class ProjectLock:
    """An exclusive flock on `<project>/.lock`: released by the kernel when the
    holder dies, even by SIGKILL, so a stale lock never blocks a resume."""

    project: str
    _fd: int | None = None

    def acquire(self) -> "ProjectLock":
        if "://" in self.project:
            return self  # object stores have no locks; the chief/worker mode coordinates
        import fcntl

        os.makedirs(self.project, exist_ok=True)
        path = os.path.join(self.project, LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 200).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise ProjectError(
                f"another search is running on {self.project} ({holder or 'unknown process'}); "
                "wait for it, stop it, or use another --project"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return self

    @staticmethod
    def held(project: str) -> bool:
        """True while a search holds the lock (read-only probe, e.g. for
        `status` to tell a running trial from an interrupted one)."""
        if "://" in project:
            return False
        import fcntl

        path = os.path.join(project, LOCK)
        if not os.path.exists(path):
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProjectLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
