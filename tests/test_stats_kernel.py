"""Tests of xlabel._stats_kernel against plain numpy references.

The reference for which pixels count is :func:`xlabel.io.invalid_pixels` (static mask
plus the Eiger dtype-max / Pilatus negative conventions) with NaN/inf left out.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlabel
from xlabel._stats_kernel import (MAX, MEDIAN, MIN, N_NONFINITE, N_OUT, N_SAT, N_VALID,
                                  N_ZERO, SUM, SUMSQ, KernelParams, block_stats)
from xlabel.io import invalid_pixels
from xlabel.io.base import ArraySource

DTYPES = ["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64"]


# -- reference -------------------------------------------------------------------------

def default_saturation(dtype, flag_values):
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        top = int(np.iinfo(dtype).max)
        return top - 1 if flag_values and dtype.kind == "u" else top
    return np.inf


def reference(frames, mask, flag_values, saturation):
    """Per-frame statistics the obvious way: one dict (column -> value) per frame.

    Counted pixels: not flagged by ``invalid_pixels`` (source with ``mask``, value
    conventions on when ``flag_values``) and finite. N_NONFINITE counts the NaN/inf
    pixels outside the static mask.
    """
    src = ArraySource(frames, pixel_mask=mask, invalid_values="auto" if flag_values else "none")
    flagged = invalid_pixels(frames, src)
    invalid = np.zeros(frames.shape, bool) if flagged is None else np.broadcast_to(
        flagged, frames.shape)
    finite = np.isfinite(frames)
    sat = default_saturation(frames.dtype, flag_values) if saturation is None else saturation
    rows = []
    for frame, bad, ok in zip(frames, invalid, finite):
        v = frame[~bad & ok]
        if v.dtype.kind in "ui":  # Python integers: exact
            ints = [int(x) for x in v]
            total, squares = sum(ints), sum(x * x for x in ints)
        else:
            wide = v.astype(np.float64)
            total, squares = float(wide.sum()), float((wide * wide).sum())
        rows.append({
            SUM: total, SUMSQ: squares, N_VALID: v.size,
            MIN: float(v.min()) if v.size else np.nan,
            MAX: float(v.max()) if v.size else np.nan,
            N_ZERO: int((v == 0).sum()), N_SAT: int((v >= sat).sum()),
            N_NONFINITE: int((~ok & ~bad).sum()),
            MEDIAN: float(np.median(v.astype(np.float64))) if v.size else np.nan,
            "abs": float(np.abs(v.astype(np.float64)).sum()),
        })
    return rows


def assert_kernel_matches(out, rows, dtype, median_exact=True):
    dtype = np.dtype(dtype)
    assert out.shape == (len(rows), N_OUT)
    for got, ref in zip(out, rows):
        for col in (N_VALID, N_ZERO, N_SAT, N_NONFINITE):
            assert got[col] == ref[col], (col, got, ref)
        for col in (MIN, MAX) + ((MEDIAN,) if median_exact else ()):
            both_nan = np.isnan(got[col]) and np.isnan(ref[col])
            assert got[col] == ref[col] or both_nan, (col, got, ref)
        if dtype.kind in "ui":
            assert got[SUM] == ref[SUM]  # exact: integer sums are < 2**53 here
            if dtype.itemsize <= 2:
                assert got[SUMSQ] == ref[SUMSQ]
            else:
                assert got[SUMSQ] == pytest.approx(ref[SUMSQ], rel=1e-12)
        else:
            assert got[SUM] == pytest.approx(ref[SUM], rel=1e-12, abs=1e-12 * ref["abs"])
            assert got[SUMSQ] == pytest.approx(ref[SUMSQ], rel=1e-9)


# -- 1. random frames, masks, flags, saturation levels ----------------------------------

PROBS = st.sampled_from([0.0, 0.001, 0.05, 0.3, 1.0])


SHAPES = st.one_of(
    st.sampled_from([(24, 30), (9, 31), (1, 257), (16, 16), (20, 29)]),  # >= 1 block of 256
    st.tuples(st.integers(1, 24), st.integers(1, 30)))


@st.composite
def kernel_cases(draw, dtype=None):
    dtype = np.dtype(dtype or draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(1, 3))
    shape = draw(SHAPES)  # up to 720 pixels: several 256-pixel blocks and mask runs
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = (n, *shape)
    if dtype.kind == "f":
        scale = draw(st.sampled_from([1.0, 1e3, 1e6]))
        frames = rng.normal(scale, scale / 3, size)
        specials = [0.0, -0.0, -1.0, np.nan, np.inf, -np.inf]
    else:
        info = np.iinfo(dtype)
        top = draw(st.sampled_from([10, 1000, int(info.max)]))
        lo = int(info.min) if draw(st.booleans()) else 0
        frames = rng.integers(max(lo, -top), min(top, int(info.max)), size, endpoint=True)
        specials = sorted({0, int(info.max), int(info.max) - 1, int(info.min), -1 if lo else 0})
    for value in specials:
        frames[rng.random(size) < draw(PROBS)] = value
    frames = frames.astype(dtype)
    mask = rng.random(shape) < draw(PROBS) if draw(st.booleans()) else None
    if mask is not None and draw(st.booleans()):  # long runs of masked pixels (gaps)
        mask[:, : draw(st.integers(0, shape[1]))] = True
    flag_values = draw(st.booleans())
    sat_kind = draw(st.sampled_from(["default", "value", "half", "negative", "huge"]))
    finite = frames[np.isfinite(frames)]
    pick = float(finite.flat[rng.integers(finite.size)]) if finite.size else 1.0
    saturation = {"default": None, "value": pick, "half": pick + 0.5, "negative": -3.0,
                  "huge": 1e20}[sat_kind]
    return frames, mask, flag_values, saturation, draw(st.booleans())


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_block_stats_matches_numpy_reference(dtype, data):
    """Every output column equals the numpy reference over the valid, finite pixels."""
    frames, mask, flag_values, saturation, full = data.draw(kernel_cases(dtype))
    params = KernelParams.for_frames(frames.shape[1:], frames.dtype, pixel_mask=mask,
                                     flag_values=flag_values, saturation=saturation, full=full)
    out = block_stats(frames.reshape(len(frames), -1), params)
    rows = reference(frames, mask, flag_values, saturation)
    # frames of <= 2047 pixels: the default (sampled) median is exact as well
    assert_kernel_matches(out, rows, frames.dtype, median_exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_excluded_pixels_are_exactly_those_invalid_pixels_flags(dtype):
    """Pixel by pixel, the kernel leaves out exactly invalid_pixels' pixels and NaN/inf.

    Frame j of the batch keeps pixel j of the test frame and fills every other pixel with
    an always-invalid value, so its N_VALID (0 or 1) says whether pixel j counts.
    """
    rng = np.random.default_rng(8)
    dtype = np.dtype(dtype)
    frame = rng.integers(1, 50, (1, 9, 31)).astype(dtype)
    flat = frame.reshape(-1)
    if dtype.kind == "u":
        flat[::7] = np.iinfo(dtype).max
        filler = np.iinfo(dtype).max
    elif dtype.kind == "i":
        flat[::7] = -1
        flat[3::11] = np.iinfo(dtype).min
        filler = -1
    else:
        flat[::7] = np.nan
        flat[3::11] = -np.inf
        flat[5::13] = -4.0  # negative floats are valid
        filler = np.nan
    flat[::5] = 0
    mask = rng.random((9, 31)) < 0.2
    params = KernelParams.for_frames((9, 31), dtype, pixel_mask=mask)
    excluded = invalid_pixels(frame, ArraySource(frame, pixel_mask=mask)) | ~np.isfinite(frame)
    excluded = excluded.reshape(-1)
    assert 0 < excluded.sum() < frame.size
    batch = np.full((frame.size, frame.size), filler, dtype)
    np.fill_diagonal(batch, flat)
    out = block_stats(batch, params)
    np.testing.assert_array_equal(out[:, N_VALID], (~excluded).astype(float))
    whole = block_stats(frame.reshape(1, -1), params)
    assert whole[0, N_VALID] == (~excluded).sum()
    assert whole[0, SUM] == flat[~excluded].astype(np.float64).sum()


# -- 2. frames without any valid pixel --------------------------------------------------

@pytest.mark.parametrize("frames,mask", [
    (np.full((2, 5, 7), 100, np.uint16), np.ones((5, 7), bool)),
    (np.full((2, 5, 7), 65535, np.uint16), None),
    (np.full((2, 300, 3), 255, np.uint8), None),
    (np.full((2, 5, 7), -2, np.int16), None),
    (np.full((2, 5, 7), 4294967295, np.uint32), None),
    (np.full((2, 5, 7), np.nan, np.float32), None),
    (np.where(np.arange(35).reshape(1, 5, 7) % 2, np.inf, np.nan).repeat(2, 0), None),
    (np.full((2, 5, 7), 3.0), np.ones((5, 7), bool)),
], ids=["masked", "eiger-flagged", "uint8-flagged", "pilatus-negative", "uint32-flagged",
        "nan", "nan-inf", "float-masked"])
def test_frames_without_valid_pixels_give_nan_statistics(frames, mask):
    """No valid pixel: N_VALID 0, SUM 0, MIN/MAX/MEDIAN NaN, for both medians."""
    for full in (False, True):
        params = KernelParams.for_frames(frames.shape[1:], frames.dtype, pixel_mask=mask, full=full)
        out = block_stats(frames.reshape(len(frames), -1), params)
        assert (out[:, N_VALID] == 0).all() and (out[:, SUM] == 0).all()
        assert np.isnan(out[:, [MIN, MAX, MEDIAN]]).all()
        assert (out[:, [N_ZERO, N_SAT]] == 0).all()
        expected_bad = 0 if mask is not None or frames.dtype.kind != "f" else frames[0].size
        assert (out[:, N_NONFINITE] == expected_bad).all()
    table = xlabel.frame_stats(frames, progress=False) if mask is None else None
    if table is not None:
        assert (table["problem"] == "no valid pixels").all()
        assert table[["mean", "median", "min", "max"]].isna().all().all()


# -- 3. the default (sampled) median ----------------------------------------------------

@pytest.mark.parametrize("shape", [(45, 45), (1, 2047), (23, 89), (7, 13)])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
def test_sampled_median_is_exact_for_small_frames(shape, dtype):
    """Frames of at most 2047 pixels: the default median equals np.median of the valid pixels."""
    rng = np.random.default_rng(sum(shape))
    frames = rng.poisson(30, (3, *shape)).astype(dtype)
    frames[rng.random(frames.shape) < 0.05] = 65535 if dtype == "uint16" else -1
    mask = rng.random(shape) < 0.1
    params = KernelParams.for_frames(shape, dtype, pixel_mask=mask)
    out = block_stats(frames.reshape(3, -1), params)
    rows = reference(frames, mask, True, None)
    np.testing.assert_array_equal(out[:, MEDIAN], [r[MEDIAN] for r in rows])


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_sampled_median_close_on_large_poisson_frame(dtype):
    """512x512 Poisson(1000): sampled median within 1% of the exact one; full=True exact."""
    rng = np.random.default_rng(12)
    frames = rng.poisson(1000, (2, 512, 512)).astype(dtype)
    exact = np.median(frames.reshape(2, -1), axis=1)
    sampled = block_stats(frames.reshape(2, -1),
                          KernelParams.for_frames((512, 512), dtype))[:, MEDIAN]
    np.testing.assert_allclose(sampled, exact, rtol=0.01)
    full = block_stats(frames.reshape(2, -1),
                       KernelParams.for_frames((512, 512), dtype, full=True))[:, MEDIAN]
    np.testing.assert_array_equal(full, exact)


@pytest.mark.parametrize("how", ["random-mask", "roi-mask", "eiger-flags", "float-nan"])
def test_sampled_median_of_heavily_masked_frame(how):
    """99% of the pixels invalid (set to far-off values): the median still comes from valid ones."""
    rng = np.random.default_rng(13)
    shape = (512, 512)
    dtype = np.float32 if how == "float-nan" else np.uint16
    frames = rng.poisson(1000, (2, *shape)).astype(dtype)
    mask = None
    if how == "random-mask":
        mask = rng.random(shape) < 0.99
        frames[:, mask] = 60000
    elif how == "roi-mask":
        mask = np.ones(shape, bool)
        mask[200:251, 300:351] = False  # 51x51 ROI, none of it on the strided sample
        frames[:, mask] = 60000
    elif how == "eiger-flags":
        frames[rng.random(frames.shape) < 0.99] = 65535
    else:
        frames[rng.random(frames.shape) < 0.99] = np.nan
    rows = reference(frames, mask, True, None)
    exact = np.array([r[MEDIAN] for r in rows])
    assert all(500 < r[N_VALID] < 10000 for r in rows)
    out = block_stats(frames.reshape(2, -1), KernelParams.for_frames(shape, dtype, pixel_mask=mask))
    np.testing.assert_array_equal(out[:, N_VALID], [r[N_VALID] for r in rows])
    np.testing.assert_allclose(out[:, MEDIAN], exact, rtol=0.01)


# -- 4. threads ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
def test_two_threads_on_halves_equal_one_call(dtype):
    """block_stats on two threads (each half the frames, into one output) == one call."""
    rng = np.random.default_rng(14)
    frames = rng.poisson(100, (40, 96, 96)).astype(dtype).reshape(40, -1)
    frames[rng.random(frames.shape) < 0.01] = 0
    frames[rng.random(frames.shape) < 0.01] = 65535 if dtype == "uint16" else -1
    mask = rng.random((96, 96)) < 0.05
    params = KernelParams.for_frames((96, 96), dtype, pixel_mask=mask)
    once = block_stats(frames, params)
    out = np.full_like(once, -1.0)
    errors = []

    def work(a, b):
        try:
            for _ in range(5):  # repeat so the threads really overlap
                block_stats(frames[a:b], params, out[a:b])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(a, b)) for a, b in [(0, 20), (20, 40)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(out, once)


@pytest.mark.parametrize("shape", [(512, 512), (1024, 1024), (2048, 2048)])
def test_sampled_median_does_not_alias_to_one_column(shape):
    """A frame whose value depends on the column only: the sample must span columns."""
    frame = (np.arange(shape[1]) % 1000).astype(np.uint16)[None, :].repeat(shape[0], axis=0)
    params = KernelParams.for_frames(shape, frame.dtype)
    out = block_stats(frame.reshape(1, -1), params)
    assert abs(out[0, MEDIAN] - np.median(frame)) <= 0.01 * np.median(frame)
