"""FluxScatter: lasso-relabel frames of a LabelStore on a scatter of two features.

>>> import numpy as np, pandas as pd
>>> from xlabel.labels import LabelStore
>>> features = pd.DataFrame({"frame": np.arange(5), "mean": [5.0, 5.1, 0.2, 0.1, 5.0]})
>>> store = LabelStore(5, classes=("good", "bad"))
>>> scatter = FluxScatter(store, features)       # display(scatter) in a notebook
>>> scatter.select([2, 3])
>>> scatter.assign("bad")
0
>>> store.labels.tolist()
[-1, -1, 1, 1, -1]
"""

from __future__ import annotations

import logging

import ipywidgets as widgets
import numpy as np

from ..errors import LabelArgumentError
from ._scatter_base import (EDIT_BUTTONS, QUALITATIVE, UNLABELED_COLOR, SelectionMixin,
                            check_column, class_buttons, cycled, data_message, frame_numbers,
                            legend_entries, non_finite_summary, numeric_columns, scan_codes,
                            scan_count)
from ._scatter_tags import TAG_PREFIX, TagTools

__all__ = ["FluxScatter"]

log = logging.getLogger(__name__)


class FluxScatter(TagTools, SelectionMixin, widgets.VBox):
    """Scatter of two feature columns, colored by the store's classes, with lasso relabeling.

    Parameters
    ----------
    store : the :class:`~xlabel.labels.LabelStore` (one row per feature row).
    features : feature table (``frame_stats`` output, any numeric columns, a 2-D embedding
        as two columns) or a 2-D array.
    x, y : column names for the axes (dropdowns change them later).
    source : optional FrameSource; selected frames then show as thumbnails below.
    log_y : start with a log y axis.
    color_by : "label" (the store's classes), "scan", or ``"tag:<name>"``: the frames that
        carry tag ``<name>`` of the store in the tag's colour, the others grey.
    n_thumbnails : thumbnails per page of the gallery of selected frames (it pages through
        all of them, frames whose label disagrees with their neighbours first).
    raster : None (default: draw the points in the kernel from
        ``RASTER_THRESHOLD`` = 20,000 frames on), True or False to force a mode. Both
        modes behave the same for code, keys and the gallery.

    Keys (with the plot focused): 1..9 assign class 1..9, 0 clears labels,
    Ctrl+Z undo, Ctrl+Shift+Z / Ctrl+Y redo, Escape clears the selection.

    Tags: type or choose a tag name in the toolbar's tag field, then "add tag" /
    "remove tag" (or :meth:`add_tag` / :meth:`remove_tag` from code) tag the selection
    as one undoable step (source ``"manual"``); the colour dropdown lists every tag.

    >>> import numpy as np, pandas as pd
    >>> from xlabel.labels import LabelStore
    >>> store = LabelStore(3)
    >>> scatter = FluxScatter(store, pd.DataFrame({"frame": [0, 1, 2], "mean": [1., 2., 3.]}))
    >>> scatter.select([0]); scatter.selected.tolist()
    [0]
    """

    _name = "FluxScatter"

    def __init__(self, store, features, x="frame", y="mean", source=None, log_y=False,
                 color_by="label", n_thumbnails=6, height=450, raster=None):
        if store is None:
            raise LabelArgumentError("FluxScatter needs a LabelStore (store=...)")
        self._init_selection(features, store)
        self.source = source
        self.n_thumbnails = int(n_thumbnails)
        # Per-frame scan codes only when needed (color by scan, markers): at a million
        # frames they took 15-180 ms of the constructor.
        self._scans = None
        self._n_scans = scan_count(self.features)
        self.gallery = None
        self._gallery_box = widgets.VBox()
        self.plot = self._make_plot(
            raster, panels=["labels"], columns=numeric_columns(self.features),
            x_name=check_column(self.features, x, self._name, "x"),
            y_name=check_column(self.features, y, self._name, "y"),
            color_options=self._color_options(), tag_tools=True,
            tag_names=list(store.tag_names),
            color_by=self._check_color_by(color_by), log_y=bool(log_y), height=int(height),
            buttons=self._buttons())
        self._set_palette()
        self.plot.status = self._ready_status()
        self.plot.observe(self._on_axes, names=["x_name", "y_name"])
        self.plot.observe(self._on_color_by, names=["color_by"])
        super().__init__(children=[self.plot, self._gallery_box])
        self._observe_store()

    # ------------------------------------------------------------ public API

    @property
    def x(self) -> str:
        """The x column (settable)."""
        return self.plot.x_name

    @x.setter
    def x(self, name):
        self.plot.x_name = check_column(self.features, name, self._name, "x")

    @property
    def y(self) -> str:
        """The y column (settable)."""
        return self.plot.y_name

    @y.setter
    def y(self, name):
        self.plot.y_name = check_column(self.features, name, self._name, "y")

    @property
    def log_y(self) -> bool:
        """Whether the y axis is logarithmic (settable)."""
        return self.plot.log_y

    @log_y.setter
    def log_y(self, value):
        self.plot.log_y = bool(value)

    @property
    def color_by(self) -> str:
        """``"label"``, ``"scan"`` or ``"tag:<name>"`` (settable)."""
        return self.plot.color_by

    @color_by.setter
    def color_by(self, value):
        self.plot.color_by = self._check_color_by(value)

    # ------------------------------------------------------------ internals

    def _check_color_by(self, value):
        if value in ("label", "scan"):
            return value
        if not isinstance(value, str):
            raise LabelArgumentError(f"FluxScatter: color_by must be 'label', 'scan' or "
                                     f"'tag:<name>', not {value!r}")
        return self._check_tag_color(value)

    def _base_color_options(self):
        return ["label", "scan"] if self._n_scans > 1 else ["label"]

    def _buttons(self):
        return class_buttons(self.store) + EDIT_BUTTONS

    def _codes(self):
        return [self._color_codes()]

    def _color_codes(self):
        if self.plot.color_by == "scan":
            return self._scan_table()[0]
        if self.plot.color_by.startswith(TAG_PREFIX):
            return self._tag_codes(self._color_tag())
        return self.store.labels

    def _scan_table(self):
        """(per-frame scan codes, scan names), computed once."""
        if self._scans is None:
            self._scans = scan_codes(self.features)
        return self._scans

    def _set_palette(self):
        if self._color_tag() is not None:
            self._set_tag_palette(self._color_tag())
            return
        if self.plot.color_by == "scan":
            names = self._scan_table()[1]
            colors = cycled(QUALITATIVE, len(names))
            none = "none"
        else:
            names, colors = list(self.store.classes), list(self.store.colors)
            none = "unlabeled"
        self.plot.palettes = [[UNLABELED_COLOR] + colors]
        self.plot.code_names = [names]
        self.plot.none_names = [none]
        self.plot.legends = [legend_entries(self._color_codes(), names, colors, none)]

    def _data_message(self):
        sources, source_names = self._store_data()
        return data_message(self.features[self.x].to_numpy(), self.features[self.y].to_numpy(),
                            frame_numbers(self.features), *self._scan_table(),
                            sources, source_names, self._codes())

    def _ready_status(self):
        flagged = non_finite_summary(self.features, [self.x, self.y])
        return flagged or f"{self._n} frames; draw a lasso or box to select"

    def _on_axes(self, change):
        self.plot.send_xy(self.features[self.x].to_numpy(), self.features[self.y].to_numpy())
        self.plot.status = self._ready_status()

    def _on_color_by(self, change):
        self._set_palette()
        self.plot.send_update(0, self._color_codes(), sources=self.store.sources, palette=True)

    def _on_store_change(self, change):
        if change.tag is not None:
            self._on_tag_change(change)
        elif self.plot.color_by == "label":
            self._recolor(0, change, self.store.labels)
            self.plot.legends = [legend_entries(self.store.labels, self.store.classes,
                                                list(self.store.colors), "unlabeled")]
        self.plot.status = f"{len(self._selected)} selected · {self._describe(change)}"

    def _after_selection(self, message):
        self.plot.status = message
        self._show_thumbnails()

    def _show_thumbnails(self):
        """Every selected frame, paged, those disagreeing with their neighbours first."""
        if self.source is None or (self.gallery is None and not len(self._selected)):
            return
        from .gallery import FrameGallery

        try:
            if self.gallery is None:
                self.gallery = FrameGallery(self.source, features=self.features, store=self.store,
                                             per_page=self.n_thumbnails, order="review",
                                             columns=min(self.n_thumbnails, 6))
                self._gallery_box.children = [self.gallery]
            self.gallery.show(self._selected)
        except Exception as err:  # thumbnails are a convenience; never break the lasso
            log.exception("FrameGallery failed")
            self.plot.status = f"{len(self._selected)} selected · ⚠ thumbnails failed: {err}"
