"""ConfusionMatrixViewer and PredictionScatter against scikit-learn and a live LabelStore."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from xlabel.errors import LabelError, XLabelError
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import ConfusionMatrixViewer, FrameGallery, PredictionScatter

CLASSES = ("good", "bad", "unsure")


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    n = 90
    truth = rng.integers(0, 3, n)
    preds = np.where(rng.random(n) < 0.7, truth, rng.integers(0, 3, n))
    truth_with_unlabeled = truth.copy()
    truth_with_unlabeled[[5, 17]] = -1
    store = LabelStore(n, classes=CLASSES)
    store.seed_from(truth_with_unlabeled, source="kmeans")
    frames = rng.poisson(50, size=(n, 8, 8)).astype(np.uint16)
    features = pd.DataFrame({"scan": "s", "frame": np.arange(n),
                             "mean": frames.reshape(n, -1).mean(1), "problem": ""})
    return store, preds, features, ArraySource(frames)


def sk_matrix(store, preds):
    labeled = store.labels >= 0
    return confusion_matrix(store.labels[labeled], preds[labeled], labels=[0, 1, 2])


def click(figure, true_name, pred_name):
    """Send a plotly click event through the FigureWidget's real message handler."""
    figure._handler_js2py_pointsCallback({"new": {
        "event_type": "plotly_click",
        "points": {"xs": [pred_name], "ys": [true_name], "point_indexes": [[0, 0]],
                   "trace_indexes": [0]}, "device_state": None, "selector": None}})


def test_matrix_and_scores_equal_sklearn(data):
    store, preds, features, source = data
    viewer = ConfusionMatrixViewer(store, preds, features, source)
    np.testing.assert_array_equal(viewer.matrix.to_numpy(), sk_matrix(store, preds))
    assert list(viewer.matrix.index) == list(CLASSES) == list(viewer.figure.data[0].x)
    labeled = store.labels >= 0
    precision, recall, f1, support = precision_recall_fscore_support(
        store.labels[labeled], preds[labeled], labels=[0, 1, 2], zero_division=np.nan)
    np.testing.assert_allclose(viewer.per_class["precision"], precision)
    np.testing.assert_allclose(viewer.per_class["recall"], recall)
    np.testing.assert_allclose(viewer.per_class["f1"], f1)
    np.testing.assert_array_equal(viewer.per_class["support"], support)
    assert "2 unlabeled frames not counted" in viewer.status
    assert "precision" in viewer._table.value and f"{recall[1]:.3f}" in viewer._table.value


