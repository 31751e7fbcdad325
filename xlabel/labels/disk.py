"""Files of a label store directory other than the journal: snapshot, frames table, lock.

Every file is replaced atomically (temp file, fsync, ``os.replace``, fsync of the
directory). The ``lock`` file is never replaced: whoever changes any file of the
store holds an exclusive ``flock`` on it (see :class:`StoreLock`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per store is then up to the user
    fcntl = None

from ..errors import JournalError

FORMAT_VERSION = 2  # 2: the store has tags (tag records, tag arrays)
JOURNAL_NAME = "journal.bin"
SNAPSHOT_NAME = "snapshot.npz"
FRAMES_NAME = "frames.npz"
LOCK_NAME = "lock"


def store_exists(path) -> bool:
    path = Path(path)
    return (path / JOURNAL_NAME).is_file() or (path / SNAPSHOT_NAME).is_file()


def sync(fd):
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path, write):
    """Write ``path`` through ``write(file)`` into a temp file, fsync, rename, fsync the dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StoreLock:
    """The exclusive ``flock`` on ``<store>/lock`` that every writer of the store holds.

    The lock file is never replaced, so the lock still means something while
    ``journal.bin`` and ``snapshot.npz`` are swapped for new files by a snapshot.
    Two stores in one process use two file descriptions, so they exclude each
    other just like two processes.
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self.fd = None
        self.held = False

    def acquire(self, patience=0.0) -> bool:
        """Take the lock (retrying for ``patience`` seconds); whether this store holds it now."""
        if self.held and (fcntl is None or self._current()):
            return True
        self.release()
        if fcntl is None:
            self.held = True
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd, self.held = fd, True
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.01)
            except OSError:
                os.close(fd)
                raise

    def _current(self) -> bool:
        """Whether the locked file is still the one at ``path`` (not deleted or replaced)."""
        try:
            on_disk, mine = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # releases the flock (once no forked child shares it)
            self.fd = None
        self.held = False


# ------------------------------------------------------------------ metadata

def check_meta(meta, path) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != "xlabel-labels":
        raise JournalError("not an xlabel label store", path=path)
    if meta.get("version", 0) > FORMAT_VERSION:
        raise JournalError(f"written by a newer xlabel (format version {meta['version']}, "
                           f"this one reads {FORMAT_VERSION})", path=path)
    for key in ("n_frames", "classes", "colors", "generation"):
        if key not in meta:
            raise JournalError(f"metadata lacks {key!r}", path=path)
    return meta


# ------------------------------------------------------------------ snapshot

def write_snapshot(folder, arrays):
    """Atomically replace ``snapshot.npz`` with ``arrays`` (numeric and string arrays only)."""
    atomic_write(Path(folder) / SNAPSHOT_NAME, lambda f: np.savez(f, **arrays))


def read_snapshot(path):
    """The arrays of a snapshot (``meta`` and ``history`` decoded), or None if there is none."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            snap = {name: data[name] for name in data.files}
        snap["meta"] = check_meta(json.loads(str(snap["meta"])), path)
        snap["history"] = json.loads(str(snap["history"]))
        return snap
    except JournalError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise JournalError(f"cannot read the label snapshot: {err}", path=path) from err


# ------------------------------------------------------------------ frames table

def write_frames(folder, frames):
    atomic_write(Path(folder) / FRAMES_NAME, lambda f: np.savez(
        f, scan=frames["scan"].to_numpy(dtype=str), frame=frames["frame"].to_numpy(dtype=np.int64)))


def read_frames(path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return pd.DataFrame({"scan": data["scan"].astype(str), "frame": data["frame"]})
    except (OSError, ValueError, KeyError) as err:
        raise JournalError(f"cannot read the frames table: {err}", path=path) from err
