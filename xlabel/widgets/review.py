"""``ReviewQueue``: go through suspected label errors one frame at a time.

The queue shows the current suspect (and the next ones) as thumbnails in a
:class:`~xlabel.widgets.FrameGallery`, its place on a
:class:`~xlabel.widgets.FluxScatter` (the frame is selected there), its label, the
suggested class and the score. **Keep** confirms the label, **→ class** relabels;
each decision is one :meth:`LabelStore.assign <xlabel.labels.LabelStore.assign>` step
with ``source="review"``, and **undo** takes the last decision back (store and queue).

Keys (with the key pad focused): ``k`` keep, ``r`` take the suggestion, ``1``..``9``
relabel to class 1..9, ``u`` or ``Ctrl+Z`` undo.

**What to label next** (:meth:`ReviewQueue.to_label`): the queue holds unlabeled frames chosen
by :func:`xlabel.active.next_to_label` (uncertain ones, spread out); label them with the
class buttons or keys, then **next batch** refits on the store's labels and queues the next
frames. ``keep`` is refused there (an unlabeled frame has no label to keep).

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

from ..errors import LabelArgumentError, WidgetArgumentError, XLabelError
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
    refill : optional callable ``refill(store) -> suspects``: :meth:`next_batch` (and the
        **next batch** button, shown when given) appends its rows once the queue is done.
        The queue is then a labeling queue ("3 of 12 labeled"); see :meth:`to_label`.
    """

    def __init__(self, store, suspects, source=None, features=None, x="frame", y="mean",
                 n_next=4, refill=None):
        if store is None:
            raise LabelArgumentError("ReviewQueue needs a LabelStore (store=...)")
        self.store = store
        self._rows, self._suggested, self._scores = _queue(suspects, store)
        self._refill = refill
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
        self._next_button = _button("next batch", lambda _: self._act(self.next_batch))
        if self._refill is None:
            self._next_button.layout.display = "none"
        else:
            self._keep_button.layout.display = "none"
        self.key_pad = _KeyPad(self.press)
        self._status_html = widgets.HTML()
        bar = widgets.HBox([self._keep_button, self._suggest_button, *self._class_buttons,
                            self._undo_button, self._next_button])
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
        """``"23 of 60 reviewed"`` (``"... labeled"`` in a labeling queue)."""
        verb = "reviewed" if self._refill is None else "labeled"
        return f"{self.position} of {len(self._rows)} {verb}"

    @classmethod
    def to_label(cls, store, features, columns=None, *, n=12, source=None, x="frame", y="mean",
                 n_next=4, strategy="margin", model=None, seed=0):
        """A labeling queue: the ``n`` frames to label next, refilled by :meth:`next_batch`.

        Each batch is :func:`xlabel.active.next_to_label` on ``features[columns]`` (default
        :data:`xlabel.review.DEFAULT_COLUMNS`) and the store's labels at that moment (with
        fewer than two classes labeled: K-means medoids, a cluster-stratified start).

        >>> import xlabel
        >>> from xlabel.labels import LabelStore
        >>> from xlabel.synth import make_fault_scan
        >>> scan = make_fault_scan(200, (16, 16), seed=1)
        >>> features = xlabel.frame_stats(scan.source(), progress=False)
        >>> store = LabelStore(200, classes=("good", "low_beam", "saturated", "dead_chip"))
        >>> queue = ReviewQueue.to_label(store, features, n=4)
        >>> queue.progress
        '0 of 4 labeled'
        >>> for row in queue.rows:           # the expert's answers; here the synthetic truth
        ...     _ = queue.relabel(scan.truth["fault"][row])
        >>> queue.next_batch(); queue.progress
        '4 of 8 labeled'
        """
        from ..active import active_model, next_to_label
        from ..review import DEFAULT_COLUMNS
        columns = list(columns or DEFAULT_COLUMNS)
        missing = [c for c in columns if c not in features.columns]
        if missing:
            raise WidgetArgumentError(f"the features table lacks columns {missing}")
        table = features[columns]
        batches = []

        def refill(store):
            names = np.asarray(("", *store.classes), dtype=object)[np.asarray(store.labels) + 1]
            batches.append(len(batches))
            # one model seed for every batch, as in xlabel.active.learning_curve(seed=seed)
            return next_to_label(table, names, store.classes, n=n, strategy=strategy,
                                 model=active_model(seed) if model is None else model,
                                 seed=seed + len(batches) - 1)
        return cls(store, refill(store), source=source, features=features, x=x, y=y,
                   n_next=n_next, refill=refill)

    def next_batch(self):
        """Queue the next frames (``refill``) once every queued frame is decided."""
        if self._refill is None:
            raise XLabelError("this queue has no refill: it holds a fixed list of suspects")
        if not self.done:
            raise XLabelError(f"finish this batch first ({self.progress})")
        rows, suggested, scores = _queue(self._refill(self.store), self.store)
        self._rows = np.r_[self._rows, rows]
        self._suggested = np.r_[self._suggested, suggested]
        if self._scores is not None or scores is not None:
            old = np.full(self.position, np.nan) if self._scores is None else self._scores
            new = np.full(len(rows), np.nan) if scores is None else scores
            self._scores = np.r_[old, new]
        self._render()

    def keep(self, note=None) -> int:
        """Confirm the current frame's label (a ``source="review"`` step); the step id."""
        label = int(self.store.labels[self._require_current()])
        if label < 0:
            raise XLabelError(f"frame {_frame_name(self._features, self.current)} is unlabeled: "
                              "choose its class (→ suggested or a class button)")
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
        self._next_button.disabled = not self.done
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
        score = ("" if self._scores is None or not np.isfinite(self._scores[pos])
                 else f", score {self._scores[pos]:.3f}")
        self._info.value = html.escape(
            f"frame {_frame_name(self._features, row)}: labeled {label}, "
            f"suggested {self._suggested[pos]}{score}")


def _queue(suspects, store):
    """(rows, suggested class names, scores or None) of the queue, checked against the store."""
    if isinstance(suspects, pd.DataFrame):
        if "row" not in suspects.columns:
            raise WidgetArgumentError(
                "suspects table needs a 'row' column (the store row of each frame)")
        rows = suspects["row"].to_numpy()
        suggested = (suspects["suggested"].astype(str).to_numpy() if "suggested" in suspects
                     else None)
        scores = suspects["score"].to_numpy(float) if "score" in suspects else None
    else:
        rows, suggested, scores = np.asarray(list(suspects)), None, None
    if rows.dtype.kind not in "iu" and len(rows):
        raise WidgetArgumentError(f"suspect rows must be integers, got {rows.dtype}")
    rows = rows.astype(np.int64)
    bad = rows[(rows < 0) | (rows >= store.n_frames)]
    if len(bad):
        raise WidgetArgumentError(f"suspect row {int(bad[0])} is outside the store's "
                                  f"{store.n_frames} frames")
    if suggested is None:
        suggested = np.array([_other_class(store, row) for row in rows], dtype=object)
    unknown = sorted(set(suggested) - set(store.classes))
    if unknown:
        raise WidgetArgumentError(f"suggested classes {unknown} are not classes of the store "
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
