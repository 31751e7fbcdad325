"""The append-only label journal (``journal.bin``): record format, durable appends, reading back.

Format: a header (magic ``XLBLJRN1``, length, JSON metadata: format version,
``n_frames``, classes, colors, generation, dataset fingerprint, undo limit;
CRC32) followed by records. A record is ``b"XLR1"``, payload length (uint32),
CRC32 of the payload (uint32) and the payload (step kind, step id, target step,
label, time, source, note and the indices as raw int32/int64 bytes; per-frame
labels for multi-class steps). A tag step (kind 4) has the same head (``label`` =
1 to add the tag, 0 to remove it) followed by source, note, the tag name (uint16
length + UTF-8) and the indices.

Promises (tested in ``tests/test_labels_durability.py``):

* :meth:`Journal.append` returns only once the record is on disk (one ``write``,
  then ``fdatasync``). If either fails (disk full, file size limit, I/O error) the
  file is cut back to the last whole record and :class:`~xlabel.errors.JournalError`
  is raised, so the journal is exactly as before the call.
* Appends go to the file at ``<store>/journal.bin`` only: if it was deleted or
  replaced behind the store's back, the append is refused (nothing is written
  into an unlinked file).
* Only the holder of the store's lock (:class:`~xlabel.labels.disk.StoreLock`)
  writes, truncates or replaces the journal; readers never do while a writer
  holds it.
* Reading tells a torn tail (a last record cut short: a crash during a write,
  dropped with :class:`JournalRecoveryWarning`) from corruption (a full-length
  record whose checksum or marker is wrong, or damage followed by valid records),
  which raises unless the caller asks to recover; recovering first copies the
  damaged journal aside.

A hand-made format rather than SQLite: see the "Labels" section of BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import JournalError, LabelError
from .disk import (JOURNAL_NAME, StoreLock, atomic_write, check_meta, store_exists, sync,
                   write_all)

FILE_MAGIC = b"XLBLJRN1"
RECORD_MAGIC = b"XLR1"
_FILE_HEAD = struct.Struct("<8sI")          # magic, header JSON length (+ JSON + uint32 CRC)
_RECORD_HEAD = struct.Struct("<4sII")       # magic, payload length, payload CRC32
# kind, step, target step, label (-2 = per-index labels follow), time, index item size,
# number of indices, source length, note length
_PAYLOAD_HEAD = struct.Struct("<Bqqidbqhi")
_KINDS = {"assign": 1, "undo": 2, "redo": 3, "tag": 4}
_TAG_NAME_LENGTH = struct.Struct("<H")
_KIND_NAMES = {code: name for name, code in _KINDS.items()}
_MIXED = -2
_MAX_RECORD = 1 << 31


class JournalRecoveryWarning(UserWarning):
    """A journal was repaired on open (a half-written last record was dropped)."""


@dataclass
class Record:
    """One decoded journal record (``indices``/``labels``/``source``/``note`` only for assign)."""

    kind: str
    step: int
    target: int
    time: float
    indices: np.ndarray | None = None
    labels: np.ndarray | int | None = None
    source: str | None = None
    note: str | None = None
    tag: str | None = None


# ------------------------------------------------------------------ encoding

def encode_header(meta) -> bytes:
    body = json.dumps(meta).encode()
    return _FILE_HEAD.pack(FILE_MAGIC, len(body)) + body + struct.pack("<I", zlib.crc32(body))


def encode_step(step, index_dtype) -> bytes:
    """The record of an assign step (a :class:`~xlabel.labels.state.Step`)."""
    source_bytes = step.source.encode()
    note_bytes = b"" if step.note is None else step.note.encode()
    mixed = np.ndim(step.labels) != 0
    head = _PAYLOAD_HEAD.pack(_KINDS["assign"], step.step, -1,
                              _MIXED if mixed else int(step.labels), step.time,
                              index_dtype.itemsize, len(step.indices), len(source_bytes),
                              len(note_bytes) if step.note is not None else -1)
    parts = [head, source_bytes, note_bytes, step.indices.astype(index_dtype).tobytes()]
    if mixed:
        parts.append(np.asarray(step.labels, dtype="<i4").tobytes())
    return _frame(b"".join(parts))


def encode_tag_step(step, index_dtype) -> bytes:
    """The record of a tag step (a :class:`~xlabel.labels.state.TagStep`)."""
    source_bytes = step.source.encode()
    note_bytes = b"" if step.note is None else step.note.encode()
    tag_bytes = step.tag.encode()
    if len(tag_bytes) > 0xFFFF:
        raise LabelError("a tag name is limited to 65535 bytes")
    head = _PAYLOAD_HEAD.pack(_KINDS["tag"], step.step, -1, int(step.value), step.time,
                              index_dtype.itemsize, len(step.indices), len(source_bytes),
                              len(note_bytes) if step.note is not None else -1)
    return _frame(b"".join([head, source_bytes, note_bytes, _TAG_NAME_LENGTH.pack(len(tag_bytes)),
                            tag_bytes, step.indices.astype(index_dtype).tobytes()]))


def encode_travel(kind, target, when) -> bytes:
    """The record of an undo or redo of step ``target``."""
    return _frame(_PAYLOAD_HEAD.pack(_KINDS[kind], -1, target, 0, when, 0, 0, 0, 0))


def _frame(payload) -> bytes:
    if len(payload) >= _MAX_RECORD:
        raise LabelError("one step is too large for the journal (2 GiB); split it")
    return _RECORD_HEAD.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(payload) -> Record:
    kind, step, target, label, when, itemsize, count, n_source, n_note = \
        _PAYLOAD_HEAD.unpack_from(payload)
    kind = _KIND_NAMES[kind]
    if kind not in ("assign", "tag"):
        return Record(kind, step, target, when)
    pos = _PAYLOAD_HEAD.size
    source = payload[pos:pos + n_source].decode()
    pos += n_source
    note = None if n_note < 0 else payload[pos:pos + n_note].decode()
    pos += max(n_note, 0)
    tag = None
    if kind == "tag":
        (n_tag,) = _TAG_NAME_LENGTH.unpack_from(payload, pos)
        pos += _TAG_NAME_LENGTH.size
        tag = payload[pos:pos + n_tag].decode()
        pos += n_tag
    dtype = {4: "<i4", 8: "<i8"}[itemsize]
    indices = np.frombuffer(payload, dtype=dtype, count=count, offset=pos)
    pos += itemsize * count
    labels = (np.frombuffer(payload, dtype="<i4", count=count, offset=pos).astype(np.int32)
              if label == _MIXED else label)
    if kind == "tag":
        if label not in (0, 1):
            raise ValueError(f"tag record with value {label}")
        return Record(kind, step, target, when, indices.astype(np.intp), label, source, note,
                      tag)
    return Record(kind, step, target, when, indices.astype(np.intp), labels, source, note)


# ------------------------------------------------------------------ reading

@dataclass
class Damage:
    """Where reading stopped: ``offset``, the record's number, and whether it is a torn tail."""

    offset: int
    number: int
    torn: bool
    reason: str
    later: int      # valid records found after it


