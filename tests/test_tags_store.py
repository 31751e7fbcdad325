"""Tags in the LabelStore: several per frame beside the class, in the same journal."""

from __future__ import annotations

import os
import random
import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from xlabel.errors import JournalError, LabelError
from xlabel.labels import JournalRecoveryWarning, LabelStore

from . import test_labels_crash as label_crash


def _tagged_store(path=None):
    store = LabelStore(6, path=path)
    store.assign([0, 1], "bad")
    store.add_tag([1, 2, 3], "rings", note="lasso")
    store.add_tag([3, 5], "spots", source="model")
    store.remove_tag([2], "rings")
    return store


def test_tags_beside_the_class_with_undo_redo_and_history():
    store = _tagged_store()
    assert store.tag_names == ("rings", "spots")
    assert store.tags.astype(int).values.tolist() == [[0, 0], [1, 0], [0, 0], [1, 1], [0, 0], [0, 1]]
    assert store.labels.tolist() == [1, 1, -1, -1, -1, -1]  # classes untouched by tags
    assert store.undo() == 3 and store.tagged("rings").tolist() == [0, 1, 1, 1, 0, 0]
    assert store.last_action == "undid step 3 (tag 'rings' removed from 1 frame(s), manual)"
    assert store.undo() == 2 and not store.tagged("spots").any()
    assert store.undo() == 1 and store.undo() == 0 and store.labels.tolist() == [-1] * 6
    assert store.redo() == 0 and store.redo() == 1
    assert store.tagged("rings").tolist() == [0, 1, 1, 1, 0, 0]
    store.add_tag([4], "rings")  # a new step drops the redo stack (tag steps too)
    assert not store.can_redo
    history = store.history
    assert history["kind"].tolist()[:4] == ["assign", "tag", "tag", "untag"]
    assert history.loc[(history["step"] == 1) & (history["kind"] == "tag"), "applied"].all()


def test_provenance_per_frame_and_tag():
    store = _tagged_store()
    info = store.tag_provenance(3)
    assert info["rings"]["value"] and info["rings"]["note"] == "lasso"
    assert info["spots"]["source"] == "model" and info["spots"]["time"][10] == "T"
    assert store.tag_provenance(2)["rings"] == {"value": False, "source": "manual",
                                               "time": store.tag_provenance(2)["rings"]["time"],
                                               "note": None}
    assert store.tag_provenance(0)["rings"]["time"] is None


def test_observers_see_tag_steps():
    store = LabelStore(4)
    seen = []
    store.observe(seen.append)
    store.add_tag([0, 2], "halo")
    store.undo()
    assert [(c.kind, c.tag, c.tagged.tolist(), c.indices.tolist()) for c in seen] == [
        ("tag", "halo", [True, True], [0, 2]), ("undo", "halo", [False, False], [0, 2])]
    store.assign([1], "bad")
    assert seen[-1].tag is None and seen[-1].tagged is None


def test_bad_tag_input_is_refused_and_changes_nothing():
    store = LabelStore(3)
    for bad in ("", " x", "a,b", "label", "frame", "p_rings", 3):
        with pytest.raises(LabelError):
            store.add_tag([0], bad)
    with pytest.raises(LabelError, match="unknown tag 'ice'"):
        store.remove_tag([0], "ice")
    with pytest.raises(LabelError, match="out of range"):
        store.add_tag([5], "rings")
    assert store.tag_names == () and store.history.empty


def test_journal_snapshot_reopen_keep_tags_and_undo(tmp_path):
    path = tmp_path / "s.xlabel"
    store = _tagged_store(path)
    store.undo()
    expected = store.tags
    reopened = LabelStore.open(path)  # journal replay
    assert reopened.tags.equals(expected) and reopened.can_redo
    store.snapshot()
    store.close()
    again = LabelStore.open(path)     # snapshot with tag undo data
    assert again.tags.equals(expected)
    assert again.redo() == 3 and not again.tagged("rings")[2]
    assert again.undo() == 3 and again.undo() == 2 and again.undo() == 1 and again.undo() == 0
    assert not again.tags.values.any() and again.labels.tolist() == [-1] * 6
    again.close()
    assert LabelStore.open(path).tag_names == ("rings", "spots")


def test_snapshot_without_undo_and_tagless_stores_stay_version_1(tmp_path):
    plain = LabelStore(3, path=tmp_path / "plain.xlabel")
    plain.assign([0], "bad")
    plain.snapshot()
    assert plain._session.meta()["version"] == 1
    store = _tagged_store(tmp_path / "t.xlabel")
    store.snapshot(keep_undo=False)
    assert store._session.meta()["version"] == 2
    store.close()
    reopened = LabelStore.open(tmp_path / "t.xlabel")
    assert reopened.tags.equals(_tagged_store().tags) and not reopened.can_undo


