"""Tags in the widgets: FrameGallery captions show a frame's tags and follow tag steps;
FluxScatter colours by a tag and tags its lasso selection (driven by the browser's messages)."""

import numpy as np
import pytest

from xlabel.errors import LabelError
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import FluxScatter, FrameGallery
from xlabel.widgets._raster import hex_rgb
from xlabel.widgets._scatter_tags import TAG_COLORS

from .test_widgets_scatter import (VIEW, click, decode, lasso, make_features, pixel_of,
                                   png_pixels)


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


# ---------------------------------------------------------------- FluxScatter and tags

def sent_update(scatter):
    """(content, indices or None, codes) of the last ``update`` message."""
    content, buffers = decode(scatter.plot.last_message)
    assert content["type"] == "update"
    indices = None if content["full"] else np.frombuffer(buffers.pop(0), np.int32).tolist()
    return content, indices, np.frombuffer(buffers[0], np.int16).tolist()


def test_color_by_tag_draws_tagged_frames_in_the_tag_colour():
    store = LabelStore(200)
    store.add_tag([1, 2], "rings")
    store.assign([2, 3], "bad")
    scatter = FluxScatter(store, make_features(), color_by="tag:rings")
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    content, buffers = decode(scatter.plot.last_message)
    codes = np.frombuffer(buffers[-1], np.int16)
    assert np.flatnonzero(codes == 0).tolist() == [1, 2] and (np.delete(codes, [1, 2]) == -1).all()
    assert scatter.plot.palettes == [["#bbbbbb", TAG_COLORS[0]]]
    assert [(r["name"], r["count"]) for r in scatter.plot.legends[0]] == \
        [("rings", 2), ("no rings", 198)]
    assert scatter.plot.color_options == ["label", "tag:rings"]
    assert "labels: rings" in scatter._hover_lines(2) and "labels: no rings" in \
        scatter._hover_lines(3)
    scatter.color_by = "label"          # back to classes: the label codes, full
    content, indices, codes = sent_update(scatter)
    assert content["palette"] and indices is None and codes == store.labels.tolist()


def test_color_by_refuses_unknown_tags_clearly():
    store = LabelStore(200)
    store.add_tag([0], "rings")
    with pytest.raises(LabelError, match=r"did you mean 'tag:rings'"):
        FluxScatter(store, make_features(), color_by="rings")
    scatter = FluxScatter(store, make_features())
    with pytest.raises(LabelError, match=r"\('tag:rings'\), not 'tag:spots'"):
        scatter.color_by = "tag:spots"
    with pytest.raises(LabelError, match="color_by"):
        scatter.color_by = 3
    assert scatter.color_by == "label"


def test_lasso_add_and_remove_tag_buttons_recolor_and_undo(tmp_path):
    path = tmp_path / "labels.xlabel"
    store = LabelStore(200, path=path)
    scatter = FluxScatter(store, make_features())
    assert scatter.plot.tag_tools and scatter.plot.tag_names == []
    lasso(scatter, [3, 1, 2])
    click(scatter, "add_tag:rings")
    assert np.flatnonzero(store.tagged("rings")).tolist() == [1, 2, 3]
    assert {store.tag_provenance(i)["rings"]["source"] for i in (1, 2, 3)} == {"manual"}
    assert "tag 'rings' added to 3 frame(s)" in scatter.status
    # The dropdown follows the new tag; the store's labels are untouched.
    assert scatter.plot.color_options == ["label", "tag:rings"]
    assert scatter.plot.tag_names == ["rings"]
    assert (store.labels == -1).all()

    scatter.color_by = "tag:rings"
    assert sent_update(scatter)[2] == np.where(store.tagged("rings"), 0, -1).tolist()
    lasso(scatter, [2, 5])
    click(scatter, "remove_tag:rings")
    assert np.flatnonzero(store.tagged("rings")).tolist() == [1, 3]
    content, indices, codes = sent_update(scatter)
    assert (indices, codes, content["full"]) == ([2, 5], [-1, -1], False)
    assert [r["count"] for r in scatter.plot.legends[0]] == [2, 198]
    click(scatter, "undo")                     # frame 2 had the tag, frame 5 did not
    assert sent_update(scatter)[1:] == ([2, 5], [0, -1])
    assert "undid step 1" in scatter.status
    click(scatter, "redo")
    assert sent_update(scatter)[1:] == ([2, 5], [-1, -1])
    assert [r["count"] for r in scatter.plot.legends[0]] == [2, 198]
    store.close()
    assert np.flatnonzero(LabelStore.open(path).tagged("rings")).tolist() == [1, 3]


