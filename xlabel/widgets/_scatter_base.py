"""The browser half shared by :class:`FluxScatter` and :class:`ClusterComparison`.

:class:`ScatterPlot` is an anywidget that draws one plotly.js ``scattergl`` trace per
panel (all panels share x and y). Everything large travels as binary custom
messages, never as synced traits: ipywidgets merges pending trait updates, which
loses lasso events (plotly.py issue 3910), and JSON lists are slow at 1M points.

* plotly.js comes from the plotly package itself (``package_data/plotly.min.js``), or
  for raster plots its "basic" bundle vendored in ``static/`` (4x smaller, evaluated
  7x faster), sent once per page when the first widget asks (from its ``initialize``,
  before its view exists): no CDN, works offline. Sending it with every widget instead
  (in its module text or its state) was not faster (bench/bench_widgets_browser.py).
* Colors are one int16 code per point and panel (class index, cluster id, -1 =
  none), mapped by a discrete colorscale; after a label change only the changed
  indices and codes are sent (or the whole code array when most points changed).
* A lasso arrives as ``{"type": "selected", "panel": k}`` with the indices as one
  Int32 buffer; the owner's ``selected(indices, panel)`` callback is called.
* Big scatters (``RASTER_THRESHOLD`` frames and more) are drawn in the kernel
  (:mod:`xlabel.widgets._raster`): the browser gets one PNG per panel for the visible
  range and sends back lasso outlines (``polygon``), plot sizes/ranges (``view``) and
  mouse positions (``hover``).

The owner widget (FluxScatter, ClusterComparison) keeps all state and hands the plot
its callbacks (:class:`ScatterCallbacks`); this class only encodes and decodes messages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..errors import LabelArgumentError, LabelError, XLabelError
from ._raster import RASTER_THRESHOLD, RasterLayer, View, code_counts

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
UNLABELED_COLOR = "#bbbbbb"
#: Above this share of changed points a recolor sends the whole code array.
FULL_UPDATE_SHARE = 0.25
#: Colors for scans and clusters (cycled).
QUALITATIVE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
               "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


#: plotly.js "basic" bundle (scatter, layout images, selections: all a raster plot needs),
#: vendored from npm ``plotly.js-basic-dist-min`` (MIT, ``static/plotly-basic.LICENSE``), the
#: same version as the plotly package's full bundle. Evaluated in ~0.15 s in the page where
#: the full 4.8 MB bundle takes ~1 s (bench/bench_widgets_browser.py: first render).
PLOTLY_BASIC = STATIC / "plotly-basic.min.js"


def plotly_js_bytes(bundle: str = "full") -> bytes:
    """A plotly.js bundle: ``"full"`` (shipped inside the ``plotly`` package; scattergl for
    the marker mode) or ``"basic"`` (vendored; enough for the raster mode).

    >>> b"plotly.js (basic" in plotly_js_bytes("basic")[:100]
    True
    """
    if bundle == "basic":
        return PLOTLY_BASIC.read_bytes()
    if bundle != "full":
        raise ValueError(f"unknown plotly.js bundle {bundle!r} (full or basic)")
    import plotly      # here: importing it would delay the basic bundle by ~30 ms

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path.read_bytes()


@dataclass(frozen=True)
class ScatterCallbacks:
    """What a :class:`ScatterPlot` asks of the widget that owns it (the widget protocol).

    The owner (FluxScatter, ClusterComparison) keeps all state and hands these
    callables to the plot; the plot never touches its owner otherwise.

    Attributes
    ----------
    data : ``() -> (content, buffers)``: the marker-mode ``data`` message
        (:func:`data_message`).
    codes : ``() -> list of arrays``: color code per frame, one array per panel.
    selected : ``(indices, panel) -> None``: the user lassoed ``indices`` in ``panel``.
    button : ``(button_id) -> None``: a toolbar button (or its key) was pressed.
    describe : ``(index) -> list of str``: the hover lines of one frame (raster mode).
    thumbnail : ``(index) -> bytes``: PNG of one frame for the tooltip, or None (no source).
    rings : ``() -> indices``: frames ringed in red in every panel (raster mode), or None.
    """

    data: Callable[[], tuple]
    codes: Callable[[], list]
    selected: Callable[[np.ndarray, int], None]
    button: Callable[[str], None]
    describe: Callable[[int], list]
    thumbnail: Callable[[int], bytes] | None = None
    rings: Callable[[], np.ndarray] | None = None


_PUSHED = []        # the first raster plot of a kernel sends plotly.js unasked (once)


def _push_plotly_once(plot):
    """Send the basic plotly.js bundle with the first raster plot of this kernel, before the
    page asks: the transfer starts while the cell that shows the plot still runs, not after
    it (the page asks from the module's ``initialize``, and the kernel answers only once
    the cell is done). A page that missed it (or a second page) asks as before."""
    if _PUSHED:
        return
    _PUSHED.append(True)
    plot._send_plotly("basic")


class ScatterPlot(anywidget.AnyWidget):
    """One plotly figure with ``len(panels)`` linked panels (see module doc).

    ``raster``: a :class:`~xlabel.widgets._raster.RasterLayer` to draw the points as
    a kernel-rendered image (big scatters), or None for scattergl markers.
    """

    _esm = STATIC / "scatter.js"
    _css = STATIC / "scatter.css"

    panels = traitlets.List(traitlets.Unicode(), default_value=[""]).tag(sync=True)
    palettes = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)
    code_names = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)
    none_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    legends = traitlets.List(traitlets.List(traitlets.Dict())).tag(sync=True)
    buttons = traitlets.List(traitlets.Dict()).tag(sync=True)
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    color_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    color_by = traitlets.Unicode("label").tag(sync=True)
    x_name = traitlets.Unicode("").tag(sync=True)
    y_name = traitlets.Unicode("").tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    dragmode = traitlets.Unicode("lasso").tag(sync=True)
    height = traitlets.Int(450).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    #: True when points are drawn by the kernel (read-only for users).
    raster_mode = traitlets.Bool(False).tag(sync=True)
    #: Raster mode: the data's extent (``{"x": [lo, hi], "y": [lo, hi]}``, axis units), in
    #: the widget's first state so that the page asks for the first image and draws the
    #: axes as soon as the plot has a width, without waiting for the ``data`` message.
    extent = traitlets.Dict().tag(sync=True)
    #: True when hovering a frame may ask for its thumbnail (the owner has a source).
    thumbnails = traitlets.Bool(False).tag(sync=True)
    #: Show the tag field and "add tag"/"remove tag" buttons; the store's tag names.
    tag_tools = traitlets.Bool(False).tag(sync=True)
    tag_names = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, callbacks: ScatterCallbacks, raster=None, **traits):
        self._callbacks = callbacks
        self._raster = raster
        super().__init__(raster_mode=raster is not None,
                         extent=raster.extent() if raster is not None else {},
                         thumbnails=callbacks.thumbnail is not None, **traits)
        self._view = None
        self._selection = np.empty(0, dtype=np.int64)
        self._pngs = None            # ((view, panels), the last PNG of each panel)
        self.render_times: list[dict] = []
        #: The last message sent to the front end: (content, buffers), for inspection.
        self.last_message: tuple[dict, list[memoryview]] | None = None
        if raster is not None:
            _push_plotly_once(self)

    @property
    def raster(self):
        """The kernel-side :class:`~xlabel.widgets._raster.RasterLayer`, or None."""
        return self._raster

    # ------------------------------------------------------------ JS -> Python

    def _handle_custom_msg(self, content, buffers):
        """Dispatch one message from the front end (also the entry point for tests)."""
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "need_plotly":
                self._send_plotly("basic" if content.get("bundle") == "basic" else "full")
            elif kind == "ready":
                received = time.time() * 1000
                content, buffers = self._data()
                if self._raster is not None:  # the kernel's clock, for the bench's stages
                    content = {**content, "received": received, "sent": time.time() * 1000}
                self._post(content, buffers)
            elif kind == "selected":
                self._user_selected(decode_indices(buffers[0] if buffers else b""),
                                    int(content.get("panel", 0)))
            elif kind == "polygon" and self._raster is not None:
                xs, ys = (np.frombuffer(b, dtype=np.float64) for b in buffers[:2])
                self._user_selected(self._raster.select_polygon(xs, ys),
                                    int(content.get("panel", 0)))
            elif kind == "view" and self._raster is not None:
                self._view = View.from_message(content)
                self._send_images("view", received=time.time())
            elif kind == "hover" and self._raster is not None:
                self._hover(content)
            elif kind == "thumb" and self._callbacks.thumbnail is not None:
                self._thumbnail(int(content["index"]))
            elif kind == "button":
                self._callbacks.button(str(content.get("id", "")))
            elif kind == "rendered":
                self.render_times.append({"n": content.get("n"), "ms": content.get("ms")})
            else:
                log.debug("ignored front-end message %r", content)
        except XLabelError as err:  # user actions never raise into the void: show them
            self.status = f"⚠ {err}"
        except (ValueError, KeyError, TypeError) as err:   # a malformed browser message
            log.warning("bad front-end message %r: %s", content, err)

    def _user_selected(self, indices, panel):
        self._callbacks.selected(indices, panel)
        if self._raster is not None:
            self._selection = np.asarray(indices, dtype=np.int64)
            self._send_images("select")

    def _hover(self, content):
        view = View.from_message(content)
        index = self._raster.nearest(view, float(content["cx"]), float(content["cy"]))
        lines = self._callbacks.describe(index) if index >= 0 else []
        self._post({"type": "hover", "seq": content.get("seq"), "index": index,
                    "lines": lines})

    def _thumbnail(self, index):
        """The hovered frame's thumbnail, asked for once the mouse rests on it."""
        if not 0 <= index < self._n_points():
            raise ValueError(f"no frame {index}")
        try:
            png = self._callbacks.thumbnail(index)
        except Exception as err:  # noqa: BLE001 - a thumbnail never breaks the plot: say why
            log.warning("thumbnail of frame %d failed", index, exc_info=True)
            self._post({"type": "thumb", "index": index, "error": f"no thumbnail: {err}"})
            return
        self._post({"type": "thumb", "index": index}, [png])

    def _n_points(self):
        if self._raster is not None:
            return len(self._raster.x)
        return len(self._callbacks.codes()[0])

    # ------------------------------------------------------------ Python -> JS

    def _send_plotly(self, bundle):
        self._post({"type": "plotly", "bundle": bundle}, [plotly_js_bytes(bundle)])

    def _post(self, content, buffers=()):
        buffers = [memoryview(b) for b in buffers]
        self.last_message = (content, buffers)
        self.send(content, buffers=buffers)

    def _data(self):
        if self._raster is None:
            return self._callbacks.data()
        return ({"type": "data", "raster": True, "n": int(len(self._raster.x)),
                 "panels": len(self.panels), "extent": self._raster.extent()}, [])

    def _send_images(self, reason, panel=None, received=None):
        """Render every panel (or only ``panel``, the others unchanged) and send the PNGs."""
        if self._view is None:       # the browser has not said how big the plot is yet
            return
        view = self._view
        rings = self._callbacks.rings() if self._callbacks.rings is not None else None
        todo = range(len(self.palettes))
        cached = self._pngs
        if panel is not None and cached is not None and cached[0] == (view, len(todo)):
            todo = [panel]                  # a recolor of one panel: keep the others' images
        pngs = list(cached[1]) if len(todo) == 1 and cached else [None] * len(self.palettes)
        codes = self._callbacks.codes()
        for k in todo:
            pngs[k] = self._raster.render(codes[k], self.palettes[k], view, self._selection,
                                          rings)
        self._pngs = ((view, len(pngs)), pngs)
        # The kernel's clock (epoch ms) when the request came and the images left, so the
        # page can tell transport from rendering (bench/bench_widgets_browser.py).
        clock = {} if received is None else {"received": received * 1000,
                                             "sent": time.time() * 1000}
        self._post({"type": "image", "reason": reason, **clock,
                    "view": {"x0": view.x0, "x1": view.x1, "y0": view.y0, "y1": view.y1,
                             "width": view.width, "height": view.height}}, pngs)

    def send_update(self, panel, codes, indices=None, sources=None, palette=False):
        """Send new codes (and label sources) for ``indices`` (or all points).

        Raster mode: redraw the images only (the kernel holds the codes; the arguments
        may be None).
        """
        if self._raster is not None:
            self._send_images("update", None if palette else int(panel))
            return
        content = {"type": "update", "panel": int(panel), "full": indices is None,
                   "sources": sources is not None, "palette": bool(palette)}
        buffers = [] if indices is None else [np.ascontiguousarray(indices, dtype=np.int32)]
        buffers.append(np.ascontiguousarray(codes, dtype=np.int16))
        if sources is not None:
            buffers.append(np.ascontiguousarray(sources, dtype=np.int8))
        self._post(content, buffers)

    def send_selection(self, indices):
        """Show ``indices`` as the selection in every panel (drops any lasso outline)."""
        if self._raster is not None:
            self._selection = np.asarray(indices, dtype=np.int64)
            self._post({"type": "select", "raster": True})
            self._send_images("select")
            return
        self._post({"type": "select"}, [np.ascontiguousarray(indices, dtype=np.int32)])

    @traitlets.observe("log_y")
    def _log_y_changed(self, change):
        # Marker mode redraws in the browser; the raster must re-map y in the kernel
        # (not when the layer already maps it so: traitlets reports the value given at init).
        if self._raster is not None and self._raster.y_axis.log != bool(change["new"]):
            self.send_xy(self._raster.x, self._raster.y)

    def send_xy(self, x, y):
        """Replace the x and y values of all panels (new columns or log y)."""
        if self._raster is not None:
            self._raster.set_xy(x, y, self.log_y)
            self._pngs = None
            self.extent = self._raster.extent()
            self._post({"type": "xy", "raster": True, "extent": self.extent})
            return
        self._post({"type": "xy"}, [as_float32(x), as_float32(y)])


