"""LabelStore: the public face of a labeling session, in memory or journaled to a directory.

A store is a handle on a *session*: the in-memory :class:`~xlabel.labels.state.LabelState`
plus, for a store with a path, its :class:`~xlabel.labels.journal.Journal`. Each step
is journaled first and applied to the state only once it is on disk.

One process, one session per directory: ``LabelStore(n, path=P)`` while a store on
``P`` is open in this process (e.g. kept alive by a widget of a notebook cell that
is being re-run) hands back a handle on that same session instead of reading the
files again, so both handles and every widget made on either see the same labels,
history and observers. ``LabelStore.open(P)`` always reads the files into a new,
independent session (to write, it needs the other one closed).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import weakref
from pathlib import Path

import numpy as np

from ..errors import JournalError, LabelError
from . import formats
from . import journal as jr
from ._checks import (check_classes, check_colors, check_frames, check_n_frames,
                      check_same_dataset, frames_fingerprint, iso_time, not_found)
from .disk import (FRAMES_NAME, JOURNAL_NAME, SNAPSHOT_NAME, read_frames,
                   read_snapshot, store_exists, write_frames, write_snapshot)
from .state import LabelState, log

_READ_RETRIES = 50   # re-reads while a writer swaps snapshot and journal (20 ms apart)


class _Session:
    """One open store: its state, and its folder and journal if it has a path."""

    def __init__(self, state: LabelState, folder=None, journal=None, generation=0):
        self.state = state
        self.folder = None if folder is None else Path(folder)
        self.journal = journal
        self.generation = generation
        self.last_action = ""

    @property
    def closed(self) -> bool:
        return self.journal is not None and self.journal.closed

    def meta(self) -> dict:
        state = self.state
        # version 2 only once there are tags, so tagless stores stay readable by older xlabel
        return {"format": "xlabel-labels", "version": 2 if state.tag_names else 1,
                "n_frames": state.n_frames, "classes": list(state.classes),
                "colors": list(state.colors), "generation": self.generation,
                "fingerprint": state.fingerprint, "undo_limit": list(state.undo_limit)}

    @property
    def index_dtype(self):
        """Journal index type: int32 when the frame count allows."""
        return np.dtype("<i4" if self.state.n_frames < 2**31 else "<i8")

    def __del__(self):
        # Interpreter shutdown may have torn down os/io already; nothing useful to report.
        with contextlib.suppress(Exception):
            if self.journal is not None and not self.journal.closed:
                self.journal.close()


# ---------------------------------------------------------------- registry

_OPEN: dict = {}   # (pid, real path) -> weak references to the sessions open there


def _key(folder):
    return os.getpid(), os.path.realpath(folder)


def _register(session):
    refs = _OPEN.setdefault(_key(session.folder), [])
    refs[:] = [ref for ref in refs if ref() is not None]
    refs.append(weakref.ref(session))


def _find_open(folder):
    """The open session on ``folder`` in this process: the one writing, else the newest."""
    live = [ref() for ref in _OPEN.get(_key(folder), [])]
    live = [s for s in live if s is not None and not s.closed]
    writing = [s for s in live if s.journal.lock.held]
    return (writing or live or [None])[-1]


def _drop_parents_stores():
    """After ``fork``: the parent's open stores are the parent's (see Journal.drop_in_child)."""
    for refs in _OPEN.values():
        for ref in refs:
            session = ref()
            if session is not None and session.journal is not None:
                session.journal.drop_in_child()
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_parents_stores)


# ---------------------------------------------------------------- reading a store

def _load(folder, recover) -> _Session:
    """A new session from the files in ``folder`` (snapshot + journal replay)."""
    folder = Path(folder)
    if not store_exists(folder):
        if not folder.exists():
            raise JournalError(f"no label store here: {not_found(folder, 'folder')}",
                               path=folder)
        raise JournalError(f"no label store here: {Path(os.path.abspath(folder))} has no "
                           f"{JOURNAL_NAME} or {SNAPSHOT_NAME}", path=folder)
    snapshot, found = _read_consistent(folder)
    meta = snapshot["meta"] if snapshot is not None else found.meta
    if snapshot is not None and found is not None:
        check_same_dataset(folder, snapshot["meta"], found.meta)
    state = LabelState(meta["n_frames"], tuple(meta["classes"]), tuple(meta["colors"]),
                       read_frames(folder / FRAMES_NAME), meta.get("fingerprint"),
                       _undo_limit(meta, folder))
    session = _Session(state, folder, generation=int(meta["generation"]))
    if snapshot is not None:
        _restore_snapshot(session, snapshot, folder / SNAPSHOT_NAME)
    if found is not None and found.meta["generation"] == session.generation:
        _replay(state, found)
        lock = jr.StoreLock(folder)
        size = jr.repair(found, lock, recover)
        session.journal = jr.Journal(folder, (found.identity, size))
    else:
        # No journal, or one older than the snapshot (a crash, or a writer mid-snapshot):
        # nothing to replay; a fresh journal is started under the lock at the first write.
        log.info("%s: journal predates the snapshot; a new one starts at the next write",
                 folder)
        seen = (found.identity, found.size) if found is not None else (None, None)
        session.journal = jr.Journal(folder, seen, restart_meta=session.meta())
    return session


def _undo_limit(meta, folder):
    """The writer's undo limit from the metadata (None in stores written before it existed)."""
    limit = meta.get("undo_limit")
    if limit is None:
        return None
    if not (isinstance(limit, list) and len(limit) == 2
            and all(isinstance(v, int) and v > 0 for v in limit)):
        raise JournalError(f"undo_limit {limit!r} in the metadata is not two positive integers",
                           path=folder)
    return tuple(limit)


