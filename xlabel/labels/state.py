"""In-memory label state: labels, provenance, undo/redo history and observers (no file I/O).

:class:`LabelState` is what a :class:`~xlabel.labels.LabelStore` changes; the store
journals each step before handing it to :meth:`LabelState.apply_new` or
:meth:`LabelState.apply_travel`, so a step that could not be saved never reaches
the state.

Undo history is capped like napari's (its layers keep a bounded undo deque): the
newest :data:`UNDO_STEPS` steps whose undo data together stay under
:data:`UNDO_BYTES` can be undone; older steps stay in :attr:`LabelState.history`
but can no longer be undone. A step costs about 24 bytes per frame it touches.

>>> state = LabelState(4, ("good", "bad"))
>>> step = state.new_step([0, 1], 1, "manual", None)
>>> state.apply_new(step)
>>> state.labels.tolist(), state.peek("undo")
([1, 1, -1, -1], 0)
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import JournalError, LabelError
from ._checks import check_range, checked_array, iso_times

log = logging.getLogger("xlabel.labels")

#: Known label sources; their position is the code stored in ``store.sources``
#: (0 = never labeled). Other source names are accepted and get the next codes.
SOURCES = ("", "manual", "kmeans", "dbscan", "model", "import")

#: Most steps that can be undone (older ones stay in the history).
UNDO_STEPS = 1000
#: Most bytes of undo data kept (indices and previous labels of the undoable steps).
UNDO_BYTES = 512 * 2**20

MIXED = -2  # "one label per index" in the packed step metadata


@dataclass(frozen=True)
class LabelChange:
    """What one change did: sent to every observer of a :class:`LabelStore`.

    ``indices`` are the frames the step touched and ``labels`` their labels now
    (same length). ``kind`` is ``"assign"``, ``"tag"``, ``"undo"``, ``"redo"`` or
    ``"load"``; ``step`` is the id of the step that was applied, undone or redone.
    For a tag step (kind ``"tag"``, or an undo/redo of one) ``tag`` names the tag and
    ``tagged`` says whether each frame carries it now; both are None for label steps.
    """

    indices: np.ndarray
    labels: np.ndarray
    kind: str
    step: int
    tag: str | None = None
    tagged: np.ndarray | None = None


@dataclass
class Step:
    """One assign step and what it needs to be undone and redone."""

    step: int
    indices: np.ndarray
    labels: np.ndarray | int      # new label (scalar) or one per index
    source: str
    time: float
    note: str | None
    origin: int = 0               # row of the provenance table this step writes
    packed: int | np.ndarray = 0  # (label, origin) pairs as int64, see pack()
    prev: np.ndarray | None = None  # the packed pairs before the step

    @property
    def nbytes(self) -> int:
        """Memory held for undo/redo."""
        return sum(np.asarray(part).nbytes for part in (self.indices, self.labels,
                                                         self.packed, self.prev))


@dataclass
class TagStep:
    """One step that adds (``value`` True) or removes a tag on ``indices``."""

    step: int
    indices: np.ndarray
    tag: str
    value: bool
    source: str
    time: float
    note: str | None
    origin: int = 0
    prev_values: np.ndarray | None = None   # the tag's values before the step
    prev_origins: np.ndarray | None = None  # their provenance rows

    @property
    def nbytes(self) -> int:
        return sum(np.asarray(part).nbytes for part in (self.indices, self.prev_values,
                                                         self.prev_origins))


#: Names a tag may not have: they are the other columns of the label table.
RESERVED_TAG_NAMES = ("scan", "frame", "label", "source", "time", "note")


class LabelState:
    """Labels, classes, provenance, undoable steps, history and observers of ``n_frames`` frames.

    Arguments are assumed checked (see :mod:`xlabel.labels._checks`). ``undo_limit``
    is ``(steps, bytes)``, default ``(UNDO_STEPS, UNDO_BYTES)``.
    """

    def __init__(self, n_frames, classes, colors=None, frames=None, fingerprint=None,
                 undo_limit=None):
        self.n_frames = n_frames
        self.classes = tuple(classes)
        self.class_lookup = {name: i for i, name in enumerate(self.classes)}
        self.colors = colors
        self.frames = frames
        self.fingerprint = fingerprint
        self.undo_limit = tuple(undo_limit or (UNDO_STEPS, UNDO_BYTES))
        # Label and provenance id of a frame sit side by side, so a step reads and
        # writes one int64 per frame (half the random memory accesses of two arrays).
        self.pairs = np.zeros((n_frames, 2), dtype=np.int32)
        self.pairs64 = self.pairs.view(np.int64).reshape(n_frames)
        self.labels = self.pairs[:, 0]
        self.labels[:] = -1
        # Provenance: each frame points at a row of a small table (source, time,
        # note) that grows by one row per step; row 0 means "never labeled".
        self.origins = self.pairs[:, 1]
        self.prov_source = np.zeros(16, dtype=np.int8)
        self.prov_time = np.full(16, np.nan)
        self.prov_note = np.full(16, -1, dtype=np.int32)
        self.prov_len = 1
        self.source_names = list(SOURCES)
        self.notes: list[str] = []
        self.note_lookup: dict[str, int] = {}
        self.steps: dict[int, Step] = {}
        self.undo: list[int] = []
        self.redo: list[int] = []
        self.undo_bytes = 0
        self.rows: list[dict] = []    # history rows
        self.next_step = 0
        self.observers: list = []
        # Tags: several per frame beside the class, one bool column per tag name, each
        # (frame, tag) pointing at its provenance row (0 = never set).
        self.tag_names: list[str] = []
        self.tag_values = np.zeros((n_frames, 0), dtype=bool)
        self.tag_origins = np.zeros((n_frames, 0), dtype=np.int32)

    # ------------------------------------------------------------- reading

    def class_index(self, name_or_index) -> int:
        if name_or_index is None or (isinstance(name_or_index, str)
                                     and name_or_index in ("", "unlabeled")):
            return -1  # (no class may have these names)
        if isinstance(name_or_index, str):
            try:
                return self.class_lookup[name_or_index]
            except KeyError:
                raise LabelError(self.unknown_class(name_or_index)) from None
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            index = int(name_or_index)
            if -1 <= index < len(self.classes):
                return index
            raise LabelError(f"class index {index} out of range: {len(self.classes)} classes "
                             f"({', '.join(map(repr, self.classes))}), -1 = unlabeled")
        raise LabelError(f"a label is a class name or index, not {name_or_index!r}")

    def unknown_class(self, name) -> str:
        return f"unknown class {name!r}; known classes: {', '.join(map(repr, self.classes))}"

    def class_name(self, index) -> str:
        index = self.class_index(index)
        return "" if index < 0 else self.classes[index]

    def counts(self) -> dict:
        bins = np.bincount(self.labels + 1, minlength=len(self.classes) + 1)
        out = {name: int(bins[i + 1]) for i, name in enumerate(self.classes)}
        out["unlabeled"] = int(bins[0])
        return out

    def check_indices(self, indices) -> np.ndarray:
        """``indices`` (ints, range or boolean mask) as a checked 1-d intp array."""
        if isinstance(indices, range):
            indices = np.arange(indices.start, indices.stop, indices.step)
        array = np.asarray(indices)
        if array.dtype == bool:
            if array.shape != (self.n_frames,):
                raise LabelError(f"a boolean mask needs {self.n_frames} entries, "
                                 f"got shape {array.shape}")
            array = np.flatnonzero(array)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.size == 0:
            return np.empty(0, dtype=np.intp)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise LabelError(f"indices must be a 1-d array of integers or a boolean mask, "
                             f"got shape {array.shape} dtype {array.dtype}")
        low, high = array.min(), array.max()
        if low < 0 or high >= self.n_frames:
            bad = int(low) if low < 0 else int(high)
            raise LabelError(f"index out of range: store has {self.n_frames} frames",
                             frame=bad)
        # numpy's fancy indexing is fastest with intp indices
        return array.astype(np.intp, copy=False)

    def provenance(self, frame) -> dict:
        origin = self.origins[frame]
        note_id = self.prov_note[origin]
        return {"label": self.class_name(int(self.labels[frame])),
                "source": self.source_names[self.prov_source[origin]],
                "time": float(self.prov_time[origin]),
                "note": None if note_id < 0 else self.notes[note_id]}

    def table(self) -> pd.DataFrame:
        """One row per frame: (``scan``,) ``frame``, ``label``, ``source``, ``time``, ``note``,
        then one 0/1 column per tag."""
        origins = self.origins
        table = (self.frames.copy() if self.frames is not None
                 else pd.DataFrame({"frame": np.arange(self.n_frames, dtype=np.int64)}))
        table["label"] = np.array(("",) + self.classes, dtype=object)[self.labels + 1]
        table["source"] = np.array(self.source_names, dtype=object)[self.prov_source[origins]]
        table["time"] = iso_times(self.prov_time[:self.prov_len])[origins]
        table["note"] = np.array(self.notes + [""], dtype=object)[self.prov_note[origins]]
        for column, tag in enumerate(self.tag_names):
            table[tag] = self.tag_values[:, column].astype(np.int8)
        return table

    def history(self) -> pd.DataFrame:
        table = pd.DataFrame(self.rows, columns=["kind", "step", "label", "source",
                                                 "n_frames", "time", "note"])
        table["time"] = iso_times(table["time"].to_numpy(dtype=np.float64))
        applied = {}
        for kind, step in zip(table["kind"], table["step"]):
            applied[step] = kind != "undo"
        table["applied"] = [applied[step] and kind in ("assign", "tag", "untag", "load")
                            for kind, step in zip(table["kind"], table["step"])]
        return table

    def describe(self, step_id) -> str:
        """``step 3 ('bad' on 12 frames, manual, note 'x')`` from the history."""
        row = next((r for r in reversed(self.rows) if r["step"] == step_id
                    and r["kind"] in ("assign", "tag", "untag")), None)
        if row is None:
            return f"step {step_id}"
        if row["kind"] in ("tag", "untag"):
            what = "added to" if row["kind"] == "tag" else "removed from"
            note = f", note {row['note']!r}" if row["note"] else ""
            return (f"step {step_id} (tag {row['label']!r} {what} {row['n_frames']} frame(s), "
                    f"{row['source']}{note})")
        label = repr(row["label"]) if row["label"] not in ("", "(several)") else (
            "cleared" if row["label"] == "" else "several labels")
        note = f", note {row['note']!r}" if row["note"] else ""
        return f"step {step_id} ({label} on {row['n_frames']} frame(s), {row['source']}{note})"

    # ------------------------------------------------------------- changing

    def new_step(self, indices, labels, source, note, when=None, step_id=None) -> Step:
        """A step to journal and then :meth:`apply_new`; changes nothing yet."""
        note = None if note is None or note == "" else str(note)
        source = str(source)
        if source not in self.source_names and len(self.source_names) >= 127:
            raise LabelError("too many distinct label sources (127 at most)")
        return Step(step=self.next_step if step_id is None else step_id, indices=indices,
                    labels=labels, source=source, time=time.time() if when is None else when,
                    note=note)

    def _apply_new_label(self, step: Step):
        self._clear_redo()
        idx = step.indices
        step.origin = self.add_provenance(self.source_code(step.source), step.time,
                                          self.note_id(step.note))
        step.packed = pack(step.labels, step.origin)
        step.prev = self.pairs64[idx]
        self.steps[step.step] = step
        self.undo_bytes += step.nbytes
        self.next_step = step.step + 1
        self.pairs64[idx] = step.packed
        self.undo.append(step.step)
        self._trim_undo()
        self.record("assign", step.step, step.time)
        self.notify("assign", step.step, idx)

    # ------------------------------------------------------------- tags

    def check_tag_name(self, tag) -> str:
        if not isinstance(tag, str) or not tag.strip() or tag != tag.strip() \
                or "," in tag or "\n" in tag:
            raise LabelError(f"a tag is a non-empty name without commas, newlines or "
                             f"surrounding spaces, not {tag!r}")
        if tag in RESERVED_TAG_NAMES or tag.startswith("p_"):
            raise LabelError(f"{tag!r} cannot be a tag name: it would clash with a column of "
                             f"the label table ({', '.join(RESERVED_TAG_NAMES)}, p_<tag>)")
        return tag

    def tag_column(self, tag, create=False) -> int:
        """Column of ``tag`` in :attr:`tag_values` (a new one if ``create``)."""
        if tag in self.tag_names:
            return self.tag_names.index(tag)
        if not create:
            known = ", ".join(map(repr, self.tag_names)) or "none yet"
            raise LabelError(f"unknown tag {tag!r}; known tags: {known}")
        self.check_tag_name(tag)
        self.tag_names.append(tag)
        self.tag_values = np.concatenate(
            [self.tag_values, np.zeros((self.n_frames, 1), bool)], axis=1)
        self.tag_origins = np.concatenate(
            [self.tag_origins, np.zeros((self.n_frames, 1), np.int32)], axis=1)
        return len(self.tag_names) - 1

    def new_tag_step(self, indices, tag, value, source, note, when=None, step_id=None):
        """A tag step to journal and then :meth:`apply_new`; changes nothing yet."""
        base = self.new_step(indices, 0, source, note, when, step_id)
        return TagStep(step=base.step, indices=indices, tag=self.check_tag_name(tag),
                       value=bool(value), source=base.source, time=base.time, note=base.note)

    def apply_new(self, step):
        if isinstance(step, TagStep):
            self._apply_new_tag(step)
        else:
            self._apply_new_label(step)

    def _apply_new_tag(self, step: TagStep):
        column = self.tag_column(step.tag, create=True)
        self._clear_redo()
        idx = step.indices
        step.origin = self.add_provenance(self.source_code(step.source), step.time,
                                          self.note_id(step.note))
        step.prev_values = self.tag_values[idx, column]
        step.prev_origins = self.tag_origins[idx, column]
        self.tag_values[idx, column] = step.value
        self.tag_origins[idx, column] = step.origin
        self._push_undo(step)
        self.record("tag" if step.value else "untag", step.step, step.time)
        self.notify("tag", step.step, idx, step.tag)

    def _clear_redo(self):
        for dropped in self.redo:
            self._forget(dropped)
        self.redo.clear()

    def _push_undo(self, step):
        self.steps[step.step] = step
        self.undo_bytes += step.nbytes
        self.next_step = step.step + 1
        self.undo.append(step.step)
        self._trim_undo()

    def tag_provenance(self, frame) -> dict:
        """``{tag: {"value", "source", "time", "note"}}`` of one frame."""
        out = {}
        for column, tag in enumerate(self.tag_names):
            origin = self.tag_origins[frame, column]
            note_id = self.prov_note[origin]
            out[tag] = {"value": bool(self.tag_values[frame, column]),
                        "source": self.source_names[self.prov_source[origin]],
                        "time": float(self.prov_time[origin]),
                        "note": None if note_id < 0 else self.notes[note_id]}
        return out

    def load_tags(self, positions, names, matrix, source, when):
        """Set tag columns directly (a new store's initial state from a file)."""
        origin = self.add_provenance(self.source_code(source), when, -1)
        for j, name in enumerate(names):
            column = self.tag_column(name, create=True)
            self.tag_values[positions, column] = matrix[:, j]
            self.tag_origins[positions, column] = origin

    def _forget(self, step_id):
        step = self.steps.pop(step_id, None)
        if step is not None:
            self.undo_bytes -= step.nbytes

    def _trim_undo(self):
        """Drop the oldest undoable steps beyond the undo limit (never the newest one)."""
        max_steps, max_bytes = self.undo_limit
        while len(self.undo) > 1 and (len(self.undo) > max_steps
                                      or self.undo_bytes > max_bytes):
            self._forget(self.undo.pop(0))

    def peek(self, kind) -> int | None:
        """The step :meth:`apply_travel` would undo or redo, or None."""
        stack = self.undo if kind == "undo" else self.redo
        return stack[-1] if stack else None

    def apply_travel(self, kind, when):
        """Undo (``kind="undo"``) or redo the step on top of the undo or redo stack."""
        source, target = (self.undo, self.redo) if kind == "undo" else (self.redo, self.undo)
        step = self.steps[source.pop()]
        if isinstance(step, TagStep):
            column = self.tag_names.index(step.tag)
            if kind == "undo":
                self.tag_values[step.indices, column] = step.prev_values
                self.tag_origins[step.indices, column] = step.prev_origins
            else:
                self.tag_values[step.indices, column] = step.value
                self.tag_origins[step.indices, column] = step.origin
        else:
            self.pairs64[step.indices] = step.prev if kind == "undo" else step.packed
        target.append(step.step)
        self.record(kind, step.step, when)
        self.notify(kind, step.step, step.indices, getattr(step, "tag", None))

    def source_code(self, source) -> int:
        try:
            return self.source_names.index(source)
        except ValueError:
            self.source_names.append(source)
            return len(self.source_names) - 1

    def note_id(self, note) -> int:
        if note is None:
            return -1
        if note not in self.note_lookup:
            self.note_lookup[note] = len(self.notes)
            self.notes.append(note)
        return self.note_lookup[note]

    def add_provenance(self, sources, times, notes) -> int:
        """Append provenance rows (scalars or arrays); returns the first new row."""
        count = max(np.size(sources), np.size(times), np.size(notes))
        first, needed = self.prov_len, self.prov_len + count
        if needed > len(self.prov_source):
            size = max(needed, 2 * len(self.prov_source))
            self.prov_source = np.resize(self.prov_source, size)
            self.prov_time = np.resize(self.prov_time, size)
            self.prov_note = np.resize(self.prov_note, size)
        self.prov_source[first:needed] = sources
        self.prov_time[first:needed] = times
        self.prov_note[first:needed] = notes
        self.prov_len = needed
        return first

    def record(self, kind, step_id, when):
        if kind in ("tag", "untag"):
            step = self.steps[step_id]
            self.rows.append({"kind": kind, "step": step_id, "label": step.tag,
                              "source": step.source, "n_frames": len(step.indices),
                              "time": when, "note": step.note})
            return
        if kind == "assign":
            step = self.steps[step_id]
            labels = step.labels
            self.rows.append({
                "kind": kind, "step": step_id,
                "label": self.class_name(labels) if np.ndim(labels) == 0 else "(several)",
                "source": step.source, "n_frames": len(step.indices), "time": when,
                "note": step.note})
        else:
            self.rows.append({"kind": kind, "step": step_id, "label": None, "source": None,
                              "n_frames": None, "time": when, "note": None})

    def load_rows(self, positions, labels, sources, times, notes):
        """Set labels and per-frame provenance directly (a new store's initial state)."""
        self.labels[positions] = labels
        labeled = (sources != "") | ~np.isnan(times) | (notes != "")
        rows = positions[labeled]
        source_codes = np.array([self.source_code(str(s)) for s in sources[labeled]],
                                dtype=np.int8)
        note_ids = np.array([self.note_id(n or None) for n in notes[labeled]], dtype=np.int32)
        first = self.add_provenance(source_codes, times[labeled], note_ids)
        self.origins[rows] = first + np.arange(len(rows), dtype=np.int32)
        self.rows.append({"kind": "load", "step": -1, "label": "(several)", "source": "import",
                          "n_frames": int(len(positions)), "time": time.time(), "note": None})

    # ------------------------------------------------------------ observers

    def observe(self, callback):
        if callback not in self.observers:
            self.observers.append(callback)
        return callback

    def unobserve(self, callback):
        if callback in self.observers:
            self.observers.remove(callback)

    def notify(self, kind, step_id, indices, tag=None):
        if not self.observers:
            return
        labels = self.labels[indices]
        labels.flags.writeable = False
        indices = indices.view()
        indices.flags.writeable = False
        tagged = None
        if tag is not None:
            tagged = self.tag_values[indices, self.tag_names.index(tag)]
            tagged.flags.writeable = False
        change = LabelChange(indices=indices, labels=labels, kind=kind, step=step_id,
                             tag=tag, tagged=tagged)
        for callback in list(self.observers):
            try:
                callback(change)
            except Exception as err:  # a broken view must never break the store
                log.exception("LabelStore observer %r failed", callback)
                warnings.warn(f"LabelStore observer {callback!r} raised {err!r}; "
                              f"the labels are unaffected", RuntimeWarning, stacklevel=4)

    # ------------------------------------------------- as arrays (snapshots, files)

    def state_arrays(self) -> dict:
        n = self.prov_len
        return {"labels": self.labels.copy(), "origins": self.origins.copy(),
                "prov_source": self.prov_source[:n].copy(),
                "prov_time": self.prov_time[:n].copy(), "prov_note": self.prov_note[:n].copy(),
                "notes": np.array(self.notes, dtype=str),
                "source_names": np.array(self.source_names, dtype=str),
                **self.tag_arrays()}

    def tag_arrays(self) -> dict:
        """The tag columns (empty dict without tags, so tagless files stay as they were)."""
        if not self.tag_names:
            return {}
        return {"tag_names": np.array(self.tag_names, dtype=str),
                "tag_values": self.tag_values.astype(np.uint8), "tag_origins": self.tag_origins.copy()}

    def undo_arrays(self, keep=True) -> dict:
        """The undo and redo stacks as flat arrays (steps concatenated, with offsets);
        ``keep=False``: empty stacks."""
        kept = [self.steps[i] for i in self.undo + self.redo] if keep else []
        steps = [step for step in kept if isinstance(step, Step)]
        undo_count = sum(isinstance(self.steps[i], Step) for i in self.undo) if keep else 0
        sizes = [len(step.indices) for step in steps]
        prev = [unpack(step.prev) for step in steps]

        def joined(values, dtype):
            return np.concatenate([np.broadcast_to(np.asarray(v, dtype=dtype), (n,))
                                   for v, n in zip(values, sizes)]) if steps else \
                np.empty(0, dtype=dtype)

        return {
            **self._tag_undo_arrays(kept),
            "undo_count": np.array(undo_count, dtype=np.int64),
            "undo_meta": np.array([[st.step, self.source_code(st.source), self.note_id(st.note),
                                    st.origin, MIXED if np.ndim(st.labels) else st.labels]
                                   for st in steps], dtype=np.int64).reshape(-1, 5),
            "undo_time": np.array([st.time for st in steps], dtype=np.float64),
            "undo_offsets": np.cumsum([0] + sizes, dtype=np.int64),
            "undo_indices": joined([st.indices for st in steps], np.int64),
            "undo_labels": joined([st.labels for st in steps], np.int32),
            "undo_prev_labels": joined([labels for labels, _ in prev], np.int32),
            "undo_prev_origins": joined([origins for _, origins in prev], np.int32)}

    def _tag_undo_arrays(self, kept) -> dict:
        """Tag steps of the undo/redo stacks and the stacks' order (only when there are
        tag steps: files of stores without tags are unchanged)."""
        tag_steps = [step for step in kept if isinstance(step, TagStep)]
        if not tag_steps:
            return {}
        sizes = [len(step.indices) for step in tag_steps]
        return {
            "tagundo_stacks": np.array([step.step for step in kept], dtype=np.int64),
            "tagundo_n_undo": np.array(len(self.undo), dtype=np.int64),
            "tagundo_meta": np.array([[st.step, self.tag_names.index(st.tag), int(st.value),
                                       self.source_code(st.source), self.note_id(st.note),
                                       st.origin] for st in tag_steps], dtype=np.int64),
            "tagundo_time": np.array([st.time for st in tag_steps], dtype=np.float64),
            "tagundo_offsets": np.cumsum([0] + sizes, dtype=np.int64),
            "tagundo_indices": np.concatenate([st.indices for st in tag_steps]).astype(np.int64),
            "tagundo_prev_values": np.concatenate([st.prev_values for st in tag_steps]
                                                  ).astype(np.uint8),
            "tagundo_prev_origins": np.concatenate([st.prev_origins for st in tag_steps])}

    def restore_tags(self, arrays, where):
        """Set the tag columns from :meth:`tag_arrays` (checked; absent = no tags)."""
        if "tag_names" not in arrays:
            return
        names = [str(name) for name in arrays["tag_names"]]
        for name in names:
            self.check_tag_name(name)
        shape = (self.n_frames, len(names))
        values = checked_array(arrays, "tag_values", shape, np.int8, where)
        origins = checked_array(arrays, "tag_origins", shape, np.int32, where)
        check_range(values, 0, 2, "tag_values", where)
        check_range(origins, 0, self.prov_len, "tag_origins", where)
        self.tag_values, self.tag_origins = values.astype(bool), origins.copy()
        self.tag_names = names

    def restore_tag_undo(self, arrays, where):
        """Add the tag steps of :meth:`_tag_undo_arrays` and restore the stacks' order."""
        if "tagundo_stacks" not in arrays:
            return

        def get(name, shape, dtype):
            return checked_array(arrays, name, shape, dtype, where)

        meta = get("tagundo_meta", np.shape(arrays["tagundo_meta"]), np.int64)
        offsets = get("tagundo_offsets", (len(meta) + 1,), np.int64)
        total = int(offsets[-1])
        indices = get("tagundo_indices", (total,), np.intp)
        values = get("tagundo_prev_values", (total,), np.int8)
        origins = get("tagundo_prev_origins", (total,), np.int32)
        times = get("tagundo_time", (len(meta),), np.float64)
        if meta.shape[1:] != (6,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise JournalError("tag undo data is malformed", path=where, dataset="tagundo_meta")
        for name, vals, low, high in (
                ("tagundo_indices", indices, 0, self.n_frames),
                ("tagundo_prev_values", values, 0, 2),
                ("tagundo_prev_origins", origins, 0, self.prov_len),
                ("tagundo_meta", meta[:, 1], 0, len(self.tag_names)),
                ("tagundo_meta", meta[:, 3], 0, len(self.source_names)),
                ("tagundo_meta", meta[:, 4], -1, len(self.notes)),
                ("tagundo_meta", meta[:, 5], 0, self.prov_len)):
            check_range(vals, low, high, name, where)
        for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
            step_id, column, value, source, note, origin = (int(v) for v in meta[row])
            step = TagStep(step_id, indices[start:stop], self.tag_names[column], bool(value),
                           self.source_names[source], float(times[row]),
                           None if note < 0 else self.notes[note], origin,
                           values[start:stop].astype(bool), origins[start:stop])
            self.steps[step_id] = step
            self.undo_bytes += step.nbytes
        stacks = [int(v) for v in get("tagundo_stacks", np.shape(arrays["tagundo_stacks"]),
                                      np.int64)]
        if set(stacks) != set(self.steps):
            raise JournalError("tag undo data does not match the undo stacks", path=where,
                               dataset="tagundo_stacks")
        n_undo = int(arrays["tagundo_n_undo"])
        self.undo, self.redo = stacks[:n_undo], stacks[n_undo:]

    def restore_arrays(self, arrays, where):
        """Set the state from :meth:`state_arrays` (checked, never trusted).

        Errors name ``where`` (the file the arrays came from)."""
        def get(name, shape, dtype):
            return checked_array(arrays, name, shape, dtype, where)

        self.labels[:] = get("labels", (self.n_frames,), np.int32)
        self.origins[:] = get("origins", (self.n_frames,), np.int32)
        rows = np.shape(arrays["prov_source"])[:1]
        self.prov_source = get("prov_source", rows, np.int8)
        self.prov_time = get("prov_time", rows, np.float64)
        self.prov_note = get("prov_note", rows, np.int32)
        self.prov_len = len(self.prov_source)
        self.source_names = [str(name) for name in arrays["source_names"]]
        self.notes = [str(note) for note in arrays["notes"]]
        self.note_lookup = {note: i for i, note in enumerate(self.notes)}
        self.restore_tags(arrays, where)
        for name, values, low, high in (
                ("labels", self.labels, -1, len(self.classes)),
                ("origins", self.origins, 0, self.prov_len),
                ("prov_source", self.prov_source, 0, len(self.source_names)),
                ("prov_note", self.prov_note, -1, len(self.notes))):
            check_range(values, low, high, name, where)

    def restore_undo(self, arrays, where):
        """Set the undo/redo stacks from :meth:`undo_arrays` (checked)."""
        def get(name, shape, dtype):
            return checked_array(arrays, name, shape, dtype, where)

        meta = get("undo_meta", np.shape(arrays["undo_meta"]), np.int64)
        count = len(meta)
        offsets = get("undo_offsets", (count + 1,), np.int64)
        total = int(offsets[-1])
        flat = {name: get(f"undo_{name}", (total,), dtype)
                for name, dtype in (("indices", np.intp), ("labels", np.int32),
                                    ("prev_labels", np.int32), ("prev_origins", np.int32))}
        times = get("undo_time", (count,), np.float64)
        if (count and meta.shape[1:] != (5,)) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise JournalError("undo data is malformed", path=where, dataset="undo_meta")
        for name, values, low, high in (
                ("undo_indices", flat["indices"], 0, self.n_frames),
                ("undo_labels", flat["labels"], -1, len(self.classes)),
                ("undo_prev_labels", flat["prev_labels"], -1, len(self.classes)),
                ("undo_prev_origins", flat["prev_origins"], 0, self.prov_len),
                ("undo_meta", meta[:, 3], 0, self.prov_len),
                ("undo_meta", meta[:, 1], 0, len(self.source_names)),
                ("undo_meta", meta[:, 2], -1, len(self.notes))):
            check_range(values, low, high, name, where)
        self.steps, self.undo_bytes = {}, 0
        for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
            step_id, source, note, origin, label = (int(v) for v in meta[row])
            labels = flat["labels"][start:stop] if label == MIXED else label
            step = Step(step_id, flat["indices"][start:stop], labels, self.source_names[source],
                        float(times[row]), None if note < 0 else self.notes[note], origin,
                        pack(labels, origin),
                        pack(flat["prev_labels"][start:stop], flat["prev_origins"][start:stop]))
            self.steps[step_id] = step
            self.undo_bytes += step.nbytes
        self.undo = [int(v) for v in meta[:int(arrays["undo_count"]), 0]]
        self.redo = [int(v) for v in meta[int(arrays["undo_count"]):, 0]]
        self.restore_tag_undo(arrays, where)

    def drop_undo(self):
        """Forget every undoable step (they stay in the history)."""
        self.steps.clear()
        self.undo.clear()
        self.redo.clear()
        self.undo_bytes = 0


def pack(labels, origins):
    """(label, origin) pairs as the int64 values of ``LabelState.pairs64`` (any endianness)."""
    labels, origins = np.broadcast_arrays(np.asarray(labels, dtype=np.int32),
                                          np.asarray(origins, dtype=np.int32))
    pairs = np.empty(labels.shape + (2,), dtype=np.int32)
    pairs[..., 0] = labels
    pairs[..., 1] = origins
    return pairs.view(np.int64)[..., 0]


def unpack(packed):
    """Inverse of :func:`pack`: ``(labels, origins)``."""
    pairs = np.asarray(packed, dtype=np.int64)[..., None].view(np.int32)
    return pairs[..., 0], pairs[..., 1]
