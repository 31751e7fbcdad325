"""ReviewQueue driven from code: decisions go into the LabelStore as "review" steps."""

import numpy as np
import pandas as pd
import pytest

from xlabel.errors import XLabelError
from xlabel.features import frame_stats
from xlabel.labels import LabelStore
from xlabel.synth import make_scan
from xlabel.widgets import ReviewQueue


@pytest.fixture
def setup():
    scan = make_scan(60, (16, 16), seed=3, name="s3")
    features = frame_stats(scan.source(), progress=False)
    store = LabelStore(60, frames=features[["scan", "frame"]])
    store.assign(np.arange(60), "good")
    suspects = pd.DataFrame({"row": [7, 2, 40], "suggested": ["bad", "bad", "bad"],
                             "score": [1.9, 1.5, 0.7]})
    queue = ReviewQueue(store, suspects, source=scan.source(), features=features, n_next=2)
    return store, queue


def test_decisions_are_review_steps_in_queue_order(setup):
    store, queue = setup
    assert (queue.current, queue.progress) == (7, "0 of 3 reviewed")
    assert queue.gallery.indices.tolist() == [7, 2]
    assert queue.scatter.selected.tolist() == [7]
    queue.relabel()
    queue.keep()
    queue.relabel("good")
    assert queue.done and queue.progress == "3 of 3 reviewed"
    assert store.labels[[7, 2, 40]].tolist() == [1, 0, 0]
    assert [store.provenance(r)["source"] for r in (7, 2, 40)] == ["review"] * 3
    assert store.provenance(2)["note"] == "kept"
    with pytest.raises(XLabelError, match="done"):
        queue.keep()


def test_undo_takes_back_the_store_step_and_the_queue_place(setup):
    store, queue = setup
    queue.relabel()
    queue.undo()
    assert queue.current == 7 and queue.progress == "0 of 3 reviewed"
    assert store.labels[7] == 0 and store.provenance(7)["source"] == "manual"


def test_undo_refuses_to_undo_someone_elses_change(setup):
    store, queue = setup
    queue.relabel()
    store.assign([30], "bad")  # e.g. from the flux scatter
    queue.press("u")          # the key path shows the error instead of raising
    assert "changed since" in queue.status
    assert store.labels[30] == 1 and store.labels[7] == 1 and queue.position == 1


def test_keys(setup):
    store, queue = setup
    queue.press("2")      # class 2 = bad
    queue.press("k")
    queue.press("r")
    assert store.labels[[7, 2, 40]].tolist() == [1, 0, 1]
    queue.press("u")
    assert queue.current == 40 and store.labels[40] == 0


def test_the_key_pad_forwards_front_end_messages(setup):
    store, queue = setup
    queue.key_pad._message(queue.key_pad, {"type": "key", "key": "r"}, [])
    assert store.labels[7] == 1


@pytest.mark.parametrize("suspects, message", [
    (pd.DataFrame({"frame": [1]}), "'row' column"),
    ([99], "outside"),
    (pd.DataFrame({"row": [1], "suggested": ["maybe"]}), "not classes"),
])
def test_bad_suspects_are_clear_errors(suspects, message):
    with pytest.raises(XLabelError, match=message):
        ReviewQueue(LabelStore(10), suspects)


def test_active_learning_suggestions_feed_the_queue():
    from xlabel.review import DEFAULT_COLUMNS, next_to_label
    scans = [make_scan(300, (16, 16), seed=s, name=f"s{s}", losses=3) for s in (1, 2)]
    features = frame_stats([s.source() for s in scans], progress=False)
    truth = np.concatenate([s.truth["label"] for s in scans]).astype(object)
    labels = np.full(len(truth), "", dtype=object)
    known = np.r_[np.flatnonzero(truth == "bad")[::3], np.flatnonzero(truth == "good")[::20]]
    labels[known] = truth[known]
    store = LabelStore(len(truth), frames=features[["scan", "frame"]])
    store.assign(known[truth[known] == "bad"], "bad")
    store.assign(known[truth[known] == "good"], "good")
    picks = next_to_label(features[DEFAULT_COLUMNS], labels, ("good", "bad"), n=5)
    queue = ReviewQueue(store, picks, features=features)
    for row in picks["row"]:
        assert queue.current == row
        queue.relabel(truth[row])
    assert queue.done
    assert (store.labels[picks["row"]] >= 0).all()
    assert {store.provenance(r)["source"] for r in picks["row"]} == {"review"}


