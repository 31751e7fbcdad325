"""FluxScatter's Python side, driven through the same messages the browser sends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlabel.errors import LabelError, XLabelError
from xlabel.labels import LabelStore
from xlabel.widgets import FluxScatter


def make_features(n=200, seed=0):
    rng = np.random.default_rng(seed)
    mean = 1000 + rng.normal(0, 5, n)
    mean[:10] = np.linspace(0, 900, 10)
    return pd.DataFrame({"scan": "s1", "frame": np.arange(n), "mean": mean,
                         "std": rng.random(n), "problem": ""})


@pytest.fixture
def store():
    return LabelStore(200, classes=("good", "bad"))


@pytest.fixture
def scatter(store):
    return FluxScatter(store, make_features())


def lasso(widget, indices, panel=0):
    """What the front end sends after a lasso: Int32 indices as one binary buffer."""
    buffer = memoryview(np.asarray(indices, dtype=np.int32).tobytes())
    widget.plot._handle_custom_msg({"type": "selected", "panel": panel}, [buffer])


def click(widget, button_id):
    widget.plot._handle_custom_msg({"type": "button", "id": button_id}, [])


def decode(message):
    content, buffers = message
    return content, [bytes(b) for b in buffers]


def test_lasso_then_button_assigns_manual(scatter, store):
    lasso(scatter, [3, 1, 2])
    assert scatter.selected.tolist() == [1, 2, 3]
    assert scatter.status.startswith("3 selected")
    click(scatter, "assign:1")
    assert np.flatnonzero(store.labels == 1).tolist() == [1, 2, 3]
    assert {store.provenance(i)["source"] for i in (1, 2, 3)} == {"manual"}
    assert "assigned 3 frame(s)" in scatter.status


def test_recolor_sends_only_changed_points_binary(scatter, store):
    scatter.select([5, 6])
    scatter.assign("bad")
    content, buffers = decode(scatter.plot.last_message)
    assert content == {"type": "update", "panel": 0, "full": False, "sources": True,
                       "palette": False}
    assert np.frombuffer(buffers[0], np.int32).tolist() == [5, 6]
    assert np.frombuffer(buffers[1], np.int16).tolist() == [1, 1]
    assert [store.source_names[s] for s in np.frombuffer(buffers[2], np.int8)] == ["manual"] * 2
    counts = {row["name"]: row["count"] for row in scatter.plot.legends[0]}
    assert counts == {"good": 0, "bad": 2, "unlabeled": 198}


def test_large_change_sends_whole_label_array(scatter, store):
    store.assign(np.arange(150), "good", source="kmeans")
    content, buffers = decode(scatter.plot.last_message)
    assert content["full"] is True
    codes = np.frombuffer(buffers[0], np.int16)
    assert codes.tolist() == store.labels.tolist()


def test_two_views_follow_one_store_and_undo(store):
    features = make_features()
    left, right = FluxScatter(store, features), FluxScatter(store, features, y="std")
    left.select(range(10))
    step = left.assign("bad")
    content, buffers = decode(right.plot.last_message)
    assert np.frombuffer(buffers[0], np.int32).tolist() == list(range(10))
    assert right.undo() == step
    assert store.counts()["bad"] == 0
    content, buffers = decode(left.plot.last_message)
    assert np.frombuffer(buffers[1], np.int16).tolist() == [-1] * 10
    click(left, "redo")
    assert store.counts()["bad"] == 10
    assert "redo" in right.status


def test_programmatic_select_drives_browser_selection(scatter):
    scatter.select(np.arange(200) % 7 == 0)
    content, buffers = decode(scatter.plot.last_message)
    assert content == {"type": "select"}
    assert np.frombuffer(buffers[0], np.int32).tolist() == list(range(0, 200, 7))
    click(scatter, "clear")
    assert scatter.selected.size == 0


def test_empty_selection_and_unknown_class(scatter, store):
    with pytest.raises(LabelError, match="nothing selected"):
        scatter.assign("bad")
    assert "nothing selected" in scatter.status
    click(scatter, "assign:1")            # from the UI: a status message, not an exception
    assert "nothing selected" in scatter.status
    scatter.select([1])
    with pytest.raises(XLabelError, match="unknown class 'ugly'"):
        scatter.assign("ugly")
    assert "unknown class" in scatter.status
    assert store.counts()["unlabeled"] == 200


def test_bad_input_is_refused_clearly(store):
    features = make_features()
    with pytest.raises(LabelError, match="199 rows but the LabelStore has 200"):
        FluxScatter(store, features.iloc[:199])
    with pytest.raises(LabelError, match="'flux' is not a numeric column"):
        FluxScatter(store, features, y="flux")
    scatter = FluxScatter(store, features)
    with pytest.raises(LabelError, match="out of range"):
        scatter.select([0, 200])
    with pytest.raises(LabelError, match="'problem' is not a numeric column"):
        scatter.y = "problem"
    lasso(scatter, [5, 999])              # a broken front end message: status, no crash
    assert "outside" in scatter.status


def test_non_finite_values_are_flagged_not_dropped(store):
    features = make_features()
    features.loc[[4, 8], "mean"] = [np.nan, np.inf]
    scatter = FluxScatter(store, features)
    assert "2 frame(s) with NaN/inf mean" in scatter.status
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    content, buffers = decode(scatter.plot.last_message)
    assert content["n"] == 200
    y = np.frombuffer(buffers[1], np.float32)
    assert np.isnan(y[4]) and np.isinf(y[8]) and len(y) == 200


def test_data_message_is_binary_and_complete(scatter, store):
    store.assign([0, 1], "bad")
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    content, buffers = decode(scatter.plot.last_message)
    assert content["type"] == "data" and content["panels"] == 1
    assert content["scans"] == ["s1"] and "manual" in content["source_names"]
    x, y = np.frombuffer(buffers[0], np.float32), np.frombuffer(buffers[1], np.float32)
    assert x.tolist() == list(range(200))
    np.testing.assert_allclose(y, make_features()["mean"], rtol=1e-6)
    assert np.frombuffer(buffers[5], np.int16)[:3].tolist() == [1, 1, -1]


def test_plotly_js_is_served_from_the_package(scatter):
    scatter.plot._handle_custom_msg({"type": "need_plotly"}, [])
    content, buffers = scatter.plot.last_message
    assert content == {"type": "plotly"}
    assert b"plotly.js v" in bytes(buffers[0][:200]) and buffers[0].nbytes > 1_000_000


def test_axes_log_and_color_controls(store):
    features = pd.concat([make_features(100), make_features(100, seed=1).assign(scan="s2")])
    scatter = FluxScatter(store, features)
    scatter.y = "std"
    content, buffers = decode(scatter.plot.last_message)
    assert content["type"] == "xy"
    np.testing.assert_allclose(np.frombuffer(buffers[1], np.float32),
                               features["std"].to_numpy(), rtol=1e-6)
    scatter.log_y = True
    assert scatter.plot.log_y is True
    assert scatter.plot.color_options == ["label", "scan"]
    scatter.color_by = "scan"
    content, buffers = decode(scatter.plot.last_message)
    assert content["palette"] and np.frombuffer(buffers[0], np.int16)[[0, 150]].tolist() == [0, 1]
    assert [row["name"] for row in scatter.plot.legends[0]][:2] == ["s1", "s2"]
    with pytest.raises(LabelError, match="color_by"):
        scatter.color_by = "cluster"


def test_selection_shows_thumbnails_in_a_gallery(store):
    from xlabel.io.base import ArraySource

    frames = np.arange(200 * 16, dtype=np.uint16).reshape(200, 4, 4)
    scatter = FluxScatter(store, make_features(), source=ArraySource(frames), n_thumbnails=3)
    lasso(scatter, [40, 7, 9, 12])
    assert scatter.gallery is not None
    assert scatter.gallery.indices.tolist() == [7, 9, 12, 40]     # all, paged by 3
    assert scatter.gallery.page_indices.tolist() == [7, 9, 12]
    lasso(scatter, [100, 101])
    assert scatter.gallery.indices.tolist() == [100, 101]


def test_close_stops_observing(store):
    scatter = FluxScatter(store, make_features())
    scatter.close()
    store.assign([0], "bad")            # must not try to message a closed widget
    assert store.counts()["bad"] == 1
