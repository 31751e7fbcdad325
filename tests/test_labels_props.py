"""Property-based tests of LabelStore: any assign/undo/redo sequence stays consistent."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlabel.labels import LabelStore

N_FRAMES = 12
CLASSES = ("good", "bad", "ice")

assign_op = st.tuples(st.just("assign"),
                      st.lists(st.integers(0, N_FRAMES - 1), max_size=6),
                      st.integers(-1, len(CLASSES) - 1),
                      st.sampled_from(["manual", "kmeans", "model"]),
                      st.one_of(st.none(), st.text(max_size=5)))
seed_op = st.tuples(st.just("seed"), st.lists(st.integers(-1, 2), min_size=N_FRAMES,
                                              max_size=N_FRAMES))
operations = st.lists(st.one_of(assign_op, seed_op, st.just(("undo",)), st.just(("redo",)),
                                st.tuples(st.just("snapshot"), st.booleans())), max_size=25)


def _run(store: LabelStore, ops):
    """Apply ``ops`` to ``store`` and to a plain model: labels at the last snapshot and
    the steps applied since."""
    base, model, undone = np.full(N_FRAMES, -1), [], []
    for op in ops:
        if op[0] == "assign":
            _, indices, label, source, note = op
            store.assign(indices, label, source=source, note=note)
            model.append(("assign", indices, label))
            undone.clear()
        elif op[0] == "seed":
            store.seed_from(np.array(op[1]), mapping={0: "bad", 1: "good", 2: None})
            model.append(("seed", op[1]))
            undone.clear()
        elif op[0] == "undo":
            assert (store.undo() is None) == (not model)
            if model:
                undone.append(model.pop())
        elif op[0] == "redo":
            assert (store.redo() is None) == (not undone)
            if undone:
                model.append(undone.pop())
        elif op[0] == "snapshot" and store.path is not None:
            store.snapshot(keep_undo=op[1])
            if not op[1]:  # steps before the snapshot can no longer be undone
                base = _expected_labels(base, model)
                model.clear()
                undone.clear()
    return base, model


def _expected_labels(base, model) -> np.ndarray:
    labels = base.copy()
    for step in model:
        if step[0] == "assign":
            labels[step[1]] = step[2]
        else:
            ids = np.array(step[1])
            labels[ids == 0] = 1
            labels[ids == 1] = 0
    return labels


@settings(max_examples=150, deadline=None)
@given(operations)
def test_labels_equal_the_applied_steps(ops):
    store = LabelStore(N_FRAMES, classes=CLASSES)
    base, model = _run(store, ops)
    assert store.labels.tolist() == _expected_labels(base, model).tolist()
    history = store.history
    assigns = history[history["kind"] == "assign"]
    assert assigns["step"].tolist() == list(range(len(assigns)))
    assert int(history["applied"].sum()) == len(model)
    counts = store.counts()
    assert sum(counts.values()) == N_FRAMES
    labeled = store.labels >= 0
    assert (store.sources[labeled] > 0).all()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations, st.lists(st.sampled_from(["undo", "redo"]), max_size=6))
def test_replaying_the_journal_reproduces_the_store(ops, after):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.xlabel"
        store = LabelStore(N_FRAMES, classes=CLASSES, path=path)
        base, model = _run(store, ops)
        assert store.labels.tolist() == _expected_labels(base, model).tolist()
        twin = store.copy()  # an in-memory copy keeps undoing after the writer is closed
        store.close()
        store = twin
        again = LabelStore.open(path)
        pd.testing.assert_frame_equal(store.to_dataframe(), again.to_dataframe(), check_exact=True)
        pd.testing.assert_frame_equal(store.history, again.history, check_exact=True)
        for action in after:  # the undo/redo stacks were rebuilt identically
            assert getattr(store, action)() == getattr(again, action)()
            assert store.labels.tolist() == again.labels.tolist()
        again.close()