def test_an_audit_sample_opens_in_the_queue():
    from xlabel.review import audit_sample, audit_summary
    scan = make_scan(300, (16, 16), seed=5, name="s5", losses=2)
    truth = scan.truth["label"].to_numpy()
    predicted = truth.copy()
    predicted[np.flatnonzero(truth == "good")[::40]] = "bad"  # the filter dropped good frames
    result = pd.DataFrame({"frame": np.arange(300), "prediction": predicted,
                           "keep": predicted == "good"})
    audit = audit_sample(result, 8, "good", ("good", "bad"), scan="s5", seed=1)
    store = LabelStore(300)
    queue = ReviewQueue(store, audit, source=scan.source())
    for row in audit["row"]:   # the expert: the prediction if right, else the true class
        assert queue.current == row
        queue.relabel() if predicted[row] == truth[row] else queue.relabel(truth[row])
    judged = [store.class_name(int(store.labels[r])) for r in audit["row"]]
    assert judged == truth[audit["row"]].tolist()
    summary = audit_summary(audit, judged)
    dropped_good = int(((~audit["keep"]) & (truth[audit["row"]] == "good")).sum())
    assert summary["false_reject"]["errors"] == dropped_good > 0
    assert summary["false_keep"]["errors"] == 0


def test_labeling_queue_refills_with_the_next_uncertain_frames():
    from xlabel.synth import FAULT_CLASSES, make_fault_scan
    scan = make_fault_scan(400, (16, 16), seed=2)
    truth = scan.truth["fault"].to_numpy(object)
    features = frame_stats(scan.source(), progress=False)
    store = LabelStore(400, classes=FAULT_CLASSES)
    queue = ReviewQueue.to_label(store, features, n=6, source=scan.source())
    assert queue.progress == "0 of 6 labeled" and len(set(queue.rows)) == 6
    with pytest.raises(XLabelError, match="unlabeled: choose its class"):
        queue.keep()
    with pytest.raises(XLabelError, match="finish this batch first"):
        queue.next_batch()
    for batch in range(3):
        for row in queue.rows[queue.position:]:
            queue.relabel(truth[row])
        queue.next_batch()
    rows = queue.rows
    assert len(rows) == 24 and len(set(rows)) == 24          # every batch: new frames
    assert queue.progress == "18 of 24 labeled"
    labeled = rows[:18]
    assert [store.class_name(int(i)) for i in store.labels[labeled]] == truth[labeled].tolist()
    assert {store.provenance(int(r))["source"] for r in labeled} == {"review"}
    assert (store.labels[rows[18:]] == -1).all()              # the new batch is unlabeled
    assert len(set(truth[labeled])) >= 3                      # the start finds rare faults
    queue.undo()                                              # across the batch boundary
    assert queue.position == 17 and store.labels[rows[17]] == -1


def test_a_suspect_queue_has_no_next_batch():
    store = LabelStore(5)
    queue = ReviewQueue(store, [1])
    queue.relabel("bad")
    with pytest.raises(XLabelError, match="no refill"):
        queue.next_batch()
    with pytest.raises(XLabelError, match="lacks columns"):
        ReviewQueue.to_label(store, pd.DataFrame({"mean": np.zeros(5)}))


def test_labeling_queue_asks_for_the_frames_learning_curve_simulates():
    """Notebook 9 relies on it: the queue with seed s is learning_curve(order="uncertainty",
    seed=s), batch for batch."""
    from xlabel.active import learning_curve
    from xlabel.synth import FAULT_CLASSES, make_fault_scan
    scans = [make_fault_scan(300, (16, 16), seed=s) for s in (4, 5)]
    features = frame_stats([s.source() for s in scans], progress=False)
    truth = np.concatenate([s.truth["fault"] for s in scans]).astype(object)
    columns = ["flux_rel", "flux_rank", "frac_saturated", "frac_zero"]
    asked = []

    def ask(rows, suggested):
        asked.append(sorted(rows.tolist()))
        return truth[rows]
    learning_curve(features[columns], truth, features[columns], truth, features["scan"],
                   start=6, batch=6, rounds=2, classes=FAULT_CLASSES, ask=ask, seed=3)
    store = LabelStore(len(truth), classes=FAULT_CLASSES)
    queue = ReviewQueue.to_label(store, features, columns, n=6, seed=3)
    for batch in asked:
        assert sorted(queue.rows[queue.position:].tolist()) == batch
        for row in queue.rows[queue.position:]:
            queue.relabel(truth[row])
        if len(queue.rows) < 18:
            queue.next_batch()
