"""LabelStore on disk: journal replay, snapshots, damaged journals, wrong datasets, exports."""

from __future__ import annotations

import os
import struct
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from xlabel.errors import JournalError, LabelError
from xlabel.labels import JOURNAL_NAME, JournalRecoveryWarning, LabelStore


def _same(a: LabelStore, b: LabelStore):
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe(), check_exact=True)
    assert a.classes == b.classes and a.colors == b.colors


def _busy_store(path=None, frames=None):
    store = LabelStore(20, classes=("good", "bad", "ice"), path=path, frames=frames)
    store.assign(range(10), "good", source="kmeans", note="seed")
    store.assign([3, 4, 5], "ice", note="ring, \"odd\"\nnote é")
    store.assign([4], None)
    store.undo()
    store.seed_from(np.arange(20) % 3, mapping={0: "bad", 1: None, 2: "good"}, source="dbscan")
    store.undo()
    store.redo()
    return store


def _snapshotted_store(tmp_path):
    """The path of a closed store whose state is in a snapshot."""
    path = tmp_path / "s.xlabel"
    with _busy_store(path) as store:
        store.snapshot()
    return path


def _closed_keeping_copy(store: LabelStore) -> LabelStore:
    """Close ``store`` (so another may write its journal); return an in-memory copy."""
    twin = store.copy()
    store.close()
    return twin


def test_reopen_replays_journal_exactly(tmp_path):
    store = _closed_keeping_copy(_busy_store(tmp_path / "s.xlabel"))
    again = LabelStore.open(tmp_path / "s.xlabel")
    _same(store, again)
    pd.testing.assert_frame_equal(store.history, again.history, check_exact=True)
    # the undo stack survives too (step 2 was undone and then dropped by step 3)
    assert again.undo() == store.undo() == 3
    assert again.undo() == store.undo() == 1
    _same(store, again)