def test_csv_round_trip_one_column_per_tag(tmp_path):
    store = _tagged_store()
    csv = tmp_path / "labels.csv"
    store.to_csv(csv)
    table = pd.read_csv(csv)
    assert list(table.columns) == ["frame", "label", "source", "time", "note", "rings", "spots"]
    assert set(table["rings"]) == {0, 1}
    back = LabelStore.from_csv(csv)
    assert back.tags.equals(store.tags) and back.labels.tolist() == store.labels.tolist()
    assert LabelStore.from_csv(csv, tags=()).tag_names == ()
    # a tags-only CSV (no label column), as `xlabel train` takes it
    pd.DataFrame({"frame": [0, 1, 2], "rings": [1, 0, 1], "mean": [3.5, 2.0, 1.0]}).to_csv(
        tmp_path / "only.csv", index=False)
    only = LabelStore.from_csv(tmp_path / "only.csv")
    assert only.tag_names == ("rings",) and only.tagged("rings").tolist() == [1, 0, 1]


def test_csv_tag_errors_name_the_frame(tmp_path):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"frame": [0, 1], "label": ["good", ""], "rings": [1, 2]}).to_csv(csv, index=False)
    with pytest.raises(LabelError, match="frame 1.*must hold 0 or 1|must hold 0 or 1.*") as err:
        LabelStore.from_csv(csv, tags=["rings"])
    assert "frame 1" in str(err.value) and str(csv.name) in str(err.value)
    with pytest.raises(LabelError, match="no column for tag 'halo'"):
        LabelStore.from_csv(csv, tags=["halo"])


def test_import_csv_applies_tags_as_undoable_steps(tmp_path):
    source = _tagged_store()
    csv = tmp_path / "labels.csv"
    source.to_csv(csv)
    target = LabelStore(6)
    target.import_csv(csv)
    assert target.tags.equals(source.tags) and target.labels.tolist() == source.labels.tolist()
    while target.can_undo:
        target.undo()
    assert not target.tags.values.any()


def test_hdf5_round_trip_with_tag_provenance(tmp_path):
    store = _tagged_store()
    store.to_hdf5(tmp_path / "labels.h5")
    with h5py.File(tmp_path / "labels.h5") as h5:
        assert list(h5["xlabel_labels/tag_names"].asstr()[()]) == ["rings", "spots"]
    back = LabelStore.from_hdf5(tmp_path / "labels.h5")
    assert back.tags.equals(store.tags)
    assert back.tag_provenance(3) == store.tag_provenance(3)


def test_damaged_tag_arrays_are_refused(tmp_path):
    store = _tagged_store()
    store.to_hdf5(tmp_path / "labels.h5")
    with h5py.File(tmp_path / "labels.h5", "a") as h5:
        data = h5["xlabel_labels/tag_values"][()]
        data[0, 0] = 7
        h5["xlabel_labels/tag_values"][...] = data
    with pytest.raises(JournalError, match="tag_values"):
        LabelStore.from_hdf5(tmp_path / "labels.h5")


# ------------------------------------------------------------ a real crash (SIGKILL)

N_FRAMES = 50_000
MARKERS = 10_000   # frame i < MARKERS is tagged by step i only


def _child(path, write_fd):
    """Tag forever (and snapshot now and then), reporting each finished step."""
    os.dup2(write_fd, 1)
    store = LabelStore(N_FRAMES, path=path)
    rng = np.random.default_rng(os.getpid())
    while True:
        step = store._next_step
        block = rng.integers(MARKERS, N_FRAMES, size=int(rng.integers(1, 20_000)))
        store.add_tag(np.concatenate([[step], block]), ("rings", "spots")[step % 2])
        os.write(1, f"done {step}\n".encode())
        if step % 40 == 39:
            store.snapshot()


@pytest.mark.skipif(sys.platform == "win32", reason="needs os.fork and SIGKILL")
def test_sigkill_while_tagging_loses_no_reported_step(tmp_path, monkeypatch):
    # the fork/kill harness of the label crash test, with a child that tags
    monkeypatch.setattr(label_crash, "_child", _child)
    path = tmp_path / "crash.xlabel"
    LabelStore(N_FRAMES, path=path).close()
    reported = []
    delays = random.Random(7)
    for _ in range(12):
        reported += label_crash._run_round(path, delays.uniform(0.05, 0.4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JournalRecoveryWarning)
            store = LabelStore.open(path)
        steps = np.array(reported)
        assert len(steps) == 0 or store._next_step >= steps.max() + 1
        for name, parity in (("rings", 0), ("spots", 1)):
            mine = steps[steps % 2 == parity]
            if len(mine):
                assert store.tagged(name)[mine].all()
        store.close()
    assert len(reported) > 12
