"""The per-frame statistics kernel of :func:`xlabel.features.frame_stats`.

Kept apart from ``xlabel.features`` so worker processes import only numpy and the
readers (not pandas): each worker holds less memory and starts faster.
"""

from __future__ import annotations

import numpy as np

from .errors import FeatureError
from .io.base import invalid_pixels

# Per-frame columns computed from the pixels (the rest come from the scan context).
PIXEL_COLUMNS = ("sum", "median", "std", "min", "max", "frac_saturated", "frac_zero",
                 "n_valid", "n_invalid")
# Pixels sampled for the default (approximate) median: keeps it cheap on big frames.
_MEDIAN_SAMPLE = 1024


def range_stats(source, start, stop, opts, on_block=None):
    """Pixel statistics of frames ``start:stop`` of ``source``: dict of 1-D arrays."""
    n = stop - start
    out = {name: np.full(n, np.nan) for name in PIXEL_COLUMNS}
    out["problem"] = np.full(n, "", dtype=object)
    saturation = _saturation_level(source, opts["saturation"])
    for first, stack in source.iter_chunks(opts["chunk_frames"], start=start, stop=stop):
        _check_block(source, first, stack, stop)
        invalid = invalid_pixels(stack, source) if opts["exclude_invalid"] else None
        flat = stack.reshape(len(stack), -1)
        rows = range(first - start, first - start + len(stack))
        if invalid is None and flat.dtype.kind in "ui":
            _clean_block_stats(flat, rows, saturation, opts["full"], out)
        else:
            flat_invalid = None if invalid is None else invalid.reshape(len(stack), -1)
            for k, row in enumerate(rows):
                mask = None if flat_invalid is None else flat_invalid[k]
                _frame_stats(flat[k], mask, saturation, opts["full"], out, row)
        if on_block is not None:
            on_block(len(stack))
    return out


def _check_block(source, first, stack, stop):
    expected = (min(len(stack), stop - first), *source.frame_shape)
    if stack.ndim != 3 or stack.shape[1:] != tuple(source.frame_shape) or len(stack) == 0:
        raise FeatureError(
            f"frames of unexpected shape {stack.shape[1:]} (the scan's frame shape is "
            f"{tuple(source.frame_shape)})", path=source.path, dataset=source.dataset,
            frame=first)
    if stack.shape != expected:
        raise FeatureError(f"read returned {len(stack)} frames, expected {expected[0]}",
                           path=source.path, dataset=source.dataset, frame=first)


def _saturation_level(source, saturation):
    if saturation is not None:
        return saturation
    known = getattr(source, "saturation", None)
    if known is not None:
        return known
    dtype = np.dtype(source.dtype)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        flagged = source.invalid_values == "auto" and np.issubdtype(dtype, np.unsignedinteger)
        return top - 1 if flagged else top
    return np.inf


def _frame_stats(values, invalid, saturation, full, out, row):
    """Fill ``out[...][row]`` from one flattened frame; ``invalid``: bool mask or None."""
    n_pixels = values.size
    problem = ""
    if values.dtype.kind in "fc":
        finite = np.isfinite(values)
        if not finite.all():
            problem = "nan pixels"
            invalid = ~finite if invalid is None else invalid | ~finite
    if invalid is not None:
        values = values[~invalid]
    n = values.size
    out["n_valid"][row] = n
    out["n_invalid"][row] = n_pixels - n
    if n == 0:
        out["problem"][row] = "no valid pixels"
        return
    out["problem"][row] = problem
    total = np.add.reduce(values, dtype=_sum_dtype(values.dtype, n))
    _fill_row(values, total, values.min(), values.max(), saturation, full, out, row)


def _clean_block_stats(flat, rows, saturation, full, out):
    """Integer frames without any invalid pixel: block-wide reductions, fewer Python calls."""
    n = flat.shape[1]
    totals = np.add.reduce(flat, axis=1, dtype=_sum_dtype(flat.dtype, n))
    lows, highs = flat.min(axis=1), flat.max(axis=1)
    index = slice(rows.start, rows.stop)
    out["n_valid"][index] = n
    out["n_invalid"][index] = 0
    for k, row in enumerate(rows):
        _fill_row(flat[k], totals[k], lows[k], highs[k], saturation, full, out, row)


def _fill_row(values, total, lo, hi, saturation, full, out, row):
    """Sum, min, max, std, median and fractions of one frame's valid values."""
    n = values.size
    out["sum"][row] = total
    out["min"][row] = lo
    out["max"][row] = hi
    out["std"][row] = _std(values, total / n)
    out["median"][row] = _median(values if full else values[::max(1, n // _MEDIAN_SAMPLE)])
    out["frac_saturated"][row] = np.count_nonzero(values >= saturation) / n if hi >= saturation else 0.0
    # count_nonzero works on the raw values, without a temporary boolean array
    out["frac_zero"][row] = (n - np.count_nonzero(values)) / n if lo <= 0 <= hi else 0.0


def _median(values):
    """Exact median of a 1-D array (np.partition, without np.median's overhead)."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1:half + 1]
    return (float(low) + float(high)) / 2


def _sum_dtype(dtype, n):
    if dtype.kind == "u":
        # uint32 accumulation is ~1.4x faster and exact while it cannot overflow
        fits = n * np.iinfo(dtype).max < 2 ** 32
        return np.uint32 if fits else np.uint64
    return np.int64 if dtype.kind == "i" else np.float64


def _std(values, mean):
    # Centered sum of squares with a BLAS dot: float32 is exact enough for <=16-bit
    # integers and float32 data, and much faster than float64; wider types use float64.
    work = np.float32 if values.dtype.itemsize <= 2 or values.dtype == np.float32 else np.float64
    centered = values.astype(work)
    centered -= work(mean)
    return float(np.sqrt(np.dot(centered, centered) / values.size))
