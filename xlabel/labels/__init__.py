"""The single source of truth for the labels of one labeling session.

A :class:`LabelStore` holds one label per frame (``-1`` = unlabeled), the class
names and colors, and per-frame provenance (which source set the label, when,
and an optional note). :meth:`LabelStore.assign` is the only way labels change;
every call is one step of an undoable history, and observers are told about
every change so views can redraw.

>>> store = LabelStore(6, classes=("good", "bad"))
>>> step = store.assign([0, 1, 2], "good")
>>> store.assign([2, 5], "bad", source="kmeans")
1
>>> store.labels.tolist()
[0, 0, 1, -1, -1, 1]
>>> store.undo()  # returns the id of the step it undid
1
>>> store.counts()
{'good': 3, 'bad': 0, 'unlabeled': 3}

With ``path=`` the store is journaled to a directory before ``assign`` returns,
and :meth:`LabelStore.open` gets it back after a crash.

Modules: :mod:`~xlabel.labels.store` (``LabelStore``, one open session per
directory and process), :mod:`~xlabel.labels.state` (labels, provenance, capped
undo history, observers; no I/O), :mod:`~xlabel.labels.journal` (``journal.bin``:
format, durable appends, torn-tail vs corruption), :mod:`~xlabel.labels.disk`
(snapshot, frames table, the store's lock), :mod:`~xlabel.labels.formats`
(CSV and HDF5 files).

On disk
-------
``path`` is a directory (by convention ``something.xlabel``) holding:

* ``journal.bin``: a header and append-only records, one per assign/undo/redo
  (see :mod:`xlabel.labels.journal`). Each record is written with one ``os.write``
  and made durable with ``fdatasync`` before ``assign`` returns.
* ``snapshot.npz``: written by :meth:`LabelStore.snapshot` (temp file + fsync +
  ``os.replace``), loaded with ``allow_pickle=False``. A snapshot starts a new journal
  generation. It holds the labels, the provenance table, :attr:`LabelStore.history`
  and (unless ``snapshot(keep_undo=False)``) the undo/redo stacks.
* ``frames.npz``: the optional ``frames`` table (``scan``, ``frame``).
* ``lock``: an empty file; whoever changes the store holds an exclusive ``flock`` on it.

Durability: a step that ``assign``/``undo``/``redo`` acknowledged (returned) is on
disk and comes back on reopen. A step that could not be written (disk full, file
size limit, I/O error, ``journal.bin`` deleted under the store) raises
:class:`~xlabel.errors.JournalError`, is not applied in memory, and leaves the
journal exactly as before, so later steps append cleanly once space is freed.

Reopening replays the journal. A record cut short at the end of the file (a
crash in the middle of a write) is dropped with a :class:`JournalRecoveryWarning`
naming the byte offset, and the file is truncated there. A full-length record
with a bad checksum, or a damaged record followed by valid ones, is corruption,
not a crash: that raises :class:`~xlabel.errors.JournalError` naming the record
and byte offset unless ``LabelStore.open(path, recover=True)`` is asked to keep
only the steps before it (the damaged journal is first copied aside).

One writer at a time: a store takes the lock at its first write and keeps it
until ``close()``, so a second store writing the same path (in another process,
or opened with :meth:`LabelStore.open` in this one) gets a clear
:class:`~xlabel.errors.JournalError`, and so does a store whose files were
written by someone else since it read them. Reading a store that another one is
writing is fine and never changes its files. ``LabelStore(n, path=P)`` in a
process that has ``P`` open already hands back that store.
"""

from __future__ import annotations

from ._checks import DEFAULT_COLORS, UNLABELED_COLOR
from .disk import FORMAT_VERSION, FRAMES_NAME, JOURNAL_NAME, LOCK_NAME, SNAPSHOT_NAME
from .journal import FILE_MAGIC, RECORD_MAGIC, JournalRecoveryWarning
from .state import SOURCES, UNDO_BYTES, UNDO_STEPS, LabelChange
from .store import LabelStore

__all__ = ["LabelStore", "LabelChange", "JournalRecoveryWarning", "SOURCES", "DEFAULT_COLORS",
           "UNLABELED_COLOR", "UNDO_STEPS", "UNDO_BYTES", "JOURNAL_NAME", "SNAPSHOT_NAME",
           "FRAMES_NAME", "LOCK_NAME", "FORMAT_VERSION", "FILE_MAGIC", "RECORD_MAGIC"]