def _read_consistent(folder):
    """Snapshot and journal of one generation, re-read while a writer is mid-snapshot."""
    for _ in range(_READ_RETRIES):
        snapshot = read_snapshot(folder / SNAPSHOT_NAME)
        found = jr.read(folder / JOURNAL_NAME)
        if snapshot is None or found is None or \
                found.meta["generation"] <= snapshot["meta"]["generation"]:
            return snapshot, found
        time.sleep(0.02)  # the snapshot we read was replaced after we read it
    raise JournalError(f"journal generation {found.meta['generation']} is newer than the "
                       f"snapshot ({snapshot['meta']['generation']}); the snapshot is missing "
                       f"or was replaced", path=folder / JOURNAL_NAME)


def _restore_snapshot(session, snapshot, where):
    state = session.state
    state.restore_arrays(snapshot, where)
    state.restore_undo(snapshot, where)
    state.rows = list(snapshot["history"])
    state.next_step = int(snapshot["next_step"])


def _replay(state, found):
    """Apply the journal's records to ``state`` (directly: replay never journals)."""
    for offset, payload in found.records:
        try:
            _apply_record(state, jr.decode(payload))
        except (LabelError, KeyError, IndexError, ValueError, struct.error) as err:
            raise JournalError(f"record at byte {offset} cannot be replayed ({err}); "
                               f"the journal does not belong to this store",
                               path=found.path) from err


def _apply_record(state, record):
    if record.kind == "tag":
        state.check_indices(record.indices)
        state.apply_new(state.new_tag_step(record.indices, record.tag, record.labels,
                                           record.source, record.note, when=record.time,
                                           step_id=record.step))
        return
    if record.kind == "assign":
        state.check_indices(record.indices)
        labels = record.labels
        if np.ndim(labels) == 0:
            labels = state.class_index(int(labels))
        elif len(labels) and (labels.min() < -1 or labels.max() >= len(state.classes)):
            raise LabelError("label out of range")
        state.apply_new(state.new_step(record.indices, labels, record.source, record.note,
                                       when=record.time, step_id=record.step))
        return
    if state.peek(record.kind) != record.target:
        raise LabelError(f"{record.kind} of step {record.target} does not match the history")
    state.apply_travel(record.kind, record.time)


# ---------------------------------------------------------------- the store

