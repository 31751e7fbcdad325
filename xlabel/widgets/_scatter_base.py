"""The browser half shared by :class:`FluxScatter` and :class:`ClusterComparison`.

:class:`ScatterPlot` is an anywidget that draws one plotly.js ``scattergl`` trace per
panel (all panels share x and y). Everything large travels as binary custom
messages, never as synced traits: ipywidgets merges pending trait updates, which
loses lasso events (plotly.py issue 3910), and JSON lists are slow at 1M points.

* plotly.js comes from the plotly package itself (``package_data/plotly.min.js``),
  sent once per page on request: no CDN, works offline.
* Colors are one int16 code per point and panel (class index, cluster id, -1 =
  none), mapped by a discrete colorscale; after a label change only the changed
  indices and codes are sent (or the whole code array when most points changed).
* A lasso arrives as ``{"type": "selected", "panel": k}`` with the indices as one
  Int32 buffer; the owner's ``on_selected(indices, panel)`` is called.

The owner widget (FluxScatter, ClusterComparison) supplies callbacks and keeps all
state; this class only encodes and decodes messages.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..errors import LabelError, XLabelError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
UNLABELED_COLOR = "#bbbbbb"
#: Above this share of changed points a recolor sends the whole code array.
FULL_UPDATE_SHARE = 0.25
#: Colors for scans and clusters (cycled).
QUALITATIVE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
               "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def plotly_js_bytes() -> bytes:
    """The plotly.js bundle shipped inside the ``plotly`` Python package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path.read_bytes()


class ScatterPlot(anywidget.AnyWidget):
    """One plotly figure with ``len(panels)`` linked scattergl panels (see module doc)."""

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

    def __init__(self, owner, **traits):
        super().__init__(**traits)
        self._owner = owner
        self.render_times: list[dict] = []
        #: The last message sent to the front end: (content, buffers), for inspection.
        self.last_message: tuple[dict, list[memoryview]] | None = None

    # ------------------------------------------------------------ JS -> Python

    def _handle_custom_msg(self, content, buffers):
        """Dispatch one message from the front end (also the entry point for tests)."""
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "need_plotly":
                self._post({"type": "plotly"}, [plotly_js_bytes()])
            elif kind == "ready":
                self._post(*self._owner._data_message())
            elif kind == "selected":
                indices = decode_indices(buffers[0] if buffers else b"")
                self._owner._on_user_selection(indices, int(content.get("panel", 0)))
            elif kind == "button":
                self._owner._on_button(str(content.get("id", "")))
            elif kind == "rendered":
                self.render_times.append({"n": content.get("n"), "ms": content.get("ms")})
            else:
                log.debug("ignored front-end message %r", content)
        except XLabelError as err:  # user actions never raise into the void: show them
            self.status = f"⚠ {err}"

    # ------------------------------------------------------------ Python -> JS

    def _post(self, content, buffers=()):
        buffers = [memoryview(b) for b in buffers]
        self.last_message = (content, buffers)
        self.send(content, buffers=buffers)

    def send_update(self, panel, codes, indices=None, sources=None, palette=False):
        """Send new codes (and label sources) for ``indices`` (or all points)."""
        content = {"type": "update", "panel": int(panel), "full": indices is None,
                   "sources": sources is not None, "palette": bool(palette)}
        buffers = [] if indices is None else [np.ascontiguousarray(indices, dtype=np.int32)]
        buffers.append(np.ascontiguousarray(codes, dtype=np.int16))
        if sources is not None:
            buffers.append(np.ascontiguousarray(sources, dtype=np.int8))
        self._post(content, buffers)

    def send_selection(self, indices):
        """Show ``indices`` as the selection in every panel (drops any lasso outline)."""
        self._post({"type": "select"}, [np.ascontiguousarray(indices, dtype=np.int32)])

    def send_xy(self, x, y):
        """Replace the x and y values of all panels."""
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
        raise LabelError(f"{widget}: features must be a DataFrame or a 2-D array, "
                         f"got shape {array.shape}")
    return pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])])


def check_column(features, name, widget, axis) -> str:
    columns = numeric_columns(features)
    if name not in columns:
        raise LabelError(f"{widget}: {axis}={name!r} is not a numeric column of the feature "
                         f"table; choose one of {columns}")
    return name


def scan_codes(features) -> tuple[np.ndarray, list[str]]:
    """Per-row scan code (int16) and the scan names (``[""]`` without a scan column)."""
    if "scan" not in features.columns:
        return np.zeros(len(features), dtype=np.int16), [""]
    codes, names = pd.factorize(features["scan"].astype(str), sort=False)
    return codes.astype(np.int16), [str(n) for n in names]


def frame_numbers(features) -> np.ndarray:
    if "frame" in features.columns and pd.api.types.is_integer_dtype(features["frame"]):
        return features["frame"].to_numpy(dtype=np.int32)
    return np.arange(len(features), dtype=np.int32)


def non_finite_summary(features, columns) -> str:
    """'' or a warning naming how many rows have NaN/inf in ``columns``."""
    parts = []
    for name in dict.fromkeys(columns):
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
            raise LabelError(f"{widget}: a boolean selection needs {n} entries, "
                             f"got shape {array.shape}")
        return np.flatnonzero(array)
    array = array.reshape(-1)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise LabelError(f"{widget}: selection indices must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= n:
        bad = int(array.min() if array.min() < 0 else array.max())
        raise LabelError(f"{widget}: selection index out of range ({n} frames)", frame=bad)
    return np.unique(array)


def legend_entries(codes, names, colors, none_name, none_color=UNLABELED_COLOR) -> list[dict]:
    """Legend rows (name, color, count) for codes 0..k-1 plus -1 when present."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64) + 1, minlength=len(names) + 1)
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

    Subclasses set ``self.plot`` (a ScatterPlot), ``self.store`` (or None) and
    ``self._n``, and implement ``_after_selection()``.
    """

    _name = "widget"

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
        callback = getattr(self, "_store_callback", None)
        if callback is not None:
            self.store.unobserve(callback)
        super().close()

    def _recolor(self, panel, change, codes_all):
        """Send the changed codes of ``change`` to ``panel`` (delta or full)."""
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


def check_store(store, n, widget):
    if store is None:
        return
    if not hasattr(store, "observe") or not hasattr(store, "labels"):
        raise LabelError(f"{widget}: store must be a LabelStore, got {type(store).__name__}")
    if store.n_frames != n:
        raise LabelError(f"{widget}: the feature table has {n} rows but the LabelStore has "
                         f"{store.n_frames} frames; they must describe the same frames")
