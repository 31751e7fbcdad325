"""Compiled per-frame statistics: one pass over each frame gives every statistic.

The kernels are numba functions that release the GIL, so :func:`xlabel.frame_stats`
runs them on several threads at once. Per frame they compute the sum, sum of
squares, min, max and the counts of valid, zero, saturated and non-finite pixels
over the valid pixels, plus the median (of a strided sample, or exact on request).

Why two kernels: 8- and 16-bit unsigned frames (Eiger, Jungfrau, most photon
counters) get a kernel on 32-bit integer lanes, which vectorizes well and is exact;
every other dtype goes through float64. Both walk each frame in blocks of 256 pixels
and first take the cheap statistics of a block (sum, squares, min, max); only blocks
that hold a zero, a saturated, a flagged or a non-finite pixel get the second,
per-pixel careful pass. Invalid pixels of the static mask are skipped by walking the
runs of valid pixels, so the mask costs nothing per pixel.

>>> import numpy as np
>>> frames = np.array([[[1, 2], [3, 65535]]], np.uint16)   # 65535: Eiger-flagged pixel
>>> out = block_stats(frames.reshape(1, -1), KernelParams.for_frames((2, 2), frames.dtype))
>>> out[0, SUM], out[0, MAX], out[0, N_VALID]
(np.float64(6.0), np.float64(3.0), np.float64(3.0))
"""

from __future__ import annotations

import math

import numpy as np
from numba import float64, njit, uint32, uint64

# Columns of the kernel's output matrix, one row per frame.
SUM, SUMSQ, MIN, MAX, N_VALID, N_ZERO, N_SAT, N_NONFINITE, MEDIAN = range(9)
N_OUT = 9
# Pixels per block: 256 * 65535 < 2**32, so block sums of 16-bit values fit uint32.
_BLOCK = 256
#: Pixel positions sampled for the default (approximate) median.
SAMPLE = 1024
_NO_FLAG = 0xFFFFFFFF  # never equal to an 8/16-bit value


class KernelParams:
    """What the kernels need to know besides the pixels: mask runs, flags, saturation.

    ``valid``: static validity per pixel (uint8, 1 = valid); ``runs``: the
    ``[start, stop)`` runs of valid pixels; ``flag_value``: the value that marks an
    invalid pixel (Eiger: dtype max) or None; ``flag_negative``: negative values are
    invalid (Pilatus); ``saturation``: level for the saturated count; ``full``: exact
    median instead of the sampled one.
    """

    def __init__(self, valid, flag_value, flag_negative, saturation, full):
        self.valid = np.ascontiguousarray(valid, dtype=np.uint8).ravel()
        self.runs = _valid_runs(self.valid)
        self.n_masked = int(self.valid.size - np.count_nonzero(self.valid))
        self.flag_value = flag_value
        self.flag_negative = bool(flag_negative)
        self.saturation = float(saturation)
        self.full = bool(full)

    @classmethod
    def for_frames(cls, frame_shape, dtype, pixel_mask=None, flag_values=True,
                   saturation=None, full=False):
        """Parameters for frames of ``frame_shape``/``dtype``.

        ``pixel_mask``: True = invalid; ``flag_values``: the Eiger (unsigned dtype max)
        and Pilatus (negative) conventions mark invalid pixels, as in
        :func:`xlabel.io.invalid_pixels`.
        """
        dtype = np.dtype(dtype)
        valid = np.ones(frame_shape, np.uint8)
        if pixel_mask is not None:
            valid[np.asarray(pixel_mask, bool)] = 0
        flag_value = int(np.iinfo(dtype).max) if flag_values and dtype.kind == "u" else None
        flag_negative = flag_values and dtype.kind == "i"
        if saturation is None:
            saturation = _default_saturation(dtype, flag_value is not None)
        return cls(valid, flag_value, flag_negative, saturation, full)


def _default_saturation(dtype, flagged):
    if dtype.kind in "ui":
        top = int(np.iinfo(dtype).max)
        return top - 1 if flagged else top
    return math.inf


def _valid_runs(valid):
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)],
                    axis=1).astype(np.int64)