def test_tag_buttons_refuse_clearly_and_change_nothing():
    store = LabelStore(200)
    scatter = FluxScatter(store, make_features())
    click(scatter, "add_tag:rings")
    assert scatter.status.startswith("⚠") and "nothing selected" in scatter.status
    lasso(scatter, [4, 5])
    click(scatter, "add_tag:")
    assert "type a tag name" in scatter.status
    click(scatter, "remove_tag:rings")
    assert "unknown tag 'rings'" in scatter.status
    click(scatter, "add_tag:a,b")
    assert "⚠" in scatter.status and "commas" in scatter.status
    with pytest.raises(LabelError, match="reserved|clash"):
        scatter.add_tag("label")
    assert store.tag_names == () and len(store.history) == 0
    assert scatter.plot.color_options == ["label"]


def test_tags_from_code_or_another_view_reach_every_scatter():
    store = LabelStore(200)
    features = make_features()
    by_tag, by_label = FluxScatter(store, features), FluxScatter(store, features)
    store.add_tag([7], "halo", source="model")
    by_tag.color_by = "tag:halo"
    by_tag.select([8, 9])
    by_tag.add_tag("spots")                       # a second tag: new option, other colour
    assert by_label.plot.color_options == ["label", "tag:halo", "tag:spots"]
    by_label.color_by = "tag:spots"
    assert by_label.plot.palettes[0][1] == TAG_COLORS[1]
    shown = by_tag.plot.last_message
    store.add_tag([10], "spots")                  # not the shown tag: no recolour
    assert by_tag.plot.last_message is shown
    assert sent_update(by_label)[1:] == ([10], [0])
    store.assign([11], "bad")                     # a label step while coloured by a tag
    assert sent_update(by_label)[1:] == ([10], [0])
    by_tag.close()
    by_label.close()


def test_raster_mode_colours_by_tag_in_the_kernel_image():
    store = LabelStore(200)
    scatter = FluxScatter(store, make_features(), raster=True)
    scatter.plot._handle_custom_msg({"type": "ready"}, [])
    scatter.plot._handle_custom_msg(dict(VIEW), [])
    mean = make_features()["mean"].to_numpy()
    frames = [3, 4, 5]                             # the ramp: clear of the crowd
    scatter.select(frames)
    scatter.add_tag("streak")
    scatter.color_by = "tag:streak"
    content, buffers = scatter.plot.last_message
    assert content["type"] == "image"
    image = png_pixels(buffers[0])
    for i in frames:
        assert tuple(image[pixel_of(i, mean[i])][:3]) == hex_rgb(TAG_COLORS[0])
    scatter.select([4])
    click(scatter, "remove_tag:streak")
    image = png_pixels(scatter.plot.last_message[1][0])
    assert tuple(image[pixel_of(4, mean[4])][:3]) == hex_rgb("#bbbbbb")
    assert tuple(image[pixel_of(3, mean[3])][:3]) == hex_rgb(TAG_COLORS[0])
    click(scatter, "undo")
    image = png_pixels(scatter.plot.last_message[1][0])
    assert tuple(image[pixel_of(4, mean[4])][:3]) == hex_rgb(TAG_COLORS[0])