def test_steps_after_reopen_continue_the_journal(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(5, path=path).assign([0], "bad")
    store = LabelStore.open(path)
    assert store.assign([1], "good") == 1
    store.close()
    assert LabelStore.open(path).labels.tolist() == [1, 0, -1, -1, -1]


def test_constructor_with_existing_path_reopens(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(4, path=path).assign([2], "bad")
    assert LabelStore(4, path=path).labels.tolist() == [-1, -1, 1, -1]


def test_mismatched_frame_count_names_path_and_counts(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(400, path=path)
    with pytest.raises(JournalError, match=r"s\.xlabel: this label store is for 400 frames, "
                                           r"not 500"):
        LabelStore(500, path=path)


def test_mismatched_classes_and_fingerprint(tmp_path):
    path = tmp_path / "s.xlabel"
    frames = pd.DataFrame({"scan": ["a"] * 3, "frame": [0, 1, 2]})
    LabelStore(3, path=path, frames=frames)
    with pytest.raises(JournalError, match="classes"):
        LabelStore(3, classes=("x", "y"), path=path)
    other = pd.DataFrame({"scan": ["b"] * 3, "frame": [0, 1, 2]})
    with pytest.raises(JournalError, match="belongs to dataset"):
        LabelStore(3, path=path, frames=other)


def test_open_missing_store(tmp_path):
    with pytest.raises(JournalError, match="no label store here"):
        LabelStore.open(tmp_path / "nothing")


def test_half_written_tail_is_dropped_with_message(tmp_path):
    path = tmp_path / "s.xlabel"
    store = LabelStore(50, path=path)
    store.assign(range(10), "good")
    store.assign(range(10, 20), "bad")
    journal = path / JOURNAL_NAME
    full = journal.read_bytes()
    store.close()
    good_size = len(full) - (len(full) - _record_starts(full)[-1])
    for cut in (good_size + 3, len(full) - 1):
        journal.write_bytes(full[:cut])
        message = f"half-written record at byte {good_size}"
        with pytest.warns(JournalRecoveryWarning, match=message):
            again = LabelStore.open(path)
        assert again.labels[:20].tolist() == [0] * 10 + [-1] * 10
        again.close()
        assert journal.stat().st_size == good_size  # truncated, so the next open is clean
        journal.write_bytes(full)


def three_step_journal(tmp_path, n_frames):
    """A closed store whose frames 0, 1, 2 were labeled "bad" by steps 0, 1, 2:
    ``(path, journal file, its bytes)``."""
    path = tmp_path / "s.xlabel"
    with LabelStore(n_frames, path=path) as store:
        for i in range(3):
            store.assign([i], "bad")
    journal = path / JOURNAL_NAME
    return path, journal, bytearray(journal.read_bytes())


def test_corrupt_middle_record_is_an_error_unless_recovering(tmp_path):
    path, journal, data = three_step_journal(tmp_path, 50)
    second = _record_starts(bytes(data))[1]
    data[second + 20] ^= 0xFF
    journal.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=f"corrupt record at byte {second} followed by 1 "
                                           f"valid record"):
        LabelStore.open(path)
    with pytest.warns(JournalRecoveryWarning, match="1 steps were recovered"):
        recovered = LabelStore.open(path, recover=True)
    assert recovered.labels[:3].tolist() == [1, -1, -1]


def test_corrupt_header_and_foreign_file(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(5, path=path).close()
    journal = path / JOURNAL_NAME
    data = bytearray(journal.read_bytes())
    data[15] ^= 0xFF
    journal.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="header is damaged"):
        LabelStore.open(path)
    journal.write_bytes(b"hello world, not a journal")
    with pytest.raises(JournalError, match="bad magic"):
        LabelStore.open(path)


def test_record_with_unknown_class_cannot_be_replayed(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(5, classes=("a", "b", "c"), path=path).assign([0], "c")
    other = tmp_path / "o.xlabel"
    LabelStore(5, classes=("a", "b"), path=other).close()
    header_len = len(_header(other / JOURNAL_NAME))
    records = (path / JOURNAL_NAME).read_bytes()[len(_header(path / JOURNAL_NAME)):]
    (other / JOURNAL_NAME).write_bytes((other / JOURNAL_NAME).read_bytes()[:header_len]
                                       + records)
    with pytest.raises(JournalError, match="cannot be replayed.*class index 2 out of range"):
        LabelStore.open(other)


def test_snapshot_compacts_and_keeps_history_and_undo(tmp_path):
    path = tmp_path / "s.xlabel"
    store = _busy_store(path)
    store.undo()
    before = (path / JOURNAL_NAME).stat().st_size
    store.snapshot()
    assert (path / JOURNAL_NAME).stat().st_size < before
    store.assign([19], "ice")
    store = _closed_keeping_copy(store)
    again = LabelStore.open(path)
    _same(store, again)
    pd.testing.assert_frame_equal(store.history, again.history, check_exact=True)
    for action in ["undo", "undo", "undo", "redo", "redo", "redo", "undo", "undo", "undo"]:
        assert getattr(again, action)() == getattr(store, action)()
        _same(store, again)
    assert not again.can_undo


def test_snapshot_without_undo_data(tmp_path):
    path = tmp_path / "s.xlabel"
    store = _busy_store(path)
    store.snapshot(keep_undo=False)
    assert not store.can_undo and not store.can_redo
    store.assign([19], "ice")
    store.close()
    again = LabelStore.open(path)
    _same(store, again)
    assert again.undo() == store._next_step - 1 and not again.can_undo


def test_damaged_undo_data_in_snapshot_is_refused(tmp_path):
    path = _snapshotted_store(tmp_path)
    with np.load(path / "snapshot.npz") as data:
        arrays = dict(data)
    arrays["undo_indices"] = arrays["undo_indices"] + 1000
    np.savez(path / "snapshot.npz", **arrays)
    with pytest.raises(JournalError, match="undo_indices holds codes outside 0..19"):
        LabelStore.open(path)


def test_stale_journal_after_crash_during_snapshot(tmp_path):
    path = tmp_path / "s.xlabel"
    store = _busy_store(path)
    old_journal = (path / JOURNAL_NAME).read_bytes()
    store.snapshot()
    store.close()
    (path / JOURNAL_NAME).write_bytes(old_journal)  # as if the crash came before the rename
    again = LabelStore.open(path)
    _same(store, again)
    again.assign([0], "bad")
    assert LabelStore.open(path).labels[0] == 1


def test_journal_is_written_before_assign_returns(tmp_path):
    path = tmp_path / "s.xlabel"
    store = LabelStore(10, path=path)
    sizes = [(path / JOURNAL_NAME).stat().st_size]
    for i in range(3):
        store.assign([i], "good")
        sizes.append((path / JOURNAL_NAME).stat().st_size)
    assert sizes == sorted(set(sizes))


def test_csv_round_trip_exact(tmp_path):
    frames = pd.DataFrame({"scan": ["a"] * 10 + ["b"] * 10, "frame": list(range(10)) * 2})
    store = _busy_store(frames=frames)
    store.to_csv(tmp_path / "l.csv")
    back = LabelStore.from_csv(tmp_path / "l.csv", classes=store.classes)
    _same(store, back)
    assert back.frames.equals(store.frames)


def test_from_csv_minimal_frame_label(tmp_path):
    (tmp_path / "l.csv").write_text("frame,label\n0,bad\n3,good\n2,\n")
    store = LabelStore.from_csv(tmp_path / "l.csv", n_frames=5)
    assert store.classes == ("good", "bad")
    assert store.labels.tolist() == [1, -1, -1, 0, -1]
    assert store.provenance(0)["source"] == "import"
    assert store.provenance(2)["source"] == ""


def test_from_csv_errors_name_file_and_frame(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("frame,label\n0,bad\n7,ice\n")
    with pytest.raises(LabelError, match=r"l\.csv frame 7: unknown class 'ice'; known "
                                         r"classes: 'good', 'bad'"):
        LabelStore.from_csv(csv, classes=("good", "bad"))
    csv.write_text("frame,label\n0,bad\n0,good\n")
    with pytest.raises(LabelError, match="frame 0: frame listed twice"):
        LabelStore.from_csv(csv)
    csv.write_text("frame,klass\n0,bad\n")
    with pytest.raises(LabelError, match=r"needs columns frame,label; missing \['label'\]"):
        LabelStore.from_csv(csv)
    csv.write_text("frame,label\n9,bad\n")
    with pytest.raises(LabelError, match="frame 9: frame out of range"):
        LabelStore.from_csv(csv, n_frames=5)
    with pytest.raises(LabelError, match="cannot read"):
        LabelStore.from_csv(tmp_path / "missing.csv")


def test_import_csv_is_one_undoable_step(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("frame,label\n1,bad\n2,good\n3,\n")
    store = LabelStore(5)
    store.assign([3], "good")
    step = store.import_csv(csv)
    assert store.labels.tolist() == [-1, 1, 0, 0, -1]
    assert store.provenance(1)["source"] == "import"
    assert store.undo() == step
    assert store.labels.tolist() == [-1, -1, -1, 0, -1]


def test_hdf5_round_trip_exact(tmp_path):
    frames = pd.DataFrame({"scan": ["é"] * 20, "frame": np.arange(20)})
    store = _busy_store(frames=frames)
    store.to_hdf5(tmp_path / "l.h5")
    back = LabelStore.from_hdf5(tmp_path / "l.h5", path=tmp_path / "b.xlabel")
    _same(store, back)
    pd.testing.assert_frame_equal(store.history, back.history, check_exact=True)
    _same(store, LabelStore.open(tmp_path / "b.xlabel"))


def test_hdf5_errors_name_file_and_dataset(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["data"] = np.zeros(3)
    with pytest.raises(JournalError, match=r"x\.h5:xlabel_labels: not a readable"):
        LabelStore.from_hdf5(tmp_path / "x.h5")
    store = LabelStore(3)
    store.to_hdf5(tmp_path / "y.h5")
    with h5py.File(tmp_path / "y.h5", "a") as h5:
        del h5["xlabel_labels/labels"]
        h5["xlabel_labels/labels"] = np.full(3, 7, dtype=np.int32)
    with pytest.raises(JournalError, match=r"y\.h5:labels: labels holds codes outside"):
        LabelStore.from_hdf5(tmp_path / "y.h5")


def test_snapshot_never_unpickles(tmp_path):
    path = _snapshotted_store(tmp_path)
    np.savez(path / "snapshot.npz", meta=np.array({"evil": 1}, dtype=object))
    with pytest.raises(JournalError, match="cannot read the label snapshot"):
        LabelStore.open(path)


def test_truncated_snapshot_is_a_clear_error(tmp_path):
    path = _snapshotted_store(tmp_path)
    snapshot = path / "snapshot.npz"
    snapshot.write_bytes(snapshot.read_bytes()[:200])
    with pytest.raises(JournalError, match=r"snapshot\.npz: cannot read the label snapshot"):
        LabelStore.open(path)


def _header(journal) -> bytes:
    data = journal.read_bytes()
    (length,) = struct.unpack_from("<I", data, 8)
    return data[:12 + length + 4]


def _record_starts(data: bytes) -> list:
    (length,) = struct.unpack_from("<I", data, 8)
    starts, offset = [], 12 + length + 4
    while offset < len(data):
        starts.append(offset)
        (size,) = struct.unpack_from("<I", data, offset + 4)
        offset += 12 + size
    return starts


def test_write_failure_does_not_apply_step(tmp_path):
    store = LabelStore(3, path=tmp_path / "s.xlabel")
    store.assign([2], "bad")  # takes the write lock
    journal = store._session.journal
    os.close(journal.fd)
    journal.fd = os.open(os.devnull, os.O_RDONLY)  # as if the disk refused writes
    with pytest.raises(JournalError, match="the step was not applied"):
        store.assign([0], "good")
    assert store.labels.tolist() == [-1, -1, 1] and len(store.history) == 1


def test_two_writers_are_refused(tmp_path):
    path = tmp_path / "s.xlabel"
    first = LabelStore(5, path=path)
    first.assign([0], "good")
    reader = LabelStore.open(path)  # reading while another store writes is fine
    assert reader.labels[0] == 0
    with pytest.raises(JournalError, match="another LabelStore .* is writing to this store"):
        reader.assign([1], "bad")
    first.close()
    with pytest.raises(LabelError, match="this store was closed"):
        first.assign([2], "bad")
    reader.assign([1], "bad")  # the writer is gone and nothing changed since reading
    assert LabelStore.open(path).labels[:2].tolist() == [0, 1]


def test_stale_store_is_refused(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(5, path=path).close()
    stale = LabelStore.open(path)
    with LabelStore.open(path) as writer:
        writer.assign([3], "bad")
    with pytest.raises(JournalError, match="changed on disk since this LabelStore read it"):
        stale.assign([0], "good")
    assert LabelStore.open(path).labels.tolist() == [-1, -1, -1, 1, -1]


def test_copy_is_independent_and_can_be_saved(tmp_path):
    store = _busy_store()
    twin = store.copy(path=tmp_path / "copy.xlabel")
    _same(store, twin)
    twin.assign([0], "ice")
    assert store.labels[0] != 2
    twin.undo()
    _same(store, twin)
    assert twin.undo() == store.undo()
    _same(store, twin)
    twin.close()
    _same(store, LabelStore.open(tmp_path / "copy.xlabel"))


def test_reader_leaves_a_live_writers_partial_record_alone(tmp_path):
    path = tmp_path / "s.xlabel"
    writer = LabelStore(5, path=path)
    writer.assign([0], "good")
    journal = path / JOURNAL_NAME
    with open(journal, "ab") as handle:  # a record the writer is in the middle of writing
        handle.write(b"XLR1\x40\x00\x00\x00partial")
    size = journal.stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = LabelStore.open(path)
    assert reader.labels.tolist() == [0, -1, -1, -1, -1]
    assert journal.stat().st_size == size  # not truncated under the writer
    writer.close()
    with pytest.warns(JournalRecoveryWarning, match="half-written record"):
        LabelStore.open(path)
    assert journal.stat().st_size < size


def test_exports_never_overwrite_an_existing_store(tmp_path):
    path = tmp_path / "s.xlabel"
    store = _busy_store(path)
    store.to_csv(tmp_path / "l.csv")
    with pytest.raises(JournalError, match="a label store already exists here"):
        LabelStore.from_csv(tmp_path / "l.csv", classes=store.classes, path=path)
    with pytest.raises(JournalError, match="a label store already exists here"):
        store.copy(path=path)
    store.close()
    _same(store, LabelStore.open(path))


def test_csv_times_iso_and_unix_seconds(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(3)
    store.assign([1], "bad")
    store.to_csv(csv)
    text = csv.read_text()
    assert store.provenance(1)["time"] in text and "e+09" not in text
    csv.write_text("frame,label,time\n0,bad,1700000000.5\n1,good,2023-11-14T22:13:20+00:00\n"
                   "2,,\n")
    back = LabelStore.from_csv(csv)
    assert back.times[:2].tolist() == [1700000000.5, 1700000000.0]
    csv.write_text("frame,label,time\n0,bad,yesterday\n")
    with pytest.raises(LabelError, match=r"l\.csv: row 2: time 'yesterday' is neither ISO-8601"):
        LabelStore.from_csv(csv)


def test_missing_files_name_absolute_path_and_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = f"{tmp_path / 'labels.csv'} does not exist .*working directory {tmp_path}\\)"
    with pytest.raises(LabelError, match=where):
        LabelStore.from_csv("labels.csv")
    with pytest.raises(LabelError, match=where.replace("labels.csv", "s.xlabel")):
        LabelStore.open("s.xlabel")
    with pytest.raises(LabelError, match=where.replace("labels.csv", "l.h5")):
        LabelStore.from_hdf5("l.h5")


def test_undo_limit_is_kept_on_reopen(tmp_path, monkeypatch):
    monkeypatch.setattr("xlabel.labels.state.UNDO_STEPS", 2)
    path = tmp_path / "s.xlabel"
    with LabelStore(5, path=path) as store:
        for i in range(4):
            store.assign([i], "bad")
    monkeypatch.setattr("xlabel.labels.state.UNDO_STEPS", 1000)
    again = LabelStore.open(path)                           # the writer's limit, from the journal
    assert [again.undo() for _ in range(3)] == [3, 2, None]