def block_stats(frames, params: KernelParams, out=None):
    """Statistics of each row of ``frames`` (``(n, pixels)``): float64 ``(n, N_OUT)``."""
    frames = np.ascontiguousarray(frames)
    if not frames.dtype.isnative:
        frames = frames.astype(frames.dtype.newbyteorder("="))
    if frames.dtype.kind == "b":
        frames = frames.view(np.uint8)
    elif frames.dtype == np.float16:
        frames = frames.astype(np.float32)
    if out is None:
        out = np.empty((frames.shape[0], N_OUT))
    if frames.dtype in (np.uint8, np.uint16):
        flag = _NO_FLAG if params.flag_value is None else params.flag_value
        sat = int(min(max(math.ceil(params.saturation), 0), _NO_FLAG)) \
            if math.isfinite(params.saturation) else (0 if params.saturation < 0 else _NO_FLAG)
        _small_unsigned(frames, params.runs, params.valid, flag, sat, params.full, out)
    else:
        if frames.dtype.kind not in "uif":
            raise TypeError(f"frames of dtype {frames.dtype} are not numbers")
        flag = math.nan if params.flag_value is None else float(params.flag_value)
        _generic(frames, params.runs, params.valid, flag, params.flag_negative,
                 params.saturation, params.full, out)
    return out


# -- 8/16-bit unsigned frames: exact integer arithmetic on 32-bit lanes ----------------

@njit(nogil=True, cache=True, inline="always")
def _cheap_block(row, a, e):
    s = uint32(0)
    q = uint64(0)
    lo = uint32(_NO_FLAG)
    hi = uint32(0)
    for p in range(uint64(a), uint64(e)):
        v = uint32(row[p])
        s = uint32(s + v)
        q += uint64(uint32(v * v))
        hi = max(hi, v)
        lo = min(lo, v)
    return uint64(s), q, lo, hi


@njit(nogil=True, cache=True, inline="always")
def _careful_block(row, a, e, flag, sat):
    s = uint64(0)
    q = uint64(0)
    lo = uint32(_NO_FLAG)
    hi = uint32(0)
    n = uint64(0)
    nz = uint64(0)
    ns = uint64(0)
    for p in range(uint64(a), uint64(e)):
        v = uint32(row[p])
        if v != flag:
            s += uint64(v)
            q += uint64(uint32(v * v))
            hi = max(hi, v)
            lo = min(lo, v)
            n += uint64(1)
            nz += uint64(v == 0)
            ns += uint64(v >= sat)
    return s, q, lo, hi, n, nz, ns


@njit(nogil=True, cache=True)
def _small_unsigned(frames, runs, valid, flag, sat, full, out):
    flag = uint32(flag)
    sat = uint32(sat)
    trigger = min(flag, sat)
    stride = _sample_stride(frames.shape[1])
    for b in range(frames.shape[0]):
        row = frames[b]
        s = uint64(0)
        q = uint64(0)
        lo = uint32(_NO_FLAG)
        hi = uint32(0)
        n = uint64(0)
        nz = uint64(0)
        ns = uint64(0)
        for r in range(runs.shape[0]):
            for a in range(runs[r, 0], runs[r, 1], _BLOCK):
                e = min(runs[r, 1], a + _BLOCK)
                s1, q1, lo1, hi1 = _cheap_block(row, a, e)
                if lo1 == 0 or hi1 >= trigger:
                    s1, q1, lo1, hi1, n1, z1, sat1 = _careful_block(row, a, e, flag, sat)
                else:
                    n1 = uint64(e - a)
                    z1 = uint64(0)
                    sat1 = uint64(0)
                s += s1
                q += q1
                lo = min(lo, lo1)
                hi = max(hi, hi1)
                n += n1
                nz += z1
                ns += sat1
        _store(out[b], float64(s), float64(q), float64(lo), float64(hi), float64(n),
               float64(nz), float64(ns), 0.0)
        if n > 0:
            out[b, MEDIAN] = _sample_median(row, valid, float64(flag), False, int(n), full,
                                            stride)


# -- every other dtype: float64 arithmetic, NaN/inf skipped -------------------------------

@njit(nogil=True, cache=True, inline="always")
def _cheap_block_float(row, a, e):
    s = 0.0
    q = 0.0
    lo = np.inf
    hi = -np.inf
    for p in range(uint64(a), uint64(e)):
        x = float64(row[p])
        s += x
        q += x * x
        hi = max(hi, x)
        lo = min(lo, x)
    return s, q, lo, hi


