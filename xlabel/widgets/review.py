"""``ReviewQueue``: go through suspected label errors one frame at a time.

The queue shows the current suspect (and the next ones) as thumbnails in a
:class:`~xlabel.widgets.FrameGallery`, its place on a
:class:`~xlabel.widgets.FluxScatter` (the frame is selected there), its label, the
suggested class and the score. **Keep** confirms the label, **→ class** relabels;
each decision is one :meth:`LabelStore.assign <xlabel.labels.LabelStore.assign>` step
with ``source="review"``, and **undo** takes the last decision back (store and queue).

Keys (with the key pad focused): ``k`` keep, ``r`` take the suggestion, ``1``..``9``
relabel to class 1..9, ``u`` or ``Ctrl+Z`` undo.

>>> import numpy as np, pandas as pd
>>> from xlabel.labels import LabelStore
>>> store = LabelStore(5)
>>> _ = store.assign([0, 1, 2, 3, 4], "good")
>>> suspects = pd.DataFrame({"row": [3, 1], "suggested": ["bad", "bad"], "score": [1.8, 1.2]})
>>> queue = ReviewQueue(store, suspects)
>>> queue.current, queue.progress
(3, '0 of 2 reviewed')
>>> _ = queue.relabel()          # take the suggestion for frame 3
>>> _ = queue.keep()             # frame 1 stays good
>>> store.labels.tolist(), store.provenance(3)["source"], queue.progress
([0, 0, 0, 1, 0], 'review', '2 of 2 reviewed')
>>> queue.undo(); queue.current, store.provenance(1)["source"]
(1, 'manual')
"""

from __future__ import annotations

import html

import anywidget
import ipywidgets as widgets
import numpy as np
import pandas as pd
import traitlets

from ..errors import LabelError, XLabelError
from .gallery import FrameGallery, StatusMixin, WeakObserver, guarded

__all__ = ["ReviewQueue"]

SOURCE = "review"
_KEYS_JS = """
export default {
  render({ model, el }) {
    const pad = document.createElement("div");
    pad.className = "xlabel-review-keys";
    pad.tabIndex = 0;
    pad.textContent = "keys: k keep · r suggested · 1-9 class · u undo (click here first)";
    pad.style.cssText = "padding:4px 8px;border:1px dashed #999;border-radius:4px;" +
                        "font-size:12px;color:#555;outline-offset:2px;cursor:pointer";
    pad.addEventListener("keydown", (event) => {
      let key = event.key.toLowerCase();
      if ((event.ctrlKey || event.metaKey) && key === "z") key = "u";
      if (!"kru123456789".includes(key) || key.length !== 1) return;
      event.preventDefault();
      event.stopPropagation();  // JupyterLab must not treat the key as a command
      model.send({ type: "key", key });
    });
    el.appendChild(pad);
  },
};
"""


class _KeyPad(anywidget.AnyWidget):
    """A focusable strip that forwards review keys to Python."""

    _esm = _KEYS_JS
    _dummy = traitlets.Unicode("").tag(sync=True)

    def __init__(self, on_key):
        super().__init__()
        self._on_key = on_key
        self.on_msg(self._message)

    def _message(self, _widget, content, _buffers):
        if isinstance(content, dict) and content.get("type") == "key":
            self._on_key(str(content.get("key", "")))