def data_message(x, y, frames, scan_codes, scan_names, sources, source_names, codes):
    """The ``data`` message: everything a new view needs, as binary buffers."""
    content = {"type": "data", "n": int(len(x)), "panels": len(codes),
               "scans": list(scan_names), "source_names": list(source_names),
               "with_sources": sources is not None}
    if sources is None:
        sources = np.zeros(len(x), dtype=np.int8)
    buffers = [as_float32(x), as_float32(y), np.ascontiguousarray(frames, dtype=np.int32),
               np.ascontiguousarray(scan_codes, dtype=np.int16),
               np.ascontiguousarray(sources, dtype=np.int8)]
    buffers += [np.ascontiguousarray(c, dtype=np.int16) for c in codes]
    return content, buffers


def fmt_value(value) -> str:
    """A number as the tooltip shows it (as scatter.js's ``fmt``)."""
    value = float(value)
    if not np.isfinite(value):
        return {np.inf: "Infinity", -np.inf: "-Infinity"}.get(value, "NaN")
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return str(int(value)) if value.is_integer() else f"{value:.5g}"


def as_float32(values) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(values, dtype=np.float32)


def decode_indices(buffer) -> np.ndarray:
    """Int32 indices from a front-end buffer (bytes, memoryview or array)."""
    return np.frombuffer(buffer, dtype=np.int32)


