"""LabelStore in memory: assign, undo/redo, observers, classes, counts, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest

from xlabel.errors import LabelError
from xlabel.labels import DEFAULT_COLORS, LabelChange, LabelStore


def test_new_store_is_unlabeled_with_default_classes():
    store = LabelStore(5)
    assert store.classes == ("good", "bad")
    assert store.colors == DEFAULT_COLORS[:2]
    assert store.labels.tolist() == [-1] * 5
    assert store.counts() == {"good": 0, "bad": 0, "unlabeled": 5}
    assert store.n_frames == len(store) == 5


def test_assign_by_name_index_mask_and_clear():
    store = LabelStore(6, classes=("good", "bad", "unsure"))
    assert store.assign([0, 1], "bad") == 0
    assert store.assign(np.array([False, False, True, True, False, False]), 2) == 1
    store.assign(np.int64(5), "good")
    store.assign([1], None)
    assert store.labels.tolist() == [1, -1, 2, 2, -1, 0]
    assert store.counts() == {"good": 1, "bad": 1, "unsure": 2, "unlabeled": 2}


def test_labels_view_is_read_only():
    store = LabelStore(3)
    with pytest.raises(ValueError):
        store.labels[0] = 1
    with pytest.raises(ValueError):
        store.sources[0] = 1
    assert store.labels.tolist() == [-1, -1, -1]


def test_undo_redo_restore_labels_and_provenance():
    store = LabelStore(4)
    store.assign([0, 1], "good", source="kmeans", note="seed")
    store.assign([1, 2], "bad", note="lasso 1")
    assert store.provenance(1)["note"] == "lasso 1"
    assert store.undo() == 1
    assert store.labels.tolist() == [0, 0, -1, -1]
    assert store.provenance(1)["source"] == "kmeans"
    assert store.provenance(1)["note"] == "seed"
    assert store.provenance(2) == {"label": "", "source": "", "time": None, "note": None}
    assert store.redo() == 1
    assert store.labels.tolist() == [0, 1, 1, -1]
    assert store.provenance(2)["source"] == "manual"
    assert store.redo() is None


def test_new_assign_clears_redo():
    store = LabelStore(3)
    store.assign([0], "good")
    store.undo()
    store.assign([1], "bad")
    assert not store.can_redo
    assert store.redo() is None
    assert store.labels.tolist() == [-1, 1, -1]


def test_undo_on_empty_history_does_nothing():
    store = LabelStore(2)
    assert store.undo() is None
    assert store.labels.tolist() == [-1, -1]


def test_history_lists_every_step():
    store = LabelStore(4)
    store.assign([0, 1], "good", note="n")
    store.assign([2], "bad", source="model")
    store.undo()
    table = store.history
    assert table["kind"].tolist() == ["assign", "assign", "undo"]
    assert table["step"].tolist() == [0, 1, 1]
    assert table["label"].tolist()[:2] == ["good", "bad"]
    assert table["source"].tolist()[:2] == ["manual", "model"]
    assert table["n_frames"].tolist()[:2] == [2, 1]
    assert table["applied"].tolist() == [True, False, False]
    assert table["note"][0] == "n"


def test_sources_and_times_per_frame():
    store = LabelStore(3)
    store.assign([0], "good", source="dbscan")
    names = store.source_names
    assert names[store.sources[0]] == "dbscan"
    assert store.sources[1] == 0
    assert np.isnan(store.times[1]) and store.times[0] > 1.7e9
    store.assign([1], "bad", source="my-tool")
    assert store.source_names[store.sources[1]] == "my-tool"


def test_observer_gets_changes_and_can_be_removed():
    store = LabelStore(5)
    seen: list[LabelChange] = []
    store.observe(seen.append)
    store.assign([3, 1], "bad")
    store.undo()
    store.redo()
    assert [c.kind for c in seen] == ["assign", "undo", "redo"]
    assert [c.step for c in seen] == [0, 0, 0]
    assert seen[0].indices.tolist() == [3, 1] and seen[0].labels.tolist() == [1, 1]
    assert seen[1].labels.tolist() == [-1, -1]
    store.unobserve(seen.append)
    store.assign([0], "good")
    assert len(seen) == 3


def test_raising_observer_does_not_corrupt_store():
    store = LabelStore(4)
    calls = []

    def broken(change):
        calls.append(change.kind)
        raise RuntimeError("view crashed")

    store.observe(broken)
    store.observe(lambda change: calls.append("second"))
    with pytest.warns(RuntimeWarning, match="view crashed"):
        store.assign([0, 2], "bad")
    assert calls == ["assign", "second"]
    assert store.labels.tolist() == [1, -1, 1, -1]
    with pytest.warns(RuntimeWarning):
        store.undo()
    assert store.labels.tolist() == [-1] * 4 and store.can_redo


def test_observer_sees_the_new_state():
    store = LabelStore(3)
    states = []
    store.observe(lambda change: states.append((store.labels.tolist(), len(store.history))))
    store.assign([2], "good")
    assert states == [([-1, -1, 0], 1)]


def test_seed_from_with_mapping_dict_and_sequence():
    store = LabelStore(5)
    clusters = np.array([0, 1, 1, -1, 0])
    step = store.seed_from(clusters, mapping={0: "bad", 1: "good"})
    assert store.labels.tolist() == [1, 0, 0, -1, 1]
    assert store.provenance(0)["source"] == "kmeans"
    store.undo()
    assert store.labels.tolist() == [-1] * 5
    store.seed_from(clusters, mapping=["good", None], source="dbscan")
    assert store.labels.tolist() == [0, -1, -1, -1, 0]
    assert step == 0


def test_seed_from_without_mapping_needs_class_indices():
    store = LabelStore(3)
    store.seed_from([1, 0, -1])
    assert store.labels.tolist() == [1, 0, -1]
    with pytest.raises(LabelError, match=r"cluster ids \[2\]"):
        store.seed_from([2, 0, 1])
    with pytest.raises(LabelError, match=r"not in mapping"):
        store.seed_from([2, 0, 1], mapping={0: "good", 1: "bad"})
    with pytest.raises(LabelError, match="one integer cluster id per frame"):
        store.seed_from([0, 1])


def test_unknown_class_lists_known_ones():
    store = LabelStore(3, classes=("good", "bad", "ice ring"))
    with pytest.raises(LabelError, match=r"unknown class 'goood'; known classes: 'good', "
                                         r"'bad', 'ice ring'"):
        store.assign([0], "goood")
    with pytest.raises(LabelError, match="class index 3 out of range"):
        store.assign([0], 3)
    assert store.labels.tolist() == [-1, -1, -1] and not store.can_undo


@pytest.mark.parametrize("indices", [[3], [-1], [0, 7]])
def test_index_out_of_range_names_the_frame(indices):
    store = LabelStore(3)
    with pytest.raises(LabelError, match=r"frame -?\d+: index out of range: store has 3"):
        store.assign(indices, "good")
    assert not store.can_undo


def test_bad_index_types_and_masks():
    store = LabelStore(3)
    with pytest.raises(LabelError, match="boolean mask needs 3"):
        store.assign([True, False], "good")
    with pytest.raises(LabelError, match="integers"):
        store.assign([0.5], "good")


@pytest.mark.parametrize("classes", [(), ("a", "a"), ("",), "good", ("unlabeled",)])
def test_bad_classes(classes):
    with pytest.raises(LabelError):
        LabelStore(3, classes=classes)


def test_colors_custom_and_checked():
    store = LabelStore(2, classes=("a", "b"), colors={"b": "black"})
    assert store.colors == (DEFAULT_COLORS[0], "black")
    with pytest.raises(LabelError, match="1 colors given for 2 classes"):
        LabelStore(2, classes=("a", "b"), colors=["red"])


def test_many_classes():
    names = tuple(f"c{i}" for i in range(40))
    store = LabelStore(100, classes=names)
    store.assign(np.arange(100), np.int64(39))
    assert store.counts()["c39"] == 100 and len(store.colors) == 40


def test_empty_assign_is_a_step():
    store = LabelStore(3)
    assert store.assign([], "good") == 0
    assert store.undo() == 0


def test_undo_history_is_capped_by_steps(monkeypatch):
    monkeypatch.setattr("xlabel.labels.state.UNDO_STEPS", 3)
    store = LabelStore(10)
    for i in range(5):
        store.assign([i], "bad")
    assert [store.undo() for _ in range(4)] == [4, 3, 2, None]
    assert store.labels.tolist()[:5] == [1, 1, -1, -1, -1]  # steps 0 and 1 stay applied
    assert len(store.history) == 5 + 3 and store.last_action == "nothing to undo"
    assert len(store._state.steps) == 3                      # their undo data is freed


def test_undo_history_is_capped_by_bytes(monkeypatch):
    monkeypatch.setattr("xlabel.labels.state.UNDO_BYTES", 50_000)
    store = LabelStore(100_000)
    for _ in range(5):
        store.assign(range(1_000), "bad")                    # ~24 kB of undo data each
    store.assign(range(10_000), "good")                      # larger than the cap alone
    assert store._state.undo_bytes > 50_000                  # the newest step is kept anyway
    assert store.undo() == 5 and store.undo() is None


def test_closed_store_snapshot_keeps_undo(tmp_path):
    store = LabelStore(4, path=tmp_path / "s.xlabel")
    store.assign([0], "bad")
    store.close()
    with pytest.raises(LabelError, match="this store was closed"):
        store.snapshot(keep_undo=False)
    assert store.can_undo


def test_times_are_iso_8601_in_provenance_history_and_exports():
    import datetime

    store = LabelStore(3)
    store.assign([0], "bad")
    stamp = store.provenance(0)["time"]
    parsed = datetime.datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None and abs(parsed.timestamp() - store.times[0]) < 1e-6
    assert store.to_dataframe()["time"].tolist() == [stamp, "", ""]
    assert store.history["time"].tolist() == [stamp]
