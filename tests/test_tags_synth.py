"""Synthetic scattering frames with multi-label truth (xlabel.synth.make_tagged)."""

import numpy as np
import pytest

from xlabel.synth import TAGS, SynthError, make_tagged, make_tagged_batches


@pytest.fixture(scope="module")
def scan():
    return make_tagged(160, (128, 128), seed=4)


def test_shape_tags_and_gaps(scan):
    assert scan.frames.shape == (160, 128, 128) and scan.frames.dtype == np.uint32
    assert list(scan.tags.columns) == list(TAGS) and scan.tags.dtypes.eq(bool).all()
    assert scan.pixel_mask.any()  # module gaps
    assert (scan.frames[:, scan.pixel_mask] == np.iinfo(np.uint32).max).all()
    assert (scan.frames[:, ~scan.pixel_mask] < np.iinfo(np.uint32).max - 1).all()


def test_overlaps_span_none_to_many(scan):
    per_frame = scan.tags.sum(axis=1)
    assert per_frame.min() == 0 and per_frame.max() >= 4
    assert all(0.15 < scan.tags[tag].mean() < 0.75 for tag in TAGS)


def test_seeded_and_batches_differ():
    a, b = make_tagged(5, (32, 32), seed=9), make_tagged(5, (32, 32), seed=9)
    assert np.array_equal(a.frames, b.frames) and a.tags.equals(b.tags)
    batches = make_tagged_batches(3, 5, (32, 32), seed=1)
    assert [x.name for x in batches] == ["tags_b0", "tags_b1", "tags_b2"]
    assert not np.array_equal(batches[0].frames, batches[1].frames)


def test_exposure_range_is_wide():
    levels = np.concatenate([b.truth["level"] for b in make_tagged_batches(10, 20, (16, 16))])
    assert levels.max() / levels.min() > 30


def _central_fraction(scan, radius):
    yy, xx = np.mgrid[:scan.frames.shape[1], :scan.frames.shape[2]]
    near = (np.hypot(yy - scan.beam_center[0], xx - scan.beam_center[1]) < radius) & ~scan.pixel_mask
    counts = scan.frames.astype(float)
    return counts[:, near].mean(1) / counts[:, ~scan.pixel_mask].mean(1)


def test_tags_are_in_the_pixels(scan):
    # beamstop: the beam centre is in shadow only for frames tagged beamstop
    central = _central_fraction(scan, 3)
    tagged = scan.tags["beamstop"].to_numpy()
    assert central[tagged].max() < central[~tagged].min()
    # spots: bright isolated peaks raise the frame's top percentile
    valid = scan.frames[:, ~scan.pixel_mask].astype(float)
    peak = np.percentile(valid, 99.9, axis=1) / np.median(valid, axis=1).clip(1)
    spots = scan.tags["spots"].to_numpy()
    assert np.median(peak[spots]) > 1.5 * np.median(peak[~spots])


def test_larger_frames_and_bad_args():
    assert make_tagged(2, (512, 384), seed=0).frames.shape == (2, 512, 384)
    with pytest.raises(SynthError, match="unknown tags"):
        make_tagged(2, (32, 32), tag_rates={"ice": 0.5})