class ReviewQueue(StatusMixin, widgets.VBox):
    """Suspects in order, with keep / relabel / undo, thumbnails and the flux scatter.

    Parameters
    ----------
    store : the :class:`~xlabel.labels.LabelStore` (one row per frame).
    suspects : DataFrame from :func:`xlabel.review.find_label_issues` (columns ``row`` and
        ``suggested``; ``score`` shown when present), most suspicious first; or a sequence
        of store rows (then the suggestion is the other class of a two-class store).
    source : optional FrameSource (the store's frames): thumbnails.
    features : optional ``frame_stats`` table (one row per frame): the flux scatter.
    x, y : scatter axes. n_next : thumbnails (current + upcoming) shown at once.
    """

    def __init__(self, store, suspects, source=None, features=None, x="frame", y="mean",
                 n_next=4):
        if store is None:
            raise LabelError("ReviewQueue needs a LabelStore (store=...)")
        self.store = store
        self._rows, self._suggested, self._scores = _queue(suspects, store)
        self._decisions: list[int] = []  # store step id of each decision, in queue order
        self._status_text = ""
        self._source, self._features, self._n_next = source, features, int(n_next)
        self.gallery = None if source is None else FrameGallery(
            source, (), features=features, store=store, per_page=self._n_next,
            columns=self._n_next)
        self.scatter = None
        if features is not None:
            from .scatter import FluxScatter
            self.scatter = FluxScatter(store, features, x=x, y=y)
        self._build()
        self._observer = WeakObserver(store, self._on_labels)
        self._render()

    # ------------------------------------------------------------------ layout
    def _build(self):
        self._progress = widgets.HTML()
        self._info = widgets.HTML()
        self._keep_button = _button("keep (k)", lambda _: self._act(self.keep))
        self._suggest_button = _button("→ suggested (r)", lambda _: self._act(self.relabel))
        self._class_buttons = []
        for i, (name, color) in enumerate(zip(self.store.classes, self.store.colors)):
            button = _button(f"→ {name} ({i + 1})" if i < 9 else f"→ {name}",
                             lambda _, name=name: self._act(lambda: self.relabel(name)))
            button.style.button_color = color
            self._class_buttons.append(button)
        self._undo_button = _button("undo (u)", lambda _: self._act(self.undo))
        self.key_pad = _KeyPad(self.press)
        self._status_html = widgets.HTML()
        bar = widgets.HBox([self._keep_button, self._suggest_button, *self._class_buttons,
                            self._undo_button])
        children = [self._progress, self._info, bar, self.key_pad]
        children += [w for w in (self.gallery, self.scatter) if w is not None]
        super().__init__(children + [self._status_html])
        self.add_class("xlabel-review")

    # ------------------------------------------------------------------ public API
    @property
    def rows(self) -> np.ndarray:
        """The store rows of the queue, in review order."""
        return self._rows.copy()

    @property
    def position(self) -> int:
        """How many suspects have been decided (the index of the current one)."""
        return len(self._decisions)

    @property
    def done(self) -> bool:
        """Whether every suspect has been decided."""
        return self.position >= len(self._rows)

    @property
    def current(self):
        """Store row of the suspect to decide now (None when the queue is done)."""
        return None if self.done else int(self._rows[self.position])

    @property
    def progress(self) -> str:
        """``"23 of 60 reviewed"``."""
        return f"{self.position} of {len(self._rows)} reviewed"

    def keep(self, note=None) -> int:
        """Confirm the current frame's label (a ``source="review"`` step); the step id."""
        label = int(self.store.labels[self._require_current()])
        return self._decide(label, note or "kept")

    def relabel(self, label=None, note=None) -> int:
        """Relabel the current frame (default: the suggested class); the step id."""
        self._require_current()
        label = self._suggested[self.position] if label is None else label
        return self._decide(self.store.class_index(label), note or "relabeled")

    def undo(self):
        """Take back the last decision (its store step and its place in the queue)."""
        if not self._decisions:
            raise XLabelError("nothing reviewed yet: nothing to undo")
        # Only the queue's own step may be undone, never a later change made elsewhere.
        if self.store._state.peek("undo") != self._decisions[-1]:
            raise XLabelError("the labels changed since the last review decision; "
                              "undo that change first (e.g. in the widget that made it)")
        self.store.undo()
        self._decisions.pop()
        self._render()

    def press(self, key: str):
        """Act on a key as the key pad does: k, r, 1..9, u."""
        if key == "k":
            self._act(self.keep)
        elif key == "r":
            self._act(self.relabel)
        elif key == "u":
            self._act(self.undo)
        elif key.isdigit() and 1 <= int(key) <= len(self.store.classes):
            self._act(lambda: self.relabel(int(key) - 1))

    # ------------------------------------------------------------------ internals
    def _require_current(self) -> int:
        if self.done:
            raise XLabelError(f"the queue is done ({self.progress})")
        return self.current

    def _decide(self, label, note) -> int:
        step = self.store.assign([self.current], label, source=SOURCE, note=note)
        self._decisions.append(step)
        self._render()
        return step

    @guarded
    def _act(self, action):
        action()
        self.set_status("")

    def _on_labels(self, _change):
        self._render_info()

    def _render(self):
        self._progress.value = f"<b>{self.progress}</b>"
        self._render_info()
        for button in (self._keep_button, self._suggest_button, *self._class_buttons):
            button.disabled = self.done
        self._undo_button.disabled = not self._decisions
        upcoming = self._rows[self.position:self.position + self._n_next]
        if self.gallery is not None:
            self.gallery.show(upcoming)
        if self.scatter is not None:
            self.scatter.select([] if self.done else [self.current])

    def _render_info(self):
        if self.done:
            self._info.value = "queue done"
            return
        row, pos = self.current, self.position
        label = self.store.class_name(int(self.store.labels[row])) or "unlabeled"
        score = "" if self._scores is None else f", score {self._scores[pos]:.3f}"
        self._info.value = html.escape(
            f"frame {_frame_name(self._features, row)}: labeled {label}, "
            f"suggested {self._suggested[pos]}{score}")


def _queue(suspects, store):
    """(rows, suggested class names, scores or None) of the queue, checked against the store."""
    if isinstance(suspects, pd.DataFrame):
        if "row" not in suspects.columns:
            raise XLabelError("suspects table needs a 'row' column (the store row of each frame)")
        rows = suspects["row"].to_numpy()
        suggested = (suspects["suggested"].astype(str).to_numpy() if "suggested" in suspects
                     else None)
        scores = suspects["score"].to_numpy(float) if "score" in suspects else None
    else:
        rows, suggested, scores = np.asarray(list(suspects)), None, None
    if rows.dtype.kind not in "iu" and len(rows):
        raise XLabelError(f"suspect rows must be integers, got {rows.dtype}")
    rows = rows.astype(np.int64)
    bad = rows[(rows < 0) | (rows >= store.n_frames)]
    if len(bad):
        raise XLabelError(f"suspect row {int(bad[0])} is outside the store's "
                          f"{store.n_frames} frames")
    if suggested is None:
        suggested = np.array([_other_class(store, row) for row in rows], dtype=object)
    unknown = sorted(set(suggested) - set(store.classes))
    if unknown:
        raise XLabelError(f"suggested classes {unknown} are not classes of the store "
                          f"{store.classes}")
    return rows, np.asarray(suggested, dtype=object), scores


def _other_class(store, row):
    label = int(store.labels[row])
    others = [c for i, c in enumerate(store.classes) if i != label]
    return others[0]


def _frame_name(features, row) -> str:
    if features is None or not {"scan", "frame"} <= set(features.columns):
        return str(row)
    item = features.iloc[row]
    return f"{item['frame']} of {item['scan']}"


def _button(description, callback):
    button = widgets.Button(description=description, layout=widgets.Layout(width="auto"))
    button.on_click(callback)
    return button
