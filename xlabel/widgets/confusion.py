"""Confusion matrix of labels (a live LabelStore) vs predictions, and predictions over flux.

:class:`ConfusionMatrixViewer` shows a plotly heatmap (counts, or row-normalized
rates) with per-class precision/recall beside it. Clicking a cell (or calling
:meth:`ConfusionMatrixViewer.open_cell`) opens its frames in a
:class:`~xlabel.widgets.gallery.FrameGallery`, where frames can be relabeled;
relabels go through the store as ``manual`` and the matrix redraws.

:class:`PredictionScatter` is the domain's "predictions over average flux" plot:
frames colored by predicted class, with the frames whose prediction disagrees
with their label ringed in red.

>>> import numpy as np
>>> from xlabel.labels import LabelStore
>>> store = LabelStore(6)
>>> _ = store.seed_from(np.array([0, 0, 0, 1, 1, 1]))
>>> viewer = ConfusionMatrixViewer(store, ["good", "good", "bad", "bad", "bad", "good"])
>>> viewer.matrix.values.tolist()
[[2, 1], [1, 2]]
>>> viewer.open_cell("good", "bad").tolist()
[2]
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import WidgetArgumentError
from ..labels import LabelStore
from ._raster import RASTER_THRESHOLD, RasterLayer
from ._scatter_base import (UNLABELED_COLOR, ScatterCallbacks, ScatterPlot, fmt_value,
                            legend_entries)
from .gallery import (FrameGallery, StatusMixin, WeakObserver, check_lengths, class_indices,
                      guarded, require_columns)

__all__ = ["ConfusionMatrixViewer", "PredictionScatter", "confusion_counts", "per_class_scores"]

MODES = ("counts", "row-normalized")
DISAGREE_COLOR = "#d62728"


# ---------------------------------------------------------------- numbers

def confusion_counts(truth, predictions, n_classes) -> np.ndarray:
    """``(n_classes, n_classes)`` counts, rows = true class; frames with -1 on either side are left out.

    >>> confusion_counts(np.array([0, 1, 1, -1]), np.array([0, 0, 1, 1]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    used = (truth >= 0) & (predictions >= 0)
    codes = truth[used] * n_classes + predictions[used]
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(counts, classes) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from a confusion matrix (NaN where undefined).

    >>> per_class_scores(np.array([[3, 1], [0, 2]]), ("good", "bad")).round(3).values.tolist()
    [[1.0, 0.75, 0.857, 4.0], [0.667, 1.0, 0.8, 2.0]]
    """
    counts = np.asarray(counts, dtype=float)
    hits = np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / counts.sum(axis=0)
        recall = hits / counts.sum(axis=1)
        f1 = 2 * precision * recall / (precision + recall)
    f1[(precision == 0) & (recall == 0)] = 0.0
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                         "support": counts.sum(axis=1)}, index=pd.Index(classes, name="class"))


def row_rates(counts) -> np.ndarray:
    """Counts divided by their row sums (empty rows stay 0)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


# ---------------------------------------------------------------- inputs

def as_store(store_or_labels, classes=None, extra=()) -> LabelStore:
    """A LabelStore as given, or an in-memory one seeded (``source="import"``) from a label array.

    ``classes`` default: the store's classes, else the sorted names found in the
    labels and in ``extra`` (e.g. the predictions).
    """
    if isinstance(store_or_labels, LabelStore):
        if classes is not None and tuple(classes) != store_or_labels.classes:
            raise WidgetArgumentError(f"classes {tuple(classes)} differ from the store's "
                                      f"{store_or_labels.classes}")
        return store_or_labels
    labels = np.asarray(store_or_labels, dtype=object).ravel()
    if classes is None:
        names = {v for v in (*labels, *np.asarray(extra, dtype=object).ravel()) if isinstance(v, str)}
        if not names:
            raise WidgetArgumentError(
                "pass classes= (class names) when labels are given as indices")
        classes = tuple(sorted(names))
    store = LabelStore(len(labels), classes=classes)
    store.seed_from(class_indices(labels, store.classes, "labels"), source="import")
    return store


def resolve_predictions(predictions, store, features=None, source=None) -> np.ndarray:
    """Predicted class index per frame from an array, or from a trained model (``.predict``)."""
    if hasattr(predictions, "predict"):
        data = source if getattr(predictions, "uses_frames", False) else features
        if data is None:
            needed = "source" if getattr(predictions, "uses_frames", False) else "features"
            raise WidgetArgumentError(f"pass {needed}= so the model can predict")
        predictions = predictions.predict(data)
    predictions = np.asarray(predictions, dtype=object).ravel()
    check_lengths(store=store, predictions=predictions)
    return class_indices(predictions, store.classes, "predictions")


def _class_html(name, color):
    return f'<span style="color:{color}">{html.escape(name)}</span>'


# ---------------------------------------------------------------- viewer

class ConfusionMatrixViewer(StatusMixin, widgets.VBox):
    """Heatmap of true (store labels, live) vs predicted classes; click a cell to see and relabel its frames.

    Parameters
    ----------
    store_or_labels : LabelStore (live: relabels anywhere redraw the matrix) or one label per frame
        (names or indices; an in-memory store is made from it).
    predictions : predicted class per frame (names or indices), or a trained model with ``predict``
        (given ``features``, or ``source`` for frame models).
    features : optional ``frame_stats`` table (flux in captions, :meth:`prediction_scatter`).
    source : optional FrameSource for thumbnails in the cell gallery.
    classes : class names when labels are plain indices.
    normalize : start in row-normalized mode.

    >>> viewer = ConfusionMatrixViewer(["good", "bad", "bad"], ["good", "good", "bad"],
    ...                                classes=("good", "bad"))
    >>> viewer.normalize = True
    >>> viewer.rates.values.tolist(), list(viewer.figure.data[0].z[1])
    ([[1.0, 0.0], [0.5, 0.5]], [0.5, 0.5])
    """

    def __init__(self, store_or_labels, predictions, features=None, source=None, classes=None,
                 *, normalize=False, per_page=12, thumb_size=96):
        self._store = as_store(store_or_labels, classes, extra=_names_in(predictions))
        check_lengths(store=self._store, features=features, source=source)
        self._features = features
        self._predictions = resolve_predictions(predictions, self._store, features, source)
        self._status_text = ""
        self._open = None
        self._counts = self._compute()
        self.figure = self._make_figure()
        self._mode = widgets.ToggleButtons(options=MODES, value=MODES[int(bool(normalize))])
        self._mode.observe(lambda _: self._redraw_matrix(), names="value")
        self._table = widgets.HTML()
        self._cell_title = widgets.HTML()
        self.gallery = FrameGallery(source, (), features, self._store, per_page,
                                    predictions=self._predictions, thumb_size=thumb_size)
        self._status_html = widgets.HTML()
        side = widgets.VBox([self._mode, self._table])
        super().__init__([widgets.HBox([self.figure, side]), self._cell_title, self.gallery,
                          self._status_html])
        self._redraw_matrix()
        self._observer = WeakObserver(self._store, self._on_labels)
        self.set_status(self._coverage_text())

    # ---------------------------------------------------------------- public API
    @property
    def store(self) -> LabelStore:
        return self._store

    @property
    def classes(self) -> tuple:
        return self._store.classes

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class index per frame (read-only copy)."""
        out = self._predictions.copy()
        out.flags.writeable = False
        return out

    @property
    def matrix(self) -> pd.DataFrame:
        """Counts: rows = true class (store labels), columns = predicted class."""
        return pd.DataFrame(self._counts, index=pd.Index(self.classes, name="true"),
                            columns=pd.Index(self.classes, name="predicted"))

    @property
    def rates(self) -> pd.DataFrame:
        """Row-normalized matrix: the share of each true class predicted as each class."""
        return pd.DataFrame(row_rates(self._counts), index=self.matrix.index,
                            columns=self.matrix.columns)

    @property
    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1, support per class (NaN where undefined)."""
        return per_class_scores(self._counts, self.classes)

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes that have labeled frames."""
        recall = self.per_class["recall"].to_numpy()
        present = self._counts.sum(axis=1) > 0
        return float(recall[present].mean()) if present.any() else float("nan")

    @property
    def misclassified(self) -> np.ndarray:
        """Labeled frames whose prediction differs from the label (e.g. for GradCAMOverlay)."""
        labels = self._store.labels
        return np.flatnonzero((labels >= 0) & (self._predictions >= 0) & (labels != self._predictions))

    @property
    def normalize(self) -> bool:
        return self._mode.value == MODES[1]

    @normalize.setter
    def normalize(self, value: bool):
        self._mode.value = MODES[int(bool(value))]

    def cell_indices(self, true_class, pred_class) -> np.ndarray:
        """Frames labeled ``true_class`` and predicted ``pred_class`` (names or indices)."""
        truth, pred = self._store.class_index(true_class), self._store.class_index(pred_class)
        if truth < 0 or pred < 0:
            raise WidgetArgumentError(f"a cell needs two classes of {self.classes}, got "
                                      f"{true_class!r}, {pred_class!r}")
        return np.flatnonzero((self._store.labels == truth) & (self._predictions == pred))

    def open_cell(self, true_class, pred_class) -> np.ndarray:
        """Show the frames of one cell in the gallery (what a click on the cell does); returns them."""
        indices = self.cell_indices(true_class, pred_class)
        self._open = (self._store.class_index(true_class), self._store.class_index(pred_class))
        self.gallery.show(indices)
        truth, pred = (self.classes[i] for i in self._open)
        self._cell_title.value = (f"<b>true {html.escape(truth)}, predicted {html.escape(pred)}"
                                  f"</b>: {indices.size} frame(s)")
        self.set_status(f"cell true={truth}, predicted={pred}: {indices.size} frame(s)"
                        if indices.size else f"cell true={truth}, predicted={pred} is empty")
        return indices

    def prediction_scatter(self, x="frame", y="mean", **kwargs) -> "PredictionScatter":
        """The "predictions over flux" view of the same store and predictions."""
        if self._features is None:
            raise WidgetArgumentError("pass features= to the viewer to plot predictions over flux")
        return PredictionScatter(self._features, self._predictions, self._store, x=x, y=y, **kwargs)

    # ---------------------------------------------------------------- drawing
    def _compute(self):
        return confusion_counts(self._store.labels.astype(np.int64), self._predictions,
                                len(self.classes))

    def _make_figure(self):
        heatmap = go.Heatmap(x=list(self.classes), y=list(self.classes), colorscale="Blues",
                             texttemplate="%{text}", showscale=False,
                             hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>")
        figure = go.FigureWidget(data=[heatmap], layout=go.Layout(
            width=120 + 90 * len(self.classes), height=100 + 80 * len(self.classes),
            margin=dict(l=80, r=10, t=30, b=60), title="labels vs predictions",
            xaxis=dict(title="predicted", side="bottom"),
            yaxis=dict(title="true (labels)", autorange="reversed")))
        figure.data[0].on_click(self._on_click)
        return figure

    def _redraw_matrix(self):
        counts = self._counts
        if self.normalize:
            rates = row_rates(counts)
            z, text = rates, [[f"{r:.2f} ({c})" for r, c in zip(rr, cc)] for rr, cc in zip(rates, counts)]
        else:
            z, text = counts, [[str(c) for c in row] for row in counts]
        with self.figure.batch_update():          # only the changed properties are sent
            self.figure.data[0].z = z.tolist()
            self.figure.data[0].text = text
        self._table.value = self._table_html()

    def _table_html(self):
        rows = []
        for name, color, (_, score) in zip(self.classes, self._store.colors, self.per_class.iterrows()):
            cells = "".join(f"<td>{_fmt(score[c])}</td>" for c in ("precision", "recall", "f1"))
            rows.append(f"<tr><td>{_class_html(name, color)}</td>{cells}"
                        f"<td>{int(score['support'])}</td></tr>")
        return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
                f"<th>support</th></tr>{''.join(rows)}</table>"
                f"<p>balanced accuracy {_fmt(self.balanced_accuracy)}</p>")

    def _coverage_text(self):
        unlabeled = int((self._store.labels < 0).sum())
        text = f"{int(self._counts.sum())} labeled frames in the matrix"
        return text + (f"; {unlabeled} unlabeled frames not counted" if unlabeled else "")

    # ---------------------------------------------------------------- events
    def _on_labels(self, change):
        counts = self._compute()
        if not np.array_equal(counts, self._counts):
            self._counts = counts
            self._redraw_matrix()
        if self._open is not None:
            left = self.gallery.indices[self._store.labels[self.gallery.indices] != self._open[0]]
            self.set_status(f"{left.size} of the {self.gallery.indices.size} shown frames left "
                            f"this cell (relabeled); {self._coverage_text()}")

    @guarded
    def _on_click(self, trace, points, state):
        if points.xs:
            self.open_cell(points.ys[0], points.xs[0])


def _fmt(value) -> str:
    return "—" if not np.isfinite(value) else f"{value:.3f}"


def _names_in(predictions):
    return () if hasattr(predictions, "predict") else predictions


# ---------------------------------------------------------------- predictions over flux

class PredictionScatter(StatusMixin, widgets.VBox):
    """Flux (``y``) over frame (``x``), colored by predicted class; frames whose label disagrees are ringed.

    The labels come from the store and are live: relabeling a frame anywhere
    updates the rings (only the ring trace is resent). Frames with a NaN ``y``
    are drawn as crosses at the bottom of the plot and counted in the status line.

    ``raster``: None (default: from ``RASTER_THRESHOLD`` = 20,000 frames on, the
    points are drawn in the kernel, as in :class:`~xlabel.widgets.FluxScatter`: every
    frame a dot, every disagreement a red ring, NaN frames at the bottom edge, hover
    answered by the kernel; then :attr:`plot` is the
    :class:`~xlabel.widgets._scatter_base.ScatterPlot` and :attr:`figure` is None),
    True or False to force a mode.

    >>> import pandas as pd
    >>> table = pd.DataFrame({"frame": [0, 1, 2], "mean": [5.0, 50.0, 60.0]})
    >>> PredictionScatter(table, ["bad", "good", "bad"], ["bad", "good", "good"]).disagreements.tolist()
    [2]
    """

    def __init__(self, features, predictions, store_or_labels, x="frame", y="mean", classes=None,
                 raster=None):
        self._store = as_store(store_or_labels, classes, extra=_names_in(predictions))
        check_lengths(features=features, store=self._store)
        require_columns(features, x, y)
        self._predictions = resolve_predictions(predictions, self._store, features)
        self._features = features
        self._x = np.asarray(features[x], dtype=float)
        self._y = np.asarray(features[y], dtype=float)
        self._nan = ~np.isfinite(self._y)
        self._status_text = ""
        self._shown = None
        use_raster = len(self._x) >= RASTER_THRESHOLD if raster is None else bool(raster)
        self.plot = self._make_raster_plot(x, y) if use_raster else None
        self.figure = None if use_raster else self._make_figure(x, y)
        self._status_html = widgets.HTML()
        super().__init__([self.plot or self.figure, self._status_html])
        self._redraw_rings()
        self._observer = WeakObserver(self._store, self._on_labels)

    @property
    def store(self) -> LabelStore:
        return self._store

    @property
    def raster(self) -> bool:
        """True when the points are drawn in the kernel (big scatters)."""
        return self.plot is not None

    @property
    def disagreements(self) -> np.ndarray:
        """Labeled frames whose predicted class differs from the label."""
        labels = self._store.labels
        return np.flatnonzero((labels >= 0) & (self._predictions >= 0) & (labels != self._predictions))

    def _plot_y(self):
        if not self._nan.any():
            return self._y
        floor = np.nanmin(self._y) if (~self._nan).any() else 0.0
        return np.where(self._nan, floor, self._y)

    def _make_figure(self, x, y):
        plot_y = self._plot_y()
        traces = []
        for code, (name, color) in enumerate(zip(self._store.classes, self._store.colors)):
            idx = np.flatnonzero((self._predictions == code) & ~self._nan)
            traces.append(go.Scattergl(x=self._x[idx], y=plot_y[idx], customdata=idx, mode="markers",
                                       name=f"predicted {name}", marker=dict(color=color, size=5),
                                       hovertemplate="frame %{customdata}<extra>%{fullData.name}</extra>"))
        nan_idx = np.flatnonzero(self._nan)
        traces.append(go.Scattergl(x=self._x[nan_idx], y=plot_y[nan_idx], customdata=nan_idx,
                                   mode="markers", name=f"{y} is NaN (at bottom)",
                                   marker=dict(symbol="x", color="black", size=7),
                                   hovertemplate="frame %{customdata}: NaN<extra></extra>"))
        traces.append(go.Scattergl(x=[], y=[], mode="markers", name="label disagrees",
                                   marker=dict(symbol="circle-open", color=DISAGREE_COLOR, size=11,
                                               line=dict(width=1.5)),
                                   hovertemplate="frame %{customdata}<extra>label disagrees</extra>"))
        return go.FigureWidget(data=traces, layout=go.Layout(
            title="predictions over flux", xaxis=dict(title=x), yaxis=dict(title=y), height=380,
            margin=dict(l=60, r=10, t=40, b=50)))

    def _make_raster_plot(self, x, y):
        """The kernel-raster plot: prediction codes as the image, disagreements ringed."""
        classes, colors = list(self._store.classes), list(self._store.colors)
        callbacks = ScatterCallbacks(
            data=lambda: ({"type": "data"}, []), codes=lambda: [self._predictions],
            selected=lambda indices, panel: None, button=lambda button_id: None,
            describe=self._hover_lines, rings=lambda: self._shown)
        legend = legend_entries(self._predictions, [f"predicted {c}" for c in classes], colors,
                                "no prediction")
        legend.append({"name": "label disagrees (ring)", "color": DISAGREE_COLOR,
                       "count": int(self.disagreements.size)})
        return ScatterPlot(callbacks, raster=RasterLayer(self._x, self._y), panels=["predictions"],
                           palettes=[[UNLABELED_COLOR] + colors], code_names=[classes],
                           none_names=["no prediction"], legends=[legend], x_name=x, y_name=y,
                           dragmode="zoom", height=380)

    def _hover_lines(self, index) -> list:
        """Tooltip of one frame: frame, x, y, prediction, label and its source."""
        plot = self.plot
        frame = self._features["frame"].iloc[index] if "frame" in self._features.columns else index
        head = f"frame {frame}"
        if "scan" in self._features.columns:
            head += f" · scan {self._features['scan'].iloc[index]}"
        prediction = int(self._predictions[index])
        label = int(self._store.labels[index])
        name = (lambda code: self._store.classes[code] if code >= 0 else "—")
        lines = [head, f"{plot.x_name}: {fmt_value(self._x[index])}",
                 f"{plot.y_name}: {fmt_value(self._y[index])}"]
        if self._nan[index]:
            lines.append("⚠ not finite / not plottable: drawn at the edge")
        lines += [f"predicted: {name(prediction)}", f"label: {name(label)}",
                  f"source: {self._store.provenance(index).get('source') or '—'}"]
        if label >= 0 and prediction >= 0 and label != prediction:
            lines.append("label disagrees with the prediction")
        return lines

    def _redraw_rings(self):
        idx = self.disagreements
        if self._shown is not None and np.array_equal(idx, self._shown):
            return
        self._shown = idx
        if self.plot is not None:
            self.plot.send_update(0, None)               # the kernel redraws the rings
            legend = [dict(entry) for entry in self.plot.legends[0]]
            legend[-1]["count"] = int(idx.size)
            self.plot.legends = [legend]
        else:
            with self.figure.batch_update():
                ring = self.figure.data[-1]
                ring.x, ring.y, ring.customdata = self._x[idx], self._plot_y()[idx], idx
        labeled = int((self._store.labels >= 0).sum())
        nan_note = (f"; {int(self._nan.sum())} frames with NaN flux flagged at the bottom"
                    if self._nan.any() else "")
        self.set_status(f"{idx.size} of {labeled} labeled frames disagree with the prediction{nan_note}")

    def _on_labels(self, change):
        self._redraw_rings()