def test_row_normalized_toggle(data):
    store, preds, features, source = data
    viewer = ConfusionMatrixViewer(store, preds, features, source)
    counts = sk_matrix(store, preds)
    assert np.array_equal(np.array(viewer.figure.data[0].z), counts)
    viewer._mode.value = "row-normalized"                   # the toggle in the UI
    z = np.array(viewer.figure.data[0].z)
    np.testing.assert_allclose(z, counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(z.sum(axis=1), 1.0)
    assert viewer.normalize and viewer.figure.data[0].text[0][0].endswith(f"({counts[0, 0]})")
    viewer.normalize = False
    assert np.array_equal(np.array(viewer.figure.data[0].z), counts)


def test_open_cell_shows_exactly_its_frames(data):
    store, preds, features, source = data
    viewer = ConfusionMatrixViewer(store, preds, features, source, per_page=100)
    expected = np.flatnonzero((store.labels == 1) & (preds == 0))
    assert viewer.open_cell("bad", "good").tolist() == expected.tolist()
    assert viewer.gallery.indices.tolist() == expected.tolist()
    caption = viewer.gallery.captions[0]
    assert caption.startswith(f"#{expected[0]} · flux ") and "label bad · pred good ≠" in caption
    click(viewer.figure, "unsure", "unsure")               # a click does the same
    expected = np.flatnonzero((store.labels == 2) & (preds == 2))
    assert viewer.gallery.indices.tolist() == expected.tolist()
    assert f"{expected.size} frame(s)" in viewer.status


def test_relabel_through_viewer_updates_store_and_matrix(data):
    store, preds, features, source = data
    viewer = ConfusionMatrixViewer(store, preds, features, source)
    other = FrameGallery(source, [], features, store)
    cell = viewer.open_cell("good", "bad")
    before = viewer.matrix.to_numpy().copy()
    viewer.gallery.select(cell[:2])
    viewer.gallery.relabel("bad")
    assert store.labels[cell[:2]].tolist() == [1, 1]
    assert {store.provenance(i)["source"] for i in cell[:2]} == {"manual"}
    after = viewer.matrix.to_numpy()
    assert after[0, 1] == before[0, 1] - 2 and after[1, 1] == before[1, 1] + 2
    np.testing.assert_array_equal(after, sk_matrix(store, preds))
    np.testing.assert_array_equal(np.array(viewer.figure.data[0].z), after)
    assert "2 of the" in viewer.status and "left this cell" in viewer.status
    # a change made elsewhere (another view, then undo from code) redraws the viewer too
    other.show([5])
    other.select([5])
    other.relabel("good")
    np.testing.assert_array_equal(viewer.matrix.to_numpy(), sk_matrix(store, preds))
    store.undo()
    store.undo()
    np.testing.assert_array_equal(np.array(viewer.figure.data[0].z), before)


def test_plain_label_arrays_and_bad_input(data):
    store, preds, features, source = data
    names = np.array(CLASSES, dtype=object)
    viewer = ConfusionMatrixViewer(names[store.labels[store.labels >= 0]],
                                   names[preds[store.labels >= 0]], classes=CLASSES)
    np.testing.assert_array_equal(viewer.matrix.to_numpy(), sk_matrix(store, preds))
    with pytest.raises(XLabelError, match="features has 89"):
        ConfusionMatrixViewer(store, preds, features.iloc[:89])
    with pytest.raises(LabelError, match="unknown class 'ugly'"):
        ConfusionMatrixViewer(store, ["ugly"] * len(preds))
    with pytest.raises(LabelError, match="NaN"):
        ConfusionMatrixViewer(store, np.where(np.arange(len(preds)) == 3, np.nan, preds))
    with pytest.raises(LabelError, match="unknown class"):
        viewer.open_cell("good", "ugly")
    click(viewer.figure, "good", "nope")
    assert "unknown class 'nope'" in viewer.status


def test_viewer_takes_a_trained_model(data):
    store, preds, features, source = data

    class ThresholdModel:                                   # a model: anything with predict()
        def predict(self, table):
            return np.where(table["mean"] > 50, "good", "bad")

    viewer = ConfusionMatrixViewer(store, ThresholdModel(), features)
    expected = np.where(features["mean"] > 50, 0, 1)
    np.testing.assert_array_equal(viewer.matrix.to_numpy(), sk_matrix(store, expected))
    with pytest.raises(XLabelError, match="pass features="):
        ConfusionMatrixViewer(store, ThresholdModel())


def test_prediction_scatter_marks_exactly_the_disagreements(data):
    store, preds, features, _ = data
    viewer = ConfusionMatrixViewer(store, preds, features)
    scatter = viewer.prediction_scatter()
    expected = np.flatnonzero((store.labels >= 0) & (store.labels != preds))
    ring = scatter.figure.data[-1]
    assert ring.name == "label disagrees" and ring.marker.symbol == "circle-open"
    assert list(ring.customdata) == expected.tolist() == viewer.misclassified.tolist()
    np.testing.assert_allclose(ring.y, features["mean"].to_numpy()[expected])
    for code, trace in enumerate(scatter.figure.data[:3]):      # colored by prediction
        assert list(trace.customdata) == np.flatnonzero(preds == code).tolist()
        assert trace.marker.color == store.colors[code]
    # fix one disagreement by relabeling it to its prediction: the ring goes away
    frame = int(expected[0])
    store.assign([frame], int(preds[frame]))
    assert frame not in list(scatter.figure.data[-1].customdata)
    assert len(scatter.figure.data[-1].customdata) == expected.size - 1
    assert f"{expected.size - 1} of 88 labeled frames disagree" in scatter.status


def test_prediction_scatter_flags_nan_flux():
    table = pd.DataFrame({"frame": np.arange(4), "mean": [10.0, np.nan, 30.0, 40.0]})
    scatter = PredictionScatter(table, ["good", "bad", "good", "good"], ["good", "good", "good", "bad"])
    assert scatter.disagreements.tolist() == [1, 3]
    nan_trace = scatter.figure.data[-2]
    assert list(nan_trace.customdata) == [1] and nan_trace.y[0] == 10.0
    assert "1 frames with NaN flux flagged" in scatter.status
    with pytest.raises(XLabelError, match="no 'flux' column"):
        PredictionScatter(table, ["good"] * 4, ["good"] * 4, y="flux")


def _raster_image(scatter, view):
    from io import BytesIO

    from PIL import Image

    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    scatter.plot._handle_custom_msg(dict(view, type="view"), [])
    content, buffers = scatter.plot.last_message
    assert content["type"] == "image"
    return np.asarray(Image.open(BytesIO(bytes(buffers[0]))).convert("RGBA"))


def _ring_at(image, x, y, view):
    col = int((x - view["x0"]) / (view["x1"] - view["x0"]) * view["width"])
    row = int((view["y1"] - y) / (view["y1"] - view["y0"]) * view["height"])
    top = image[row - 4, col - 4:col + 5, :3]
    return bool((top == [214, 39, 40]).all())


def test_prediction_scatter_raster_mode_behaves_like_markers(data):
    """Kernel raster (big scatters): same disagreements, rings in the image, live, hover."""
    store, preds, features, _ = data
    markers = PredictionScatter(features, preds, store)
    scatter = PredictionScatter(features, preds, store, raster=True)
    assert scatter.raster and not markers.raster and scatter.figure is None
    expected = np.flatnonzero((store.labels >= 0) & (store.labels != preds))
    assert scatter.disagreements.tolist() == markers.disagreements.tolist() == expected.tolist()
    assert scatter.status == markers.status
    mean = features["mean"].to_numpy()
    view = {"x0": -5.0, "x1": 95.0, "y0": float(mean.min()) - 5, "y1": float(mean.max()) + 5,
            "width": 1000, "height": 400}
    image = _raster_image(scatter, view)
    frame = int(expected[0])
    assert _ring_at(image, frame, mean[frame], view)
    agree = int(np.flatnonzero((store.labels == preds))[0])
    assert not _ring_at(image, agree, mean[agree], view)
    # relabel the frame to its prediction: the kernel redraws without its ring
    store.assign([frame], int(preds[frame]))
    content, buffers = scatter.plot.last_message
    assert content["reason"] == "update"
    assert not _ring_at(_raster_image(scatter, view), frame, mean[frame], view)
    assert scatter.status == markers.status
    assert scatter.plot.legends[0][-1]["count"] == expected.size - 1
    # hover: the kernel names frame, values, prediction, label and its source
    scatter.plot._handle_custom_msg({**view, "type": "hover", "seq": 1, "cx": float(frame),
                                     "cy": float(mean[frame])}, [])
    lines = scatter.plot.last_message[0]["lines"]
    assert lines[0] == f"frame {frame} · scan s"
    assert f"predicted: {CLASSES[preds[frame]]}" in lines and "source: manual" in lines


def test_prediction_scatter_raster_from_the_threshold_on():
    from xlabel.widgets._raster import RASTER_THRESHOLD

    n = RASTER_THRESHOLD
    table = pd.DataFrame({"frame": np.arange(n), "mean": np.r_[np.nan, np.ones(n - 1)]})
    scatter = PredictionScatter(table, np.zeros(n, int), np.zeros(n, int), classes=("a", "b"))
    assert scatter.raster
    assert "1 frames with NaN flux flagged" in scatter.status
    assert not PredictionScatter(table[:100], np.zeros(100, int), np.zeros(100, int),
                                 classes=("a", "b")).raster