class LabelStore:
    """Labels, classes, colors and provenance of ``n_frames`` frames.

    Parameters
    ----------
    n_frames : number of frames (rows); labels start at -1 (unlabeled).
    classes : class names, any number (at least one).
    path : directory to journal to (created); ``None`` keeps the store in memory.
        An existing store at ``path`` is reopened if it matches ``n_frames`` and
        ``classes``, else :class:`~xlabel.errors.JournalError`. If this process
        already has it open, that store is handed back (same labels, history and
        observers), so re-running a notebook cell never fights an older widget.
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
        n_frames = check_n_frames(n_frames)
        classes = check_classes(classes)
        colors = check_colors(colors, classes)
        frames = check_frames(frames, n_frames)
        if fingerprint is None and frames is not None:
            fingerprint = frames_fingerprint(frames)
        fresh = _Session(LabelState(n_frames, classes, colors, frames, fingerprint))
        if path is None:
            self._session = fresh
            return
        session = _find_open(path) or (_load(path, recover=False) if store_exists(path)
                                       else None)
        if session is None:
            _create_on_disk(fresh, path)
            session = fresh
        else:
            check_same_dataset(path, fresh.meta(), session.meta())
        _register(session)
        self._session = session

    @classmethod
    def _on(cls, session) -> "LabelStore":
        """A handle on an existing session (what ``open``/``copy``/``from_*`` return)."""
        store = cls.__new__(cls)
        store._session = session
        return store

    # ------------------------------------------------------------- reading

    @property
    def _state(self) -> LabelState:
        return self._session.state

    @property
    def _next_step(self) -> int:
        return self._state.next_step

    @property
    def n_frames(self) -> int:
        """Number of frames (rows) in the store."""
        return self._state.n_frames

    def __len__(self) -> int:
        return self._state.n_frames

    @property
    def labels(self) -> np.ndarray:
        """Label per frame (class index, -1 = unlabeled): a read-only view."""
        return _readonly(self._state.labels)

    @property
    def classes(self) -> tuple:
        """Class names; a label is an index into this tuple."""
        return self._state.classes

    @property
    def colors(self) -> tuple:
        """One CSS color per class (``UNLABELED_COLOR`` is used for -1)."""
        return self._state.colors

    @property
    def fingerprint(self):
        """The dataset id given or derived from ``frames`` (None if neither)."""
        return self._state.fingerprint

    @property
    def sources(self) -> np.ndarray:
        """Source code per frame (read-only copy); names in :attr:`source_names`."""
        state = self._state
        return _readonly(state.prov_source[state.origins])

    @property
    def source_names(self) -> tuple:
        """Source name of each code in :attr:`sources` (code 0 = never labeled)."""
        return tuple(self._state.source_names)

    @property
    def times(self) -> np.ndarray:
        """Time (Unix seconds) each frame's label was set, NaN if never (read-only)."""
        state = self._state
        return _readonly(state.prov_time[state.origins])

    @property
    def frames(self):
        """The ``frames`` table (``scan``, ``frame``) given at creation, or None."""
        frames = self._state.frames
        return None if frames is None else frames.copy()

    @property
    def path(self):
        """The store's directory on disk, or None for an in-memory store."""
        return self._session.folder

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this store (a store with a path only)."""
        return self._session.closed

    @property
    def last_action(self) -> str:
        """What the last assign, undo or redo did, in the words the widgets show.

        >>> store = LabelStore(3)
        >>> _ = store.assign([0, 1], "bad")
        >>> store.undo(), store.last_action
        (0, "undid step 0 ('bad' on 2 frame(s), manual)")
        >>> store.undo(), store.last_action
        (None, 'nothing to undo')
        """
        return self._session.last_action

    def __repr__(self):
        where = f", path={str(self.path)!r}" if self.path else ""
        closed = ", closed" if self.closed else ""
        return (f"LabelStore(n_frames={self.n_frames}, classes={self.classes!r}{where}, "
                f"counts={self.counts()}{closed})")

    def class_index(self, name_or_index) -> int:
        """Index of a class given by name or index; -1 for None/-1/"unlabeled".

        >>> LabelStore(3, classes=("good", "bad")).class_index("bad")
        1
        """
        return self._state.class_index(name_or_index)

    def class_name(self, index) -> str:
        """Name of class ``index`` ("" for -1)."""
        return self._state.class_name(index)

    def counts(self) -> dict:
        """Number of frames per class, plus ``"unlabeled"``.

        >>> LabelStore(3).counts()
        {'good': 0, 'bad': 0, 'unlabeled': 3}
        """
        return self._state.counts()

    def provenance(self, frame) -> dict:
        """Where frame ``frame``'s label came from: ``dict(label, source, time, note)``.

        ``time`` is ISO-8601 local time with its UTC offset (None if never labeled).

        >>> store = LabelStore(2)
        >>> _ = store.assign([1], "bad", note="dark")
        >>> info = store.provenance(1)
        >>> info["label"], info["source"], info["note"], info["time"][10]
        ('bad', 'manual', 'dark', 'T')
        >>> store.provenance(0)["time"] is None
        True
        """
        frame = int(self._state.check_indices([frame])[0])
        info = self._state.provenance(frame)
        info["time"] = iso_time(info["time"])
        return info

    @property
    def history(self):
        """All steps, oldest first: one row per assign, undo and redo.

        Columns: ``kind``, ``step`` (the assign step it concerns), ``label``,
        ``source``, ``n_frames``, ``time`` (ISO-8601), ``note`` and ``applied``
        (True on the assign rows whose step is in effect now; False on undo/redo
        rows). A store made by ``from_csv``/``from_hdf5`` starts with one ``"load"`` row.
        """
        return self._state.history()

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` would do something."""
        return self._state.peek("undo") is not None

    @property
    def can_redo(self) -> bool:
        """Whether :meth:`redo` would do something."""
        return self._state.peek("redo") is not None

    # ------------------------------------------------------------- changing

    def assign(self, indices, label, source="manual", note=None) -> int:
        """Set the label of ``indices`` (ints or a boolean mask) to ``label``; returns the step id.

        ``label`` is a class name or index (None or -1 clears labels). The step is
        journaled (when the store has a path) before this returns, then observers
        are told. If it cannot be journaled (e.g. the disk is full) it raises
        :class:`~xlabel.errors.JournalError` and the labels stay as they were.

        >>> store = LabelStore(5)
        >>> store.assign(range(3), "bad", source="model", note="first pass")
        0
        >>> store.labels.tolist()
        [1, 1, 1, -1, -1]
        """
        label = self._state.class_index(label)
        indices = self._state.check_indices(indices)
        return self._commit(indices, label, source, note)

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
        n_frames = self.n_frames
        cluster_labels = np.asarray(cluster_labels)
        if cluster_labels.shape != (n_frames,) or cluster_labels.dtype.kind not in "iu":
            raise LabelError(f"seed_from needs one integer cluster id per frame "
                             f"({n_frames}), got shape {cluster_labels.shape} "
                             f"dtype {cluster_labels.dtype}")
        table = self._cluster_table(np.unique(cluster_labels), mapping)
        keep = np.isin(cluster_labels, list(table))
        indices = np.flatnonzero(keep)
        ids = cluster_labels[indices]
        lut_keys = np.array(sorted(table), dtype=np.int64)
        lut_vals = np.array([table[k] for k in lut_keys], dtype=np.int32)
        labels = lut_vals[np.searchsorted(lut_keys, ids)] if len(ids) else ids.astype(np.int32)
        return self._commit(indices, labels, source, note)

    def _cluster_table(self, cluster_ids, mapping) -> dict:
        if mapping is None:
            valid = [c for c in cluster_ids.tolist() if c != -1]
            bad = [c for c in valid if not 0 <= c < len(self.classes)]
            if bad:
                raise LabelError(f"cluster ids {bad} are not class indices of "
                                 f"{self.classes}; pass mapping={{cluster id: class name}}")
            return {c: c for c in valid}
        if not isinstance(mapping, dict):
            mapping = dict(enumerate(mapping))
        unmapped = [c for c in cluster_ids.tolist() if c not in mapping and c != -1]
        if unmapped:
            raise LabelError(f"cluster ids {unmapped} are not in mapping {mapping}")
        return {int(c): self.class_index(cls) for c, cls in mapping.items() if cls is not None}

    # ------------------------------------------------------------- tags

    @property
    def tag_names(self) -> tuple:
        """Names of the tags in use, in column order (a tag appears at its first step)."""
        return tuple(self._state.tag_names)

    @property
    def tags(self):
        """Frames x tags bool DataFrame (a copy; columns :attr:`tag_names`).

        >>> store = LabelStore(3)
        >>> _ = store.add_tag([0, 2], "rings")
        >>> store.tags["rings"].tolist()
        [True, False, True]
        """
        import pandas as pd
        state = self._state
        return pd.DataFrame(state.tag_values.copy(), columns=list(state.tag_names))

    def tagged(self, tag) -> np.ndarray:
        """Read-only bool array: which frames carry ``tag`` (LabelError for an unknown tag)."""
        state = self._state
        return _readonly(state.tag_values[:, state.tag_column(tag)])

    def add_tag(self, indices, tag, source="manual", note=None) -> int:
        """Add ``tag`` to ``indices`` (ints or a boolean mask); returns the step id.

        Tags sit beside the class: a frame has one class and any number of tags. A new
        tag name starts a new column. The step is journaled like :meth:`assign`
        (durable before this returns; :meth:`undo`/:meth:`redo` take it back and
        forth in the same history), then observers get a :class:`LabelChange` with
        ``kind="tag"``, ``tag`` and ``tagged``.

        >>> store = LabelStore(4)
        >>> store.add_tag([1, 2], "spots", note="lasso")
        0
        >>> store.remove_tag([2], "spots")
        1
        >>> store.tagged("spots").tolist(), store.undo(), store.tagged("spots").tolist()
        ([False, True, False, False], 1, [False, True, True, False])
        """
        return self._commit_tag(indices, tag, True, source, note)

    def remove_tag(self, indices, tag, source="manual", note=None) -> int:
        """Remove ``tag`` from ``indices``; returns the step id (see :meth:`add_tag`)."""
        self._state.tag_column(tag)  # unknown tag: LabelError listing the known ones
        return self._commit_tag(indices, tag, False, source, note)

    def tag_provenance(self, frame) -> dict:
        """``{tag: dict(value, source, time, note)}`` of frame ``frame`` (time ISO-8601 or None).

        >>> store = LabelStore(2)
        >>> _ = store.add_tag([1], "halo", source="model")
        >>> store.tag_provenance(1)["halo"]["source"], store.tag_provenance(0)["halo"]["value"]
        ('model', False)
        """
        frame = int(self._state.check_indices([frame])[0])
        info = self._state.tag_provenance(frame)
        for entry in info.values():
            entry["time"] = iso_time(entry["time"])
        return info

    def _commit_tag(self, indices, tag, value, source, note) -> int:
        session = self._session
        step = session.state.new_tag_step(session.state.check_indices(indices), tag, value,
                                          source, note)
        if session.journal is not None:
            session.journal.append(jr.encode_tag_step(step, session.index_dtype),
                                   f"step {step.step}")
        session.state.apply_new(step)
        session.last_action = f"{session.state.describe(step.step)}"
        return step.step

    def _commit(self, indices, labels, source, note) -> int:
        """Journal a new step (if the store has a path), then apply it."""
        session = self._session
        step = session.state.new_step(indices, labels, source, note)
        if session.journal is not None:
            session.journal.append(jr.encode_step(step, session.index_dtype),
                                   f"step {step.step}")
        session.state.apply_new(step)
        session.last_action = f"assigned {session.state.describe(step.step)}"
        return step.step

    def undo(self) -> int | None:
        """Undo the last applied step; returns its id (None if nothing to undo).

        :attr:`last_action` says what was undone, as the widgets' undo buttons do.
        """
        return self._travel("undo")

    def redo(self) -> int | None:
        """Redo the last undone step; returns its id (None if nothing to redo)."""
        return self._travel("redo")

    def _travel(self, kind):
        session = self._session
        if session.journal is not None:
            session.journal.check_writable()
        step = session.state.peek(kind)
        if step is None:
            session.last_action = f"nothing to {kind}"
            return None
        when = time.time()
        if session.journal is not None:
            session.journal.append(jr.encode_travel(kind, step, when), f"the {kind} of step {step}")
        session.state.apply_travel(kind, when)
        session.last_action = f"{'undid' if kind == 'undo' else 'redid'} " \
                              f"{session.state.describe(step)}"
        return step

    # ------------------------------------------------------------ observers

    def observe(self, callback):
        """Call ``callback(change: LabelChange)`` after every change; returns ``callback``.

        A callback that raises is logged and warned about; the store is unaffected.
        Every handle on the same open store (see ``path``) shares its observers.

        >>> store = LabelStore(3)
        >>> seen = []
        >>> _ = store.observe(lambda change: seen.append(change.indices.tolist()))
        >>> _ = store.assign([1, 2], "bad")
        >>> seen
        [[1, 2]]
        """
        return self._state.observe(callback)

    def unobserve(self, callback):
        """Stop calling ``callback`` (no error if it was not observing)."""
        self._state.unobserve(callback)

    # ----------------------------------------------------------- persistence

    def close(self):
        """Close the journal and release the store; a closed store can be read, not changed.

        Every handle on the same open store is closed with it.
        """
        if self._session.journal is not None:
            self._session.journal.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def open(cls, path, recover=False) -> "LabelStore":
        """Read the store at ``path`` afresh: snapshot + journal replay (a new, independent store).

        A half-written last record (a crash during a write) is dropped with a
        :class:`JournalRecoveryWarning`. A damaged record (a full-length record
        with a bad checksum, or damage followed by valid records) raises
        :class:`~xlabel.errors.JournalError` naming its byte offset;
        ``recover=True`` keeps the steps before it instead, keeps a copy of the
        damaged journal next to it and warns how many records were dropped.

        >>> import tempfile, os
        >>> folder = os.path.join(tempfile.mkdtemp(), "scan.xlabel")
        >>> _ = LabelStore(3, path=folder).assign([2], "bad")
        >>> LabelStore.open(folder).labels.tolist()
        [-1, -1, 1]
        """
        session = _load(path, recover)
        _register(session)
        return cls._on(session)

    def snapshot(self, keep_undo=True):
        """Compact the journal: write the state to ``snapshot.npz``, start a new journal.

        Both files are replaced atomically; a crash at any point leaves a store
        that reopens to the same labels. :attr:`history` is kept. With
        ``keep_undo=False`` the undo/redo data is dropped too (smaller snapshot,
        less memory): steps before the snapshot can then no longer be undone.
        Also writes the labels held in memory back if the store's files were
        deleted under it.
        """
        session = self._session
        if session.journal is None:
            raise LabelError("snapshot() needs a store with a path")
        session.journal.check_closed()
        folder = session.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise JournalError(f"cannot write the snapshot: {err}", path=folder) from err
        session.journal.take_lock()
        state = session.state
        session.generation += 1
        arrays = state.state_arrays()
        arrays.update(state.undo_arrays(keep=keep_undo))
        arrays["meta"] = np.array(json.dumps(session.meta()))
        arrays["history"] = np.array(json.dumps(state.rows))
        arrays["next_step"] = np.array(state.next_step, dtype=np.int64)
        try:
            if state.frames is not None and not (folder / FRAMES_NAME).is_file():
                write_frames(folder, state.frames)
            write_snapshot(folder, arrays)
        except OSError as err:
            session.generation -= 1
            raise JournalError(f"cannot write the snapshot: {err}", path=folder) from err
        if not keep_undo:
            state.drop_undo()
        session.journal.restart(session.meta())

    def copy(self, path=None) -> "LabelStore":
        """An independent copy (labels, provenance, history, undo/redo), in memory or at ``path``.

        >>> store = LabelStore(3)
        >>> _ = store.assign([0], "bad")
        >>> trial = store.copy()
        >>> _ = trial.assign([1, 2], "bad", source="model")
        >>> store.counts()["bad"], trial.counts()["bad"], trial.undo()
        (1, 3, 1)
        """
        state = self._state
        twin = LabelState(state.n_frames, state.classes, state.colors, state.frames,
                          state.fingerprint, state.undo_limit)
        twin.restore_arrays(state.state_arrays(), self.path)
        twin.restore_undo(state.undo_arrays(), self.path)
        twin.rows = [dict(row) for row in state.rows]
        twin.next_step = state.next_step
        return self._saved(_Session(twin), path)

    @classmethod
    def _saved(cls, session, path) -> "LabelStore":
        """A handle on a new in-memory ``session``, first saved at ``path`` if given."""
        store = cls._on(session)
        if path is not None:
            _create_on_disk(session, path)
            _register(session)
            store.snapshot()
        return store

    # ------------------------------------------------------------ exports

    def to_dataframe(self):
        """One row per frame: (``scan``,) ``frame``, ``label``, ``source``, ``time``, ``note``.

        ``label`` is the class name ("" = unlabeled), ``time`` ISO-8601 local time
        with its UTC offset ("" = never; :attr:`times` has Unix seconds).
        ``frame`` is the row number unless the store has a ``frames`` table, which
        then gives ``scan`` and ``frame``. ``note`` is "" where there is none.

        >>> store = LabelStore(2)
        >>> _ = store.assign([1], "bad", note="dark")
        >>> store.to_dataframe()[["frame", "label", "source", "note"]].values.tolist()
        [[0, '', '', ''], [1, 'bad', 'manual', 'dark']]
        """
        return self._state.table()

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
        formats.write_csv(self.to_dataframe(), csv_path)

    @classmethod
    def from_csv(cls, csv_path, classes=None, n_frames=None, path=None, colors=None,
                 frames=None, tags=None) -> "LabelStore":
        """A new store from a CSV with columns ``frame,label`` (+ optional ``scan``, ``source``,
        ``time``, ``note`` as written by :meth:`to_csv`).

        ``classes`` defaults to ("good", "bad") when the file uses only those, else the
        sorted names found; pass them to keep class indices exact. Without ``frames``
        a ``scan`` column makes the CSV rows the store rows; otherwise ``frame`` is the
        row number and ``n_frames`` defaults to the largest frame + 1. Provenance
        columns are restored (``time`` as ISO-8601 or Unix seconds); missing ones
        become source "import", time now. With ``path`` the new store is saved there.
        Tags: one 0/1 column per tag (as :meth:`to_csv` writes them); ``tags`` names
        them, None takes every other column holding only 0 and 1, ``()`` none. A CSV of
        ``frame`` and tag columns only (no ``label``) is read too.
        """
        table = formats.read_label_csv(csv_path)
        if frames is None and "scan" in table:
            frames = table[["scan", "frame"]]
        if n_frames is None:
            n_frames = len(frames) if frames is not None else int(table["frame"].max() + 1
                                                                  if len(table) else 0)
        store = cls(n_frames, classes=formats.classes_in(table, classes), colors=colors,
                    frames=frames)
        state = store._state
        positions = formats.csv_positions(state, table, csv_path)
        labels = formats.csv_labels(state, table, csv_path)
        now = time.time()
        state.load_rows(positions, labels, *formats.csv_provenance(table, labels, now))
        names, matrix = formats.csv_tags(table, tags, csv_path)
        state.load_tags(positions, names, matrix, "import", now)
        return cls._saved(store._session, path)

    def import_csv(self, csv_path, source="import", note=None) -> int:
        """Assign the labels of a ``frame,label`` CSV to this store as one step; returns its id.

        Rows with an empty label are skipped. Rows are matched by ``scan`` and
        ``frame`` when both the CSV and the store's ``frames`` have scans. Tag columns
        (0/1, see :meth:`from_csv`) follow as one add and one remove step per tag.
        """
        table = formats.read_label_csv(csv_path)
        positions = formats.csv_positions(self._state, table, csv_path)
        labels = formats.csv_labels(self._state, table, csv_path)
        keep = labels >= 0
        step = self._commit(positions[keep].astype(np.intp), labels[keep], source, note)
        names, matrix = formats.csv_tags(table, None, csv_path)
        for j, name in enumerate(names):  # one step per tag and direction, after the labels
            self.add_tag(positions[matrix[:, j]], name, source, note)
            self.remove_tag(positions[~matrix[:, j]], name, source, note)
        return step

    def to_hdf5(self, h5_path):
        """Write the whole store (labels, provenance, classes, history) to an HDF5 sidecar file.

        Written to a temp file and renamed, so an existing file is replaced
        atomically. Strings are UTF-8. :meth:`from_hdf5` reads it back exactly.
        """
        state = self._state
        formats.write_hdf5(h5_path, self._session.meta(), state.rows, state.state_arrays(),
                           state.frames)

    @classmethod
    def from_hdf5(cls, h5_path, path=None) -> "LabelStore":
        """A new store from a file written by :meth:`to_hdf5` (with ``path``: saved there)."""
        meta, history, arrays, frames = formats.read_hdf5(h5_path)
        store = cls(meta["n_frames"], classes=tuple(meta["classes"]), colors=meta["colors"],
                    frames=frames, fingerprint=meta.get("fingerprint"))
        store._state.restore_arrays(arrays, h5_path)
        store._state.rows = history
        return cls._saved(store._session, path)


def _readonly(array):
    view = array.view()
    view.flags.writeable = False
    return view


def _create_on_disk(session, path):
    """Give the in-memory ``session`` a new store directory at ``path`` (journal + frames)."""
    folder = Path(path)
    if store_exists(folder):
        raise JournalError("a label store already exists here; open it with "
                           "LabelStore.open(path) or choose another path", path=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise JournalError(f"cannot create the label store: {err}", path=folder) from err
    frames = session.state.frames

    def write_frames_table():
        if frames is not None:
            write_frames(folder, frames)

    session.folder = folder
    session.journal = jr.Journal.create(folder, session.meta(), before=write_frames_table)
