"""Tags in the widgets: FrameGallery captions show a frame's tags and follow tag steps."""

import numpy as np

from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import FrameGallery


def test_gallery_captions_show_tags_and_follow_undo():
    frames = np.random.default_rng(0).poisson(5, (4, 16, 16)).astype(np.uint16)
    store = LabelStore(4)
    gallery = FrameGallery(ArraySource(frames), indices=range(4), store=store, per_page=4)
    assert "tags" not in gallery.captions[1]
    store.add_tag([1, 2], "rings")
    store.add_tag([1], "spots")
    assert gallery.caption(1).endswith("label unlabeled · tags rings, spots")
    assert "tags rings" in gallery._cells[2].caption.value   # the drawn caption was refreshed
    store.undo()
    store.undo()
    assert "tags" not in gallery._cells[1].caption.value
    gallery.close()
