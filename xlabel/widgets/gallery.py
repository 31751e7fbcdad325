"""``FrameGallery``: a paged grid of frame thumbnails with captions, selection and relabeling.

Thumbnails are log-scaled PNGs (:mod:`xlabel.widgets.imaging`), read lazily from
the :class:`~xlabel.io.base.FrameSource` one page at a time and cached by frame
index, so paging back and forth is instant. With a
:class:`~xlabel.labels.LabelStore`, captions and borders show each frame's label
and the selected frames can be relabeled (``source="manual"``); the gallery
observes the store, so a change made anywhere redraws the captions that changed.

**Contrast.** By default every thumbnail is drawn with one shared intensity range
(``vrange="scan"``, see :func:`~xlabel.widgets.imaging.shared_range`): a dark or
beam-loss frame looks darker than a good one, as it is. Stretching each frame to
its own percentiles (``vrange="frame"``) shows the structure of every frame but makes
a frame with 5 % of the flux look just like a good one, which is why it is not the
default. ``vrange=(low, high)`` fixes the range by hand. The toolbar switches
between them.

**Review order.** ``order="review"`` (what :class:`~xlabel.widgets.FluxScatter`
uses for its selection) shows first the frames whose label disagrees with their
neighbours in the scan, see :func:`review_order`.

>>> import numpy as np
>>> from xlabel.io.base import ArraySource
>>> from xlabel.labels import LabelStore
>>> store = LabelStore(20)
>>> gallery = FrameGallery(ArraySource(np.arange(20 * 16).reshape(20, 4, 4)), range(20),
...                        store=store, per_page=8)
>>> gallery.page_indices.tolist()
[0, 1, 2, 3, 4, 5, 6, 7]
>>> gallery.select([3, 5])
>>> gallery.relabel("bad")   # the store's step id
0
>>> store.labels[[3, 5]].tolist(), store.provenance(3)["source"]
([1, 1], 'manual')
"""

from __future__ import annotations

import html
import weakref

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..errors import LabelError, XLabelError
from .imaging import SCALES, LRUCache, frame_png, shared_range

__all__ = ["FrameGallery", "review_order"]

ORDERS = ("given", "review")
#: Contrast dropdown: label -> ``vrange`` mode ("fixed" is added for a ``(low, high)`` range).
CONTRAST_CHOICES = {"contrast: same range for all frames": "scan",
                    "contrast: stretched per frame": "frame"}

UNLABELED_COLOR = "#bbbbbb"
ERROR_COLOR = "#d62728"


# ----------------------------------------------------------------- shared helpers

class WeakObserver:
    """Observe a LabelStore through a weak reference to a bound method.

    A store keeps its observers alive; a closed or forgotten widget must not be,
    so the widget is referenced weakly and unobserves itself once collected.
    """

    def __init__(self, store, method):
        self._store = store
        self._method = weakref.WeakMethod(method)
        store.observe(self)

    def __call__(self, change):
        method = self._method()
        if method is None:
            self._store.unobserve(self)
            return
        method(change)

    def close(self):
        self._store.unobserve(self)


def check_lengths(**things) -> int | None:
    """The common length of the non-None ``things``; XLabelError naming them when they differ."""
    lengths = {name: len(thing) for name, thing in things.items() if thing is not None}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise XLabelError(f"frame counts do not match: {detail}; they must describe the same frames")
    return next(iter(lengths.values()), None)


def class_indices(values, classes, what="labels") -> np.ndarray:
    """Class names or indices (-1 = none) -> int array; NaN and unknown names are errors.

    >>> class_indices(["bad", "good", 1], ("good", "bad")).tolist()
    [1, 0, 1]
    """
    values = np.asarray(values, dtype=object).ravel()
    lookup = {name: i for i, name in enumerate(classes)}
    out = np.empty(values.size, dtype=np.int64)
    for pos, value in enumerate(values):
        out[pos] = _one_class(value, lookup, classes, what, pos)
    return out