# --------------------------------------------------------------- feature table

def numeric_columns(features: pd.DataFrame) -> list[str]:
    """Columns usable as an axis (numeric, not boolean)."""
    return [str(c) for c in features.columns
            if pd.api.types.is_numeric_dtype(features[c]) and features[c].dtype != bool]


def as_feature_table(features, widget) -> pd.DataFrame:
    """``features`` as a DataFrame (a 2-D array gets columns ``f0, f1, ...``)."""
    if isinstance(features, pd.DataFrame):
        return features.reset_index(drop=True)
    array = np.asarray(features)
    if array.ndim != 2:
        raise LabelArgumentError(f"{widget}: features must be a DataFrame or a 2-D array, "
                                 f"got shape {array.shape}")
    return pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])])


def check_column(features, name, widget, axis) -> str:
    columns = numeric_columns(features)
    if name not in columns:
        raise LabelArgumentError(
            f"{widget}: {axis}={name!r} is not a numeric column of the feature "
            f"table; choose one of {columns}")
    return name


def scan_codes(features) -> tuple[np.ndarray, list[str]]:
    """Per-row scan code (int16) and the scan names (``[""]`` without a scan column)."""
    if "scan" not in features.columns:
        return np.zeros(len(features), dtype=np.int16), [""]
    codes, names = pd.factorize(features["scan"].astype(str), sort=False)
    return codes.astype(np.int16), [str(n) for n in names]