@dataclass
class JournalFile:
    """A journal as read from disk."""

    path: Path
    meta: dict
    records: list        # (offset, payload) of the valid records, in order
    end: int             # offset after the last valid record
    size: int            # file size as read
    identity: tuple      # (st_dev, st_ino)
    damage: Damage | None


def read(path) -> JournalFile | None:
    """Read and check ``path`` (a ``journal.bin``); None if there is none."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            stat = os.fstat(handle.fileno())
    except FileNotFoundError:
        return None
    except OSError as err:
        raise JournalError(f"cannot read the label journal: {err}", path=path) from err
    if len(data) < _FILE_HEAD.size or data[:8] != FILE_MAGIC:
        raise JournalError("not an xlabel label journal (bad magic)", path=path)
    (_, length), start = _FILE_HEAD.unpack_from(data), _FILE_HEAD.size
    body = data[start:start + length]
    crc = data[start + length:start + length + 4]
    if len(body) != length or len(crc) != 4 or struct.unpack("<I", crc)[0] != zlib.crc32(body):
        raise JournalError("the journal header is damaged", path=path)
    try:
        meta = json.loads(body)
    except json.JSONDecodeError as err:
        raise JournalError(f"the journal header is not JSON: {err}", path=path) from err
    records, end, damage = _scan(data, start + length + 4)
    return JournalFile(path, check_meta(meta, path), records, end, len(data),
                       (stat.st_dev, stat.st_ino), damage)


def _parse_record(data, offset):
    """``(payload, end)`` of a valid record at ``offset``, else ``(None, torn?, reason)``."""
    head_end = offset + _RECORD_HEAD.size
    if head_end > len(data):
        return None, True, f"only {len(data) - offset} bytes of a record header"
    magic, length, crc = _RECORD_HEAD.unpack_from(data, offset)
    if magic != RECORD_MAGIC:
        return None, False, "no record marker"
    if length < _PAYLOAD_HEAD.size:
        return None, False, f"impossible record length {length}"
    end = head_end + length
    if end > len(data):
        return None, True, f"{len(data) - head_end} of its {length} bytes"
    payload = data[head_end:end]
    if zlib.crc32(payload) != crc:
        return None, False, f"all {length} bytes present but the checksum does not match"
    return payload, end


def _scan(data, start):
    records, offset = [], start
    while offset < len(data):
        parsed = _parse_record(data, offset)
        if parsed[0] is None:
            later = _count_valid_after(data, offset)
            torn = parsed[1] and not later
            return records, offset, Damage(offset, len(records) + 1, torn, parsed[2], later)
        records.append((offset, parsed[0]))
        offset = parsed[1]
    return records, offset, None


def _count_valid_after(data, bad) -> int:
    """Number of valid records after a damaged spot."""
    offset = data.find(RECORD_MAGIC, bad + 1)
    while offset >= 0:
        parsed = _parse_record(data, offset)
        if parsed[0] is not None:
            rest, _, _ = _scan(data, offset)
            return len(rest)
        offset = data.find(RECORD_MAGIC, offset + 1)
    return 0


def repair(found: JournalFile, lock: StoreLock, recover: bool):
    """Deal with ``found.damage`` as the module docstring promises; returns the new size.

    A torn tail is cut off (with a warning) when no writer holds the lock; while a
    writer does, the record is probably being written right now and is left alone.
    Corruption raises unless ``recover``; then the damaged file is copied aside and
    cut back to the last good record.
    """
    damage, path = found.damage, found.path
    if damage is None:
        return found.size
    kept = len(found.records)
    if not damage.torn and not recover:
        raise JournalError(_corruption_message(damage, kept), path=path)
    try:
        locked = lock.acquire(patience=0.0 if damage.torn else 0.5)
    except OSError as err:  # e.g. a store on a read-only share: read it, repair nothing
        if damage.torn:
            return found.size
        raise JournalError(f"{_corruption_message(damage, kept)}; cannot repair it here: "
                           f"{err}", path=path) from err
    if not locked:
        if not damage.torn:
            raise JournalError("cannot repair the journal while another LabelStore is "
                               "writing to it; close that one first", path=path)
        return found.size   # a live writer is appending this record right now
    try:
        if _identity(path) != found.identity or os.path.getsize(path) != found.size:
            return found.size   # it changed since we read it: leave it to its writer
        aside = None if damage.torn else _copy_aside(path)
        _truncate(path, damage.offset)
    finally:
        lock.release()
    if damage.torn:
        what = (f"dropped a half-written record at byte {damage.offset} "
                f"({found.size - damage.offset} bytes, probably a crash during a write)")
    else:
        what = (f"dropped a corrupt record at byte {damage.offset} and {damage.later} "
                f"record(s) after it (the damaged journal was kept as {aside.name})")
    warnings.warn(f"{path}: {what}; {kept} steps were recovered",
                  JournalRecoveryWarning, stacklevel=4)
    return damage.offset


def _corruption_message(damage, kept) -> str:
    if damage.later:
        return (f"corrupt record at byte {damage.offset} followed by {damage.later} valid "
                f"record(s) (record {damage.number}: {damage.reason}); "
                f"LabelStore.open(path, recover=True) keeps the {kept} steps before it and "
                f"drops the rest (the damaged journal is kept aside)")
    return (f"corrupt record at byte {damage.offset} (record {damage.number}, the last one: "
            f"{damage.reason}; not a write cut short, so it is not dropped); "
            f"LabelStore.open(path, recover=True) keeps the {kept} steps before it "
            f"(the damaged journal is kept aside)")


def _copy_aside(path) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}")
    data = path.read_bytes()
    atomic_write(aside, lambda f: f.write(data))
    return aside


def _truncate(path, size):
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise JournalError(f"cannot truncate the damaged journal: {err}", path=path) from err


def _identity(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


# ------------------------------------------------------------------ writing

class Journal:
    """An open ``journal.bin`` that this store appends to, under the store's lock.

    ``seen`` is ``(identity, size)`` of the journal as this store read it: the first
    write checks that nobody else changed it since. ``restart_meta`` set means the
    file predates this store's snapshot and is replaced by a fresh journal (under the
    lock) before the first append.
    """

    def __init__(self, folder, seen, restart_meta=None):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME
        self.lock = StoreLock(self.folder)
        self.seen = seen
        self.restart_meta = restart_meta
        self.fd = None
        self.size = seen[1] if seen else 0
        self.closed = False
        self.broken = None     # why appends are refused until restart(), or None
        if seen is not None and restart_meta is None:
            self._open_fd()

    @classmethod
    def create(cls, folder, meta, before=None) -> "Journal":
        """A new, empty journal in ``folder``, taking the store's lock (kept until close).

        ``before()`` runs under the lock first (e.g. to write the frames table).
        """
        journal = cls(folder, None)
        if not journal.lock.acquire():
            raise JournalError("another LabelStore (in this or another process) is writing "
                               "to this store; close() it first", path=folder)
        try:
            if store_exists(folder):  # created by someone else since the caller looked
                raise JournalError("a label store already exists here; open it with "
                                   "LabelStore.open(path) or choose another path", path=folder)
            if before is not None:
                before()
        except OSError as err:
            journal.close()
            raise JournalError(f"cannot create the label store: {err}", path=folder) from err
        except BaseException:
            journal.close()
            raise
        journal.restart(meta)
        return journal

    def _open_fd(self):
        self._close_fd()
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise JournalError(f"cannot open the label journal: {err}", path=self.path) from err
        self.size = os.fstat(self.fd).st_size

    def _close_fd(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def take_lock(self):
        """Take the store's lock before the first change (readers never lock).

        Two stores writing one journal would interleave their steps; a store that
        read the journal before someone else wrote to it would write stale steps.
        Both are refused with a clear error.
        """
        if self.lock.held:  # (a deleted lock file is re-created by the next snapshot)
            return
        try:
            locked = self.lock.acquire(patience=0.5)  # a reader may be repairing the tail
        except OSError as err:
            raise JournalError(f"cannot lock the store: {err}", path=self.folder) from err
        if not locked:
            raise JournalError("another LabelStore (in this or another process) is writing "
                               "to this store; close() it first", path=self.folder)
        identity, size = self.seen or (None, None)
        if _identity(self.path) != identity or (
                self.restart_meta is None and os.path.getsize(self.path) != size):
            self.lock.release()
            raise JournalError("the store changed on disk since this LabelStore read it "
                               "(another one wrote to it); reopen it with LabelStore.open(path)",
                               path=self.folder)
        if self.restart_meta is not None:
            self.restart(self.restart_meta)
        else:
            self.size = os.fstat(self.fd).st_size

    def check_writable(self):
        if self.closed:
            raise LabelError("this store was closed; reopen it with LabelStore.open(path)",
                             path=self.folder)
        if self.broken:
            raise JournalError(self.broken, path=self.path)

    def append(self, record, what):
        """Write ``record`` durably, or leave the file as it was and raise JournalError."""
        self.check_writable()
        self.take_lock()
        if _identity(self.path) != self.seen[0]:
            raise JournalError(
                f"{JOURNAL_NAME} was deleted or replaced by something other than this "
                f"LabelStore; the step was not applied ({what} is not saved). The labels held "
                f"in memory are complete: store.snapshot() writes them back to disk",
                path=self.folder)
        try:
            write_all(self.fd, record)
            sync(self.fd)
        except OSError as err:
            self._roll_back(err, what)
        self.size += len(record)

    def _roll_back(self, err, what):
        full = getattr(err, "errno", None) in (28, 27, 122)  # ENOSPC, EFBIG, EDQUOT
        cause = "the disk is full or a file size limit was reached" if full else "write failed"
        try:
            os.ftruncate(self.fd, self.size)
            sync(self.fd)
        except OSError as second:
            self.broken = (f"the journal could not be cut back after a failed write ({second}); "
                           f"it may end with a partial record, which reopening drops. Free "
                           f"space, then call store.snapshot() or reopen the store")
            raise JournalError(f"{cause} ({err}); the step was not applied ({what} is not "
                               f"saved). {self.broken}", path=self.path) from err
        raise JournalError(f"{cause} ({err}); the step was not applied ({what} is not saved) "
                           f"and the journal is as it was: free space and try again",
                           path=self.path) from err

    def restart(self, meta):
        """Atomically replace the journal with an empty one for ``meta`` (lock held)."""
        self.check_closed()
        try:
            locked = self.lock.acquire()
        except OSError as err:
            raise JournalError(f"cannot lock the store: {err}", path=self.folder) from err
        if not locked:
            raise JournalError("another LabelStore (in this or another process) is writing "
                               "to this store; close() it first", path=self.folder)
        try:
            atomic_write(self.path, lambda f: f.write(encode_header(meta)))
            self._open_fd()
        except OSError as err:
            self.broken = (f"a snapshot was written but a new journal could not be started "
                           f"({err}); free space and call store.snapshot() again")
            raise JournalError(self.broken, path=self.path) from err
        self.seen = (_identity(self.path), self.size)
        self.restart_meta = None
        self.broken = None

    def check_closed(self):
        if self.closed:
            raise LabelError("this store was closed; reopen it with LabelStore.open(path)",
                             path=self.folder)

    def close(self):
        self._close_fd()
        self.lock.release()
        self.closed = True

    def drop_in_child(self):
        """In a forked child: close the inherited descriptors without touching the lock
        (closing a copy never releases the parent's ``flock``; keeping it would hold the
        lock until the child exits) and refuse writes from the child."""
        with contextlib.suppress(OSError):
            self._close_fd()
            if self.lock.fd is not None:
                os.close(self.lock.fd)
        self.lock.fd, self.lock.held = None, False
        self.closed = True

    def __del__(self):
        with contextlib.suppress(Exception):
            self._close_fd()
            self.lock.release()
