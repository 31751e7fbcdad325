"""Tags in :class:`~xlabel.widgets.FluxScatter`: colour by a tag, add/remove a tag by lasso.

``color_by="tag:<name>"`` colours the frames that carry tag ``<name>`` in the tag's
colour and all others grey (``no <name>``): code 0 and -1, so the marker mode and the
kernel raster (rarest code drawn on top) need nothing new. The colour dropdown lists
``label``, ``scan`` (several scans) and one ``tag:<name>`` per tag of the store, and
follows tags added later (from a widget or from code).

"add tag" / "remove tag" act on the current selection through the store: one
undoable, journaled step with source ``"manual"`` each, as a class assignment is.
The front end sends them as the buttons ``add_tag:<name>`` / ``remove_tag:<name>``
(the name typed in, or chosen from, the tag field).

>>> import numpy as np, pandas as pd
>>> from xlabel.labels import LabelStore
>>> from xlabel.widgets import FluxScatter
>>> store = LabelStore(4)
>>> scatter = FluxScatter(store, pd.DataFrame({"frame": np.arange(4), "mean": [1., 2, 3, 4]}))
>>> scatter.select([1, 2]); scatter.add_tag("rings")
0
>>> scatter.color_by = "tag:rings"
>>> scatter.plot.color_options, [row["count"] for row in scatter.plot.legends[0]]
(['label', 'tag:rings'], [2, 2])
"""

from __future__ import annotations

import numpy as np

from ..errors import LabelArgumentError, LabelError
from ._scatter_base import FULL_UPDATE_SHARE, UNLABELED_COLOR, legend_entries

#: ``color_by`` values that colour by a tag start with this.
TAG_PREFIX = "tag:"
#: Tag colours (by the tag's column in the store), apart from the default class colours.
TAG_COLORS = ("#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#1f77b4")
#: Toolbar button ids that carry a tag name after the colon.
TAG_ACTIONS = ("add_tag", "remove_tag")


def tag_color(store, tag) -> str:
    """The colour of ``tag`` (fixed by its column in ``store``, so it never changes)."""
    return TAG_COLORS[list(store.tag_names).index(tag) % len(TAG_COLORS)]


class TagTools:
    """FluxScatter's tag half (a mixin before :class:`SelectionMixin`).

    Needs ``store``, ``plot``, ``_selected``, ``_n`` and the owner's
    ``_base_color_options()``; the owner routes ``color_by`` values starting with
    :data:`TAG_PREFIX` and store changes with a ``tag`` here.
    """

    def add_tag(self, tag, note=None) -> int:
        """Add ``tag`` to the selected frames (a new name starts a new tag); returns the step id.

        Recorded in the store with source ``"manual"`` (undo, journal, provenance as
        :meth:`assign`). Raises :class:`~xlabel.errors.LabelError`, and says so in the
        status line, for an empty selection or a bad tag name.
        """
        return self._tag_step("add", tag, note)

    def remove_tag(self, tag, note=None) -> int:
        """Remove ``tag`` from the selected frames; returns the step id (see :meth:`add_tag`)."""
        return self._tag_step("remove", tag, note)

    def _tag_step(self, verb, tag, note) -> int:
        store = self._require_store()
        try:
            if not isinstance(tag, str) or not tag.strip():
                raise LabelArgumentError(f"{self._name}: type a tag name (or choose one) to "
                                         f"{verb}, got {tag!r}")
            self._require_selection(f"{verb} tag {tag!r}")
            method = store.add_tag if verb == "add" else store.remove_tag
            return method(self._selected, tag, source="manual", note=note)
        except LabelError as err:
            self.plot.status = f"⚠ {err}"
            raise

    def _on_button(self, button_id):
        """``add_tag:<name>`` / ``remove_tag:<name>``, else the class/undo buttons."""
        action, colon, tag = button_id.partition(":")
        if action in TAG_ACTIONS and colon:
            self._tag_step(action.split("_")[0], tag, None)
        else:
            super()._on_button(button_id)

    # ------------------------------------------------------------ colouring

    def _color_options(self) -> list[str]:
        return self._base_color_options() + [TAG_PREFIX + t for t in self.store.tag_names]

    def _check_tag_color(self, value) -> str:
        """``value`` if it names a tag of the store as ``tag:<name>``, else a clear error."""
        tags = list(self.store.tag_names)
        if value.startswith(TAG_PREFIX) and value[len(TAG_PREFIX):] in tags:
            return value
        hint = f"; did you mean {TAG_PREFIX + value!r}?" if value in tags else ""
        known = ", ".join(repr(TAG_PREFIX + t) for t in tags) or "no tags yet"
        raise LabelArgumentError(
            f"{self._name}: color_by must be 'label', 'scan' or 'tag:<name>' of a tag of the "
            f"store ({known}), not {value!r}{hint}")

    def _color_tag(self):
        """The tag the plot is coloured by, or None."""
        value = self.plot.color_by
        return value[len(TAG_PREFIX):] if value.startswith(TAG_PREFIX) else None

    def _tag_codes(self, tag) -> np.ndarray:
        return np.where(self.store.tagged(tag), 0, -1).astype(np.int16)

    def _set_tag_palette(self, tag):
        color = tag_color(self.store, tag)
        self.plot.palettes = [[UNLABELED_COLOR, color]]
        self.plot.code_names = [[tag]]
        self.plot.none_names = [f"no {tag}"]
        self._set_tag_legend(tag)

    def _set_tag_legend(self, tag):
        self.plot.legends = [legend_entries(self._tag_codes(tag), [tag],
                                            [tag_color(self.store, tag)], f"no {tag}")]

    def _on_tag_change(self, change):
        """A tag step, or its undo/redo: new tag names, and a recolour if it is shown."""
        names = list(self.store.tag_names)
        if names != list(self.plot.tag_names):
            self.plot.tag_names = names
            self.plot.color_options = self._color_options()
        if self._color_tag() != change.tag:
            return
        codes = np.where(change.tagged, 0, -1).astype(np.int16)
        sources = self.store.sources
        if len(change.indices) > FULL_UPDATE_SHARE * self._n:
            self.plot.send_update(0, self._tag_codes(change.tag), sources=sources)
        else:
            self.plot.send_update(0, codes, indices=change.indices,
                                  sources=sources[change.indices])
        self._set_tag_legend(change.tag)

    def _describe(self, change) -> str:
        if change.tag is None:
            return super()._describe(change)
        if change.kind == "tag":
            what = "removed from" if not change.tagged.any() else "added to"
            return (f"tag {change.tag!r} {what} {len(change.indices)} frame(s) "
                    f"(step {change.step})")
        return f"{change.kind}: tag {change.tag!r} on {len(change.indices)} frame(s) " \
               f"(step {change.step})"
