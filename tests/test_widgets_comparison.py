"""ClusterComparison's Python side, driven through the browser's messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlabel.cluster import compare
from xlabel.errors import LabelError
from xlabel.labels import LabelStore
from xlabel.widgets import ClusterComparison

from .test_widgets_scatter import click, decode, lasso


@pytest.fixture
def scene():
    rng = np.random.default_rng(3)
    n = 120
    mean = np.where(np.arange(n) < 30, rng.normal(100, 5, n), rng.normal(1000, 5, n))
    features = pd.DataFrame({"scan": "s", "frame": np.arange(n), "mean": mean})
    a = (mean < 500).astype(np.int64)                # kmeans: 1 = dark = "bad"
    b = a.copy()
    b[[40, 41, 42]] = 1                              # dbscan disagrees on three frames
    b[[50]] = -1                                     # and calls one noise
    return features, a, b


def make(scene, store=True):
    features, a, b = scene
    labels = LabelStore(len(features), classes=("good", "bad")) if store else None
    view = ClusterComparison(features, a, b, store=labels, names=("kmeans", "dbscan"))
    return view, labels


def test_metrics_table_and_disagreements(scene):
    view, _ = make(scene)
    expected = compare(scene[1], scene[2])
    assert view.disagreements.tolist() == [40, 41, 42, 50]
    assert f"ARI = {expected.ari:.3f}" in view.table.value
    assert f"NMI = {expected.nmi:.3f}" in view.table.value
    click(view, "disagree")
    assert view.selected.tolist() == [40, 41, 42, 50]
    content, buffers = decode(view.plot.last_message)
    assert content == {"type": "select"}
    assert np.frombuffer(buffers[0], np.int32).tolist() == [40, 41, 42, 50]


def test_lasso_in_either_panel_is_the_shared_selection(scene):
    view, _ = make(scene)
    lasso(view, [5, 6], panel=1)
    assert view.selected.tolist() == [5, 6]
    lasso(view, [7], panel=0)
    assert view.selected.tolist() == [7]
    assert view.plot.panels == ["kmeans", "dbscan", "labels"]


def test_adopt_left_right_and_selection_record_the_source(scene):
    view, store = make(scene)
    click(view, "adopt:right")
    _, a, b = scene
    expected = np.where(b >= 0, b, -1)
    assert store.labels.tolist() == expected.tolist()
    assert store.provenance(0)["source"] == "dbscan"
    assert store.provenance(50)["source"] == ""       # noise is left alone
    content, buffers = decode(view.plot.last_message)
    assert content["panel"] == 2 and content["full"] is True
    view.select([40, 41])
    click(view, "adopt-sel:left")
    assert store.labels[[40, 41, 42]].tolist() == [0, 0, 1]
    assert store.provenance(40)["source"] == "kmeans"
    content, buffers = decode(view.plot.last_message)
    assert content["full"] is False
    assert np.frombuffer(buffers[0], np.int32).tolist() == [40, 41]
    counts = {row["name"]: row["count"] for row in view.plot.legends[2]}
    assert counts == store.counts()
    click(view, "undo")
    assert store.labels[[40, 41]].tolist() == [1, 1]


def test_selection_to_a_class_and_empty_selection(scene):
    view, store = make(scene)
    click(view, "adopt-sel:left")
    assert "nothing selected" in view.status
    with pytest.raises(LabelError, match="nothing selected"):
        view.adopt("left", selection_only=True)
    view.select([1, 2])
    view.assign("bad")
    assert store.provenance(1)["source"] == "manual" and store.counts()["bad"] == 2


def test_bad_input(scene):
    features, a, b = scene
    with pytest.raises(LabelError, match="has shape"):
        ClusterComparison(features, a[:-1], b)
    with pytest.raises(LabelError, match="integer cluster ids"):
        ClusterComparison(features, a.astype(float), b)
    with pytest.raises(LabelError, match="two different"):
        ClusterComparison(features, a, b, names=("x", "x"))
    with pytest.raises(LabelError, match="119 frames"):
        ClusterComparison(features, a, b, store=LabelStore(119))
    view, _ = make(scene, store=False)
    with pytest.raises(LabelError, match="no LabelStore"):
        view.adopt("left")
    with pytest.raises(LabelError, match="side must be"):
        make(scene)[0].adopt("middle")
    three = a.copy()
    three[0] = 2                                     # a cluster with no class
    view = ClusterComparison(features, three, b, store=LabelStore(120))
    with pytest.raises(LabelError, match="not class indices"):
        view.adopt("left")
    assert "not class indices" in view.status


def table_cells(markup, table_class):
    """Rows of cell texts of the HTML table with class ``table_class`` (stdlib parser)."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.inside, self.cell = [], False, None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.inside = table_class in dict(attrs).get("class", "")
            elif self.inside and tag == "tr":
                self.rows.append([])
            elif self.inside and tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False
            elif self.inside and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None

    parser = Cells()
    parser.feed(markup)
    return parser.rows


def test_contingency_and_metrics_tables_name_their_rows_and_columns(scene):
    view, _ = make(scene)
    rows = table_cells(view.table.value, "xlabel-contingency")
    assert rows[0] == ["kmeans ↓ · dbscan →", "noise", "cluster 0", "cluster 1", "total"]
    assert [row[0] for row in rows[1:]] == ["kmeans cluster 0", "kmeans cluster 1", "total"]
    assert {len(row) for row in rows} == {5}                      # aligned: no ragged rows
    expected = compare(scene[1], scene[2]).table
    assert [[int(v) for v in row[1:4]] for row in rows[1:3]] == expected.to_numpy().tolist()
    assert rows[-1][1:] == ["1", "86", "33", "120"]
    metrics = table_cells(view.table.value, "xlabel-metrics")
    assert [row[0] for row in metrics] == ["adjusted Rand index (ARI)",
                                           "normalized mutual information (NMI)",
                                           "frames that disagree"]
    assert metrics[2][1] == "4 (3.3%)"
    assert 'style="' in view.table.value and "text-align:right" in view.table.value


def test_cluster_legends_have_no_empty_entries(scene):
    features, a, _ = scene
    view = ClusterComparison(features, a, a.copy(), names=("kmeans", "dbscan"))  # no noise
    for entries in view.plot.legends:
        assert all(entry["count"] > 0 for entry in entries)
        assert "noise" not in [entry["name"] for entry in entries]
    view, _ = make(scene)
    assert [(e["name"], e["count"]) for e in view.plot.legends[1]] == [("0", 86), ("1", 33),
                                                                      ("noise", 1)]