def _one_class(value, lookup, classes, what, pos):
    if isinstance(value, str):
        if value not in lookup:
            raise LabelError(f"{what}: unknown class {value!r} at frame {pos}; known classes: "
                             f"{', '.join(map(repr, classes))}")
        return lookup[value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        raise LabelError(f"{what}: frame {pos} is NaN/inf, not a class; flagged, not dropped")
    if float(value) != int(value) or not -1 <= int(value) < len(classes):
        raise LabelError(f"{what}: value {value!r} at frame {pos} is not a class index of "
                         f"{', '.join(map(repr, classes))} (-1 = none)")
    return int(value)


def check_indices(indices, n_frames) -> np.ndarray:
    """Frame indices (ints, bool mask or iterable) -> unique int array in order given."""
    indices = np.asarray(list(indices) if not hasattr(indices, "__len__") else indices)
    if indices.dtype == bool:
        indices = np.flatnonzero(indices)
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        values = indices.astype(float)
        if not np.all(np.isfinite(values)):
            raise XLabelError(f"frame indices contain NaN/inf at positions "
                              f"{np.flatnonzero(~np.isfinite(values))[:10].tolist()}")
        if np.any(values % 1):
            raise XLabelError(f"frame indices must be integers, got {indices[:5].tolist()}")
        indices = indices.astype(np.int64)
    indices = indices.astype(np.int64).ravel()
    bad = indices[(indices < 0) | (indices >= n_frames)] if n_frames is not None else []
    if len(bad):
        raise XLabelError(f"frame index {int(bad[0])} out of range for {n_frames} frames",
                          frame=int(bad[0]))
    _, first = np.unique(indices, return_index=True)
    return indices[np.sort(first)]


def format_flux(value) -> str:
    """Compact flux text; NaN/inf are spelled out so they are flagged, not hidden."""
    if value is None:
        return ""
    if not np.isfinite(value):
        return "NaN" if np.isnan(value) else str(value)
    return f"{value:.4g}"


def guarded(method):
    """Wrap a UI callback: an XLabelError goes to the status line instead of the log."""
    def run(self, *args):
        try:
            return method(self, *args)
        except XLabelError as err:
            self.set_status(str(err), error=True)
    run.__name__ = method.__name__
    run.__doc__ = method.__doc__
    return run


class StatusMixin:
    """A status line (``self._status_html``) and ``close()`` shared by all frame widgets."""

    _status_html: widgets.HTML

    def close(self):
        """Stop observing the store (``self._observer``) and close the widgets."""
        observer = getattr(self, "_observer", None)
        if observer is not None:
            observer.close()
        super().close()

    @property
    def status(self) -> str:
        """The status line text (plain)."""
        return self._status_text

    def set_status(self, text: str, error: bool = False):
        self._status_text = text
        color = ERROR_COLOR if error else "#444"
        self._status_html.value = f'<span style="color:{color}">{html.escape(text)}</span>'


# ------------------------------------------------------------------ review order

def review_order(indices, labels, groups=None, window=2):
    """Order frames for review: those whose label disagrees with their neighbours first.

    A frame's neighbours are the ``window`` rows before and after it in the same scan
    (``groups``: one scan code per row; rows are in frame order, as ``frame_stats`` writes
    them). Its *disagreement* is the share of its neighbours whose label differs from its
    own (unlabeled, -1, counts as a label). Frames are sorted by disagreement, highest
    first, ties in frame order: a lone "good" frame inside a run of "bad" ones comes
    first, the edges of a run next, frames inside a uniform run last. This is where
    clustering usually errs (the edges of a shutter ramp or a beam loss).

    Returns ``(ordered indices, n_differ, n_neighbours)`` (counts per ordered frame).

    >>> labels = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 0])
    >>> order, differ, near = review_order([2, 3, 4, 5, 6, 7], labels, window=1)
    >>> order.tolist(), differ.tolist(), near.tolist()
    ([4, 2, 3, 5, 7, 6], [2, 1, 1, 1, 1, 0], [2, 2, 2, 2, 2, 2])
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    groups = np.zeros(labels.size, np.int64) if groups is None else np.asarray(groups)
    offsets = np.r_[-int(window):0, 1:int(window) + 1]
    near = indices[:, None] + offsets[None, :]
    valid = (near >= 0) & (near < labels.size)
    near = np.clip(near, 0, max(labels.size - 1, 0))
    valid &= groups[near] == groups[indices][:, None]
    differ = (valid & (labels[near] != labels[indices][:, None])).sum(axis=1)
    n_near = valid.sum(axis=1)
    share = differ / np.maximum(n_near, 1)
    order = np.lexsort((indices, -share))
    return indices[order], differ[order], n_near[order]


# ------------------------------------------------------------------ the gallery

class _Cell:
    """One thumbnail slot of the grid: image, caption and select toggle (reused across pages)."""

    def __init__(self, thumb_px, on_toggle):
        self.index = None
        self.image = widgets.Image(format="png", layout=widgets.Layout(
            width=f"{thumb_px}px", height=f"{thumb_px}px", object_fit="contain"))
        self.caption = widgets.HTML()
        self.toggle = widgets.ToggleButton(description="select", layout=widgets.Layout(width="auto"))
        self.toggle.observe(lambda change: on_toggle(self, change["new"]), names="value")
        self.box = widgets.VBox([self.image, self.caption, self.toggle], layout=widgets.Layout(
            border=f"3px solid {UNLABELED_COLOR}", padding="2px", display="none"))
        self.box.add_class("xlabel-gallery-cell")


class FrameGallery(StatusMixin, widgets.VBox):
    """Paged grid of frames with index, label, flux (and prediction) captions; click to select.

    Parameters
    ----------
    source : FrameSource (or None: captions only, no pictures).
    indices : frames to show (ints or a boolean mask); change later with :meth:`show`.
    features : optional ``frame_stats`` table, one row per frame; ``flux_column`` (``mean``)
        and ``problem`` go into the captions.
    store : optional LabelStore: labels in captions and borders, relabel buttons.
    per_page : thumbnails per page. scale : ``"log"`` (default) or ``"linear"``.
    predictions : optional class per frame (names or indices) shown as ``pred`` in captions.
    columns, thumb_size : grid columns and thumbnail size (pixels).
    cmap, percentiles : colormap and clipping percentiles of valid pixels.
    vrange : contrast: ``"scan"`` (default) one range shared by all thumbnails, from
        ``n_reference`` frames spread evenly over the scan, so brightness compares across
        thumbnails (a dark frame looks dark); ``"frame"`` stretches each frame to its own
        percentiles (``None`` too); ``(low, high)`` clips every frame to that range.
    order : ``"given"`` (default) or ``"review"``: frames disagreeing with their neighbours'
        labels first (:func:`review_order`; needs ``store`` or ``predictions``). The order is
        fixed when :meth:`show` is called, so relabeling does not shuffle the pages.

    >>> import numpy as np
    >>> from xlabel.io.base import ArraySource
    >>> g = FrameGallery(ArraySource(np.ones((30, 8, 8))), np.arange(30), per_page=12)
    >>> g.n_pages, g.next_page(), g.page_indices[:3].tolist()
    (3, 1, [12, 13, 14])
    """

    def __init__(self, source, indices=(), features=None, store=None, per_page=12, scale="log",
                 *, predictions=None, columns=4, thumb_size=128, cmap="gray",
                 percentiles=(1.0, 99.5), vrange="scan", order="given", flux_column="mean",
                 cache_size=512, n_reference=8):
        if scale not in SCALES:
            raise XLabelError(f"unknown scale {scale!r}; choose one of {SCALES}")
        if int(per_page) < 1:
            raise XLabelError(f"per_page must be at least 1, got {per_page}")
        self._n_frames = check_lengths(source=source, features=features, store=store,
                                       predictions=predictions)
        self._source, self._store, self.scale, self.cmap = source, store, scale, cmap
        self.per_page, self.percentiles = int(per_page), tuple(percentiles)
        self._fixed_range = None
        self._scan_range, self._n_reference = "unknown", int(n_reference)
        self.order = _check_choice(order, ORDERS, "order")
        self._groups = _scan_groups(features)
        self._review: dict[int, tuple[int, int]] = {}
        self._flux = _flux_values(features, flux_column)
        self._problems = _problems(features)
        classes = store.classes if store is not None else _classes_of(predictions)
        self._classes = classes
        self._predictions = None if predictions is None else class_indices(
            predictions, classes, "predictions")
        self._thumbs = LRUCache(cache_size)
        self._indices = np.empty(0, np.int64)
        self._selected: dict[int, None] = {}
        self._select_callbacks: list = []
        self._page = 0
        self._updating = False
        self._status_text = ""
        self._build(columns, thumb_size)
        self.vrange = vrange
        self._observer = WeakObserver(store, self._on_labels) if store is not None else None
        self.show(indices)

    # ------------------------------------------------------------------ layout
    def _build(self, columns, thumb_size):
        self._thumb_size = int(thumb_size)
        self._cells = [_Cell(thumb_size, self._on_toggle) for _ in range(self.per_page)]
        self._grid = widgets.GridBox([c.box for c in self._cells], layout=widgets.Layout(
            grid_template_columns=f"repeat({int(columns)}, {int(thumb_size) + 14}px)",
            grid_gap="4px"))
        self._prev = _button("◀ prev", lambda _: self.prev_page())
        self._next = _button("next ▶", lambda _: self.next_page())
        self._page_label = widgets.Label()
        self._contrast = widgets.Dropdown(options=list(CONTRAST_CHOICES.items()), value="scan",
                                          layout=widgets.Layout(width="auto"))
        self._contrast.observe(lambda change: self._contrast_changed(change["new"]), names="value")
        toolbar = widgets.HBox([self._prev, self._page_label, self._next,
                                _button("select page", lambda _: self._select_page_clicked()),
                                _button("clear selection", lambda _: self.clear_selection()),
                                self._contrast])
        self._status_html = widgets.HTML()
        children = [toolbar, self._grid]
        if self._store is not None:
            children.append(self._relabel_bar())
        super().__init__(children + [self._status_html])

    def _relabel_bar(self):
        buttons = [widgets.Label("relabel selected:")]
        for name, color in zip(self._store.classes, self._store.colors):
            button = widgets.Button(description=f"→ {name}", style={"button_color": color},
                                    layout=widgets.Layout(width="auto"))
            button.on_click(lambda _, name=name: self._relabel_clicked(name))
            buttons.append(button)
        buttons += [_button("undo", lambda _: self._undo_clicked()),
                    _button("redo", lambda _: self._redo_clicked())]
        return widgets.HBox(buttons)

    # ------------------------------------------------------------------ public API
    @property
    def indices(self) -> np.ndarray:
        """All frames the gallery shows (in order)."""
        return self._indices.copy()

    @property
    def page(self) -> int:
        """Current page (0-based)."""
        return self._page

    @property
    def n_pages(self) -> int:
        return max(1, -(-self._indices.size // self.per_page))

    @property
    def page_indices(self) -> np.ndarray:
        """Frames on the current page."""
        start = self._page * self.per_page
        return self._indices[start:start + self.per_page]

    @property
    def captions(self) -> list[str]:
        """Plain-text captions of the frames on the current page."""
        return [self.caption(i) for i in self.page_indices]

    @property
    def selected(self) -> np.ndarray:
        """Selected frame indices (sorted; selection survives paging)."""
        return np.array(sorted(self._selected), dtype=np.int64)

    @property
    def store(self):
        return self._store

    @property
    def vrange(self):
        """Contrast: ``"scan"``, ``"frame"`` or ``(low, high)`` (settable; see the class doc)."""
        return self._fixed_range if self._contrast.value == "fixed" else self._contrast.value

    @vrange.setter
    def vrange(self, value):
        if value is None:               # the pre-"scan" default: percentiles of each frame
            value = "frame"
        if isinstance(value, str):
            _check_choice(value, ("scan", "frame"), "vrange")
        else:
            low, high = (float(v) for v in value)
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                raise XLabelError(f"vrange must be (low, high) with low < high, got {value!r}")
            self._fixed_range = (low, high)
            options = dict(CONTRAST_CHOICES)
            options[f"fixed range {low:g} to {high:g}"] = "fixed"
            self._contrast.options = list(options.items())
            value = "fixed"
        self._contrast.value = value
        self._render()

    @property
    def intensity_range(self):
        """``(low, high)`` the thumbnails are clipped to, or None when each frame has its own."""
        if self._contrast.value == "fixed":
            return self._fixed_range
        if self._contrast.value == "frame":
            return None
        if self._scan_range == "unknown":
            self._scan_range = self._reference_range()
        return self._scan_range

    def show(self, indices, order=None):
        """Show ``indices`` (e.g. the frames selected in a scatter); back to page 0, selection cleared.

        ``order`` (default: the gallery's ``order``): ``"given"`` or ``"review"``
        (:func:`review_order`). An empty list empties the gallery, with a note in the
        status line.
        """
        indices = check_indices(indices, self._n_frames)
        order = _check_choice(self.order if order is None else order, ORDERS, "order")
        self._review = {}
        if order == "review" and indices.size:
            indices, differ, near = review_order(indices, self._review_labels(), self._groups)
            self._review = {int(i): (int(d), int(n)) for i, d, n in zip(indices, differ, near)}
        self._indices = indices
        self._page = 0
        self._selected.clear()
        self._render()
        if self._indices.size == 0:
            self.set_status("no frames to show (empty selection)")
        else:
            self.set_status(f"{self._indices.size} frame(s){self._review_note()}"
                            f"{self._nan_note()}; {self._contrast_note()}")
        self._notify_select()

    def go_to(self, page: int) -> int:
        """Show page ``page`` (clamped to the valid range); returns the page shown."""
        self._page = int(min(max(page, 0), self.n_pages - 1))
        self._render()
        return self._page

    def next_page(self) -> int:
        return self.go_to(self._page + 1)

    def prev_page(self) -> int:
        return self.go_to(self._page - 1)

    def select(self, indices, add: bool = False):
        """Select frames (they must be shown in the gallery); ``add=True`` keeps the current selection."""
        indices = check_indices(indices, self._n_frames)
        missing = np.setdiff1d(indices, self._indices)
        if missing.size:
            raise XLabelError(f"frames {missing[:10].tolist()} are not shown in this gallery",
                              frame=int(missing[0]))
        if not add:
            self._selected.clear()
        self._selected.update(dict.fromkeys(int(i) for i in indices))
        self._sync_toggles()
        self._notify_select()

    def clear_selection(self):
        self._selected.clear()
        self._sync_toggles()
        self._notify_select()

    def on_select(self, callback):
        """Call ``callback(selected_indices)`` whenever the selection changes; returns ``callback``."""
        self._select_callbacks.append(callback)
        return callback

    def relabel(self, label, note=None) -> int:
        """Assign ``label`` to the selected frames in the store (``source="manual"``); returns the step id."""
        if self._store is None:
            raise LabelError("this gallery has no LabelStore; pass store= to relabel frames")
        selected = self.selected
        if selected.size == 0:
            raise LabelError("no frames selected: select frames before relabeling")
        step = self._store.assign(selected, label, source="manual", note=note)
        name = self._store.class_name(label)
        self.clear_selection()
        self.set_status(f"{selected.size} frame(s) → {name} (manual, step {step})")
        return step

    def caption(self, index: int) -> str:
        """Plain caption of frame ``index``: index, flux, label, tags, prediction, problem."""
        index = int(index)
        parts = [f"#{index}"]
        if self._flux is not None:
            parts.append(f"flux {format_flux(self._flux[index])}")
        label = None
        if self._store is not None:
            label = int(self._store.labels[index])
            parts.append(f"label {self._store.class_name(label) or 'unlabeled'}")
            tags = [t for t in self._store.tag_names if self._store.tagged(t)[index]]
            if tags:
                parts.append("tags " + ", ".join(tags))
        if self._predictions is not None:
            pred = int(self._predictions[index])
            parts.append(f"pred {self._classes[pred] if pred >= 0 else '-'}"
                         + (" ≠" if label is not None and label >= 0 and pred != label else ""))
        if self._problems is not None and self._problems[index]:
            parts.append(f"⚠ {self._problems[index]}")
        differ, near = self._review.get(index, (0, 0))
        if differ:
            parts.append(f"≠ {differ} of {near} neighbours")
        return " · ".join(parts)

    def thumbnail(self, index: int) -> bytes:
        """PNG bytes of frame ``index``'s thumbnail (cached)."""
        self._ensure_thumbnails(np.array([int(index)]))
        return self._thumbs.get(self._thumb_key(int(index)), b"")

    # ------------------------------------------------------------------ rendering
    def _render(self):
        page = self.page_indices
        self._ensure_thumbnails(page)
        self._updating = True
        try:
            for pos, cell in enumerate(self._cells):
                self._fill(cell, int(page[pos]) if pos < page.size else None)
        finally:
            self._updating = False
        self._page_label.value = self._page_text()
        self._prev.disabled = self._page == 0
        self._next.disabled = self._page >= self.n_pages - 1

    def _fill(self, cell, index):
        cell.index = index
        if index is None:
            cell.box.layout.display = "none"
            return
        cell.box.layout.display = None
        if self._source is not None:
            cell.image.value = self._thumbs.get(self._thumb_key(index), b"")
        else:
            cell.image.layout.display = "none"
        self._refresh_caption(cell)
        cell.toggle.value = index in self._selected

    def _refresh_caption(self, cell):
        index = cell.index
        cell.caption.value = (f'<div style="font-size:11px;line-height:1.35">'   # not ipywidgets' 28 px
                              f'{html.escape(self.caption(index))}</div>')
        cell.box.layout.border = f"3px solid {self._label_color(index)}"

    def _label_color(self, index):
        if self._store is None:
            return UNLABELED_COLOR
        label = int(self._store.labels[index])
        return self._store.colors[label] if label >= 0 else UNLABELED_COLOR

    def _page_text(self):
        if self._indices.size == 0:
            return "no frames"
        start = self._page * self.per_page
        stop = min(start + self.per_page, self._indices.size)
        return f"frames {start + 1}-{stop} of {self._indices.size} (page {self._page + 1}/{self.n_pages})"

    def _thumb_key(self, index):
        return (index, self.scale, self.cmap, self.percentiles, self.intensity_range)

    def _ensure_thumbnails(self, indices):
        if self._source is None:
            return
        missing = np.array(sorted(int(i) for i in indices if self._thumb_key(int(i)) not in self._thumbs),
                           dtype=np.int64)
        if missing.size == 0:
            return
        frames = self._source[missing]          # one read for the page, only what is not cached
        for index, frame in zip(missing, frames):
            png = frame_png(frame, self._source, scale=self.scale, cmap=self.cmap,
                            max_size=self._thumb_size,
                            percentiles=self.percentiles, vrange=self.intensity_range)
            self._thumbs.put(self._thumb_key(int(index)), png)

    def _reference_range(self):
        """The shared range of ``vrange="scan"``, from frames spread evenly over the scan."""
        if self._source is None or len(self._source) == 0:
            return None
        count = min(len(self._source), self._n_reference)
        picks = np.unique(np.linspace(0, len(self._source) - 1, count).round().astype(np.int64))
        return shared_range(self._source[picks], self._source, self._thumb_size, self.percentiles)

    def _contrast_note(self):
        if self._contrast.value == "frame":
            return "contrast stretched per frame (brightness not comparable)"
        low_high = self.intensity_range
        if low_high is None:
            return "no usable shared range (blank reference frames): contrast per frame"
        return f"contrast {low_high[0]:.4g} to {low_high[1]:.4g} for all frames"

    def _review_note(self):
        differing = sum(1 for differ, _ in self._review.values() if differ)
        if not self._review:
            return ""
        return f", {differing} disagreeing with their neighbours' labels first"

    def _review_labels(self):
        if self._store is not None:
            return self._store.labels
        if self._predictions is not None:
            return self._predictions
        raise LabelError('order="review" needs a store or predictions to compare labels')

    def _nan_note(self):
        if self._flux is None or self._indices.size == 0:
            return ""
        nan = self._indices[~np.isfinite(self._flux[self._indices])]
        return f"; {nan.size} with NaN flux (flagged): {nan[:10].tolist()}" if nan.size else ""

    # ------------------------------------------------------------------ events
    def _on_labels(self, change):
        """LabelStore observer: redraw only the visible captions whose frames changed."""
        touched = np.isin([c.index if c.index is not None else -1 for c in self._cells], change.indices)
        for cell in np.asarray(self._cells, dtype=object)[touched]:
            self._refresh_caption(cell)

    def _on_toggle(self, cell, value):
        if self._updating or cell.index is None:
            return
        if value:
            self._selected[cell.index] = None
        else:
            self._selected.pop(cell.index, None)
        self._notify_select()

    def _sync_toggles(self):
        self._updating = True
        try:
            for cell in self._cells:
                if cell.index is not None:
                    cell.toggle.value = cell.index in self._selected
        finally:
            self._updating = False

    def _notify_select(self):
        selected = self.selected
        for callback in list(self._select_callbacks):
            callback(selected)

    @guarded
    def _contrast_changed(self, value):
        if value == "fixed" and self._fixed_range is None:
            return
        self._render()
        if self._indices.size:
            self.set_status(self._contrast_note())

    @guarded
    def _select_page_clicked(self):
        self.select(self.page_indices, add=True)

    @guarded
    def _relabel_clicked(self, name):
        self.relabel(name)

    @guarded
    def _undo_clicked(self):
        self._store.undo()
        self.set_status(self._store.last_action)  # the store's words, as from code

    @guarded
    def _redo_clicked(self):
        self._store.redo()
        self.set_status(self._store.last_action)


def _check_choice(value, options, what):
    if value not in options:
        raise XLabelError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, options))}")
    return value


def _scan_groups(features):
    if features is None or "scan" not in features.columns:
        return None
    return pd.factorize(features["scan"])[0]


def _button(description, callback):
    button = widgets.Button(description=description, layout=widgets.Layout(width="auto"))
    button.on_click(callback)
    return button


def require_columns(features, *columns):
    """XLabelError naming the missing column and the ones there are."""
    for column in columns:
        if column not in features.columns:
            raise XLabelError(f"features have no {column!r} column (columns: "
                              f"{', '.join(map(str, features.columns))})")


def _flux_values(features, column):
    if features is None:
        return None
    require_columns(features, column)
    return np.asarray(features[column], dtype=float)


def _problems(features):
    if features is None or "problem" not in features.columns:
        return None
    return np.asarray(features["problem"].fillna("").astype(str))


def _classes_of(predictions):
    if predictions is None:
        return ()
    values = np.asarray(predictions, dtype=object)
    names = [v for v in values if isinstance(v, str)]
    if names:
        return tuple(sorted(set(names)))
    return tuple(str(i) for i in range(int(np.nanmax(values.astype(float))) + 1))