def scan_count(features) -> int:
    """``len(scan_codes(features)[1])`` (the same names: as text) without the per-frame
    codes: one hash pass (the codes took 15-180 ms at 1,000,000 frames)."""
    if "scan" not in features.columns:
        return 1
    return int(features["scan"].astype(str).nunique())


def frame_numbers(features) -> np.ndarray:
    if "frame" in features.columns and pd.api.types.is_integer_dtype(features["frame"]):
        return features["frame"].to_numpy(dtype=np.int32)
    return np.arange(len(features), dtype=np.int32)


def non_finite_summary(features, columns) -> str:
    """'' or a warning naming how many rows have NaN/inf in ``columns``."""
    parts = []
    for name in dict.fromkeys(columns):
        if pd.api.types.is_integer_dtype(features[name]):
            continue                     # always finite (and not copied to float)
        values = features[name].to_numpy(dtype=float)
        bad = np.count_nonzero(~np.isfinite(values))
        if bad:
            parts.append(f"{bad} frame(s) with NaN/inf {name}")
    if not parts:
        return ""
    return "⚠ " + "; ".join(parts) + " (drawn as × at the axis edge)"


def check_indices(indices, n, widget) -> np.ndarray:
    """Selection indices (ints or a boolean mask) as a sorted unique int64 array."""
    array = np.asarray(indices)
    if array.dtype == bool:
        if array.shape != (n,):
            raise LabelArgumentError(f"{widget}: a boolean selection needs {n} entries, "
                                     f"got shape {array.shape}")
        return np.flatnonzero(array)
    array = array.reshape(-1)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise LabelArgumentError(
            f"{widget}: selection indices must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= n:
        bad = int(array.min() if array.min() < 0 else array.max())
        raise LabelArgumentError(f"{widget}: selection index out of range ({n} frames)", frame=bad)
    return np.unique(array)


def legend_entries(codes, names, colors, none_name, none_color=UNLABELED_COLOR) -> list[dict]:
    """Legend rows (name, color, count) for codes 0..k-1 plus -1 when present."""
    counts = code_counts(codes, len(names))
    rows = [{"name": str(name), "color": colors[i], "count": int(counts[i + 1])}
            for i, name in enumerate(names)]
    rows.append({"name": none_name, "color": none_color, "count": int(counts[0])})
    return rows


def class_buttons(store) -> list[dict]:
    """One button per class of ``store`` (keys 1..9) plus "unlabel" (key 0)."""
    buttons = [{"id": f"assign:{i}", "label": name, "color": color,
                "key": str(i + 1) if i < 9 else ""}
               for i, (name, color) in enumerate(zip(store.classes, store.colors))]
    return buttons + [{"id": "assign:-1", "label": "unlabel", "color": UNLABELED_COLOR,
                       "key": "0"}]


EDIT_BUTTONS = [{"id": "undo", "label": "undo", "key": ""},
                {"id": "redo", "label": "redo", "key": ""},
                {"id": "clear", "label": "clear selection", "key": ""}]


def cycled(palette, count) -> list[str]:
    return [palette[i % len(palette)] for i in range(count)]


class SelectionMixin:
    """Selection, status line and store plumbing shared by the scatter widgets.

    A subclass calls :meth:`_init_selection` first, builds its plot with
    :meth:`_make_plot`, and implements the hooks below (the plot reaches them only
    through the :class:`ScatterCallbacks` that :meth:`_make_plot` hands it).

    Hooks: ``_data_message()`` (marker-mode arrays), ``_codes()`` (color codes per
    panel), ``_after_selection(message)``, ``_on_store_change(change)`` (with a
    store), and optionally ``_on_button(button_id)`` (extend with ``super()``).
    """

    _name = "widget"
    #: The plot (set by :meth:`_make_plot`).
    plot: ScatterPlot
    #: The LabelStore or None.
    store: object
    #: The feature table (one row per frame).
    features: pd.DataFrame
    #: Number of frames.
    _n: int
    #: The selection (unique row indices).
    _selected: np.ndarray
    #: What :meth:`_observe_store` registered (None: not observing).
    _store_callback = None

    def _init_selection(self, features, store):
        """Set the attributes every scatter widget has (features first)."""
        self.features = as_feature_table(features, self._name)
        self._n = len(self.features)
        check_store(store, self._n, self._name)
        self.store = store
        self._selected = np.empty(0, dtype=np.int64)

    def _make_plot(self, raster=None, **traits) -> ScatterPlot:
        """The ScatterPlot of this widget: kernel raster from RASTER_THRESHOLD frames on.

        ``raster``: None (decide by size), True or False (force a mode).
        """
        use_raster = self._n >= RASTER_THRESHOLD if raster is None else bool(raster)
        layer = None
        if use_raster:
            layer = RasterLayer(self.features[traits["x_name"]].to_numpy(),
                                self.features[traits["y_name"]].to_numpy(),
                                log_y=traits.get("log_y", False))
        has_source = getattr(self, "source", None) is not None
        callbacks = ScatterCallbacks(data=self._data_message, codes=self._codes,
                                     selected=self._on_user_selection,
                                     button=self._on_button, describe=self._hover_lines,
                                     thumbnail=self._thumbnail_png if has_source else None)
        return ScatterPlot(callbacks, raster=layer, **traits)

    @property
    def raster(self) -> bool:
        """True when the points are drawn in the kernel (big scatters)."""
        return self.plot.raster is not None

    @property
    def selected(self) -> np.ndarray:
        """The current selection: sorted frame (row) indices, a copy."""
        return np.sort(self._selected.astype(np.int64))

    @property
    def status(self) -> str:
        """The status line: selected count, last action or the last problem."""
        return self.plot.status

    def select(self, indices):
        """Select rows ``indices`` (ints or a boolean mask), as a lasso would.

        An empty list clears the selection.
        """
        self._selected = check_indices(indices, self._n, self._name)
        self.plot.send_selection(self._selected)
        self._after_selection(f"{len(self._selected)} selected")

    def clear_selection(self):
        """Select nothing."""
        self.select([])

    def _on_user_selection(self, indices, panel):
        """A lasso/box arrived from the browser (Int32 indices, trusted unique)."""
        if len(indices) and (indices.min() < 0 or indices.max() >= self._n):
            raise LabelError(f"{self._name}: the browser sent indices outside 0..{self._n - 1}")
        self._selected = indices
        self._after_selection(f"{len(indices)} selected")

    def _require_selection(self, action):
        if not len(self._selected):
            message = f"nothing selected: draw a lasso or box first, then {action}"
            self.plot.status = f"⚠ {message}"
            raise LabelError(f"{self._name}: {message}")

    def assign(self, label, note=None) -> int:
        """Assign the selected frames to class ``label`` (name or index); returns the step id.

        Recorded with source ``"manual"``. Raises :class:`~xlabel.errors.LabelError`
        (and says so in the status line) for an empty selection or an unknown class.
        """
        self._require_store()
        self._require_selection(f"assign {label!r}")
        try:
            return self.store.assign(self._selected, label, source="manual", note=note)
        except LabelError as err:
            self.plot.status = f"⚠ {err}"
            raise

    def _on_button(self, button_id):
        """A toolbar button or its key: ``assign:<class>``, undo, redo, clear."""
        if button_id.startswith("assign:"):
            self.assign(int(button_id.split(":", 1)[1]))
        elif button_id == "undo":
            self.undo()
        elif button_id == "redo":
            self.redo()
        elif button_id == "clear":
            self.clear_selection()

    def undo(self):
        """Undo the store's last step (any widget's or code's); returns its id or None."""
        step = self._require_store().undo()
        self.plot.status = self.store.last_action  # the store's words, as from code
        return step

    def redo(self):
        """Redo the store's last undone step; returns its id or None."""
        step = self._require_store().redo()
        self.plot.status = self.store.last_action
        return step

    def _require_store(self):
        if self.store is None:
            raise LabelError(f"{self._name} has no LabelStore (pass store=...)")
        return self.store

    def _observe_store(self):
        # Keep the callback object so close() can unobserve exactly it.
        self._store_callback = self.store.observe(self._on_store_change)

    def close(self):
        """Stop observing the store and close the widget."""
        if self._store_callback is not None:
            self.store.unobserve(self._store_callback)
            self._store_callback = None
        super().close()

    def _hover_lines(self, index) -> list[str]:
        """The tooltip of one frame: the same lines the marker mode's tooltip shows."""
        row = self.features.iloc[index]
        frame = int(row["frame"]) if "frame" in self.features.columns and \
            pd.api.types.is_integer_dtype(self.features["frame"]) else int(index)
        head = f"frame {frame}"
        if "scan" in self.features.columns:
            head += f" · scan {row['scan']}"
        plot = self.plot
        lines = [head, f"{plot.x_name}: {fmt_value(row[plot.x_name])}",
                 f"{plot.y_name}: {fmt_value(row[plot.y_name])}"]
        if not (np.isfinite(float(row[plot.x_name])) and np.isfinite(float(row[plot.y_name]))):
            lines.append("⚠ not finite / not plottable: drawn at the edge")
        for k, (title, codes) in enumerate(zip(plot.panels, self._codes())):
            code = int(codes[index])
            name = plot.code_names[k][code] if 0 <= code < len(plot.code_names[k]) \
                else plot.none_names[k]
            lines.append(f"{title}: {name}")
        if self.store is not None:
            prov = self.store.provenance(index)
            lines.append(f"source: {prov.get('source') or '—'}")
        return lines

    def _thumbnail_png(self, index) -> bytes:
        """PNG thumbnail of frame ``index`` of ``self.source`` (the hover tooltip's)."""
        return thumbnail_png(self.source, index)

    def _recolor(self, panel, change, codes_all):
        """Send the changed codes of ``change`` to ``panel`` (delta or full)."""
        if self.raster:          # the kernel redraws the image; no per-frame arrays to send
            self.plot.send_update(panel, None)
            return
        sources = self.store.sources
        if len(change.indices) > FULL_UPDATE_SHARE * self._n:
            self.plot.send_update(panel, codes_all, sources=sources)
        else:
            idx = change.indices
            self.plot.send_update(panel, change.labels, indices=idx, sources=sources[idx])

    def _describe(self, change) -> str:
        what = {"assign": "assigned", "undo": "undo:", "redo": "redo:", "load": "loaded"}
        return f"{what.get(change.kind, change.kind)} {len(change.indices)} frame(s) (step {change.step})"

    def _store_data(self):
        """(sources, source_names) of the store, or (None, []) without a store."""
        if self.store is None:
            return None, []
        return self.store.sources, self.store.source_names


#: Longest side of a hover thumbnail, in pixels.
HOVER_THUMB_SIZE = 128


def thumbnail_png(source, index) -> bytes:
    """Frame ``index`` of ``source`` as a small log-scaled PNG (hover tooltips)."""
    from .imaging import frame_png

    return frame_png(source[int(index)], source, max_size=HOVER_THUMB_SIZE)


def check_store(store, n, widget):
    if store is None:
        return
    if not hasattr(store, "observe") or not hasattr(store, "labels"):
        raise LabelArgumentError(
            f"{widget}: store must be a LabelStore, got {type(store).__name__}")
    if store.n_frames != n:
        raise LabelArgumentError(f"{widget}: the feature table has {n} rows but the LabelStore has "
                                 f"{store.n_frames} frames; they must describe the same frames")
