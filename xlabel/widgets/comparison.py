"""ClusterComparison: two clusterings side by side with linked selection and adoption.

>>> import numpy as np, pandas as pd
>>> from xlabel.labels import LabelStore
>>> features = pd.DataFrame({"frame": np.arange(6), "mean": [1., 1, 1, 9, 9, 9]})
>>> store = LabelStore(6, classes=("good", "bad"))
>>> view = ClusterComparison(features, [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1], store=store,
...                          names=("kmeans", "dbscan"))
>>> view.disagreements.tolist(), round(view.comparison.ari, 3)
([2], 0.324)
>>> view.adopt("right")
0
>>> store.labels.tolist(), store.provenance(0)["source"]
([0, 0, 1, 1, 1, 1], 'dbscan')
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from ..cluster import compare
from ..errors import LabelError
from ._scatter_base import (EDIT_BUTTONS, QUALITATIVE, UNLABELED_COLOR, SelectionMixin,
                            check_column, class_buttons, data_message, frame_numbers,
                            legend_entries, non_finite_summary, scan_codes)

__all__ = ["ClusterComparison"]

NOISE_COLOR = "#bbbbbb"


class ClusterComparison(SelectionMixin, widgets.VBox):
    """Two clusterings of the same frames, side by side on the same axes.

    Parameters
    ----------
    features : feature table (one row per frame) or 2-D array.
    a, b : cluster ids per frame (-1 = noise), e.g. K-means and DBSCAN; ``b`` is aligned
        to ``a`` (:func:`xlabel.cluster.align_labels`) for colors, table and disagreements.
    store : optional LabelStore: adds a third panel with its labels, the adopt buttons and
        class buttons for the selection.
    names : names of the two clusterings; also the provenance source of adopted labels.
    mapping : cluster id -> class (name/index/None) used when adopting; default: cluster
        id i is class i.
    x, y, log_y, height, raster : as in :class:`~xlabel.widgets.FluxScatter`.

    A lasso in one panel highlights the same frames in the others.
    """

    _name = "ClusterComparison"

    def __init__(self, features, a, b, store=None, names=("left", "right"), mapping=None,
                 x="frame", y="mean", log_y=False, height=420, raster=None):
        self._init_selection(features, store)
        self.names = _check_names(names)
        self.mapping = mapping
        self.a = _check_clusters(a, self._n, self.names[0])
        b = _check_clusters(b, self._n, self.names[1])
        self.comparison = compare(self.a, b)
        self.b = self.comparison.aligned_b
        self.table = widgets.HTML(self._table_html())
        self.plot = self._make_plot(
            raster, panels=list(self.names) + (["labels"] if store is not None else []),
            x_name=check_column(self.features, x, self._name, "x"),
            y_name=check_column(self.features, y, self._name, "y"),
            log_y=bool(log_y), height=int(height), buttons=self._buttons())
        self._set_palettes()
        self.plot.status = (non_finite_summary(self.features, [x, y]) or
                            f"{self.disagreements.size} of {self._n} frames differ")
        super().__init__(children=[self.plot, self.table])
        if store is not None:
            self._observe_store()

    # ------------------------------------------------------------ public API

    @property
    def disagreements(self) -> np.ndarray:
        """Frames where the two (aligned) clusterings differ."""
        return self.comparison.disagree

    def show_disagreements(self):
        """Select the frames where the clusterings differ."""
        self.select(self.disagreements)
        self.plot.status = f"{self.disagreements.size} disagreement(s) selected"

    def adopt(self, side, selection_only=False) -> int:
        """Write one clustering into the store (source = its name); returns the step id.

        ``side`` is ``"left"``/``"right"``, 0/1 or a clustering's name. With
        ``selection_only`` only the selected frames change. Noise (-1) is left alone.
        """
        store = self._require_store()
        index = self._side(side)
        clusters = (self.a, self.b)[index]
        if selection_only:
            self._require_selection(f"adopt {self.names[index]}")
            keep = np.zeros(self._n, dtype=bool)
            keep[self._selected] = True
            clusters = np.where(keep, clusters, -1)
        try:
            step = store.seed_from(clusters, mapping=self.mapping, source=self.names[index])
        except LabelError as err:
            self.plot.status = f"⚠ {err}"
            raise
        return step

    # ------------------------------------------------------------ internals

    def _side(self, side) -> int:
        lookup = {"left": 0, "right": 1, 0: 0, 1: 1, self.names[0]: 0, self.names[1]: 1}
        if side not in lookup:
            raise LabelError(f"ClusterComparison: side must be 'left', 'right' or one of "
                             f"{self.names}, not {side!r}")
        return lookup[side]

    def _buttons(self):
        buttons = [{"id": "disagree", "label": "show disagreements", "key": "d"}]
        if self.store is None:
            return buttons + [EDIT_BUTTONS[-1]]
        for side, name in zip(("left", "right"), self.names):
            buttons += [{"id": f"adopt:{side}", "label": f"adopt {name}", "key": ""},
                        {"id": f"adopt-sel:{side}", "label": f"adopt {name} (selection)",
                         "key": ""}]
        return buttons + class_buttons(self.store) + EDIT_BUTTONS

    def _on_button(self, button_id):
        if button_id == "disagree":
            self.show_disagreements()
        elif button_id.startswith("adopt"):
            kind, side = button_id.split(":", 1)
            self.adopt(side, selection_only=kind == "adopt-sel")
        else:
            super()._on_button(button_id)

    def _cluster_palette(self, clusters):
        count = int(clusters.max()) + 1 if clusters.size and clusters.max() >= 0 else 0
        colors = list(self.store.colors) if self.store is not None else []
        colors += QUALITATIVE
        names = [str(i) for i in range(count)]
        return names, [colors[i % len(colors)] for i in range(count)]

    def _set_palettes(self):
        palettes, names, legends = [], [], []
        for clusters in (self.a, self.b):
            labels, colors = self._cluster_palette(clusters)
            palettes.append([NOISE_COLOR] + colors)
            names.append(labels)
            entries = legend_entries(clusters, labels, colors, "noise", NOISE_COLOR)
            legends.append([entry for entry in entries if entry["count"]])   # no "0 (0)"
        none_names = ["noise", "noise"]
        if self.store is not None:
            palettes.append([UNLABELED_COLOR] + list(self.store.colors))
            names.append(list(self.store.classes))
            legends.append(self._store_legend())
            none_names.append("unlabeled")
        self.plot.palettes, self.plot.code_names = palettes, names
        self.plot.none_names, self.plot.legends = none_names, legends

    def _store_legend(self):
        return legend_entries(self.store.labels, self.store.classes, list(self.store.colors),
                              "unlabeled")

    def _codes(self):
        codes = [self.a, self.b]
        return codes + [self.store.labels] if self.store is not None else codes

    def _data_message(self):
        codes, names = scan_codes(self.features)
        sources, source_names = self._store_data()
        return data_message(self.features[self.plot.x_name].to_numpy(),
                            self.features[self.plot.y_name].to_numpy(),
                            frame_numbers(self.features), codes, names, sources, source_names,
                            self._codes())

    def _on_store_change(self, change):
        self._recolor(2, change, self.store.labels)
        self.plot.legends = self.plot.legends[:2] + [self._store_legend()]
        self.plot.status = f"{len(self._selected)} selected · {self._describe(change)}"

    def _after_selection(self, message):
        self.plot.status = message

    def _table_html(self) -> str:
        result, (left, right) = self.comparison, map(html.escape, self.names)
        summary = (f'<div style="margin:4px 0"><b>{left}</b> vs <b>{right}</b>: '
                   f"ARI = {result.ari:.3f}, NMI = {result.nmi:.3f}, "
                   f"{result.disagree.size} of {self._n} frames disagree</div>")
        return (f"{summary}<div style=\"display:flex;flex-wrap:wrap;gap:12px 32px;align-items:flex-start\">"
                f"{contingency_html(result.table, self.names)}"
                f"{metrics_html(result, self._n)}</div>")


# Inline styles: widgets.HTML output carries no stylesheet of its own (and ipywidgets sets a
# 28 px line height on it, hence the explicit line-height).
_TABLE = ("border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums;"
          "line-height:1.5")
_CELL = ("padding:2px 10px;text-align:right;border-bottom:1px solid #e0e0e0;"
         "white-space:nowrap;line-height:1.5")
_HEAD = _CELL + ";font-weight:600;background:#f5f5f5"
_AGREE = _CELL + ";background:#e8f4e8"
_DIFFER = _CELL + ";background:#fbe3e3;font-weight:600"


def _id_name(cluster_id) -> str:
    return "noise" if int(cluster_id) == -1 else f"cluster {int(cluster_id)}"


def contingency_html(table, names) -> str:
    """The contingency table as HTML: frames per (left cluster, right cluster), with totals.

    Rows are the left clustering's clusters, columns the right one's (aligned), -1 is
    "noise"; the diagonal (same cluster id, after alignment) is green, other non-zero cells
    (frames the two disagree on) red.

    >>> import pandas as pd
    >>> table = pd.DataFrame([[2, 1], [0, 3]], index=[0, 1], columns=[0, -1])
    >>> text = contingency_html(table, ("kmeans", "dbscan"))
    >>> "<th" in text and "cluster 1" in text and "noise" in text and ">total<" in text
    True
    """
    left, right = (html.escape(str(name)) for name in names)
    counts = table.to_numpy()
    corner = f"{left} ↓ · {right} →"
    head = "".join(f'<th style="{_HEAD}">{_id_name(c)}</th>' for c in table.columns)
    rows = [f'<tr><th style="{_HEAD};text-align:left">{corner}</th>{head}'
            f'<th style="{_HEAD}">total</th></tr>']
    for r, row_id in enumerate(table.index):
        cells = "".join(f'<td style="{_cell_style(row_id, col_id, counts[r, c])}">'
                        f"{counts[r, c]}</td>" for c, col_id in enumerate(table.columns))
        rows.append(f'<tr><th style="{_HEAD};text-align:left">{left} {_id_name(row_id)}</th>'
                    f'{cells}<td style="{_HEAD}">{counts[r].sum()}</td></tr>')
    totals = "".join(f'<td style="{_HEAD}">{n}</td>' for n in counts.sum(axis=0))
    rows.append(f'<tr><th style="{_HEAD};text-align:left">total</th>{totals}'
                f'<td style="{_HEAD}">{counts.sum()}</td></tr>')
    caption = (f'<caption style="caption-side:top;text-align:left;padding-bottom:4px">'
               f"frames per cluster: {left} (rows) × {right} (columns)</caption>")
    return (f'<table class="xlabel-contingency" style="{_TABLE}">{caption}'
            f'{"".join(rows)}</table>')


def _cell_style(row_id, col_id, count):
    if row_id == col_id and row_id != -1:
        return _AGREE
    return _DIFFER if count else _CELL


def metrics_html(result, n_frames) -> str:
    """ARI, NMI and the disagreements as a small HTML table, each with what it means."""
    share = result.disagree.size / n_frames if n_frames else 0.0
    rows = [("adjusted Rand index (ARI)", f"{result.ari:.3f}",
             "1 = the same grouping, 0 = as similar as chance"),
            ("normalized mutual information (NMI)", f"{result.nmi:.3f}",
             "1 = one grouping predicts the other, 0 = independent"),
            ("frames that disagree", f"{result.disagree.size} ({share:.1%})",
             "different cluster after alignment; noise counts as a cluster")]
    body = "".join(f'<tr><th style="{_HEAD};text-align:left">{name}</th>'
                   f'<td style="{_CELL}">{value}</td>'
                   f'<td style="{_CELL};text-align:left;color:#666">{meaning}</td></tr>'
                   for name, value, meaning in rows)
    return (f'<table class="xlabel-metrics" style="{_TABLE}"><caption style="caption-side:top;'
            f'text-align:left;padding-bottom:4px">agreement</caption>{body}</table>')


def _check_names(names):
    names = tuple(str(n) for n in names)
    if len(names) != 2 or names[0] == names[1] or "" in names:
        raise LabelError(f"ClusterComparison: names must be two different non-empty names, "
                         f"got {names}")
    return names


def _check_clusters(values, n, name) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise LabelError(f"ClusterComparison: clustering {name!r} has shape {values.shape}, "
                         f"but the feature table has {n} rows")
    if values.dtype.kind not in "iu":
        raise LabelError(f"ClusterComparison: clustering {name!r} must hold integer cluster "
                         f"ids (-1 = noise), got dtype {values.dtype}")
    if n and (values.min() < -1 or values.max() >= np.iinfo(np.int16).max):
        raise LabelError(f"ClusterComparison: clustering {name!r} has ids outside -1..32766")
    return values.astype(np.int32)
