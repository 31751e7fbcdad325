"""Frames to pictures: percentile/log scaling, colormaps, CAM overlays and a tiny PNG encoder.

Detector frames span many decades (dark frames near 100 counts, flat fields near
45,000, hot pixels at the dtype maximum), so a linear gray ramp shows nothing.
:func:`scale_frame` clips to percentiles of the *valid* pixels and applies
``log1p``; invalid pixels (``xlabel.io.invalid_pixels``, NaN, inf) are kept
as a mask and drawn in a distinct color instead of being silently blended in.

Everything here is plain numpy + zlib: no Pillow or matplotlib needed.

>>> import numpy as np
>>> frame = np.array([[0, 10], [100, 65535]], dtype=np.uint16)
>>> png = frame_png(frame)          # 65535 is the Eiger "invalid" value: drawn magenta
>>> png[:8] == PNG_SIGNATURE
True
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict

import numpy as np

from ..errors import WidgetArgumentError
from ..io.base import invalid_pixels

try:  # ISA-L's deflate: the same zlib stream, 4-5x faster than zlib at level 1
    from isal.isal_zlib import compress as _isal_compress
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _isal_compress = None

__all__ = ["scale_frame", "downsample", "colorize", "overlay", "encode_png", "frame_png",
           "overlay_png", "resize", "thumbnail_values", "shared_range", "COLORMAPS", "INVALID_COLOR", "PNG_SIGNATURE", "LRUCache"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Color of invalid pixels (masked, gaps, NaN): magenta, absent from the colormaps.
INVALID_COLOR = (255, 0, 255)
SCALES = ("log", "linear")

# Anchor colors (position, r, g, b) of each colormap; the 256-entry lookup tables are
# interpolated from these (inferno/viridis sampled from matplotlib's definitions).
_ANCHORS = {
    "gray": [(0.0, 0, 0, 0), (1.0, 255, 255, 255)],
    "inferno": [(0.0, 0, 0, 4), (0.125, 31, 12, 72), (0.25, 85, 15, 109),
                (0.375, 136, 34, 106), (0.5, 186, 54, 85), (0.625, 227, 89, 51),
                (0.75, 249, 140, 10), (0.875, 249, 201, 50), (1.0, 252, 255, 164)],
    "viridis": [(0.0, 68, 1, 84), (0.125, 71, 44, 122), (0.25, 59, 81, 139),
                (0.375, 44, 113, 142), (0.5, 33, 144, 141), (0.625, 39, 173, 129),
                (0.75, 92, 200, 99), (0.875, 170, 220, 50), (1.0, 253, 231, 37)],
    "jet": [(0.0, 0, 0, 128), (0.125, 0, 0, 255), (0.375, 0, 255, 255),
            (0.625, 255, 255, 0), (0.875, 255, 0, 0), (1.0, 128, 0, 0)],
}


def _lookup_table(anchors) -> np.ndarray:
    pos = np.array([a[0] for a in anchors])
    rgb = np.array([a[1:] for a in anchors], dtype=float)
    ramp = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(ramp, pos, rgb[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


#: name -> (256, 3) uint8 lookup table.
COLORMAPS = {name: _lookup_table(anchors) for name, anchors in _ANCHORS.items()}


def _check_choice(value, options, what):
    if value not in options:
        raise WidgetArgumentError(
            f"unknown {what} {value!r}; choose one of {', '.join(map(repr, options))}")
    return value


def scale_frame(frame, invalid=None, percentiles=(1.0, 99.5), scale="log", vrange=None):
    """Map a frame to ``[0, 1]``: clip to percentiles of valid pixels, then ``log1p``.

    ``vrange=(low, high)`` clips every frame to the same fixed range instead, so
    frames can be compared by brightness (a dark frame then looks dark).

    Returns ``(scaled float32 array, bad bool array)``; ``bad`` marks pixels that
    are invalid (``invalid`` mask, NaN or inf) and are 0 in ``scaled``.

    >>> import numpy as np
    >>> scaled, bad = scale_frame(np.array([[0.0, 9.0], [99.0, np.nan]]), percentiles=(0, 100))
    >>> np.round(scaled, 3).tolist(), bad.tolist()
    ([[0.0, 0.5], [1.0, 0.0]], [[False, False], [False, True]])
    """
    _check_choice(scale, SCALES, "scale")
    values = np.asarray(frame, dtype=np.float32)
    bad = ~np.isfinite(values)
    if invalid is not None:
        bad |= np.asarray(invalid, dtype=bool)
    valid = values[~bad]
    if valid.size == 0:
        return np.zeros(values.shape, np.float32), bad
    lo, hi = np.percentile(valid, percentiles) if vrange is None else vrange
    span = float(hi - lo)
    shifted = np.clip(np.where(bad, lo, values), lo, hi) - lo
    if span <= 0:
        return np.zeros(values.shape, np.float32), bad
    if scale == "log":
        scaled = np.log1p(shifted) / np.log1p(span)
    else:
        scaled = shifted / span
    return scaled.astype(np.float32), bad


def downsample(values, bad, factor: int):
    """Block-average ``values`` by ``factor`` ignoring ``bad`` pixels.

    A block is bad only when all its pixels are bad (a detector gap of one pixel
    must not swallow its neighbours in a thumbnail).
    """
    values = np.asarray(values, dtype=np.float32)
    if factor <= 1:
        return values, bad
    height, width = values.shape
    rows, cols = -(-height // factor), -(-width // factor)
    clean = np.where(bad, np.float32(0), values)
    good = (~bad).astype(np.float32)
    if (height, width) != (rows * factor, cols * factor):
        pad = ((0, rows * factor - height), (0, cols * factor - width))
        clean, good = np.pad(clean, pad), np.pad(good, pad)
    total = _block_sum(clean, rows, cols, factor)
    count = _block_sum(good, rows, cols, factor)
    return total / np.maximum(count, 1), count == 0


def _block_sum(array, rows, cols, factor):
    # contiguous axis first: much faster than one reduction over axes (1, 3)
    return array.reshape(rows, factor, cols, factor).sum(axis=3).sum(axis=1)


def colorize(scaled, bad=None, cmap="gray", invalid_color=INVALID_COLOR) -> np.ndarray:
    """``[0, 1]`` array -> ``(H, W, 3)`` uint8 RGB through a colormap; bad pixels get ``invalid_color``."""
    table = COLORMAPS[_check_choice(cmap, tuple(COLORMAPS), "colormap")]
    codes = np.clip(np.nan_to_num(np.asarray(scaled) * 255.0 + 0.5), 0, 255).astype(np.uint8)
    rgb = table[codes]
    if bad is not None and np.any(bad):
        rgb[np.asarray(bad, dtype=bool)] = invalid_color
    return rgb


def resize(values, shape) -> np.ndarray:
    """Bilinear resize of a 2-D array to ``shape`` (for CAM maps coarser than the frame)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == tuple(shape):
        return values
    rows = np.linspace(0, values.shape[0] - 1, shape[0])
    cols = np.linspace(0, values.shape[1] - 1, shape[1])
    r0 = np.floor(rows).astype(int)
    c0 = np.floor(cols).astype(int)
    r1 = np.minimum(r0 + 1, values.shape[0] - 1)
    c1 = np.minimum(c0 + 1, values.shape[1] - 1)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    top = values[r0][:, c0] * (1 - fc) + values[r0][:, c1] * fc
    bottom = values[r1][:, c0] * (1 - fc) + values[r1][:, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def overlay(base_rgb, heat, opacity=0.5, cmap="inferno") -> np.ndarray:
    """Blend a ``[0, 1]`` heat map (colormapped) over an RGB image; returns ``(H, W, 4)`` uint8.

    The heat map's color is weighted by ``opacity * heat`` so cold regions leave
    the frame visible.
    """
    if not 0.0 <= opacity <= 1.0:
        raise WidgetArgumentError(f"opacity must be between 0 and 1, got {opacity}")
    heat = resize(np.clip(np.nan_to_num(heat), 0.0, 1.0), base_rgb.shape[:2])
    heat_rgb = colorize(heat, cmap=cmap).astype(np.float32)
    alpha = (opacity * heat)[..., None]
    blended = base_rgb.astype(np.float32) * (1 - alpha) + heat_rgb * alpha
    rgba = np.empty((*base_rgb.shape[:2], 4), np.uint8)
    rgba[..., :3] = np.round(blended).astype(np.uint8)
    rgba[..., 3] = 255
    return rgba


def encode_png(pixels, level: int = 3) -> bytes:
    """Encode a uint8 ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA array as PNG."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 3: 2, 4: 6}.get(channels)
    if color_type is None or height == 0 or width == 0:
        raise WidgetArgumentError(f"cannot encode an image of shape {pixels.shape} as PNG")
    rows = np.zeros((height, 1 + width * channels), np.uint8)   # filter byte 0 per row
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", deflate(rows.tobytes(), level)) + _chunk(b"IEND", b""))


def deflate(data: bytes, level: int) -> bytes:
    """zlib stream of ``data``: ISA-L's deflate (levels 0-3, higher ones capped at 3),
    4-5x faster than zlib's level 1 with a smaller result on xlabel's palette images
    (bench/bench_raster.py); zlib where isal is missing.

    >>> import zlib
    >>> zlib.decompress(deflate(b"xlabel" * 100, 1)) == b"xlabel" * 100
    True
    """
    if _isal_compress is None:      # pragma: no cover - isal is a dependency
        return zlib.compress(data, level)
    return _isal_compress(data, min(max(level, 0), 3))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def thumbnail_values(frame, source=None, max_size=None):
    """The values a thumbnail is drawn from: ``(values, bad)`` block-averaged to ``max_size``.

    ``bad`` marks invalid pixels (``xlabel.io.invalid_pixels(frame, source)``, NaN, inf).
    """
    frame = np.asarray(frame)
    invalid = invalid_pixels(frame[None], source)
    invalid = None if invalid is None else invalid[0]
    values = frame.astype(np.float32)
    bad = ~np.isfinite(values) if invalid is None else (~np.isfinite(values) | invalid)
    factor = 1 if not max_size else max(1, -(-max(frame.shape) // int(max_size)))
    return downsample(values, bad, factor)


def shared_range(frames, source=None, max_size=None, percentiles=(1.0, 99.5)):
    """One intensity range for many thumbnails: the median over ``frames`` of their percentiles.

    Each reference frame gives the ``percentiles`` of its valid pixels (after the same block
    averaging as its thumbnail); the median over frames keeps a minority of odd reference
    frames (a dark, a saturated one) from setting the range. Returns ``(low, high)``, or
    ``None`` when no frame has valid pixels or the range is empty (e.g. all-zero frames).

    >>> import numpy as np
    >>> frames = [np.full((4, 4), v, float) + np.arange(16).reshape(4, 4) for v in (0, 100, 100)]
    >>> shared_range(frames, percentiles=(0, 100))
    (100.0, 115.0)
    >>> shared_range([np.zeros((4, 4))]) is None
    True
    """
    ranges = []
    for frame in frames:
        values, bad = thumbnail_values(frame, source, max_size)
        if np.any(~bad):
            ranges.append(np.percentile(values[~bad], percentiles))
    if not ranges:
        return None
    low, high = np.median(np.array(ranges), axis=0)
    return (float(low), float(high)) if high > low else None


def _frame_rgb(frame, source=None, scale="log", cmap="gray", max_size=None,
               percentiles=(1.0, 99.5), invalid_color=INVALID_COLOR, vrange=None) -> np.ndarray:
    values, bad = thumbnail_values(frame, source, max_size)
    scaled, bad = scale_frame(values, bad, percentiles=percentiles, scale=scale, vrange=vrange)
    return colorize(scaled, bad, cmap=cmap, invalid_color=invalid_color)


def frame_png(frame, source=None, scale="log", cmap="gray", max_size=None,
              percentiles=(1.0, 99.5), invalid_color=INVALID_COLOR, vrange=None) -> bytes:
    """One frame as an RGB PNG thumbnail (block-averaged to at most ``max_size`` pixels a side).

    Invalid pixels are decided by ``xlabel.io.invalid_pixels(frame, source)`` (plus
    NaN/inf) and drawn in ``invalid_color``. ``vrange``: see :func:`scale_frame`.
    """
    return encode_png(_frame_rgb(frame, source, scale, cmap, max_size, percentiles,
                                 invalid_color, vrange))


def overlay_png(frame, heat, source=None, opacity=0.5, cmap="inferno", scale="log",
                percentiles=(1.0, 99.5)) -> bytes:
    """The frame (gray, log-scaled) with a ``[0, 1]`` heat map on top, as one RGBA PNG of frame size."""
    base = _frame_rgb(frame, source, scale, "gray", None, percentiles)
    return encode_png(overlay(base, heat, opacity, cmap))


class LRUCache:
    """A small least-recently-used cache (thumbnails, CAM maps).

    >>> cache = LRUCache(2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a"); cache.put("c", 3)
    1
    >>> "b" in cache, "a" in cache
    (False, True)
    """

    def __init__(self, maxsize: int = 256):
        self.maxsize = int(maxsize)
        self._items: OrderedDict = OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key, default=None):
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key, value):
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def clear(self):
        self._items.clear()
