"""FluxScatter's Python side, driven through the same messages the browser sends."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xlabel.errors import LabelError, XLabelError
from xlabel.labels import LabelStore
from xlabel.widgets import FluxScatter
from xlabel.widgets._scatter_base import plotly_js_bytes


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
    assert content == {"type": "plotly", "bundle": "full"}
    assert b"plotly.js v" in bytes(buffers[0][:200]) and buffers[0].nbytes > 4_000_000


def _plotly_version(header: bytes) -> str:
    return re.search(rb"v(\d+\.\d+\.\d+)", header).group(1).decode()


def test_raster_plots_get_the_basic_bundle_of_the_same_plotly_js(scatter):
    scatter.plot._handle_custom_msg({"type": "need_plotly", "bundle": "basic"}, [])
    content, buffers = scatter.plot.last_message
    assert content == {"type": "plotly", "bundle": "basic"}
    basic = bytes(buffers[0])
    assert b"plotly.js (basic" in basic[:200] and len(basic) < 2_000_000
    # The vendored bundle must follow the plotly package's (re-vendor it on an upgrade:
    # npm pack plotly.js-basic-dist-min@<version>).
    assert _plotly_version(basic[:200]) == _plotly_version(plotly_js_bytes()[:200])
    with pytest.raises(ValueError, match="unknown plotly.js bundle"):
        plotly_js_bytes("gl3d")


def test_both_plotly_bundles_have_the_wrapper_the_page_compiles_eagerly():
    """The page parenthesizes plotly's UMD factory so that V8 parses it once (~1.45x faster
    evaluation, bench/bench_plotly_eval.py); on any other wrapper it silently evaluates the
    bundle as it is. A plotly upgrade that changes the wrapper must fail here."""
    from xlabel.widgets._scatter_base import STATIC

    code = (STATIC / "scatter.js").read_text()
    factory = re.search(r"const UMD_FACTORY = '([^']+)';", code).group(1)
    end = re.search(r'const UMD_END = "([^"]+)";', code).group(1)
    for bundle in ("basic", "full"):
        source = plotly_js_bytes(bundle).decode()
        assert source.count(factory) == 1, bundle
        assert source.rstrip().endswith(end), bundle


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


def test_scan_count_names_the_scans_coloring_by_scan_shows(store):
    """The constructor counts scans without per-frame codes; it must count the names that
    coloring by scan shows (as text: 7 and "7" are one scan)."""
    from xlabel.widgets._scatter_base import scan_codes, scan_count

    one = make_features(200).assign(scan=[7, "7"] * 100)
    assert scan_count(one) == len(scan_codes(one)[1]) == 1
    assert FluxScatter(store, one).plot.color_options == ["label"]
    two = make_features(200).assign(scan=["a", "b"] * 100)
    assert scan_count(two) == len(scan_codes(two)[1]) == 2
    assert scan_count(make_features(200).drop(columns="scan")) == 1


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


# ---------------------------------------------------------------- kernel raster (issue 15)

VIEW = {"type": "view", "x0": -10.0, "x1": 210.0, "y0": -50.0, "y1": 1100.0,
        "width": 440, "height": 230}


def raster_scatter(store, features=None, **kwargs):
    scatter = FluxScatter(store, make_features() if features is None else features,
                          raster=True, **kwargs)
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    scatter.plot._handle_custom_msg(dict(VIEW), [])
    return scatter


def png_pixels(buffer):
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(bytes(buffer))).convert("RGBA"))


def polygon(widget, xs, ys, panel=0):
    """What the raster front end sends after a lasso: the outline in axis units."""
    buffers = [memoryview(np.asarray(v, dtype=np.float64).tobytes()) for v in (xs, ys)]
    widget.plot._handle_custom_msg({"type": "polygon", "panel": panel}, buffers)


def pixel_of(x, y, view=VIEW):
    col = int((x - view["x0"]) / (view["x1"] - view["x0"]) * view["width"])
    row = int((view["y1"] - y) / (view["y1"] - view["y0"]) * view["height"])
    return row, col


def test_raster_mode_is_chosen_by_size_and_sends_no_points(store):
    from xlabel.widgets._raster import RASTER_THRESHOLD

    assert not FluxScatter(store, make_features()).raster
    big = pd.DataFrame({"frame": np.arange(RASTER_THRESHOLD), "mean": np.ones(RASTER_THRESHOLD)})
    assert FluxScatter(LabelStore(RASTER_THRESHOLD), big).raster
    scatter = FluxScatter(store, make_features(), raster=True)
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    content, buffers = scatter.plot.last_message
    assert content["raster"] is True and buffers == [] and content["n"] == 200
    assert content["extent"]["x"] == [0.0, 199.0]
    # The extent is in the widget's first state too: the page asks for the first image
    # before the data message arrives (it may wait behind plotly.js's evaluation).
    assert scatter.plot.extent == content["extent"]
    scatter.log_y = True
    assert scatter.plot.extent == scatter.plot.last_message[0]["extent"]
    assert scatter.plot.extent["y"][0] > 0
    assert FluxScatter(store, make_features()).plot.extent == {}


def test_raster_polygon_selects_exact_frames_and_redraws_the_image(store):
    scatter = raster_scatter(store)
    content, buffers = scatter.plot.last_message
    assert content["type"] == "image" and content["reason"] == "view"
    assert png_pixels(buffers[0]).shape == (230, 440, 4)
    # A triangle around frames 3..5 (the ramp: means 300, 400, 500).
    polygon(scatter, [2.5, 5.5, 5.5], [250.0, 250.0, 560.0])
    mean = make_features()["mean"].to_numpy()
    inside = [i for i in (3, 4, 5) if mean[i] - 250 <= (i - 2.5) / 3.0 * 310]
    assert scatter.selected.tolist() == inside
    content, buffers = scatter.plot.last_message
    assert content["reason"] == "select"
    click(scatter, "assign:1")
    assert np.flatnonzero(store.labels == 1).tolist() == inside
    content, buffers = scatter.plot.last_message
    assert content["reason"] == "update"
    red = png_pixels(buffers[0])[pixel_of(inside[0], mean[inside[0]])]
    assert red.tolist() == [214, 39, 40, 255]


def test_raster_lone_frame_in_a_crowd_stays_visible(store):
    features = make_features()
    features.loc[100:, "mean"] = 1000.0           # one dense blob of identical frames
    store.assign(range(10, 200), "good", source="kmeans")
    store.assign([150], "bad")
    scatter = raster_scatter(store, features)
    image = png_pixels(scatter.plot.last_message[1][0])
    row, col = pixel_of(150, 1000.0)
    assert image[row, col, :3].tolist() == [214, 39, 40]     # bad on top of 99 good
    lone = pixel_of(0, features["mean"][0])                  # the ramp's first frame
    assert image[lone][3] == 255                              # opaque, a 5x5 dot
    assert (image[lone[0] - 2:lone[0] + 3, lone[1] - 2:lone[1] + 3, 3] == 255).all()


def test_raster_hover_finds_the_nearest_frame_in_the_kernel(store):
    scatter = raster_scatter(store)
    store.assign([4], "bad", note="checked")
    mean = make_features()["mean"][4]
    scatter.plot._handle_custom_msg({**VIEW, "type": "hover", "seq": 7, "cx": 4.2,
                                     "cy": float(mean) + 3}, [])
    content, _ = scatter.plot.last_message
    assert content["seq"] == 7 and content["index"] == 4
    assert content["lines"][:2] == ["frame 4 · scan s1", "frame: 4"]
    assert "labels: bad" in content["lines"] and "source: manual" in content["lines"]
    scatter.plot._handle_custom_msg({**VIEW, "type": "hover", "seq": 8, "cx": 100.0,
                                     "cy": 300.0}, [])
    assert scatter.plot.last_message[0]["index"] == -1


def test_raster_and_marker_modes_behave_the_same_for_code(store):
    features = make_features()
    other = LabelStore(200, classes=("good", "bad"))
    for widget, labels in ((FluxScatter(store, features, raster=False), store),
                           (FluxScatter(other, features, raster=True), other)):
        widget.select(np.arange(200) % 9 == 0)
        widget.assign("bad")
        widget.undo()
        widget.redo()
        widget.y = "std"
        widget.log_y = True
        assert widget.selected.tolist() == list(range(0, 200, 9))
        assert np.flatnonzero(labels.labels == 1).tolist() == list(range(0, 200, 9))
    assert store.counts() == other.counts()


def test_raster_axis_change_and_log_y_remap_in_the_kernel(store):
    features = make_features()
    features.loc[7, "std"] = -1.0                     # not plottable on a log axis
    scatter = raster_scatter(store, features)
    scatter.y = "std"
    content, _ = scatter.plot.last_message
    assert content["type"] == "xy" and content["extent"]["y"][0] == -1.0
    scatter.log_y = True
    content, _ = scatter.plot.last_message
    assert content["type"] == "xy"
    low = content["extent"]["y"][0]
    assert 0 < low < features["std"][features["std"] > 0].min()   # drawn at the edge
    # A box around the edge row selects the flagged frame (as drawn).
    edge = np.log10(low)
    polygon(scatter, [6.5, 7.5, 7.5, 6.5], [edge - 0.01, edge - 0.01, edge + 0.01, edge + 0.01])
    assert scatter.selected.tolist() == [7]


def test_raster_keeps_views_of_the_feature_columns():
    n = 1_000_000
    features = pd.DataFrame({"frame": np.arange(n), "mean": np.ones(n)})
    store = LabelStore(n)
    first, second = FluxScatter(store, features), FluxScatter(store, features)
    for widget in (first, second):
        assert np.shares_memory(widget.plot.raster.y, features["mean"].to_numpy())


def test_bad_raster_messages_do_not_crash(store):
    scatter = raster_scatter(store)
    scatter.plot._handle_custom_msg({"type": "view", "x0": 1, "x1": 1, "y0": 0, "y1": 1,
                                     "width": 10, "height": 10}, [])
    polygon(scatter, [1.0, 2.0], [1.0, 2.0])                  # not a polygon: selects nothing
    assert scatter.selected.tolist() == []
    scatter.plot._handle_custom_msg({"type": "hover"}, [])


def test_scatter_plot_uses_only_the_callbacks_it_is_given():
    from xlabel.widgets._scatter_base import ScatterCallbacks, ScatterPlot

    seen = []
    callbacks = ScatterCallbacks(data=lambda: ({"type": "data"}, []), codes=lambda: [],
                                 selected=lambda idx, panel: seen.append(("sel", idx.tolist(), panel)),
                                 button=lambda name: seen.append(("button", name)),
                                 describe=lambda i: [])
    plot = ScatterPlot(callbacks)
    plot._handle_custom_msg({"type": "selected", "panel": 1},
                            [memoryview(np.array([3, 4], np.int32).tobytes())])
    plot._handle_custom_msg({"type": "button", "id": "undo"}, [])
    plot._handle_custom_msg({"type": "ready"}, [])
    assert seen == [("sel", [3, 4], 1), ("button", "undo")]
    assert plot.last_message[0] == {"type": "data"}


def test_cluster_comparison_raster_draws_every_panel(store):
    from xlabel.widgets import ClusterComparison

    features = make_features()
    a = (features["mean"] > 500).to_numpy().astype(int)
    b = a.copy()
    b[:3] = 1
    view = ClusterComparison(features, a, b, store=store, raster=True)
    view.plot._handle_custom_msg({"type": "ready"}, [])
    view.plot._handle_custom_msg(dict(VIEW), [])
    content, buffers = view.plot.last_message
    assert content["type"] == "image" and len(buffers) == 3
    polygon(view, [-0.5, 2.5, 2.5, -0.5], [-10.0, -10.0, 250.0, 250.0], panel=1)
    assert view.selected.tolist() == [0, 1, 2]
    view.adopt("right", selection_only=True)
    assert store.labels[:3].tolist() == [1, 1, 1]
    assert view.plot.last_message[0]["reason"] == "update"


def test_raster_recolor_with_cached_pixels_matches_a_fresh_render(store):
    """Assign, undo and a view change redraw exactly what a render from scratch draws."""
    from xlabel.widgets._raster import View, render_rgba

    scatter = raster_scatter(store)
    layer = scatter.plot.raster
    palette = scatter.plot.palettes[0]
    view = View.from_message(VIEW)

    def fresh():
        return render_rgba(layer.x, layer.y, layer.x_axis, layer.y_axis, store.labels, palette,
                           view, scatter._selected)

    polygon(scatter, [2.5, 30.5, 30.5, 2.5], [-100.0, -100.0, 2000.0, 2000.0])
    click(scatter, "assign:1")
    assert np.array_equal(png_pixels(scatter.plot.last_message[1][0]), fresh())
    click(scatter, "undo")
    assert np.array_equal(png_pixels(scatter.plot.last_message[1][0]), fresh())
    zoom = dict(VIEW, x0=0.0, x1=50.0)
    scatter.plot._handle_custom_msg(zoom, [])
    view = View.from_message(zoom)
    assert np.array_equal(png_pixels(scatter.plot.last_message[1][0]), fresh())


def test_code_counts_match_bincount():
    from xlabel.widgets._raster import code_counts

    rng = np.random.default_rng(3)
    codes = rng.integers(-1, 5, 1003).astype(np.int32)
    strided = np.stack([codes, codes * 0]).T[:, 0]            # like LabelStore.labels
    expected = np.bincount(codes + 1, minlength=6)
    assert code_counts(strided, 5).tolist() == expected.tolist()
    assert code_counts(codes, 3).tolist() == expected[:4].tolist()   # codes 3, 4 left out
    # numba's kernel (used once numba is loaded) and NumPy's (before) agree
    from xlabel.widgets._raster import _code_counts
    assert _code_counts(strided, 5).tolist() == expected.tolist()
    assert _code_counts(codes, 3).tolist() == expected[:4].tolist()


def test_rings_are_drawn_around_ringed_frames_on_top():
    from xlabel.widgets._raster import RING_RADIUS, View, make_axis, render_rgba

    x, y = np.array([10.0, 50.0, 90.0]), np.array([50.0, 50.0, 50.0])
    view = View(0.0, 100.0, 0.0, 100.0, 100, 100)
    image = render_rgba(x, y, make_axis(x), make_axis(y), np.array([0, 0, 0]),
                        ["#bbbbbb", "#1f77b4"], view, rings=[1])
    row, col = 50, 50                                                # pixel of (50, 50)
    assert image[row, col, :3].tolist() == [31, 119, 180]           # the dot itself
    ring = image[row - RING_RADIUS:row + RING_RADIUS + 1, col - RING_RADIUS:col + RING_RADIUS + 1]
    assert (ring[0, :, :3] == [214, 39, 40]).all() and (ring[-1, :, 3] == 255).all()
    assert image[50, 10, :3].tolist() == [31, 119, 180]             # unringed frames: no ring
    assert not (image[40:60, 0:25, 0] == 214).any()


def test_hover_thumbnail_on_demand_both_modes(store):
    from xlabel.io import ArraySource
    from xlabel.widgets._scatter_base import thumbnail_png

    frames = np.random.default_rng(0).poisson(5, (200, 16, 16)).astype(np.uint16)
    for raster in (False, True):
        scatter = FluxScatter(store, make_features(), source=ArraySource(frames), raster=raster)
        assert scatter.plot.thumbnails is True
        scatter.plot._handle_custom_msg({"type": "thumb", "index": 7}, [])
        content, buffers = scatter.plot.last_message
        assert content == {"type": "thumb", "index": 7}
        assert bytes(buffers[0]) == thumbnail_png(scatter.source, 7)
        assert png_pixels(buffers[0]).shape[:2] == (16, 16)
        scatter.plot._handle_custom_msg({"type": "thumb", "index": 999}, [])  # no such frame
        assert scatter.plot.last_message[0]["index"] == 7                     # ignored, no crash
    assert FluxScatter(store, make_features()).plot.thumbnails is False


def test_hover_thumbnail_failure_is_said_not_raised(store):
    class Broken:
        def __len__(self):
            return 200

        def __getitem__(self, index):
            raise OSError("disk gone")

    scatter = FluxScatter(store, make_features(), source=Broken(), raster=True)
    scatter.plot._handle_custom_msg({"type": "thumb", "index": 3}, [])
    content, buffers = scatter.plot.last_message
    assert content["index"] == 3 and "disk gone" in content["error"] and buffers == []


def test_cluster_comparison_raster_relabel_redraws_only_the_labels_panel(store):
    from xlabel.widgets import ClusterComparison
    from xlabel.widgets._raster import View, render_rgba

    features = make_features()
    a = (features["mean"].to_numpy() > 500).astype(int)
    view = ClusterComparison(features, a, a, store=store, raster=True)
    view.plot._handle_custom_msg({"type": "ready"}, [])
    view.plot._handle_custom_msg(dict(VIEW), [])
    calls = []
    render = view.plot.raster.render
    view.plot.raster.render = lambda codes, *args: calls.append(codes) or render(codes, *args)
    store.assign([3, 4], "bad")
    assert len(calls) == 1 and calls[0] is not a                # only the labels panel
    _, buffers = view.plot.last_message
    layer, v = view.plot.raster, View.from_message(VIEW)
    for k, codes in enumerate([view.a, view.b, store.labels]):  # every image is current
        expected = render_rgba(layer.x, layer.y, layer.x_axis, layer.y_axis, codes,
                               view.plot.palettes[k], v)
        assert np.array_equal(png_pixels(buffers[k]), expected)


def test_raster_png_is_a_palette_image_and_many_codes_still_exact():
    """Up to 126 codes the image is a palette PNG; beyond, RGBA: same pixels either way."""
    from xlabel.widgets._raster import (RasterLayer, View, png_indexed, render_indexed,
                                        render_rgba)

    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 100, 5000), rng.uniform(0, 100, 5000)
    view = View(0.0, 100.0, 0.0, 100.0, 120, 80)
    layer = RasterLayer(x, y)
    for n_codes in (3, 300):
        codes = rng.integers(-1, n_codes, 5000).astype(np.int32)
        palette = ["#bbbbbb"] + [f"#{(37 * k) % 256:02x}{(91 * k) % 256:02x}{k % 256:02x}"
                                 for k in range(n_codes)]
        entries, rgba = render_indexed(x, y, layer.x_axis, layer.y_axis, codes, palette, view)
        assert entries.dtype == (np.uint8 if n_codes < 126 else np.uint16)
        png = layer.render(codes, palette, view)
        assert (png[25] == 3) == (n_codes < 126)                 # PNG color type 3: palette
        expected = render_rgba(x, y, layer.x_axis, layer.y_axis, codes, palette, view)
        assert np.array_equal(png_pixels(png), expected)
        assert np.array_equal(png_pixels(png_indexed(entries, rgba)), expected)
        opaque = expected[..., 3] == 255                          # class colors stay exact
        colors = {tuple(c) for c in expected[opaque][:, :3]}
        assert colors <= {tuple(int(v, 16) for v in (c[1:3], c[3:5], c[5:7])) for c in palette}


def _stamped_composite(counts, selected, rank, any_selected, unselected_alpha, levels):
    """The composite's definition, pixel by pixel: each occupied pixel stamps its key over
    its 3x3 neighbourhood (5x5 when no other point lies within 2 px); the lowest key wins
    (equal keys draw the same entry, so the order does not matter)."""
    import math

    height, width, n = counts.shape
    total = counts.sum(axis=2)
    scale = 1.0 / math.log1p(max(total.max(), 1))
    image = np.zeros((height, width), np.uint8)
    won = np.full((height, width), np.iinfo(np.int64).max, np.int64)
    for r, c in zip(*np.nonzero(total)):
        present = [k for k in range(n) if counts[r, c, k]]
        k = min(present, key=lambda j: rank[j])
        box = total[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3]
        lone = np.count_nonzero(box) == 1
        sel = bool(selected[r, c]) or not any_selected
        key = (((0 if sel else 1) * (n + 1) + rank[k]) * 2 ** 32 + 2 ** 31
               - int(total[r, c])) * 2 + (0 if lone else 1)
        alpha = 1.0 if lone else 0.55 + 0.45 * math.log1p(total[r, c]) * scale
        if any_selected and not sel:
            alpha *= unselected_alpha
        entry = 1 + k * levels + min(levels, max(1, int(alpha * levels + 0.5))) - 1
        radius = 2 if lone else 1
        for rr in range(max(r - radius, 0), min(r + radius + 1, height)):
            for cc in range(max(c - radius, 0), min(c + radius + 1, width)):
                if key < won[rr, cc]:
                    won[rr, cc], image[rr, cc] = key, entry
    return image


@pytest.mark.parametrize("any_selected", [False, True])
def test_composite_matches_its_pixel_by_pixel_definition(any_selected):
    """The compiled composite and its NumPy twin draw what the definition says: a crowd,
    a thin streak, lone points (also at the edges) and a rare class in the crowd."""
    from xlabel.widgets._raster import _composite, _composite_numpy

    rng = np.random.default_rng(11)
    height, width, n = 23, 37, 4
    counts = np.zeros((height, width, n), np.uint32)
    counts[5:15, 4:20, 1] = rng.integers(0, 40, (10, 16))            # the crowd
    counts[8:12, 6:10, 3] = rng.integers(0, 2, (4, 4))               # a rare class in it
    counts[18, :, 2] = rng.integers(0, 3, width)                     # a thin, gappy streak
    for r, c in [(0, 0), (2, 30), (22, 36), (10, 33)]:               # lone points
        counts[r, c, rng.integers(0, n)] = rng.integers(1, 4)
    counts[4, 25, 1] = counts[4, 27, 1] = 1                          # two close, not lone
    rank = np.array([2, 3, 1, 0])
    selected = rng.random((height, width)) < 0.3 if any_selected else \
        np.zeros((height, width), bool)
    # What _aggregate hands the composite: points per pixel, the rarest code present.
    total = counts.sum(axis=2).astype(np.int32)
    best = np.where(counts > 0, rank, n).argmin(axis=2).astype(np.int32)
    best[total == 0] = -1
    image = np.zeros((height, width), np.uint8)
    _composite(total, best, selected, rank, any_selected, 0.2, 8, image)
    expected = _stamped_composite(counts, selected, rank, any_selected, 0.2, 8)
    assert np.array_equal(image, expected)
    image[:] = 0
    _composite_numpy(total, best, selected, rank, any_selected, 0.2, 8, image)
    assert np.array_equal(image, expected)
    assert (image[0:3, 0:3] > 0).all() and image[3, 3] == 0          # a lone corner point: 5x5


@pytest.mark.parametrize("log_y, n_classes", [(False, 4), (True, 4), (False, 20)])
def test_numpy_first_image_equals_the_compiled_render(log_y, n_classes):
    """The first image of a new widget (NumPy, before numba loads) is the image numba draws:
    NaN/inf at the edge, a selection, points outside the view, a rare class, zoomed in; few
    classes and many (the NumPy aggregation takes another path beyond 8)."""
    from xlabel.widgets._raster import RasterLayer, View, render_indexed

    rng = np.random.default_rng(8)
    n = 20_000
    x = np.arange(n, dtype=np.int64)
    y = np.abs(1000 + rng.normal(0, 30, n))
    y[:20] = np.linspace(0, 800, 20)
    y[[50, 60, 70]] = [np.nan, np.inf, -5.0]
    codes = rng.integers(-1, n_classes - 1, n).astype(np.int32)
    codes[5000] = n_classes - 1                                  # one frame of a rare class
    layer = RasterLayer(x, y, log_y=log_y)
    palette = ["#bbbbbb"] + [f"#{(40 * k) % 256:02x}{(90 * k) % 256:02x}{(150 + k) % 256:02x}"
                             for k in range(n_classes)]
    extent = layer.extent()
    y0, y1 = (np.log10(v) if log_y else v for v in (max(extent["y"][0], 1e-3), extent["y"][1]))
    for view in (View(-100.0, n + 100.0, y0, y1, 300, 120),
                 View(4000.0, 6000.0, y0, y1, 250, 90)):
        for selected in (None, np.arange(100, 3000)):
            got = render_indexed(x, y, layer.x_axis, layer.y_axis, codes, palette, view,
                                 selected, compiled=False)
            want = render_indexed(x, y, layer.x_axis, layer.y_axis, codes, palette, view,
                                  selected)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_thousands_of_codes_keep_each_frames_own_color():
    """3,000 classes (DBSCAN on a noisy scan): fewer opacity steps, never another class's
    color (the palette entries must fit the image's 16 bits)."""
    from xlabel.widgets._raster import RasterLayer, View, render_rgba

    n_codes = 3000
    cols, rows = 60, 50                                    # one lone frame per 6 x 6 px cell
    x = np.tile(np.arange(cols), rows) + 0.5
    y = np.repeat(np.arange(rows), cols) + 0.5
    codes = np.arange(n_codes, dtype=np.int32)
    palette = ["#bbbbbb"] + [f"#{k % 256:02x}{(k // 256) % 256:02x}{(7 * k) % 256:02x}"
                             for k in range(n_codes)]
    layer = RasterLayer(x, y)
    view = View(0.0, float(cols), 0.0, float(rows), 6 * cols, 6 * rows)
    image = render_rgba(x, y, layer.x_axis, layer.y_axis, codes, palette, view)
    r = ((rows - y) * 6).astype(int)
    c = (x * 6).astype(int)
    want = np.array([[int(p[1:3], 16), int(p[3:5], 16), int(p[5:7], 16)] for p in palette[1:]])
    assert np.array_equal(image[r, c, :3], want)
    assert (image[r, c, 3] == 255).all()                   # a lone frame is fully opaque


def test_background_warm_up_loads_what_the_first_real_image_needs(store):
    """numba compiles read-only and writable arrays apart: a specialization the warm-up
    missed is compiled (or loaded) by the user's first zoom, ~20 ms late. After the
    warm-up, drawing a FluxScatter (store labels: a read-only column) adds none."""
    from xlabel.widgets import _raster

    scatter = raster_scatter(store)
    assert scatter.plot._raster._compiled.wait(120)
    kernels = [_raster._code_counts, _raster._aggregate, _raster._composite,
               _raster._pixel_index, _raster._mark_selected, _raster._polygon_mask,
               _raster._nearest]
    before = [list(k.signatures) for k in kernels]
    scatter.select(np.arange(20, 40))
    scatter.plot._handle_custom_msg({**VIEW, "x0": 10.0, "x1": 90.0}, [])      # a zoom
    polygon(scatter, [0, 50, 50, 0], [0, 0, 2000, 2000])
    scatter.plot._handle_custom_msg({**VIEW, "type": "hover", "cx": 5.0, "cy": 1000.0}, [])
    for kernel, known in zip(kernels, before):
        assert list(kernel.signatures) == known, kernel


def test_warm_ups_give_back_the_thread_switch_interval():
    """Two widgets warming up at once shorten Python's switch interval for their first
    images and restore the user's once both are done."""
    import sys
    import time

    from xlabel.widgets import _raster

    def no_warm_up_running():     # earlier tests' layers may still be warming up (a cold
        deadline = time.monotonic() + 120       # numba cache compiles for seconds)
        while _raster._switch_holders[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        return not _raster._switch_holders[0]

    assert no_warm_up_running()
    before = sys.getswitchinterval()
    layers = [_raster.RasterLayer(np.arange(50.0), np.arange(50.0) ** k) for k in (1, 2)]
    for layer in layers:
        layer.start_warm_up()
    assert all(layer._compiled.wait(120) for layer in layers)     # set after restoring
    assert no_warm_up_running() and sys.getswitchinterval() == before


def test_numba_loads_at_import_and_draws_the_first_image():
    """numba's one-time load (~0.4 s) is paid when the widgets are imported, not by a plot,
    with the render kernels of the commonest first image (frame or float x, float y: the
    feature table's read-only columns). A new RasterLayer's first image is drawn by numba
    at once, also for other dtypes, and the warm-up of the other kernels starts only after
    it (a fresh process: nothing loaded before)."""
    script = """
import numpy as np
import pandas as pd
from xlabel.widgets import _raster
assert _raster.NUMBA_LOADED and _raster._code_counts.signatures
loaded = len(_raster._pixel_index.signatures)
features = pd.DataFrame({"frame": np.arange(500), "mean": np.ones(500)})
layer = _raster.RasterLayer(features["frame"].to_numpy(), features["mean"].to_numpy())
layer.render(np.zeros(500, np.int32), ["#bbbbbb", "#ff0000"],
             _raster.View(0.0, 500.0, 0.0, 500.0, 50, 40))
assert len(_raster._pixel_index.signatures) == loaded, "not loaded at import"
_raster.RasterLayer.WARM_UP_AFTER = 600.0
layer = _raster.RasterLayer(np.arange(500, dtype=np.float32), np.ones(500, np.float32))
assert not layer._warm_up_started
layer.render(np.zeros(500, np.int32), ["#bbbbbb", "#ff0000"],
             _raster.View(0.0, 500.0, 0.0, 500.0, 50, 40))
assert len(_raster._pixel_index.signatures) == loaded + 1, "NumPy drew it"
assert layer._warm_up_started
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_numba_that_cannot_load_leaves_numpy_drawing(monkeypatch, caplog):
    """Where numba cannot run, the import still succeeds, the log says why, and the NumPy
    twins draw every image."""
    from xlabel.widgets import _raster

    def broken(codes, n_codes):
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(_raster, "_code_counts", broken)
    assert _raster._load_numba() is False
    assert "could not be loaded" in caplog.text and "no LLVM today" in caplog.text
    monkeypatch.setattr(_raster, "NUMBA_LOADED", False)
    monkeypatch.setattr(_raster, "_pixel_index", broken)           # numba would fail here
    monkeypatch.setattr(_raster.RasterLayer, "WARM_UP_AFTER", 600.0)
    layer = _raster.RasterLayer(np.arange(1000.0), np.arange(1000.0))
    layer._warm_up_started = True                  # no warm-up thread in this test
    png = layer.render(np.zeros(1000, np.int32), ["#bbbbbb", "#ff0000"],
                       _raster.View(0.0, 1000.0, 0.0, 1000.0, 50, 40))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_raster_plot_of_a_kernel_sends_plotly_js_unasked(store, monkeypatch):
    """The basic bundle goes out with the first raster plot (the page would otherwise ask
    only once the cell that shows it is done); later plots wait to be asked."""
    from xlabel.widgets import _scatter_base

    monkeypatch.setattr(_scatter_base, "_PUSHED", [])
    first = FluxScatter(store, make_features(), raster=True)
    content, buffers = first.plot.last_message
    assert content == {"type": "plotly", "bundle": "basic"}
    assert bytes(buffers[0]) == plotly_js_bytes("basic")
    second = FluxScatter(store, make_features(), raster=True)
    assert second.plot.last_message is None
    assert FluxScatter(store, make_features()).plot.last_message is None     # markers
    second.plot._handle_custom_msg({"type": "need_plotly", "bundle": "basic"}, [])
    assert second.plot.last_message[0] == {"type": "plotly", "bundle": "basic"}


def test_a_failed_warm_up_leaves_numpy_drawing_without_waiting(monkeypatch, caplog):
    """If the warm-up cannot load the kernels, images still come, at once, and the log
    says why."""
    import time

    from xlabel.widgets._raster import RasterLayer, View

    def broken(self):
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(RasterLayer, "_load_kernels", broken)
    layer = RasterLayer(np.arange(1000.0), np.arange(1000.0))
    layer._warm_up_started = True
    layer._warm_up()                                # the warm-up thread's work, here
    start = time.monotonic()
    png = layer.render(np.zeros(1000, np.int32), ["#bbbbbb", "#ff0000"],
                       View(0.0, 1000.0, 0.0, 1000.0, 50, 40))
    assert time.monotonic() - start < 10 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not layer._compiled.is_set()
    assert "could not be loaded" in caplog.text and "no LLVM today" in caplog.text
