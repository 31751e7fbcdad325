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

With ``path=`` the store is journaled to a directory (see :mod:`xlabel.labels`
"On disk" below) before ``assign`` returns, and :meth:`LabelStore.open` gets it back
after a crash.

On disk
-------
``path`` is a directory (by convention ``something.xlabel``) holding:

* ``journal.bin``: a header (magic ``XLBLJRN1``, length, JSON metadata: format version,
  ``n_frames``, classes, colors, generation, dataset fingerprint; CRC32) followed by
  append-only records. A record is ``b"XLR1"``, payload length (uint32), CRC32 of the
  payload (uint32) and the payload (step kind, step id, target step, label, time,
  source, note and the indices as raw int32/int64 bytes; per-frame labels for
  multi-class steps). Each record is written with one ``os.write`` and made durable
  with ``fdatasync`` before ``assign`` returns.
* ``snapshot.npz``: written by :meth:`LabelStore.snapshot` (temp file + fsync +
  ``os.replace``), loaded with ``allow_pickle=False``. A snapshot starts a new journal
  generation. It holds the labels, the provenance table, :attr:`LabelStore.history`
  and (unless ``snapshot(keep_undo=False)``) the undo/redo stacks.
* ``frames.npz``: the optional ``frames`` table (``scan``, ``frame``).

Reopening replays the journal. A record cut short at the end of the file (a
crash in the middle of a write) is dropped with a :class:`JournalRecoveryWarning`
naming the byte offset, and the file is truncated there. A damaged record that
is followed by valid records is corruption, not a crash: that raises
:class:`~xlabel.errors.JournalError` unless ``LabelStore.open(path, recover=True)``
is asked to keep only the steps before it.