@njit(nogil=True, cache=True, inline="always")
def _ok(x, flag, flag_negative):
    return np.isfinite(x) and x != flag and not (flag_negative and x < 0)


@njit(nogil=True, cache=True, inline="always")
def _careful_block_float(row, a, e, flag, flag_negative, sat):
    s = 0.0
    q = 0.0
    lo = np.inf
    hi = -np.inf
    n = 0
    nz = 0
    ns = 0
    bad = 0
    for p in range(uint64(a), uint64(e)):
        x = float64(row[p])
        if _ok(x, flag, flag_negative):
            s += x
            q += x * x
            hi = max(hi, x)
            lo = min(lo, x)
            n += 1
            nz += x == 0
            ns += x >= sat
        elif not np.isfinite(x):
            bad += 1
    return s, q, lo, hi, n, nz, ns, bad


@njit(nogil=True, cache=True)
def _generic(frames, runs, valid, flag, flag_negative, sat, full, out):
    trigger = sat if np.isnan(flag) else min(sat, flag)
    stride = _sample_stride(frames.shape[1])
    for b in range(frames.shape[0]):
        row = frames[b]
        s = 0.0
        q = 0.0
        lo = np.inf
        hi = -np.inf
        n = 0
        nz = 0
        ns = 0
        bad = 0
        for r in range(runs.shape[0]):
            for a in range(runs[r, 0], runs[r, 1], _BLOCK):
                e = min(runs[r, 1], a + _BLOCK)
                s1, q1, lo1, hi1 = _cheap_block_float(row, a, e)
                if lo1 <= 0 or hi1 >= trigger or not (np.isfinite(s1) and np.isfinite(q1)):
                    s1, q1, lo1, hi1, n1, z1, sat1, bad1 = _careful_block_float(
                        row, a, e, flag, flag_negative, sat)
                else:
                    n1, z1, sat1, bad1 = e - a, 0, 0, 0
                s += s1
                q += q1
                lo = min(lo, lo1)
                hi = max(hi, hi1)
                n += n1
                nz += z1
                ns += sat1
                bad += bad1
        _store(out[b], s, q, lo, hi, float64(n), float64(nz), float64(ns), float64(bad))
        if n > 0:
            out[b, MEDIAN] = _sample_median(row, valid, flag, flag_negative, n, full, stride)


@njit(nogil=True, cache=True)
def _sample_median(row, valid, flag, flag_negative, n_valid, full, stride):
    """Median of the valid pixels at every ``stride``-th position (all of them if ``full``)."""
    size = row.size if full else min(row.size, 2 * SAMPLE + 2)
    buf = np.empty(size, np.float64)
    stride = 1 if full else stride
    k = 0
    for p in range(0, row.size, stride):
        x = float64(row[p])
        if valid[p] and _ok(x, flag, flag_negative):
            buf[k] = x
            k += 1
    if k < min(n_valid, SAMPLE // 4):
        step = max(1, n_valid // SAMPLE)
        k = 0
        seen = 0
        for p in range(row.size):
            x = float64(row[p])
            if valid[p] and _ok(x, flag, flag_negative):
                if seen % step == 0 and k < size:
                    buf[k] = x
                    k += 1
                seen += 1
    return np.median(buf[:k])


@njit(nogil=True, cache=True)
def _sample_stride(n_pixels):
    """Step between sampled pixels: a prime near ``n_pixels / SAMPLE`` (1 for small frames).

    A prime step shares no factor with the frame width (unless the width is a multiple
    of it), so successive rows are sampled at shifted columns instead of one column.
    """
    step = n_pixels // SAMPLE
    if step <= 1:
        return 1
    while True:
        divisor = 2
        while divisor * divisor <= step and step % divisor:
            divisor += 1
        if divisor * divisor > step:
            return step
        step += 1


@njit(nogil=True, cache=True, inline="always")
def _store(o, s, q, lo, hi, n, nz, ns, bad):
    o[SUM] = s
    o[SUMSQ] = q
    o[N_VALID] = n
    o[N_ZERO] = nz
    o[N_SAT] = ns
    o[N_NONFINITE] = bad
    if n > 0:
        o[MIN] = lo
        o[MAX] = hi
    else:
        o[MIN] = np.nan
        o[MAX] = np.nan
    o[MEDIAN] = np.nan
