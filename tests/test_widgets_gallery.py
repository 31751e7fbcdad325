"""FrameGallery and the imaging helpers: scaling, PNG thumbnails, paging, selection, relabeling."""

from __future__ import annotations

import struct
import zlib

import h5py
import numpy as np
import pandas as pd
import pytest

from xlabel.errors import LabelError, XLabelError
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import FrameGallery
from xlabel.widgets.imaging import (COLORMAPS, INVALID_COLOR, encode_png, frame_png, overlay,
                                    scale_frame)


def decode_png(data: bytes) -> np.ndarray:
    """Independent minimal PNG decoder (8-bit, filter type 0 rows) for checking the encoder."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind}"
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, channels)


def make_frames(n=30, shape=(16, 16), seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(100, size=(n, *shape)).astype(np.uint16)
    frames[::3] = rng.poisson(10000, size=(len(frames[::3]), *shape))
    return frames


def make_features(frames):
    return pd.DataFrame({"scan": "s", "frame": np.arange(len(frames)),
                         "mean": frames.reshape(len(frames), -1).mean(1), "problem": ""})


# ----------------------------------------------------------------- imaging

def test_scale_frame_is_log_of_percentile_clipped_values():
    frame = np.arange(1, 1001, dtype=np.float64).reshape(10, 100)
    scaled, bad = scale_frame(frame, percentiles=(1, 99.5))
    lo, hi = np.percentile(frame, [1, 99.5])
    expected = np.log1p(np.clip(frame, lo, hi) - lo) / np.log1p(hi - lo)
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-6)
    assert not bad.any()
    linear, _ = scale_frame(frame, percentiles=(1, 99.5), scale="linear")
    assert not np.allclose(linear, scaled)
    # log brightens the low end: the midpoint of the range is far above 0.5
    assert scaled[5, 0] > 0.8 and 0.45 < linear[5, 0] < 0.55


def test_scale_frame_ignores_invalid_pixels_for_percentiles():
    frame = np.full((4, 4), 10.0)
    frame[0, 0], frame[0, 1] = 1e9, np.nan
    frame[1] = np.arange(4) + 10
    invalid = np.zeros((4, 4), bool)
    invalid[0, 0] = True
    scaled, bad = scale_frame(frame, invalid, percentiles=(0, 100))
    assert bad[0, 0] and bad[0, 1] and bad.sum() == 2
    assert scaled[1, 3] == pytest.approx(1.0)       # max of the valid pixels, not the 1e9 one


def test_png_roundtrip_and_gray_thumbnail_is_log_scaled():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(rgb)), rgb)
    frame = np.array([[0, 1, 10, 100, 1000, 10000]], dtype=np.uint16)
    image = decode_png(frame_png(frame, percentiles=(0, 100)))
    gray = image[0, :, 0].astype(float)
    expected = np.log1p(frame[0].astype(float)) / np.log1p(10000) * 255
    np.testing.assert_allclose(gray, expected, atol=1.0)


def test_invalid_pixels_get_the_invalid_color():
    frame = np.full((6, 6), 500, dtype=np.uint16)
    frame[2, 3] = 65535                              # Eiger convention: dtype max = invalid
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = True                                # static pixel mask of the source
    source = ArraySource(frame[None], pixel_mask=mask)
    image = decode_png(frame_png(frame, source))
    assert tuple(image[2, 3]) == INVALID_COLOR and tuple(image[0, 0]) == INVALID_COLOR
    assert tuple(image[1, 1]) != INVALID_COLOR
    float_frame = frame.astype(np.float32)
    float_frame[4, 4] = np.nan
    assert tuple(decode_png(frame_png(float_frame))[4, 4]) == INVALID_COLOR


def test_thumbnail_is_block_averaged_to_max_size():
    frame = np.zeros((64, 40), dtype=np.float32)
    frame[:32] = 1000.0
    image = decode_png(frame_png(frame, max_size=16, percentiles=(0, 100)))
    assert image.shape == (16, 10, 3)
    assert image[:8, :, 0].min() == 255 and image[8:, :, 0].max() == 0


def test_overlay_rejects_bad_opacity_and_uses_colormap():
    base = np.zeros((2, 2, 3), np.uint8)
    heat = np.array([[0.0, 1.0], [0.5, 0.0]])
    out = overlay(base, heat, opacity=1.0, cmap="viridis")
    assert tuple(out[0, 1, :3]) == tuple(COLORMAPS["viridis"][255]) and out[0, 0, :3].sum() == 0
    with pytest.raises(XLabelError, match="opacity"):
        overlay(base, heat, opacity=2.0)


# ----------------------------------------------------------------- gallery

@pytest.fixture
def setup():
    frames = make_frames()
    store = LabelStore(len(frames), classes=("good", "bad"))
    store.assign(np.arange(0, 30, 3), "bad", source="kmeans")
    features = make_features(frames)
    return frames, ArraySource(frames, name="s"), store, features


def test_paging_reads_only_visible_frames_and_caches(setup):
    frames, source, store, features = setup
    reads = []

    class CountingSource(ArraySource):
        def _read(self, start, stop):
            reads.append(start)
            return super()._read(start, stop)

    gallery = FrameGallery(CountingSource(frames), np.arange(25), features, store, per_page=10)
    # page 0, plus once the 8 reference frames of the shared contrast range (spread evenly)
    reference = np.linspace(0, len(frames) - 1, 8).round().astype(int).tolist()
    assert sorted(reads) == sorted(list(range(10)) + reference)
    assert gallery.n_pages == 3 and gallery.page_indices.tolist() == list(range(10))
    assert gallery.next_page() == 1 and gallery.page_indices.tolist() == list(range(10, 20))
    assert gallery.go_to(7) == 2 and gallery.page_indices.tolist() == list(range(20, 25))
    n_reads = len(reads)
    gallery.go_to(0)
    assert len(reads) == n_reads                      # page 0 came from the thumbnail cache
    visible = [c for c in gallery._cells if c.box.layout.display != "none"]
    assert len(visible) == 10 and all(c.image.value[:4] == b"\x89PNG" for c in visible)
    gallery.go_to(2)
    assert sum(c.box.layout.display != "none" for c in gallery._cells) == 5


def test_captions_show_index_flux_label(setup):
    frames, source, store, features = setup
    gallery = FrameGallery(source, [3, 4], features, store)
    assert gallery.captions[0] == f"#3 · flux {features['mean'][3]:.4g} · label bad"
    assert gallery.captions[1].endswith("label unlabeled")
    assert "3px solid #d62728" == gallery._cells[0].box.layout.border


def test_selection_by_toggle_and_on_select(setup):
    _, source, store, features = setup
    gallery = FrameGallery(source, range(30), features, store, per_page=12)
    seen = []
    gallery.on_select(lambda sel: seen.append(sel.tolist()))
    gallery._cells[2].toggle.value = True            # a click on the third thumbnail
    gallery.next_page()
    gallery._cells[0].toggle.value = True
    assert gallery.selected.tolist() == [2, 12] and seen[-1] == [2, 12]
    gallery.prev_page()
    assert gallery._cells[2].toggle.value is True    # selection survives paging
    gallery._cells[2].toggle.value = False
    assert gallery.selected.tolist() == [12]
    with pytest.raises(XLabelError, match="not shown"):
        FrameGallery(source, [1, 2], features, store).select([5])


def test_relabel_goes_to_store_as_manual_and_other_views_update(setup):
    _, source, store, features = setup
    gallery = FrameGallery(source, range(12), features, store)
    other = FrameGallery(source, [4, 5, 7], features, store)
    gallery.select([4, 5])
    gallery.relabel("bad")
    assert store.labels[[4, 5]].tolist() == [1, 1]
    assert store.provenance(4)["source"] == "manual"
    assert other.captions[0].endswith("label bad") and other.captions[2].endswith("unlabeled")
    assert other._cells[0].box.layout.border == "3px solid #d62728"
    store.undo()                                     # a change from code redraws too
    assert other.captions[0].endswith("unlabeled")
    # the relabel button does the same through the UI
    gallery.select([7])
    button = [b for b in gallery.children[2].children if getattr(b, "description", "") == "→ good"][0]
    button.click()
    assert store.labels[7] == 0 and other.captions[2].endswith("label good")


def test_only_changed_captions_are_redrawn(setup):
    _, source, store, features = setup
    gallery = FrameGallery(source, range(12), features, store)
    sent = []
    for cell in gallery._cells:
        cell.caption.observe(lambda change, i=cell.index: sent.append(i), names="value")
    store.assign([1, 7, 20], "bad")
    assert sorted(sent) == [1, 7]


def test_bad_input_messages(setup):
    frames, source, store, features = setup
    gallery = FrameGallery(source, range(5), features, store)
    with pytest.raises(LabelError, match="no frames selected"):
        gallery.relabel("bad")
    gallery.select([1])
    with pytest.raises(LabelError, match="unknown class 'ugly'"):
        gallery.relabel("ugly")
    gallery._relabel_clicked("ugly")
    assert "unknown class" in gallery.status
    with pytest.raises(XLabelError, match="features has 29"):
        FrameGallery(source, [], features.iloc[:29], store)
    with pytest.raises(XLabelError, match="out of range"):
        gallery.show([0, 99])
    gallery.show([])
    assert "empty selection" in gallery.status and gallery._page_label.value == "no frames"
    with pytest.raises(XLabelError, match="NaN"):
        gallery.show([0.0, np.nan])


def test_nan_flux_is_flagged_not_dropped(setup):
    frames, source, store, features = setup
    features.loc[2, "mean"] = np.nan
    features.loc[2, "problem"] = "nan pixels"
    gallery = FrameGallery(source, [1, 2, 3], features, store)
    assert gallery.page_indices.tolist() == [1, 2, 3]
    assert "flux NaN" in gallery.captions[1] and "⚠ nan pixels" in gallery.captions[1]
    assert "1 with NaN flux" in gallery.status


def test_gallery_on_an_hdf5_scan(tmp_path):
    from xlabel.io import open_scan
    frames = make_frames(12, (20, 24))
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, 20, 24))
    source = open_scan(path)
    gallery = FrameGallery(source, range(12), per_page=4, thumb_size=12)
    image = decode_png(gallery.thumbnail(5))
    assert image.shape == (10, 12, 3)


def test_real_k11_dark_and_flat_frames(realdata):
    """Real DLS K11 (DIAD) frames: flat 0-49, dark (shutter closed) 50-99, projections after."""
    from xlabel.features import frame_stats
    from xlabel.io import open_scan
    source = open_scan(realdata / "dls_k11_diad_tomo" / "k11-18014.nxs")
    features = frame_stats(source, progress=False)
    store = LabelStore(len(source), classes=("good", "bad"))
    store.assign(np.arange(50, 100), "bad", source="import")
    frames = [10, 60, 200]
    gallery = FrameGallery(source, frames, features, store, vrange="frame")
    flux = features["mean"].to_numpy()
    assert gallery.captions[1] == f"#60 · flux {flux[60]:.4g} · label bad"
    assert 90 < flux[60] < 110 and flux[10] > 40000
    # per-frame contrast stretches each frame; a shared range keeps the dark frame dark
    per_frame = [decode_png(gallery.thumbnail(i))[..., 0].mean() for i in frames]
    default = FrameGallery(source, frames, features, store)     # shared range from the scan
    scan_range = [decode_png(default.thumbnail(i))[..., 0].mean() for i in frames]
    assert scan_range[1] < 0.2 * min(scan_range[0], scan_range[2])
    shared = FrameGallery(source, frames, features, store, vrange=(0, 50000))
    fixed = [decode_png(shared.thumbnail(i))[..., 0].mean() for i in frames]
    assert decode_png(gallery.thumbnail(60)).shape == (22, 26, 3)
    assert min(per_frame) > 40                                # all stretched to full range
    assert fixed[1] < 0.5 * fixed[0] and fixed[1] < 0.5 * fixed[2]
    assert fixed[0] > fixed[2]                                # flat brighter than projection


# ----------------------------------------------------------------- review order and contrast

def test_review_order_puts_frames_that_disagree_with_their_neighbours_first():
    from xlabel.widgets.gallery import review_order

    labels = np.zeros(40, int)
    labels[10:20] = 1          # a run of "bad" ...
    labels[15] = 0             # ... with a lone "good" inside (what K-means leaves behind)
    order, differ, near = review_order(np.arange(5, 25), labels, window=2)
    assert order[0] == 15 and (differ[0], near[0]) == (4, 4)
    # then the two frames on each side of the run's edges (2 of 4 differ), in frame order,
    # then those with one differing neighbour (next to an edge or to frame 15)
    assert order[1:5].tolist() == [9, 10, 19, 20]
    assert order[5:13].tolist() == [8, 11, 13, 14, 16, 17, 18, 21]
    assert differ[-1] == 0 and set(order.tolist()) == set(range(5, 25))
    # rows of another scan are not neighbours: a scan boundary is no disagreement
    groups = np.repeat([0, 1], 20)
    labels = np.repeat([0, 1], 20)
    _, differ, near = review_order([19, 20], labels, groups, window=2)
    assert differ.tolist() == [0, 0] and near.tolist() == [2, 2]


def test_flux_scatter_gallery_pages_through_every_selected_frame(setup):
    from xlabel.widgets import FluxScatter

    frames, source, store, features = setup
    store.assign(np.arange(30), "good", source="kmeans")
    store.assign([10, 11, 12, 14, 15, 16], "bad", source="kmeans")   # 13: left good
    scatter = FluxScatter(store, features, source=source, n_thumbnails=6)
    selection = np.arange(6, 18)                                      # 12 frames
    scatter.select(selection)
    gallery = scatter.gallery
    assert sorted(gallery.indices.tolist()) == selection.tolist()
    assert gallery._page_label.value == "frames 1-6 of 12 (page 1/2)"
    assert gallery.page_indices[0] == 13                  # the frame K-means left good, first
    assert "≠ 4 of 4 neighbours" in gallery.captions[0]
    assert "12 frame(s), " in gallery.status
    gallery.next_page()
    assert gallery._page_label.value == "frames 7-12 of 12 (page 2/2)"
    assert sum(c.box.layout.display != "none" for c in gallery._cells) == 6
    scatter.clear_selection()                             # an empty lasso empties the gallery
    assert gallery.indices.size == 0 and gallery._page_label.value == "no frames"
    assert all(c.box.layout.display == "none" for c in gallery._cells)


def test_default_contrast_keeps_beam_loss_frames_dark_on_the_sample_scan():
    """scan_a: beam loss at frames 68-74, shutter ramp 0-11 (bundled ground truth)."""
    import xlabel

    source = xlabel.open_scan(xlabel.samples.path("scan_a"))
    truth = xlabel.samples.truth("scan_a")
    lost = truth.frame[truth.reason == "beam_loss"].to_numpy()[1:-1]   # the deepest ones
    good = [100, 200, 300]

    def brightness(gallery):
        mean = {i: decode_png(gallery.thumbnail(i)).mean() for i in [*lost, *good]}
        return np.mean([mean[i] for i in lost]) / np.mean([mean[i] for i in good])

    default = FrameGallery(source, [])
    assert default.vrange == "scan" and default.intensity_range is not None
    assert brightness(default) < 0.7                     # visibly darker, as they are
    per_frame = FrameGallery(source, [], vrange="frame")
    assert brightness(per_frame) > 0.9                   # the trap: looks like a good frame
    assert per_frame.intensity_range is None


def test_contrast_choice_switches_and_bad_ranges_are_refused(setup):
    frames, source, store, features = setup
    gallery = FrameGallery(source, range(6), features, store)
    assert "contrast" in gallery.status and "for all frames" in gallery.status
    shared = gallery.thumbnail(1)
    gallery._contrast.value = "frame"                     # the toolbar dropdown
    assert gallery.vrange == "frame" and gallery.thumbnail(1) != shared
    assert "per frame" in gallery.status
    gallery.vrange = (0, 20000)
    assert gallery.intensity_range == (0.0, 20000.0)
    assert gallery._contrast.value == "fixed"
    for bad in [(5, 5), (0, np.nan), "auto"]:
        with pytest.raises(XLabelError, match="vrange"):
            gallery.vrange = bad
    assert FrameGallery(source, range(2), vrange=None).vrange == "frame"   # the old default
    blank = FrameGallery(ArraySource(np.zeros((4, 8, 8))), range(4))
    assert blank.intensity_range is None and "no usable shared range" in blank.status