One writer at a time: a store takes an advisory lock (``flock``) on the journal
at its first write, so a second store writing the same path (in this or another
process) gets a clear :class:`~xlabel.errors.JournalError`, and so does a store
whose journal was written by someone else since it was read. Reading a store
that another one is writing is fine. ``close()`` releases it.
"""

from __future__ import annotations

import json
import logging
import contextlib
import os
import struct
import tempfile
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per store is then up to the user
    fcntl = None

from .errors import JournalError, LabelError

__all__ = ["LabelStore", "LabelChange", "JournalRecoveryWarning", "SOURCES", "DEFAULT_COLORS"]

log = logging.getLogger(__name__)

#: Known label sources; their position is the code stored in ``store.sources``
#: (0 = never labeled). Other source names are accepted and get the next codes.
SOURCES = ("", "manual", "kmeans", "dbscan", "model", "import")

#: Colors given to classes in order when ``colors`` is not passed.
DEFAULT_COLORS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd",
                  "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
UNLABELED_COLOR = "#bbbbbb"

FORMAT_VERSION = 1
JOURNAL_NAME = "journal.bin"
SNAPSHOT_NAME = "snapshot.npz"
FRAMES_NAME = "frames.npz"
FILE_MAGIC = b"XLBLJRN1"
RECORD_MAGIC = b"XLR1"
_FILE_HEAD = struct.Struct("<8sI")          # magic, header JSON length (+ JSON + uint32 CRC)
_RECORD_HEAD = struct.Struct("<4sII")       # magic, payload length, payload CRC32
# kind, step, target step, label (-2 = per-index labels follow), time, index item size,
# number of indices, source length, note length
_PAYLOAD_HEAD = struct.Struct("<Bqqidbqhi")
_KINDS = {"assign": 1, "undo": 2, "redo": 3}
_KIND_NAMES = {code: name for name, code in _KINDS.items()}
_MIXED = -2
_MAX_RECORD = 1 << 31


class JournalRecoveryWarning(UserWarning):
    """A journal was repaired on open (a half-written last record was dropped)."""


@dataclass(frozen=True)
class LabelChange:
    """What one change did: sent to every observer of a :class:`LabelStore`.

    ``indices`` are the frames the step touched and ``labels`` their labels now
    (same length). ``kind`` is ``"assign"``, ``"undo"``, ``"redo"`` or ``"load"``;
    ``step`` is the id of the assign step that was applied, undone or redone.
    """

    indices: np.ndarray
    labels: np.ndarray
    kind: str
    step: int


@dataclass
class _Step:
    """One assign step and what it needs to be undone and redone."""

    step: int
    indices: np.ndarray
    labels: np.ndarray | int      # new label (scalar) or one per index
    source: int
    time: float
    note: int                     # note id, -1 = none
    origin: int = 0               # row of the provenance table this step writes
    packed: int | np.ndarray = 0  # (label, origin) pairs as int64, see LabelStore._pairs
    prev: np.ndarray | None = None  # the packed pairs before the step


class LabelStore:
    """Labels, classes, colors and provenance of ``n_frames`` frames.

    Parameters
    ----------
    n_frames : number of frames (rows); labels start at -1 (unlabeled).
    classes : class names, any number (at least one).
    path : directory to journal to (created); ``None`` keeps the store in memory.
        An existing store at ``path`` is reopened if it matches ``n_frames`` and
        ``classes``, else :class:`~xlabel.errors.JournalError`.
    colors : one CSS color per class (default: green, red, blue, ...).
    frames : optional DataFrame with ``scan`` and ``frame`` columns, one row per
        store row (e.g. a ``frame_stats`` table), used by exports.
    fingerprint : optional string identifying the dataset; a store reopened with a
        different fingerprint is refused.

    >>> store = LabelStore(4, classes=("good", "bad", "unsure"))
    >>> store.assign(np.array([True, False, True, False]), "unsure", note="check")
    0
    >>> store.provenance(0)["note"], store.counts()["unsure"]
    ('check', 2)
    """

    def __init__(self, n_frames, classes=("good", "bad"), path=None, colors=None,
                 frames=None, fingerprint=None):
        n_frames = _check_n_frames(n_frames)
        classes = _check_classes(classes)
        colors = _check_colors(colors, classes)
        frames = _check_frames(frames, n_frames)
        if fingerprint is None and frames is not None:
            fingerprint = _frames_fingerprint(frames)
        self._init_state(n_frames, classes, colors, frames, fingerprint)
        if path is not None and _store_exists(path):
            self._reopen_matching(path)
        elif path is not None:
            self._create_on_disk(path)

    # ------------------------------------------------------------------ state

    def _init_state(self, n_frames, classes, colors, frames, fingerprint):
        self._n_frames = n_frames
        self._classes = classes
        self._class_lookup = {name: i for i, name in enumerate(classes)}
        self._colors = colors
        self._frames = frames
        self.fingerprint = fingerprint
        # Label and provenance id of a frame sit side by side, so a step reads and
        # writes one int64 per frame (half the random memory accesses of two arrays).
        self._pairs = np.zeros((n_frames, 2), dtype=np.int32)
        self._pairs64 = self._pairs.view(np.int64).reshape(n_frames)
        self._labels = self._pairs[:, 0]
        self._labels[:] = -1
        # Provenance: each frame points at a row of a small table (source, time,
        # note) that grows by one row per step; row 0 means "never labeled". An
        # assign then touches two int32 arrays, not four.
        self._origins = self._pairs[:, 1]
        self._prov_source = np.zeros(16, dtype=np.int8)
        self._prov_time = np.full(16, np.nan)
        self._prov_note = np.full(16, -1, dtype=np.int32)
        self._prov_len = 1
        self._source_names = list(SOURCES)
        self._notes: list[str] = []
        self._note_lookup: dict[str, int] = {}
        self._steps: dict[int, _Step] = {}
        self._undo: list[int] = []
        self._redo: list[int] = []
        self._history: list[dict] = []
        self._next_step = 0
        self._observers: list = []
        self._path: Path | None = None
        self._fd: int | None = None
        self._locked = False       # whether this store holds the journal's write lock
        self._journal_size = 0     # journal size as this store last saw it
        self._closed = False
        self._generation = 0
        self._labels_view = self._labels.view()
        self._labels_view.flags.writeable = False

    # ------------------------------------------------------------- properties

    @property
    def n_frames(self) -> int:
        """Number of frames (rows) in the store."""
        return self._n_frames

    def __len__(self) -> int:
        return self._n_frames

    @property
    def labels(self) -> np.ndarray:
        """Label per frame (class index, -1 = unlabeled): a read-only view."""
        return self._labels_view

    @property
    def classes(self) -> tuple:
        """Class names; a label is an index into this tuple."""
        return self._classes

    @property
    def colors(self) -> tuple:
        """One CSS color per class (``UNLABELED_COLOR`` is used for -1)."""
        return self._colors

    @property
    def sources(self) -> np.ndarray:
        """Source code per frame (read-only copy); names in :attr:`source_names`."""
        return self._readonly(self._prov_source[self._origins])

    @property
    def source_names(self) -> tuple:
        """Source name of each code in :attr:`sources` (code 0 = never labeled)."""
        return tuple(self._source_names)

    @property
    def times(self) -> np.ndarray:
        """Time (Unix seconds) each frame's label was set, NaN if never (read-only)."""
        return self._readonly(self._prov_time[self._origins])

    @property
    def frames(self):
        """The ``frames`` table (``scan``, ``frame``) given at creation, or None."""
        return None if self._frames is None else self._frames.copy()

    @property
    def path(self):
        """The store's directory on disk, or None for an in-memory store."""
        return self._path

    @staticmethod
    def _readonly(array):
        view = array.view()
        view.flags.writeable = False
        return view

    def __repr__(self):
        where = f", path={str(self._path)!r}" if self._path else ""
        return (f"LabelStore(n_frames={self._n_frames}, classes={self._classes!r}{where}, "
                f"counts={self.counts()})")

    def class_index(self, name_or_index) -> int:
        """Index of a class given by name or index; -1 for None/-1/"unlabeled".

        >>> LabelStore(3, classes=("good", "bad")).class_index("bad")
        1
        """
        if name_or_index is None or (isinstance(name_or_index, str)
                                     and name_or_index in ("", "unlabeled")):
            return -1  # (no class may have these names)
        if isinstance(name_or_index, str):
            try:
                return self._class_lookup[name_or_index]
            except KeyError:
                raise LabelError(self._unknown_class(name_or_index)) from None
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            index = int(name_or_index)
            if -1 <= index < len(self._classes):
                return index
            raise LabelError(f"class index {index} out of range: {len(self._classes)} classes "
                             f"({', '.join(map(repr, self._classes))}), -1 = unlabeled")
        raise LabelError(f"a label is a class name or index, not {name_or_index!r}")

    def _unknown_class(self, name) -> str:
        return (f"unknown class {name!r}; known classes: "
                f"{', '.join(map(repr, self._classes))}")

    def class_name(self, index) -> str:
        """Name of class ``index`` ("" for -1)."""
        index = self.class_index(index)
        return "" if index < 0 else self._classes[index]

    def counts(self) -> dict:
        """Number of frames per class, plus ``"unlabeled"``.

        >>> LabelStore(3).counts()
        {'good': 0, 'bad': 0, 'unlabeled': 3}
        """
        bins = np.bincount(self._labels + 1, minlength=len(self._classes) + 1)
        out = {name: int(bins[i + 1]) for i, name in enumerate(self._classes)}
        out["unlabeled"] = int(bins[0])
        return out

    def provenance(self, frame) -> dict:
        """Where frame ``frame``'s label came from: ``dict(label, source, time, note)``."""
        frame = int(self._check_indices([frame])[0])
        origin = self._origins[frame]
        note_id = self._prov_note[origin]
        return {"label": self.class_name(int(self._labels[frame])),
                "source": self._source_names[self._prov_source[origin]],
                "time": float(self._prov_time[origin]),
                "note": None if note_id < 0 else self._notes[note_id]}

    # ------------------------------------------------------------- changing

    def assign(self, indices, label, source="manual", note=None) -> int:
        """Set the label of ``indices`` (ints or a boolean mask) to ``label``; returns the step id.

        ``label`` is a class name or index (None or -1 clears labels). The step is
        journaled (when the store has a path) before this returns, then observers
        are told.

        >>> store = LabelStore(5)
        >>> store.assign(range(3), "bad", source="model", note="first pass")
        0
        >>> store.labels.tolist()
        [1, 1, 1, -1, -1]
        """
        label = self.class_index(label)
        indices = self._check_indices(indices)
        return self._new_step(indices, label, source, note)

    def seed_from(self, cluster_labels, mapping=None, source="kmeans", note=None) -> int:
        """Label every frame from cluster ids in one step; returns the step id.

        ``cluster_labels`` has one cluster id per frame. ``mapping`` maps cluster
        ids to classes (name, index, or None to leave those frames alone), as a
        dict or a sequence indexed by cluster id. Without it cluster ids must
        already be class indices. Noise (-1) is left alone unless mapped.

        >>> store = LabelStore(4)
        >>> store.seed_from([0, 0, 1, -1], mapping={0: "bad", 1: "good"})
        0
        >>> store.labels.tolist()
        [1, 1, 0, -1]
        """
        cluster_labels = np.asarray(cluster_labels)
        if cluster_labels.shape != (self._n_frames,) or cluster_labels.dtype.kind not in "iu":
            raise LabelError(f"seed_from needs one integer cluster id per frame "
                             f"({self._n_frames}), got shape {cluster_labels.shape} "
                             f"dtype {cluster_labels.dtype}")
        table = self._cluster_table(np.unique(cluster_labels), mapping)
        keep = np.isin(cluster_labels, list(table))
        indices = np.flatnonzero(keep)
        ids = cluster_labels[indices]
        lut_keys = np.array(sorted(table), dtype=np.int64)
        lut_vals = np.array([table[k] for k in lut_keys], dtype=np.int32)
        labels = lut_vals[np.searchsorted(lut_keys, ids)] if len(ids) else ids.astype(np.int32)
        return self._new_step(indices, labels, source, note)

    def _cluster_table(self, cluster_ids, mapping) -> dict:
        if mapping is None:
            valid = [c for c in cluster_ids.tolist() if c != -1]
            bad = [c for c in valid if not 0 <= c < len(self._classes)]
            if bad:
                raise LabelError(f"cluster ids {bad} are not class indices of "
                                 f"{self._classes}; pass mapping={{cluster id: class name}}")
            return {c: c for c in valid}
        if not isinstance(mapping, dict):
            mapping = dict(enumerate(mapping))
        unmapped = [c for c in cluster_ids.tolist() if c not in mapping and c != -1]
        if unmapped:
            raise LabelError(f"cluster ids {unmapped} are not in mapping {mapping}")
        table = {int(c): self.class_index(cls) for c, cls in mapping.items() if cls is not None}
        return table

    def undo(self) -> int | None:
        """Undo the last applied step; returns its id (None if nothing to undo)."""
        return self._travel("undo")

    def redo(self) -> int | None:
        """Redo the last undone step; returns its id (None if nothing to redo)."""
        return self._travel("redo")

    def _travel(self, kind):
        stack = self._undo if kind == "undo" else self._redo
        if not stack:
            return None
        step, when = stack[-1], time.time()
        self._journal(kind, target=step, when=when)
        self._apply_travel(kind, when)
        return step

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` would do something."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether :meth:`redo` would do something."""
        return bool(self._redo)

    def _check_indices(self, indices) -> np.ndarray:
        if isinstance(indices, range):
            indices = np.arange(indices.start, indices.stop, indices.step)
        array = np.asarray(indices)
        if array.dtype == bool:
            if array.shape != (self._n_frames,):
                raise LabelError(f"a boolean mask needs {self._n_frames} entries, "
                                 f"got shape {array.shape}")
            array = np.flatnonzero(array)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.size == 0:
            return np.empty(0, dtype=self._index_dtype)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise LabelError(f"indices must be a 1-d array of integers or a boolean mask, "
                             f"got shape {array.shape} dtype {array.dtype}")
        low, high = array.min(), array.max()
        if low < 0 or high >= self._n_frames:
            bad = int(low) if low < 0 else int(high)
            raise LabelError(f"index out of range: store has {self._n_frames} frames",
                             frame=bad)
        return array.astype(self._index_dtype, copy=False)

    # numpy's fancy indexing is fastest with intp indices; the journal stores int32
    # when the frame count allows.
    _index_dtype = np.intp

    @property
    def _journal_index_dtype(self):
        return np.dtype("<i4" if self._n_frames < 2**31 else "<i8")

    def _source_code(self, source) -> int:
        source = str(source)
        try:
            return self._source_names.index(source)
        except ValueError:
            if len(self._source_names) >= 127:
                raise LabelError("too many distinct label sources (127 at most)") from None
            self._source_names.append(source)
            return len(self._source_names) - 1

    def _note_id(self, note) -> int:
        if note is None:
            return -1
        note = str(note)
        if note not in self._note_lookup:
            self._note_lookup[note] = len(self._notes)
            self._notes.append(note)
        return self._note_lookup[note]

    def _new_step(self, indices, labels, source, note, when=None, step_id=None) -> int:
        note = None if note is None or note == "" else str(note)
        step = _Step(step=self._next_step if step_id is None else step_id,
                     indices=indices, labels=labels, source=self._source_code(source),
                     time=time.time() if when is None else when, note=self._note_id(note))
        self._journal("assign", step=step, source=str(source), note=note)
        self._apply_new(step)
        return step.step

    def _apply_new(self, step: _Step):
        for dropped in self._redo:
            self._steps.pop(dropped, None)
        self._redo.clear()
        idx = step.indices
        step.origin = self._add_provenance(step.source, step.time, step.note)
        step.packed = _pack(step.labels, step.origin)
        step.prev = self._pairs64[idx]
        self._steps[step.step] = step
        self._next_step = step.step + 1
        self._pairs64[idx] = step.packed
        self._undo.append(step.step)
        self._record("assign", step.step, step.time)
        self._notify("assign", step.step, idx)

    def _apply_travel(self, kind, when):
        """Undo (``kind="undo"``) or redo the step on top of the undo or redo stack."""
        source, target = ((self._undo, self._redo) if kind == "undo"
                          else (self._redo, self._undo))
        step = self._steps[source.pop()]
        if kind == "undo":
            self._pairs64[step.indices] = step.prev
        else:
            self._pairs64[step.indices] = step.packed
        target.append(step.step)
        self._record(kind, step.step, when)
        self._notify(kind, step.step, step.indices)

    def _add_provenance(self, sources, times, notes) -> int:
        """Append provenance rows (scalars or arrays); returns the first new row."""
        count = max(np.size(sources), np.size(times), np.size(notes))
        first, needed = self._prov_len, self._prov_len + count
        if needed > len(self._prov_source):
            size = max(needed, 2 * len(self._prov_source))
            self._prov_source = np.resize(self._prov_source, size)
            self._prov_time = np.resize(self._prov_time, size)
            self._prov_note = np.resize(self._prov_note, size)
        self._prov_source[first:needed] = sources
        self._prov_time[first:needed] = times
        self._prov_note[first:needed] = notes
        self._prov_len = needed
        return first

    def _record(self, kind, step_id, when):
        if kind == "assign":
            step = self._steps[step_id]
            labels = step.labels
            self._history.append({
                "kind": kind, "step": step_id,
                "label": (self.class_name(labels) if np.ndim(labels) == 0 else "(several)"),
                "source": self._source_names[step.source], "n_frames": len(step.indices),
                "time": when, "note": None if step.note < 0 else self._notes[step.note]})
        else:
            self._history.append({"kind": kind, "step": step_id, "label": None, "source": None,
                                  "n_frames": None, "time": when, "note": None})

    @property
    def history(self) -> pd.DataFrame:
        """All steps, oldest first: one row per assign, undo and redo.

        Columns: ``kind``, ``step`` (the assign step it concerns), ``label``,
        ``source``, ``n_frames``, ``time``, ``note`` and ``applied`` (True on the
        assign rows whose step is in effect now; False on undo/redo rows). A store
        made by ``from_csv``/``from_hdf5`` starts with one ``"load"`` row.
        """
        table = pd.DataFrame(self._history, columns=["kind", "step", "label", "source",
                                                     "n_frames", "time", "note"])
        applied = {}
        for kind, step in zip(table["kind"], table["step"]):
            applied[step] = kind != "undo"
        table["applied"] = [applied[step] and kind in ("assign", "load")
                            for kind, step in zip(table["kind"], table["step"])]
        return table

    # ------------------------------------------------------------ observers

    def observe(self, callback):
        """Call ``callback(change: LabelChange)`` after every change; returns ``callback``.

        A callback that raises is logged and warned about; the store is unaffected.

        >>> store = LabelStore(3)
        >>> seen = []
        >>> _ = store.observe(lambda change: seen.append(change.indices.tolist()))
        >>> _ = store.assign([1, 2], "bad")
        >>> seen
        [[1, 2]]
        """
        if callback not in self._observers:
            self._observers.append(callback)
        return callback

    def unobserve(self, callback):
        """Stop calling ``callback`` (no error if it was not observing)."""
        if callback in self._observers:
            self._observers.remove(callback)

    def _notify(self, kind, step_id, indices):
        if not self._observers:
            return
        labels = self._labels[indices]
        labels.flags.writeable = False
        indices = indices.view()
        indices.flags.writeable = False
        change = LabelChange(indices=indices, labels=labels, kind=kind, step=step_id)
        for callback in list(self._observers):
            try:
                callback(change)
            except Exception as err:  # a broken view must never break the store
                log.exception("LabelStore observer %r failed", callback)
                warnings.warn(f"LabelStore observer {callback!r} raised {err!r}; "
                              f"the labels are unaffected", RuntimeWarning, stacklevel=3)

    # ----------------------------------------------------------- persistence

    def _journal(self, kind, step=None, target=-1, when=0.0, source="", note=None):
        """Write one record and make it durable (no-op for an in-memory store)."""
        if self._closed:
            raise LabelError("this store was closed; reopen it with LabelStore.open(path)",
                             path=self._path)
        if self._fd is None:
            return
        self._lock_journal()
        record = _encode_record(kind, step, target, when, source, note,
                                self._journal_index_dtype)
        try:
            _write_all(self._fd, record)
            _sync(self._fd)
            self._journal_size += len(record)
        except OSError as err:
            raise JournalError(f"cannot write the label journal: {err}; the step was not "
                               f"applied", path=self._journal_path) from err

    @property
    def _journal_path(self):
        return None if self._path is None else self._path / JOURNAL_NAME

    def _meta(self) -> dict:
        return {"format": "xlabel-labels", "version": FORMAT_VERSION,
                "n_frames": self._n_frames, "classes": list(self._classes),
                "colors": list(self._colors), "generation": self._generation,
                "fingerprint": self.fingerprint}

    def _create_on_disk(self, path):
        path = Path(path)
        if _store_exists(path):
            raise JournalError("a label store already exists here; open it with "
                               "LabelStore.open(path) or choose another path", path=path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            if self._frames is not None:
                _atomic_write(path / FRAMES_NAME, lambda f: np.savez(
                    f, scan=self._frames["scan"].to_numpy(dtype=str),
                    frame=self._frames["frame"].to_numpy(dtype=np.int64)))
        except OSError as err:
            raise JournalError(f"cannot create the label store: {err}", path=path) from err
        self._path = path
        self._start_journal()

    def _start_journal(self):
        """Atomically replace the journal with an empty one of the current generation."""
        try:
            _atomic_write(self._journal_path, lambda f: f.write(_encode_header(self._meta())))
            self._open_journal()
        except OSError as err:
            raise JournalError(f"cannot write the label journal: {err}",
                               path=self._journal_path) from err

    def _open_journal(self):
        self._close_fd()
        self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND)
        self._journal_size = os.fstat(self._fd).st_size

    def _lock_journal(self):
        """Take the journal's write lock before the first write (readers never lock).

        Two stores writing one journal would interleave their steps; a store that
        read the journal before someone else wrote to it would write stale steps.
        Both are refused with a clear error.
        """
        if self._locked or fcntl is None:
            return
        try:
            locked = _try_lock(self._fd, patience=0.5)  # a reader may be repairing the tail
        except OSError as err:
            raise JournalError(f"cannot lock the journal: {err}", path=self._path) from err
        if not locked:
            raise JournalError("another LabelStore (in this or another process) is writing "
                               "to this store; close() it first", path=self._path)
        on_disk, mine = os.stat(self._journal_path), os.fstat(self._fd)
        if on_disk.st_ino != mine.st_ino or mine.st_size != self._journal_size:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            raise JournalError("the store changed on disk since this LabelStore read it "
                               "(another one wrote to it); reopen it with LabelStore.open(path)",
                               path=self._path)
        self._locked = True

    def _close_fd(self):
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None
            self._locked = False

    def close(self):
        """Close the journal file; a closed store can still be read, not changed."""
        self._close_fd()
        self._closed = self._path is not None

    def copy(self, path=None) -> "LabelStore":
        """An independent copy (labels, provenance, history, undo/redo), in memory or at ``path``.

        >>> store = LabelStore(3)
        >>> _ = store.assign([0], "bad")
        >>> trial = store.copy()
        >>> _ = trial.assign([1, 2], "bad", source="model")
        >>> store.counts()["bad"], trial.counts()["bad"], trial.undo()
        (1, 3, 1)
        """
        twin = LabelStore(self._n_frames, classes=self._classes, colors=self._colors,
                          frames=self._frames, fingerprint=self.fingerprint)
        twin._restore_arrays(self._state_arrays())
        twin._restore_undo(self._undo_arrays())
        twin._history = [dict(row) for row in self._history]
        twin._next_step = self._next_step
        if path is not None:
            twin._create_on_disk(path)
            twin.snapshot()
        return twin

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Interpreter shutdown may have torn down os/io already; nothing useful to report.
        with contextlib.suppress(Exception):
            self._close_fd()

    # ---------------------------------------------------------- reopening

    @classmethod
    def open(cls, path, recover=False) -> "LabelStore":
        """Reopen the store journaled at ``path``: snapshot + journal replay.

        A half-written last record (a crash during a write) is dropped with a
        :class:`JournalRecoveryWarning`. A damaged record followed by valid ones
        raises :class:`~xlabel.errors.JournalError`; ``recover=True`` keeps the
        steps before it instead (and warns how many records were dropped).

        >>> import tempfile, os
        >>> folder = os.path.join(tempfile.mkdtemp(), "scan.xlabel")
        >>> _ = LabelStore(3, path=folder).assign([2], "bad")
        >>> LabelStore.open(folder).labels.tolist()
        [-1, -1, 1]
        """
        path = Path(path)
        if not _store_exists(path):
            raise JournalError(f"no label store here (expected {JOURNAL_NAME} or "
                               f"{SNAPSHOT_NAME} in this directory)", path=path)
        snapshot = _read_snapshot(path / SNAPSHOT_NAME)
        journal = _read_journal(path / JOURNAL_NAME)
        meta = snapshot["meta"] if snapshot is not None else journal[0]
        if snapshot is not None and journal is not None:
            _check_same_dataset(path, snapshot["meta"], journal[0])
        store = cls.__new__(cls)
        store._init_state(meta["n_frames"], tuple(meta["classes"]), tuple(meta["colors"]),
                          _read_frames(path / FRAMES_NAME), meta.get("fingerprint"))
        store._path = path
        if snapshot is not None:
            store._restore_snapshot(snapshot)
        if journal is not None and journal[0]["generation"] == store._generation:
            store._replay(journal, recover)
            store._open_journal()
        elif journal is None or journal[0]["generation"] < store._generation:
            log.info("%s: journal predates the snapshot; starting a new one", path)
            store._start_journal()
        else:
            raise JournalError(f"journal generation {journal[0]['generation']} is newer than "
                               f"the snapshot ({store._generation}); the snapshot is missing "
                               f"or was replaced", path=path / JOURNAL_NAME)
        return store

    def _reopen_matching(self, path):
        """Adopt the store already at ``path`` if it is the same dataset."""
        other = LabelStore.open(path)
        _check_same_dataset(path, self._meta(), other._meta())
        other_state = dict(other.__dict__)
        other._fd = None
        other._path = None
        self.__dict__.update(other_state)

    def _replay(self, journal, recover):
        header, data, start = journal
        records, end, bad = _scan_records(data, start)
        for offset, payload in records:
            try:
                self._replay_record(payload)
            except (LabelError, KeyError, IndexError, ValueError) as err:
                raise JournalError(f"record at byte {offset} cannot be replayed ({err}); "
                                   f"the journal does not belong to this store",
                                   path=self._journal_path) from err
        if bad is None:
            return
        later = _count_valid_after(data, bad)
        if later and not recover:
            raise JournalError(
                f"corrupt record at byte {bad} followed by {later} valid record(s); "
                f"LabelStore.open(path, recover=True) keeps the {len(records)} steps before "
                f"it and drops the rest", path=self._journal_path)
        if not _truncate_unless_locked(self._journal_path, bad):
            if later:
                raise JournalError("cannot repair the journal while another LabelStore is "
                                   "writing to it; close that one first",
                                   path=self._journal_path)
            # A live writer is appending this record right now: not damage, just too early.
            log.info("%s: skipped a record being written at byte %d", self._journal_path, bad)
            return
        what = (f"dropped a corrupt record at byte {bad} and {later} record(s) after it"
                if later else f"dropped a half-written record at byte {bad} "
                              f"({len(data) - bad} bytes, probably a crash during a write)")
        warnings.warn(f"{self._journal_path}: {what}; {len(records)} steps were recovered",
                      JournalRecoveryWarning, stacklevel=3)

    def _replay_record(self, payload):
        kind, step_id, target, when, indices, labels, source, note = _decode_record(payload)
        if kind == "assign":
            self._check_indices(indices)
            if np.ndim(labels) == 0:
                labels = self.class_index(int(labels))
            elif len(labels) and (labels.min() < -1 or labels.max() >= len(self._classes)):
                raise LabelError("label out of range")
            self._new_step(indices, labels, source, note, when=when, step_id=step_id)
            return
        stack = self._undo if kind == "undo" else self._redo
        if not stack or stack[-1] != target:
            raise LabelError(f"{kind} of step {target} does not match the history")
        self._apply_travel(kind, when)

    # ---------------------------------------------------------- snapshots

    def snapshot(self, keep_undo=True):
        """Compact the journal: write the state to ``snapshot.npz``, start a new journal.

        Both files are replaced atomically; a crash at any point leaves a store
        that reopens to the same labels. :attr:`history` is kept. With
        ``keep_undo=False`` the undo/redo data is dropped too (smaller snapshot,
        less memory): steps before the snapshot can then no longer be undone.
        """
        if self._path is None:
            raise LabelError("snapshot() needs a store with a path")
        if not keep_undo:
            self._steps.clear()
            self._undo.clear()
            self._redo.clear()
        if self._closed:
            raise LabelError("this store was closed; reopen it with LabelStore.open(path)",
                             path=self._path)
        self._lock_journal()
        self._generation += 1
        arrays = self._state_arrays()
        arrays.update(self._undo_arrays())
        arrays["meta"] = np.array(json.dumps(self._meta()))
        arrays["history"] = np.array(json.dumps(self._history))
        arrays["next_step"] = np.array(self._next_step, dtype=np.int64)
        try:
            _atomic_write(self._path / SNAPSHOT_NAME, lambda f: np.savez(f, **arrays))
        except OSError as err:
            self._generation -= 1
            raise JournalError(f"cannot write the snapshot: {err}", path=self._path) from err
        self._start_journal()

    def _state_arrays(self) -> dict:
        n = self._prov_len
        return {"labels": self._labels.copy(), "origins": self._origins.copy(),
                "prov_source": self._prov_source[:n].copy(),
                "prov_time": self._prov_time[:n].copy(), "prov_note": self._prov_note[:n].copy(),
                "notes": np.array(self._notes, dtype=str),
                "source_names": np.array(self._source_names, dtype=str)}

    def _undo_arrays(self) -> dict:
        """The undo and redo stacks as flat arrays (steps concatenated, with offsets)."""
        steps = [self._steps[i] for i in self._undo + self._redo]
        sizes = [len(step.indices) for step in steps]
        prev = [_unpack(step.prev) for step in steps]

        def joined(values, dtype):
            return np.concatenate([np.broadcast_to(np.asarray(v, dtype=dtype), (n,))
                                   for v, n in zip(values, sizes)]) if steps else \
                np.empty(0, dtype=dtype)

        return {
            "undo_count": np.array(len(self._undo), dtype=np.int64),
            "undo_meta": np.array([[st.step, st.source, st.note, st.origin,
                                    _MIXED if np.ndim(st.labels) else st.labels]
                                   for st in steps], dtype=np.int64).reshape(-1, 5),
            "undo_time": np.array([st.time for st in steps], dtype=np.float64),
            "undo_offsets": np.cumsum([0] + sizes, dtype=np.int64),
            "undo_indices": joined([st.indices for st in steps], np.int64),
            "undo_labels": joined([st.labels for st in steps], np.int32),
            "undo_prev_labels": joined([labels for labels, _ in prev], np.int32),
            "undo_prev_origins": joined([origins for _, origins in prev], np.int32)}

    def _restore_undo(self, arrays):
        meta = self._checked(arrays, "undo_meta", np.shape(arrays["undo_meta"]), np.int64)
        count = len(meta)
        offsets = self._checked(arrays, "undo_offsets", (count + 1,), np.int64)
        total = int(offsets[-1])
        flat = {name: self._checked(arrays, f"undo_{name}", (total,), dtype)
                for name, dtype in (("indices", np.intp), ("labels", np.int32),
                                    ("prev_labels", np.int32), ("prev_origins", np.int32))}
        times = self._checked(arrays, "undo_time", (count,), np.float64)
        if (count and meta.shape[1:] != (5,)) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise JournalError("undo data is malformed", path=self._path, dataset="undo_meta")
        for name, values, low, high in (
                ("undo_indices", flat["indices"], 0, self._n_frames),
                ("undo_labels", flat["labels"], -1, len(self._classes)),
                ("undo_prev_labels", flat["prev_labels"], -1, len(self._classes)),
                ("undo_prev_origins", flat["prev_origins"], 0, self._prov_len),
                ("undo_meta", meta[:, 3], 0, self._prov_len)):
            _check_range(values, low, high, name, self._path)
        for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
            step_id, source, note, origin, label = (int(v) for v in meta[row])
            labels = flat["labels"][start:stop] if label == _MIXED else label
            self._steps[step_id] = _Step(
                step_id, flat["indices"][start:stop], labels, source, float(times[row]), note,
                origin, _pack(labels, origin),
                _pack(flat["prev_labels"][start:stop], flat["prev_origins"][start:stop]))
        self._undo = [int(v) for v in meta[:int(arrays["undo_count"]), 0]]
        self._redo = [int(v) for v in meta[int(arrays["undo_count"]):, 0]]

    def _restore_snapshot(self, snapshot):
        self._generation = int(snapshot["meta"]["generation"])
        self._restore_arrays(snapshot)
        self._restore_undo(snapshot)
        self._history = list(snapshot["history"])
        self._next_step = int(snapshot["next_step"])

    def _restore_arrays(self, arrays):
        """Set the state from the arrays of :meth:`_state_arrays` (checked, never trusted)."""
        self._labels[:] = self._checked(arrays, "labels", (self._n_frames,), np.int32)
        self._origins[:] = self._checked(arrays, "origins", (self._n_frames,), np.int32)
        rows = np.shape(arrays["prov_source"])[:1]
        self._prov_source = self._checked(arrays, "prov_source", rows, np.int8)
        self._prov_time = self._checked(arrays, "prov_time", rows, np.float64)
        self._prov_note = self._checked(arrays, "prov_note", rows, np.int32)
        self._prov_len = len(self._prov_source)
        self._source_names = [str(name) for name in arrays["source_names"]]
        self._notes = [str(note) for note in arrays["notes"]]
        self._note_lookup = {note: i for i, note in enumerate(self._notes)}
        for name, values, low, high in (
                ("labels", self._labels, -1, len(self._classes)),
                ("origins", self._origins, 0, self._prov_len),
                ("prov_source", self._prov_source, 0, len(self._source_names)),
                ("prov_note", self._prov_note, -1, len(self._notes))):
            _check_range(values, low, high, name, self._path)

    def _checked(self, arrays, name, shape, dtype):
        values = np.asarray(arrays[name])
        if values.shape != tuple(shape) or values.dtype.kind not in "iuf" or not len(shape):
            raise JournalError(f"{name} has shape {values.shape} dtype {values.dtype}, "
                               f"expected {tuple(shape)}", path=self._path, dataset=name)
        return values.astype(dtype)

    # ------------------------------------------------------------ exports

    def to_dataframe(self) -> pd.DataFrame:
        """One row per frame: (``scan``,) ``frame``, ``label``, ``source``, ``time``, ``note``.

        ``label`` is the class name ("" = unlabeled), ``time`` Unix seconds (NaN = never).

        ``frame`` is the row number unless the store has a ``frames`` table, which
        then gives ``scan`` and ``frame``. ``note`` is "" where there is none.

        >>> store = LabelStore(2)
        >>> _ = store.assign([1], "bad", note="dark")
        >>> store.to_dataframe()[["frame", "label", "source", "note"]].values.tolist()
        [[0, '', '', ''], [1, 'bad', 'manual', 'dark']]
        """
        origins = self._origins
        table = (self._frames.copy() if self._frames is not None
                 else pd.DataFrame({"frame": np.arange(self._n_frames, dtype=np.int64)}))
        table["label"] = np.array(("",) + self._classes, dtype=object)[self._labels + 1]
        table["source"] = np.array(self._source_names, dtype=object)[self._prov_source[origins]]
        table["time"] = self._prov_time[origins]
        table["note"] = np.array(self._notes + [""], dtype=object)[self._prov_note[origins]]
        return table

    def to_csv(self, csv_path):
        """Write :meth:`to_dataframe` as CSV (atomically); :meth:`from_csv` reads it back exactly.

        >>> import tempfile, os
        >>> csv = os.path.join(tempfile.mkdtemp(), "labels.csv")
        >>> store = LabelStore(3, classes=("good", "bad"))
        >>> _ = store.assign([0], "bad")
        >>> store.to_csv(csv)
        >>> LabelStore.from_csv(csv, classes=("good", "bad")).labels.tolist()
        [1, -1, -1]
        """
        text = self.to_dataframe().to_csv(index=False)
        try:
            _atomic_write(csv_path, lambda f: f.write(text.encode()))
        except OSError as err:
            raise LabelError(f"cannot write labels CSV: {err}", path=csv_path) from err

    def _csv_positions(self, table, csv_path) -> np.ndarray:
        """Store rows of CSV rows: by (scan, frame) when both sides have scans, else by frame."""
        if self._frames is not None and "scan" in table:
            lookup = pd.Series(np.arange(self._n_frames),
                               index=pd.MultiIndex.from_frame(self._frames))
            keys = pd.MultiIndex.from_frame(table[["scan", "frame"]])
            positions = lookup.reindex(keys).to_numpy()
            unknown = np.flatnonzero(np.isnan(positions))
            if len(unknown):
                row = table.iloc[unknown[0]]
                raise LabelError(f"scan {row['scan']!r} frame {row['frame']} is not in this store "
                                 f"({len(unknown)} such rows)", path=csv_path)
            return positions.astype(np.int64)
        positions = table["frame"].to_numpy(dtype=np.int64)
        bad = positions[(positions < 0) | (positions >= self._n_frames)]
        if len(bad):
            raise LabelError(f"frame out of range: store has {self._n_frames} frames",
                             path=csv_path, frame=int(bad[0]))
        return positions

    def _csv_labels(self, table, csv_path) -> np.ndarray:
        names = table["label"].to_numpy(dtype=object)
        lookup = dict(self._class_lookup, **{"": -1})
        labels = np.array([lookup.get(name, -2) for name in names], dtype=np.int32)
        unknown = np.flatnonzero(labels == -2)
        if len(unknown):
            raise LabelError(self._unknown_class(names[unknown[0]]), path=csv_path,
                             frame=int(table["frame"].iloc[unknown[0]]))
        return labels

    @classmethod
    def from_csv(cls, csv_path, classes=None, n_frames=None, path=None, colors=None,
                 frames=None) -> "LabelStore":
        """A new store from a CSV with columns ``frame,label`` (+ optional ``scan``, ``source``,
        ``time``, ``note`` as written by :meth:`to_csv`).

        ``classes`` defaults to ("good", "bad") when the file uses only those, else the
        sorted names found; pass them to keep class indices exact. Without ``frames``
        a ``scan`` column makes the CSV rows the store rows; otherwise ``frame`` is the
        row number and ``n_frames`` defaults to the largest frame + 1. Provenance
        columns are restored; missing ones become source "import", time now.
        With ``path`` the new store is saved there (as a snapshot).
        """
        table = _read_label_csv(csv_path)
        if frames is None and "scan" in table:
            frames = table[["scan", "frame"]]
        if n_frames is None:
            n_frames = len(frames) if frames is not None else int(table["frame"].max() + 1
                                                                  if len(table) else 0)
        store = cls(n_frames, classes=_classes_in(table, classes), colors=colors, frames=frames)
        positions = store._csv_positions(table, csv_path)
        labels = store._csv_labels(table, csv_path)
        sources = (table["source"] if "source" in table
                   else np.where(labels >= 0, "import", "")).astype(str)
        times = table["time"].to_numpy(float) if "time" in table else np.where(
            labels >= 0, time.time(), np.nan)
        notes = table["note"].astype(str) if "note" in table else np.full(len(table), "")
        store._load_rows(positions, labels, np.asarray(sources), times, np.asarray(notes))
        if path is not None:
            store._create_on_disk(path)
            store.snapshot()
        return store

    def _load_rows(self, positions, labels, sources, times, notes):
        """Set labels and per-frame provenance directly (a new store's initial state)."""
        self._labels[positions] = labels
        labeled = (sources != "") | ~np.isnan(times) | (notes != "")
        rows = positions[labeled]
        source_codes = np.array([self._source_code(s) for s in sources[labeled]], dtype=np.int8)
        note_ids = np.array([self._note_id(n or None) for n in notes[labeled]], dtype=np.int32)
        first = self._add_provenance(source_codes, times[labeled], note_ids)
        self._origins[rows] = first + np.arange(len(rows), dtype=np.int32)
        self._history.append({"kind": "load", "step": -1, "label": "(several)", "source": "import",
                              "n_frames": int(len(positions)), "time": time.time(), "note": None})

    def import_csv(self, csv_path, source="import", note=None) -> int:
        """Assign the labels of a ``frame,label`` CSV to this store as one step; returns its id.

        Rows with an empty label are skipped. Rows are matched by ``scan`` and
        ``frame`` when both the CSV and the store's ``frames`` have scans.
        """
        table = _read_label_csv(csv_path)
        positions = self._csv_positions(table, csv_path)
        labels = self._csv_labels(table, csv_path)
        keep = labels >= 0
        indices = positions[keep].astype(self._index_dtype)
        return self._new_step(indices, labels[keep], source, note)

    def to_hdf5(self, h5_path):
        """Write the whole store (labels, provenance, classes, history) to an HDF5 sidecar file.

        Written to a temp file and renamed, so an existing file is replaced
        atomically. Strings are UTF-8. :meth:`from_hdf5` reads it back exactly.
        """
        import h5py

        def write(handle):
            with h5py.File(handle, "w") as h5:
                group = h5.create_group("xlabel_labels")
                group.attrs["meta"] = json.dumps(self._meta())
                group.attrs["history"] = json.dumps(self._history)
                for name, values in self._state_arrays().items():
                    if values.dtype.kind == "U":
                        group.create_dataset(name, data=values.astype(object),
                                             dtype=h5py.string_dtype("utf-8"))
                    else:
                        group.create_dataset(name, data=values, compression="gzip")
                if self._frames is not None:
                    group.create_dataset("frames/scan", data=self._frames["scan"].to_numpy(object),
                                         dtype=h5py.string_dtype("utf-8"))
                    group.create_dataset("frames/frame", data=self._frames["frame"].to_numpy())

        try:
            _atomic_write(h5_path, write)
        except OSError as err:
            raise LabelError(f"cannot write the HDF5 label file: {err}", path=h5_path) from err

    @classmethod
    def from_hdf5(cls, h5_path, path=None) -> "LabelStore":
        """A new store from a file written by :meth:`to_hdf5` (with ``path``: saved there)."""
        import h5py

        dataset = None
        try:
            with h5py.File(h5_path, "r") as h5:
                dataset = "xlabel_labels"
                group = h5[dataset]
                meta = _check_meta(json.loads(group.attrs["meta"]), h5_path)
                history = json.loads(group.attrs["history"])
                arrays = {}
                for name in _H5_ARRAYS + ("notes", "source_names"):
                    dataset = f"xlabel_labels/{name}"
                    item = group[name]
                    strings = name in ("notes", "source_names")
                    arrays[name] = item.asstr()[()] if strings else item[()]
                frames = None
                if "frames" in group:
                    dataset = "xlabel_labels/frames"
                    frames = pd.DataFrame({"scan": group["frames/scan"].asstr()[()],
                                           "frame": group["frames/frame"][()]})
        except JournalError:
            raise
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
            raise JournalError(f"not a readable xlabel label file ({err})", path=h5_path,
                               dataset=dataset) from err
        store = cls(meta["n_frames"], classes=tuple(meta["classes"]), colors=meta["colors"],
                    frames=frames, fingerprint=meta.get("fingerprint"))
        store._path = Path(h5_path)  # so errors name the file
        store._restore_arrays(arrays)
        store._path = None
        store._history = history
        if path is not None:
            store._create_on_disk(path)
            store.snapshot()
        return store


# ---------------------------------------------------------------- validation

def _check_n_frames(n_frames) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
        raise LabelError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    return int(n_frames)


def _check_classes(classes) -> tuple:
    if isinstance(classes, str):
        raise LabelError(f"classes must be a sequence of names, not the string {classes!r}")
    classes = tuple(classes)
    if not classes:
        raise LabelError("a LabelStore needs at least one class")
    for name in classes:
        if not isinstance(name, str) or name in ("", "unlabeled"):
            raise LabelError(f"class names must be non-empty strings other than "
                             f"'unlabeled', got {name!r}")
    if len(set(classes)) != len(classes):
        raise LabelError(f"class names must be unique, got {classes}")
    if len(classes) > 2**31 - 2:
        raise LabelError("too many classes")
    return classes


def _check_colors(colors, classes) -> tuple:
    if colors is None:
        return tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(classes)))
    if isinstance(colors, dict):
        colors = [colors.get(name, DEFAULT_COLORS[i % len(DEFAULT_COLORS)])
                  for i, name in enumerate(classes)]
    colors = tuple(str(c) for c in colors)
    if len(colors) != len(classes):
        raise LabelError(f"{len(colors)} colors given for {len(classes)} classes {classes}")
    return colors


def _check_frames(frames, n_frames):
    if frames is None:
        return None
    if not isinstance(frames, pd.DataFrame) or not {"scan", "frame"} <= set(frames.columns):
        raise LabelError("frames must be a DataFrame with 'scan' and 'frame' columns")
    if len(frames) != n_frames:
        raise LabelError(f"frames has {len(frames)} rows but the store has {n_frames} frames")
    return pd.DataFrame({"scan": frames["scan"].astype(str).to_numpy(),
                         "frame": frames["frame"].to_numpy(dtype=np.int64)})


def _frames_fingerprint(frames) -> str:
    crc = zlib.crc32("\0".join(frames["scan"]).encode())
    crc = zlib.crc32(frames["frame"].to_numpy(dtype="<i8").tobytes(), crc)
    return f"frames:{len(frames)}:{crc:08x}"


def _check_same_dataset(path, expected, found):
    if expected["n_frames"] != found["n_frames"]:
        raise JournalError(f"this label store is for {found['n_frames']} frames, not "
                           f"{expected['n_frames']}: it belongs to another dataset", path=path)
    if list(expected["classes"]) != list(found["classes"]):
        raise JournalError(f"this label store has classes {list(found['classes'])}, not "
                           f"{list(expected['classes'])}", path=path)
    mine, theirs = expected.get("fingerprint"), found.get("fingerprint")
    if mine is not None and theirs is not None and mine != theirs:
        raise JournalError(f"this label store belongs to dataset {theirs!r}, not {mine!r}",
                           path=path)


def _pack(labels, origins):
    """(label, origin) pairs as the int64 values of ``LabelStore._pairs64`` (any endianness)."""
    labels, origins = np.broadcast_arrays(np.asarray(labels, dtype=np.int32),
                                          np.asarray(origins, dtype=np.int32))
    pairs = np.empty(labels.shape + (2,), dtype=np.int32)
    pairs[..., 0] = labels
    pairs[..., 1] = origins
    return pairs.view(np.int64)[..., 0]


def _unpack(packed):
    """Inverse of :func:`_pack`: ``(labels, origins)``."""
    pairs = np.asarray(packed, dtype=np.int64)[..., None].view(np.int32)
    return pairs[..., 0], pairs[..., 1]


def _check_range(values, low, high, name, path):
    if len(values) and (values.min() < low or values.max() >= high):
        raise JournalError(f"{name} holds codes outside {low}..{high - 1}", path=path,
                           dataset=name)


# ------------------------------------------------------------- file helpers

def _store_exists(path) -> bool:
    path = Path(path)
    return (path / JOURNAL_NAME).is_file() or (path / SNAPSHOT_NAME).is_file()


def _try_lock(fd, patience=0.0) -> bool:
    """Take an exclusive ``flock`` on ``fd``, retrying for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _truncate_unless_locked(path, size) -> bool:
    """Cut ``path`` to ``size`` bytes unless a writer holds its lock; whether it did."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            if fcntl is not None and not _try_lock(fd):
                return False
            os.ftruncate(fd, size)
            os.fsync(fd)
            return True
        finally:
            os.close(fd)
    except OSError as err:
        raise JournalError(f"cannot truncate the damaged journal: {err}", path=path) from err


def _sync(fd):
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _atomic_write(path, write):
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
    _fsync_dir(path.parent)


def _fsync_dir(folder):
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


def _read_snapshot(path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            snap = {name: data[name] for name in data.files}
        snap["meta"] = _check_meta(json.loads(str(snap["meta"])), path)
        snap["history"] = json.loads(str(snap["history"]))
        return snap
    except JournalError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise JournalError(f"cannot read the label snapshot: {err}", path=path) from err


def _read_frames(path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return pd.DataFrame({"scan": data["scan"].astype(str), "frame": data["frame"]})
    except (OSError, ValueError, KeyError) as err:
        raise JournalError(f"cannot read the frames table: {err}", path=path) from err


def _check_meta(meta, path) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != "xlabel-labels":
        raise JournalError("not an xlabel label store", path=path)
    if meta.get("version", 0) > FORMAT_VERSION:
        raise JournalError(f"written by a newer xlabel (format version {meta['version']}, "
                           f"this one reads {FORMAT_VERSION})", path=path)
    for key in ("n_frames", "classes", "colors", "generation"):
        if key not in meta:
            raise JournalError(f"metadata lacks {key!r}", path=path)
    return meta


# ------------------------------------------------------------ journal format

def _encode_header(meta) -> bytes:
    body = json.dumps(meta).encode()
    return _FILE_HEAD.pack(FILE_MAGIC, len(body)) + body + struct.pack("<I", zlib.crc32(body))


def _read_journal(path):
    """``(meta, data, offset of the first record)`` or None if there is no journal."""
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
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
    return _check_meta(meta, path), data, start + length + 4


def _encode_record(kind, step, target, when, source, note, index_dtype) -> bytes:
    source_bytes = source.encode()
    note_bytes = b"" if note is None else str(note).encode()
    if step is None:
        head = _PAYLOAD_HEAD.pack(_KINDS[kind], -1, target, 0, when, 0, 0, 0, 0)
        parts = [head]
    else:
        mixed = np.ndim(step.labels) != 0
        indices = step.indices
        head = _PAYLOAD_HEAD.pack(_KINDS[kind], step.step, target,
                                  _MIXED if mixed else int(step.labels), step.time,
                                  index_dtype.itemsize, len(indices), len(source_bytes),
                                  len(note_bytes) if note is not None else -1)
        parts = [head, source_bytes, note_bytes, indices.astype(index_dtype).tobytes()]
        if mixed:
            parts.append(np.asarray(step.labels, dtype="<i4").tobytes())
    payload = b"".join(parts)
    if len(payload) >= _MAX_RECORD:
        raise LabelError("one step is too large for the journal (2 GiB); split it")
    return _RECORD_HEAD.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode_record(payload):
    kind, step, target, label, when, itemsize, count, n_source, n_note = \
        _PAYLOAD_HEAD.unpack_from(payload)
    kind = _KIND_NAMES[kind]
    if kind != "assign":
        return kind, step, target, when, None, None, None, None
    pos = _PAYLOAD_HEAD.size
    source = payload[pos:pos + n_source].decode()
    pos += n_source
    note = None if n_note < 0 else payload[pos:pos + n_note].decode()
    pos += max(n_note, 0)
    dtype = {4: "<i4", 8: "<i8"}[itemsize]
    indices = np.frombuffer(payload, dtype=dtype, count=count, offset=pos)
    pos += itemsize * count
    labels = (np.frombuffer(payload, dtype="<i4", count=count, offset=pos).astype(np.int32)
              if label == _MIXED else label)
    return kind, step, target, when, indices.astype(np.intp), labels, source, note


def _parse_record(data, offset):
    """The payload of a valid record at ``offset`` and its end, or None."""
    head_end = offset + _RECORD_HEAD.size
    if head_end > len(data):
        return None
    magic, length, crc = _RECORD_HEAD.unpack_from(data, offset)
    end = head_end + length
    if magic != RECORD_MAGIC or end > len(data) or length < _PAYLOAD_HEAD.size:
        return None
    payload = data[head_end:end]
    if zlib.crc32(payload) != crc:
        return None
    return payload, end


def _scan_records(data, start):
    """Valid records from ``start``: ``([(offset, payload)], end, bad offset or None)``."""
    records, offset = [], start
    while offset < len(data):
        parsed = _parse_record(data, offset)
        if parsed is None:
            return records, offset, offset
        records.append((offset, parsed[0]))
        offset = parsed[1]
    return records, offset, None


def _count_valid_after(data, bad) -> int:
    """Number of valid records after a damaged spot (0: the damage is a torn tail)."""
    offset = data.find(RECORD_MAGIC, bad + 1)
    while offset >= 0:
        parsed = _parse_record(data, offset)
        if parsed is not None:
            return len(_scan_records(data, offset)[0])
        offset = data.find(RECORD_MAGIC, offset + 1)
    return 0


# ------------------------------------------------------------------ CSV helpers

def _read_label_csv(csv_path) -> pd.DataFrame:
    """The rows of a ``frame,label[,scan,source,time,note]`` CSV, checked."""
    try:
        table = pd.read_csv(csv_path, dtype={"label": str, "scan": str, "source": str,
                                             "note": str},
                            keep_default_na=False, na_values={"time": [""]})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise LabelError(f"cannot read labels CSV: {err}", path=csv_path) from err
    missing = {"frame", "label"} - set(table.columns)
    if missing:
        raise LabelError(f"labels CSV needs columns frame,label; missing {sorted(missing)} "
                         f"(found {list(table.columns)})", path=csv_path)
    if table["frame"].dtype.kind not in "iu":
        raise LabelError("column 'frame' must hold integers", path=csv_path)
    if "time" in table and table["time"].dtype.kind not in "iuf":
        raise LabelError("column 'time' must hold numbers (Unix seconds)", path=csv_path)
    keys = ["scan", "frame"] if "scan" in table else ["frame"]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise LabelError("frame listed twice", path=csv_path, frame=int(row["frame"]))
    return table


def _classes_in(table, classes):
    if classes is not None:
        return classes
    names = [name for name in pd.unique(table["label"]) if name != ""]
    return ("good", "bad") if set(names) <= {"good", "bad"} else tuple(sorted(names))


_H5_ARRAYS = ("labels", "origins", "prov_source", "prov_time", "prov_note")


