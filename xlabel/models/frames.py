"""Frames -> model input: invalid pixels zeroed, binned to a small size, log-scaled.

Detector frames are one-channel and high-dynamic-range; log1p tames the range and
binning (block means) makes a 1-megapixel frame cheap for an MLP or a CNN.

>>> import numpy as np
>>> stack = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
>>> bin_frames(stack, 2).shape
(2, 2, 2)
>>> np.expm1(prepare_frames(stack, size=2)[0]).round(2).tolist()  # block means
[[2.5, 4.5], [10.5, 12.5]]
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelArgumentError, ModelError
from ..io.base import ArraySource, FrameSource, invalid_pixels

__all__ = ["as_source", "bin_frames", "prepare_frames", "iter_prepared", "binned_shape",
           "check_finite_frames"]


def as_source(frames) -> FrameSource:
    """A FrameSource for a FrameSource, a path, or an array ``(n, H, W)`` / ``(H, W)``."""
    if isinstance(frames, FrameSource):
        return frames
    if isinstance(frames, np.ndarray):
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise ModelArgumentError(f"frames must be (n, H, W), got shape {frames.shape}")
        return ArraySource(frames)
    from ..io import open_scan
    return open_scan(frames)


def binned_shape(frame_shape, size) -> tuple[int, int]:
    """Shape after :func:`bin_frames` (``size=None``: unchanged; never upsampled)."""
    if size is None:
        return tuple(int(s) for s in frame_shape)
    target = (size, size) if np.isscalar(size) else tuple(size)
    return tuple(int(min(s, t)) for s, t in zip(frame_shape, target))


def bin_frames(stack: np.ndarray, size) -> np.ndarray:
    """Block means of ``stack`` (n, H, W) down to ``size`` x ``size`` (or ``(h, w)``).

    Blocks are as even as the shape allows; axes already at most ``size`` stay as they are.
    """
    stack = np.asarray(stack, dtype=np.float32)
    out_h, out_w = binned_shape(stack.shape[1:], size)
    for axis, out in ((1, out_h), (2, out_w)):
        n_in = stack.shape[axis]
        if out == n_in:
            continue
        edges = np.linspace(0, n_in, out + 1).round().astype(np.int64)
        sums = np.add.reduceat(stack, edges[:-1], axis=axis)
        widths = np.diff(edges).astype(np.float32)
        stack = sums / widths.reshape((1, -1, 1) if axis == 1 else (1, 1, -1))
    return stack


def prepare_frames(stack: np.ndarray, size=None, source: FrameSource | None = None) -> np.ndarray:
    """Zero invalid/non-finite pixels, bin to ``size``, apply ``log1p`` -> float32 (n, h, w)."""
    clean = np.asarray(stack, dtype=np.float32).copy()
    flagged = invalid_pixels(np.asarray(stack), source)
    if flagged is not None:
        clean[flagged] = 0
    clean[~np.isfinite(clean)] = 0
    np.maximum(clean, 0, out=clean)
    return np.log1p(bin_frames(clean, size))


def iter_prepared(source: FrameSource, size=None, chunk_frames=None):
    """Yield ``(start, prepared block)`` over a source, block by block.

    A frame without any finite pixel (all NaN/inf: a failed readout) raises ModelError
    naming the scan and the frame: a model must not guess a class for it.
    """
    for start, stack in source.iter_chunks(chunk_frames):
        check_finite_frames(stack, source, start)
        yield start, prepare_frames(stack, size, source)


def check_finite_frames(stack: np.ndarray, source=None, start: int = 0):
    """ModelError naming the scan and the first frames of ``stack`` with no finite pixel.

    >>> check_finite_frames(np.full((2, 3, 3), np.nan), start=10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    xlabel.errors.ModelArgumentError: frame 10: 2 frame(s) have no finite pixel (first: [10, 11]); ...
    """
    stack = np.asarray(stack)
    if stack.dtype.kind not in "fc" or not len(stack):
        return
    empty = np.flatnonzero(~np.isfinite(stack).reshape(len(stack), -1).any(axis=1))
    if len(empty):
        first = (start + empty[:5]).tolist()
        raise ModelArgumentError(
            f"{len(empty)} frame(s) have no finite pixel (first: {first}); "
            "a model cannot classify them: drop or repair these frames",
            path=getattr(source, "path", None) or getattr(source, "name", None),
            dataset=getattr(source, "dataset", None), frame=first[0])
