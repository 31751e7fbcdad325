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
            legends.append(legend_entries(clusters, labels, colors, "noise", NOISE_COLOR))
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
        result = self.comparison
        table = result.table.to_html(classes="xlabel-contingency", border=0)
        return (f"<div><b>{html.escape(self.names[0])}</b> (rows) vs "
                f"<b>{html.escape(self.names[1])}</b> (columns): ARI = {result.ari:.3f}, "
                f"NMI = {result.nmi:.3f}, {result.disagree.size} disagreement(s)</div>{table}")


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
