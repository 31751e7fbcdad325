"""Kernel-side raster of big scatters: points as an image, lasso and hover in the kernel.

Above :data:`RASTER_THRESHOLD` frames the scatter widgets stop sending points to the
browser. The kernel draws them into an RGBA image of exactly the plot's pixel size
for the visible axis range, and the browser shows it as a plotly layout image under
the axes (plotly keeps the axes, zoom/pan, the lasso outline). A lasso travels back
as a polygon in axis units and :func:`points_in_polygon` finds the exact frames
inside; hover asks :func:`nearest_point` for the closest frame.

Every frame stays visible: each occupied pixel is stamped as a 3x3 dot (5x5 when no
other point lies within 2 pixels, so a lone outlier among a million is a clear dot),
and where dots overlap the rarest class wins (then the selected one), so one bad frame
in a crowd of good ones is never averaged away. Density shades the crowd: a pixel's
opacity grows with the log of its point count (in 32 steps: the image is a palette PNG,
a byte a pixel, half the size and compression time of RGBA).

A view's pixel of every frame is kept (one int32 per frame), so a recolor (assign, undo,
redo, selection) only counts codes per pixel; a zoom or pan recomputes it.

numba's first use in a process takes ~0.4 s (its compiler target and the modules it
imports, scipy.linalg among them), so this module pays it at import (:data:`NUMBA_LOADED`),
where one-time costs belong: a plot's first image is then drawn by numba at once (each
kernel's cached specialization loads in a few ms). The rest (lasso, hover, other code
dtypes) load in a background thread after the first image. NumPy twins of the render
kernels (the same image, tested pixel for pixel; ~3x slower) draw only if numba could not
be loaded.

Why numba and not datashader (measured in ``bench/bench_raster.py``, BENCHMARKS.md):
datashader's ``Canvas.points`` + ``count_cat`` + ``shade``/``spread`` does the
aggregation, but it needs a DataFrame per call (a copy of x, y and a categorical
column per render), has no "rarest class on top" compositing (``count_cat`` blends
colors by count, which averages a lone bad frame away) and no polygon selection; the
numba kernels below aggregate, composite and select in one pass each over the
arrays the widget already holds (no copy per view), and numba is already a
dependency.

>>> import numpy as np
>>> x, y = np.arange(5.0), np.array([1.0, 1, 1, 1, 9])
>>> layer = RasterLayer(x, y)
>>> points_in_polygon(x, y, layer.x_axis, layer.y_axis,
...                   np.array([3.5, 4.5, 4.5, 3.5]), np.array([8.0, 8, 10, 10])).tolist()
[4]
"""

from __future__ import annotations

import logging
import math
import struct
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from ..errors import WidgetArgumentError
from .imaging import PNG_SIGNATURE, _chunk, deflate, encode_png

log = logging.getLogger(__name__)

#: From this many frames on, the scatter widgets draw points in the kernel
#: (measured: bench/bench_widgets_browser.py, BENCHMARKS.md "Scatter: kernel raster": at
#: 20,000 frames software-WebGL markers already take 0.9 s to draw and 0.39 s to recolor,
#: the raster 0.54 s and 0.07 s).
RASTER_THRESHOLD = 20_000
#: Opacity of pixels without a selected frame while something is selected.
UNSELECTED_ALPHA = 0.2
#: Hover finds the nearest frame within this many pixels.
HOVER_RADIUS_PX = 12
#: Ringed frames (``render_rgba(rings=...)``): a square ring of this radius, this color.
RING_RADIUS = 4
RING_COLOR = "#d62728"
#: Opacity steps of the density shading (the image is a palette PNG: see render_indexed).
ALPHA_LEVELS = 32


@dataclass(frozen=True)
class Axis:
    """How one axis maps values to axis units (log10 for a log axis).

    ``edge`` (axis units) is where non-finite values (and values <= 0 on a log axis)
    are drawn, just below the lowest finite value, as the marker mode does.
    """

    log: bool
    lo: float
    hi: float
    edge: float

    @property
    def extent(self) -> tuple[float, float]:
        """(lowest, highest) position drawn, in data units (the edge included)."""
        to_data = (lambda v: 10.0 ** v) if self.log else float
        return to_data(min(self.edge, self.lo)), to_data(self.hi)


def make_axis(values, log=False) -> Axis:
    """The :class:`Axis` of ``values`` (any float or int array, not copied)."""
    lo, hi, flagged = _finite_range(np.asarray(values), bool(log))
    if not math.isfinite(lo):
        lo = hi = 0.0
    edge = lo - 0.05 * ((hi - lo) or 1.0)
    return Axis(bool(log), lo, hi, edge if flagged else lo)


@numba.njit(cache=True, nogil=True, inline="always")
def _axis_value(v, log, edge):
    if log:
        if v > 0 and v < np.inf:
            return math.log10(v)
        return edge
    if math.isfinite(v):
        return float(v)
    return edge


def _finite_range(values, log, chunk=1 << 20):
    """(lowest, highest) drawable value in axis units and whether any value is not drawable.

    NumPy in chunks, not numba: a new widget then returns before numba's first (slow) load,
    which :class:`RasterLayer` does in a background thread while the browser loads plotly.
    """
    lo, hi, flagged = np.inf, -np.inf, False
    for start in range(0, len(values), chunk):
        part = values[start:start + chunk]
        good = np.isfinite(part) & (part > 0) if log else np.isfinite(part)
        if not good.all():
            flagged = True
            part = part[good]
        if part.size:
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    if log and math.isfinite(lo):
        lo, hi = math.log10(lo), math.log10(hi)
    return lo, hi, flagged


@numba.njit(cache=True, nogil=True)
def _pixel_index(x, y, xlog, xedge, ylog, yedge, x0, x1, y0, y1, width, height):
    """Flat pixel (row * width + col) of every point in the view, -1 outside it."""
    pixels = np.empty(x.shape[0], np.int32)
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    for i in range(x.shape[0]):
        col = math.floor((_axis_value(x[i], xlog, xedge) - x0) * sx)
        row = math.floor((y1 - _axis_value(y[i], ylog, yedge)) * sy)
        pixels[i] = row * width + col if 0 <= col < width and 0 <= row < height else -1
    return pixels


@numba.njit(cache=True, nogil=True)
def _aggregate(pixels, codes, rank, width, height):
    """Per pixel (height, width): the number of points and the rarest code among them (by
    ``rank``; codes shifted by one, -1 -> 0; -1: no point). Codes outside -1..len(rank) - 2
    are left out. One pass, no per-code counts (half the memory traffic of counting)."""
    n = rank.shape[0]
    total = np.zeros(height * width, np.int32)
    best = np.full(height * width, -1, np.int32)
    for i in range(pixels.shape[0]):
        pixel = pixels[i]
        code = codes[i] + 1
        if pixel < 0 or code < 0 or code >= n:
            continue
        total[pixel] += 1
        b = best[pixel]
        if b < 0 or rank[code] < rank[b]:
            best[pixel] = code
    return total.reshape((height, width)), best.reshape((height, width))


@numba.njit(cache=True, nogil=True)
def _code_counts(codes, n_codes):
    # Four interleaved counters: consecutive equal codes would otherwise wait on each
    # other's increment (2x faster on a crowd of one class). Out-of-range codes -> spare slot.
    totals = np.zeros((4, n_codes + 2), np.int64)
    m = codes.shape[0]
    for i in range(0, m - m % 4, 4):
        for j in range(4):
            code = codes[i + j] + 1
            totals[j, code if 0 <= code <= n_codes else n_codes + 1] += 1
    for i in range(m - m % 4, m):
        code = codes[i] + 1
        totals[0, code if 0 <= code <= n_codes else n_codes + 1] += 1
    return totals.sum(axis=0)[:n_codes + 1]


def code_counts(codes, n_codes, compiled=None) -> np.ndarray:
    """How many of ``codes`` are -1, 0, ..., n_codes - 1 (``codes`` not copied).

    ``compiled``: numba (True) or NumPy (False); None: numba unless it could not be loaded.

    >>> code_counts(np.array([-1, 0, 0, 2], np.int8), 3).tolist()
    [1, 2, 0, 1]
    """
    codes = np.asarray(codes).reshape(-1)
    if codes.dtype.kind not in "iu":
        codes = codes.astype(np.int64)
    if not (NUMBA_LOADED if compiled is None else compiled):
        # NumPy where numba could not be loaded (NUMBA_LOADED).
        lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
        shifted = codes + 1 if lo >= -1 and hi < np.iinfo(codes.dtype).max else \
            codes.astype(np.int64) + 1
        if lo < -1 or hi >= n_codes:
            shifted = shifted[(shifted >= 0) & (shifted <= n_codes)]
        return np.bincount(shifted, minlength=int(n_codes) + 1)[:int(n_codes) + 1]
    return _code_counts(codes, int(n_codes))


@numba.njit(cache=True, nogil=True)
def _mark_selected(x, y, indices, xlog, xedge, ylog, yedge, x0, x1, y0, y1, width, height):
    marked = np.zeros((height, width), np.bool_)
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    for i in indices:
        col = math.floor((_axis_value(x[i], xlog, xedge) - x0) * sx)
        row = math.floor((y1 - _axis_value(y[i], ylog, yedge)) * sy)
        if 0 <= col < width and 0 <= row < height:
            marked[row, col] = True
    return marked


#: Palette entries a uint16 image can hold (the composite keeps the entry in 16 bits).
MAX_ENTRIES = 65534
#: Counts up to this get their opacity level from a table in :func:`_composite`.
LEVEL_TABLE = 1 << 16


@numba.njit(cache=True, nogil=True, inline="always")
def _level(alpha, levels):
    return min(levels, max(1, int(alpha * levels + 0.5)))


@numba.njit(cache=True, nogil=True)
def _composite(total, best, selected, rank, any_selected, unselected_alpha, levels, image):
    """Palette image, in place, from :func:`_aggregate`'s ``total`` and ``best``: every
    occupied pixel stamped as a dot, rarest class (then selected) on top. Entry
    ``1 + code * levels + level - 1`` is the code's color at opacity ``level / levels``; 0 is
    transparent (see :func:`_palette`). ``image`` must be zeros.

    Each occupied pixel has a key (lower wins): selected before unselected, then rare
    classes, then dense, then lone, so that equal keys draw the same entry and the order
    does not matter. A crowd pixel stamps its key 3x3, a lone one (nothing else within
    2 px) 5x5. The entry rides in the key's low 16 bits, so the crowd's stamping is a
    separable 3x3 minimum filter of the keys (2x faster than stamping pixel by pixel,
    whose compare-and-write mispredicts in a crowd)."""
    height, width = total.shape
    n = rank.shape[0]
    empty = np.iinfo(np.int64).max
    # Key bits: group (selected?, rank) | 2^b - count | crowd | entry (16 bits). The count
    # field is 32 bits up to 8,191 codes, fewer beyond (ties only above 2^28 points).
    group_bits = 1
    while (1 << group_bits) < 2 * (n + 1):
        group_bits += 1
    count_bits = min(32, 46 - group_bits)
    count_cap = (1 << (count_bits - 1)) - 1
    tmax = total.max()
    scale = 1.0 / math.log1p(max(tmax, 1))
    # Opacity level of a crowd pixel by its count, [unselected, selected], looked up: a
    # log per pixel was a third of the time of a dense view.
    table = np.empty((2, min(tmax + 1, LEVEL_TABLE)), np.int64)
    for t in range(table.shape[1]):
        alpha = 0.55 + 0.45 * math.log1p(t) * scale
        table[1, t] = _level(alpha, levels)
        table[0, t] = _level(alpha * unselected_alpha if any_selected else alpha, levels)
    # A lone point is fully opaque (it must never fade away).
    lone_level = (_level(unselected_alpha, levels), _level(1.0, levels))
    keys = np.empty((height, width), np.int64)
    lone = np.empty(16, np.int64)
    n_lone = 0
    for r in range(height):
        for c in range(width):
            t = total[r, c]
            keys[r, c] = empty
            if t == 0:
                continue
            if _isolated(total, r, c):
                if n_lone == lone.shape[0]:
                    grown = np.empty(2 * n_lone, np.int64)
                    grown[:n_lone] = lone
                    lone = grown
                lone[n_lone] = r * width + c
                n_lone += 1
                continue
            on = 1 if selected[r, c] or not any_selected else 0
            if t < table.shape[1]:
                level = table[on, t]
            else:
                alpha = 0.55 + 0.45 * math.log1p(t) * scale
                level = _level(alpha if on else alpha * unselected_alpha, levels)
            keys[r, c] = _key(best[r, c], rank, n, on, t, count_bits, count_cap, 1, levels, level)
    rows = np.empty((height, width), np.int64)
    for r in range(height):
        _min3_row(keys[r], rows[r])
    for r in range(height):
        above, here, below = rows[max(r - 1, 0)], rows[r], rows[min(r + 1, height - 1)]
        for c in range(width):
            key = min(above[c], min(here[c], below[c]))
            keys[r, c] = key
            if key != empty:
                image[r, c] = key & 0xFFFF
    for i in range(n_lone):
        r, c = lone[i] // width, lone[i] % width
        on = 1 if selected[r, c] or not any_selected else 0
        key = _key(best[r, c], rank, n, on, total[r, c], count_bits, count_cap, 0, levels,
                   lone_level[on])
        for rr in range(max(r - 2, 0), min(r + 3, height)):
            for cc in range(max(c - 2, 0), min(c + 3, width)):
                if key < keys[rr, cc]:
                    keys[rr, cc] = key
                    image[rr, cc] = key & 0xFFFF


@numba.njit(cache=True, nogil=True, inline="always")
def _isolated(total, r, c):
    """No other occupied pixel within 2 px (a crowd pixel's left or right neighbour
    decides at once: no 5x5 scan)."""
    height, width = total.shape
    if (c > 0 and total[r, c - 1]) or (c + 1 < width and total[r, c + 1]):
        return False
    for rr in range(max(r - 2, 0), min(r + 3, height)):
        for cc in range(max(c - 2, 0), min(c + 3, width)):
            if (rr != r or cc != c) and total[rr, cc]:
                return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _key(code, rank, n, on, count, count_bits, count_cap, crowd, levels, level):
    group = (1 - on) * (n + 1) + rank[code]
    order = (((group << count_bits) + count_cap + 1 - min(count, count_cap)) << 1) + crowd
    return (order << 16) + code * levels + level


@numba.njit(cache=True, nogil=True, inline="always")
def _min3_row(keys, out):
    width = keys.shape[0]
    if width == 1:
        out[0] = keys[0]
        return
    out[0] = min(keys[0], keys[1])
    for c in range(1, width - 1):
        out[c] = min(keys[c - 1], min(keys[c], keys[c + 1]))
    out[width - 1] = min(keys[width - 2], keys[width - 1])


def _composite_numpy(total, best, selected, rank, any_selected, unselected_alpha, levels,
                     image):
    """:func:`_composite` in NumPy (the same image): for the first image of a new widget,
    drawn before numba has loaded (its first use in a kernel takes ~0.3 s)."""
    height, width = total.shape
    n = rank.shape[0]
    total = total.astype(np.int64)
    best = np.maximum(best, 0)
    occupied = total > 0
    scale = 1.0 / math.log1p(max(int(total.max()), 1))
    lone = occupied & (_box_sum(occupied, 2) == 1)
    group_rank = rank[best] if not any_selected else \
        np.where(selected, 0, n + 1) + rank[best]
    keys = ((group_rank << 32) + (1 << 31) - np.minimum(total, (1 << 31) - 1)) * 2
    keys += ~lone
    empty = np.iinfo(np.int64).max
    keys[~occupied | lone] = empty
    won = _min3(keys)
    rows, cols = np.nonzero(lone)                # few: stamp their 5x5 one offset at a time
    lone_keys = (((group_rank[rows, cols] << 32) + (1 << 31)
                  - np.minimum(total[rows, cols], (1 << 31) - 1)) * 2)
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            np.minimum.at(won, (r[inside], c[inside]), lone_keys[inside])
    drawn = won != empty
    won = won[drawn]
    t = (1 << 31) - ((won >> 1) & ((1 << 32) - 1))
    group_rank = won >> 33
    alpha = np.where(won & 1 == 0, 1.0, 0.55 + 0.45 * np.log1p(t) * scale)
    if any_selected:
        alpha = np.where(group_rank // (n + 1) == 1, alpha * unselected_alpha, alpha)
    level = np.clip((alpha * levels + 0.5).astype(np.int64), 1, levels)
    code_of_rank = np.argsort(rank)
    image[drawn] = 1 + code_of_rank[group_rank % (n + 1)] * levels + level - 1


def _box_sum(mask, radius):
    """Number of True in each (2 radius + 1)^2 window around each pixel (integral image)."""
    height, width = mask.shape
    size = 2 * radius + 1
    integral = np.zeros((height + 2 * radius + 1, width + 2 * radius + 1), np.int32)
    integral[radius + 1:height + radius + 1, radius + 1:width + radius + 1] = mask
    np.cumsum(integral, axis=0, out=integral)
    np.cumsum(integral, axis=1, out=integral)
    return (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size]
            + integral[:-size, :-size])


def _min3(keys):
    """3x3 minimum filter (separable; outside the image counts as no key)."""
    rows = keys.copy()
    np.minimum(rows[:, 1:], keys[:, :-1], out=rows[:, 1:])
    np.minimum(rows[:, :-1], keys[:, 1:], out=rows[:, :-1])
    out = rows.copy()
    np.minimum(out[1:], rows[:-1], out=out[1:])
    np.minimum(out[:-1], rows[1:], out=out[:-1])
    return out


def _palette(colors, levels, ring_color) -> np.ndarray:
    """RGBA palette of :func:`_composite`'s entries: transparent, each code at ``levels``
    opacities (the top one 255), and last the ring color."""
    n = len(colors)
    palette = np.zeros((2 + n * levels, 4), np.uint8)
    opacity = np.round(255 * np.arange(1, levels + 1) / levels).astype(np.uint8)
    for k, rgb in enumerate(colors):
        rows = palette[1 + k * levels:1 + (k + 1) * levels]
        rows[:, :3] = rgb
        rows[:, 3] = opacity
    palette[-1] = (*ring_color, 255)
    return palette


@numba.njit(cache=True, nogil=True)
def _inside(px, py, ax, ay):
    """Even-odd rule: is (ax, ay) inside the closed polygon (px, py)?"""
    inside = False
    j = px.shape[0] - 1
    for i in range(px.shape[0]):
        if (py[i] > ay) != (py[j] > ay):
            cross = px[j] + (ay - py[j]) * (px[i] - px[j]) / (py[i] - py[j])
            if ax < cross:
                inside = not inside
        j = i
    return inside


@numba.njit(cache=True, nogil=True)
def _polygon_mask(x, y, xlog, xedge, ylog, yedge, px, py):
    xmin, xmax, ymin, ymax = px.min(), px.max(), py.min(), py.max()
    mask = np.zeros(x.shape[0], np.bool_)
    for i in range(x.shape[0]):
        ax = _axis_value(x[i], xlog, xedge)
        ay = _axis_value(y[i], ylog, yedge)
        if xmin <= ax <= xmax and ymin <= ay <= ymax and _inside(px, py, ax, ay):
            mask[i] = True
    return mask


@numba.njit(cache=True, nogil=True)
def _nearest(x, y, xlog, xedge, ylog, yedge, cx, cy, sx, sy, radius_px):
    best, best_d = -1, radius_px * radius_px
    for i in range(x.shape[0]):
        dx = (_axis_value(x[i], xlog, xedge) - cx) * sx
        dy = (_axis_value(y[i], ylog, yedge) - cy) * sy
        d = dx * dx + dy * dy
        if d <= best_d:
            best, best_d = i, d
    return best


def points_in_polygon(x, y, x_axis: Axis, y_axis: Axis, px, py) -> np.ndarray:
    """Indices of the points inside the polygon ``(px, py)`` given in axis units.

    Points are placed as drawn: log10 on a log axis, non-finite values at the edge.
    """
    px = np.ascontiguousarray(px, dtype=np.float64)
    py = np.ascontiguousarray(py, dtype=np.float64)
    if px.shape != py.shape or px.size < 3 or not np.isfinite(px).all() or \
            not np.isfinite(py).all():
        return np.empty(0, dtype=np.int64)
    mask = _polygon_mask(x, y, x_axis.log, x_axis.edge, y_axis.log, y_axis.edge, px, py)
    return np.flatnonzero(mask)


@dataclass(frozen=True)
class View:
    """The visible axis ranges (axis units) and the plot area in pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int

    @classmethod
    def from_message(cls, content) -> "View":
        """A view from the browser's ``view`` message, clipped to sane sizes."""
        values = [float(content[k]) for k in ("x0", "x1", "y0", "y1")]
        if not all(math.isfinite(v) for v in values) or values[0] == values[1] or \
                values[2] == values[3]:
            raise ValueError(f"bad view ranges {values}")
        x0, x1 = sorted(values[:2])
        y0, y1 = sorted(values[2:])
        width = int(min(max(int(content["width"]), 1), 4096))
        height = int(min(max(int(content["height"]), 1), 4096))
        return cls(x0, x1, y0, y1, width, height)


def nearest_point(x, y, x_axis: Axis, y_axis: Axis, view: View, cx, cy,
                  radius_px=HOVER_RADIUS_PX) -> int:
    """Index of the point nearest to ``(cx, cy)`` (axis units) within ``radius_px`` pixels, or -1."""
    sx = view.width / (view.x1 - view.x0)
    sy = view.height / (view.y1 - view.y0)
    return int(_nearest(x, y, x_axis.log, x_axis.edge, y_axis.log, y_axis.edge,
                        float(cx), float(cy), sx, sy, float(radius_px)))


def hex_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` (or ``"#rgb"``) as an RGB tuple."""
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(ch * 2 for ch in value)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def render_rgba(x, y, x_axis: Axis, y_axis: Axis, codes, palette, view: View,
                selected=None, rings=None, ring_color=RING_COLOR, pixels=None) -> np.ndarray:
    """RGBA image (height, width, 4) of the points in ``view`` (see module doc).

    ``codes`` per point (-1 = none), ``palette`` the colors of codes -1, 0, 1, ...;
    ``selected`` the selected indices (None or empty: nothing selected); ``rings`` indices
    ringed in ``ring_color`` on top of everything (e.g. PredictionScatter's disagreements).
    ``pixels``: :func:`pixel_index` of the points for ``view``, if known.
    """
    entries, rgba = render_indexed(x, y, x_axis, y_axis, codes, palette, view, selected,
                                   rings, ring_color, pixels)
    return rgba[entries]


def render_indexed(x, y, x_axis: Axis, y_axis: Axis, codes, palette, view: View,
                   selected=None, rings=None, ring_color=RING_COLOR, pixels=None,
                   compiled=True):
    """:func:`render_rgba` as ``(entries, rgba_palette)``: a palette image (uint8 up to
    126 codes, uint16 beyond) and its RGBA palette; opacity in ``ALPHA_LEVELS`` steps
    (fewer with many codes). A palette PNG is 4x less to compress than RGBA.

    ``compiled=False`` draws the same image with NumPy only (2-3x slower, but no wait for
    numba's first load in a new kernel; rings still use numba).
    """
    n_codes = len(palette) - 1
    if pixels is None:
        pixels = pixel_index(x, y, x_axis, y_axis, view, compiled)
    # Rarest code first (over all frames, not the view, so colors do not swap on zoom).
    totals = code_counts(codes, n_codes, compiled)
    rank = np.empty(n_codes + 1, np.int64)
    rank[np.argsort(totals, kind="stable")] = np.arange(n_codes + 1)
    aggregate = _aggregate if compiled else _aggregate_numpy
    total, best = aggregate(pixels, codes, rank, view.width, view.height)
    any_selected = selected is not None and len(selected) > 0
    marked = _marked(x, y, x_axis, y_axis, view, selected if any_selected else None, compiled)
    levels = min(ALPHA_LEVELS, 254 // (n_codes + 1))
    dtype = np.uint8 if levels >= 4 else np.uint16
    if n_codes + 1 > MAX_ENTRIES:
        raise WidgetArgumentError(f"cannot draw {n_codes} classes in one image (at most "
                                  f"{MAX_ENTRIES - 1})")
    levels = max(levels, 4) if dtype == np.uint8 else min(ALPHA_LEVELS,
                                                         MAX_ENTRIES // (n_codes + 1))
    entries = np.zeros((view.height, view.width), dtype)
    composite = _composite if compiled else _composite_numpy
    composite(total, best, marked, rank, any_selected, UNSELECTED_ALPHA, levels, entries)
    rgba = _palette([hex_rgb(c) for c in palette], levels, hex_rgb(ring_color))
    if rings is not None and len(rings):
        _draw_rings(entries, _marked(x, y, x_axis, y_axis, view, rings), len(rgba) - 1)
    return entries, rgba


def pixel_index(x, y, x_axis: Axis, y_axis: Axis, view: View, compiled=True) -> np.ndarray:
    """Flat pixel (row * width + col) of every point in ``view`` (int32), -1 outside."""
    if not compiled:
        return _pixel_index_numpy(x, y, x_axis, y_axis, view)
    return _pixel_index(x, y, x_axis.log, x_axis.edge, y_axis.log, y_axis.edge, view.x0,
                        view.x1, view.y0, view.y1, view.width, view.height)


def _axis_values(values, axis: Axis) -> np.ndarray:
    """:func:`_axis_value` of every value (NumPy)."""
    values = np.asarray(values, dtype=np.float64)
    if axis.log:
        good = (values > 0) & (values < np.inf)
        out = np.full(values.shape, axis.edge)
        np.log10(values, out=out, where=good)
        return out
    return np.where(np.isfinite(values), values, axis.edge)


def _pixel_index_numpy(x, y, x_axis, y_axis, view):
    """:func:`pixel_index` in NumPy (the same float64 operations, in place)."""
    sx, sy = view.width / (view.x1 - view.x0), view.height / (view.y1 - view.y0)
    col = _axis_values(x, x_axis)
    col -= view.x0
    col *= sx
    np.floor(col, out=col)
    row = _axis_values(y, y_axis)
    np.subtract(view.y1, row, out=row)
    row *= sy
    np.floor(row, out=row)
    outside = (col < 0) | (col >= view.width) | (row < 0) | (row >= view.height)
    row[outside] = 0
    col[outside] = -1
    row *= view.width
    row += col
    pixels = row.astype(np.int32)
    pixels[outside] = -1
    return pixels


def _aggregate_numpy(pixels, codes, rank, width, height):
    """:func:`_aggregate` in NumPy (memory: one array per pixel however many codes)."""
    n = len(rank)
    shifted = np.asarray(codes).astype(np.int64) + 1
    valid = (shifted >= 0) & (shifted < n) & (pixels >= 0)
    points = pixels[valid]
    total = np.bincount(points, minlength=height * width)
    best_rank = np.full(height * width, n - 1, np.int64)
    ranks = rank[shifted[valid]]
    if n <= 8:      # a few codes: one masked write per rarer code, rarest last (2-4x faster)
        for r in range(n - 2, -1, -1):
            best_rank[points[ranks == r]] = r
    else:
        np.minimum.at(best_rank, points, ranks)
    best = np.where(total > 0, np.argsort(rank)[best_rank], -1)
    return (total.astype(np.int32).reshape((height, width)),
            best.astype(np.int32).reshape((height, width)))


def _marked(x, y, x_axis, y_axis, view, indices, compiled=True):
    """Boolean (height, width): the pixels holding any of ``indices`` (None: none)."""
    if indices is None:
        return np.zeros((view.height, view.width), np.bool_)
    if not compiled:
        indices = np.asarray(indices, dtype=np.int64)
        pixels = _pixel_index_numpy(x[indices], y[indices], x_axis, y_axis, view)
        marked = np.zeros(view.height * view.width, np.bool_)
        marked[pixels[pixels >= 0]] = True
        return marked.reshape((view.height, view.width))
    return _mark_selected(x, y, np.asarray(indices, dtype=np.int64), x_axis.log, x_axis.edge,
                          y_axis.log, y_axis.edge, view.x0, view.x1, view.y0, view.y1,
                          view.width, view.height)


@numba.njit(cache=True, nogil=True)
def _draw_rings(image, marked, entry):
    """A square ring (radius RING_RADIUS px) of palette ``entry`` around every marked pixel."""
    height, width = marked.shape
    for r in range(height):
        for c in range(width):
            if not marked[r, c]:
                continue
            for rr in range(max(r - RING_RADIUS, 0), min(r + RING_RADIUS + 1, height)):
                for cc in range(max(c - RING_RADIUS, 0), min(c + RING_RADIUS + 1, width)):
                    if max(abs(rr - r), abs(cc - c)) >= RING_RADIUS - 1:
                        image[rr, cc] = entry


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG encoding of an RGBA image (xlabel's zlib encoder, fastest compression)."""
    return encode_png(rgba, level=1)


def png_indexed(entries: np.ndarray, rgba_palette: np.ndarray) -> bytes:
    """PNG of a palette image (color type 3, with a tRNS chunk for the opacities); a uint16
    image (more than 256 entries) is expanded to RGBA."""
    if entries.dtype != np.uint8:
        return png_bytes(rgba_palette[entries])
    height, width = entries.shape
    rows = np.zeros((height, 1 + width), np.uint8)              # filter byte 0 per row
    rows[:, 1:] = entries
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"PLTE", rgba_palette[:, :3].tobytes())
            + _chunk(b"tRNS", rgba_palette[:, 3].tobytes())
            + _chunk(b"IDAT", deflate(rows.tobytes(), 1)) + _chunk(b"IEND", b""))


_switch_lock = threading.Lock()
_switch_holders = [0, None]        # warm-ups running, the switch interval before the first


@contextmanager
def _prompt_gil(interval=2e-4):
    """Python's thread switch interval shortened while a warm-up loads numba.

    Work in the kernel's main thread meanwhile (an early zoom, lasso or hover: numba's
    kernels and NumPy release the GIL while they run) waits for the GIL up to the switch
    interval (5 ms) each time it takes it back from the loading thread: a NumPy image drawn
    during the loading took 310-335 ms instead of 150-170 ms at 1,000,000 frames.
    Restored when the last warm-up ends.
    """
    with _switch_lock:
        if _switch_holders[0] == 0:
            _switch_holders[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, _switch_holders[1]))
        _switch_holders[0] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_holders[0] -= 1
            if _switch_holders[0] == 0:
                sys.setswitchinterval(_switch_holders[1])


class RasterLayer:
    """The kernel half of a raster scatter: x/y of all frames and their axes.

    Holds ``x`` and ``y`` as given (views of the feature table's columns: nothing is
    copied per view), so 10,000,000 frames cost no more than the table itself, plus one
    int32 per frame: each frame's pixel in the current view (kept so that a recolor,
    selection, assign, undo or redo only counts codes per pixel; a zoom recomputes it).

    >>> import numpy as np
    >>> layer = RasterLayer(np.arange(4.0), np.array([1.0, 2, 3, np.nan]))
    >>> layer.extent()["y"][1], layer.y_axis.edge < 1
    (3.0, True)
    """

    #: The background warm-up starts at the latest this many seconds after construction.
    WARM_UP_AFTER = 1.0

    def __init__(self, x, y, log_y=False):
        self.set_xy(x, y, log_y)
        # numba's cached lasso, hover and render kernels for these dtypes are loaded in the
        # background once the first image is drawn, or after WARM_UP_AFTER (loading while
        # the first image was drawn halved both on two cores). The first image loads only
        # the render kernels it needs (numba itself was loaded at import: NUMBA_LOADED).
        self._compiled = threading.Event()
        self._warm_up_lock = threading.Lock()
        self._warm_up_started = False
        timer = threading.Timer(self.WARM_UP_AFTER, self.start_warm_up)
        timer.daemon = True
        timer.start()

    def start_warm_up(self):
        """Load the compiled kernels in a background thread (once)."""
        with self._warm_up_lock:
            if self._warm_up_started:
                return
            self._warm_up_started = True
        threading.Thread(target=self._warm_up, daemon=True).start()

    def _warm_up(self):
        try:
            with _prompt_gil():
                self._load_kernels()
            self._compiled.set()
        except Exception:  # noqa: BLE001 - the images are drawn all the same: say why
            log.warning("numba's raster kernels could not be loaded%s", "" if NUMBA_LOADED
                        else "; images are drawn with NumPy", exc_info=True)

    def _load_kernels(self):
        # Two elements keep the arrays' layout (numba compiles strided and contiguous apart).
        x, y = self.x[:2], self.y[:2]
        view = View(0.0, 1.0, 0.0, 1.0, 1, 1)
        # Lasso and hover first: they have no NumPy twin.
        # The lasso's outline comes read-only, from the message's buffers.
        px, py = (np.frombuffer(np.array(v).tobytes()) for v in ([0.0, 1, 0], [0.0, 0, 1]))
        points_in_polygon(x, y, self.x_axis, self.y_axis, px, py)
        nearest_point(x, y, self.x_axis, self.y_axis, view, 0.0, 0.0)
        # Codes as the widgets hold them: store labels (a strided int32 column, read-only:
        # numba compiles read-only arrays apart), cluster ids (int32), predictions (int64),
        # scan codes (int16). A missed one costs the first real image ~20 ms.
        labels = np.zeros((2, 2), np.int32)[:, 0]
        labels.flags.writeable = False
        for codes in (labels, np.zeros((2, 2), np.int32)[:, 0], np.zeros(2, np.int32),
                      np.zeros(2, np.int64), np.zeros(2, np.int16)):
            render_rgba(x, y, self.x_axis, self.y_axis, codes[:len(x)], ["#000000", "#ffffff"],
                        view, selected=[0], rings=[0])
            _code_counts(codes, 1)                                   # legends

    def set_xy(self, x, y, log_y=False):
        """New axis data (e.g. after an x/y column or log-y change)."""
        self.x = _numeric(x)
        self.y = _numeric(y)
        self.x_axis = make_axis(self.x)
        self.y_axis = make_axis(self.y, log_y)
        self._pixels = self._pixels_view = None

    def extent(self) -> dict:
        """``{"x": [lo, hi], "y": [lo, hi]}`` in data units: what autorange must show."""
        return {"x": list(self.x_axis.extent), "y": list(self.y_axis.extent)}

    def render(self, codes, palette, view: View, selected=None, rings=None) -> bytes:
        """The PNG of one panel for ``view`` (``rings``: indices ringed in red)."""
        # NumPy (the same image) only if numba could not be loaded at import.
        compiled = NUMBA_LOADED or self._compiled.is_set()
        if self._pixels_view != view:
            self._pixels = pixel_index(self.x, self.y, self.x_axis, self.y_axis, view, compiled)
            self._pixels_view = view
        entries, rgba = render_indexed(self.x, self.y, self.x_axis, self.y_axis, codes, palette,
                                       view, selected, rings, pixels=self._pixels,
                                       compiled=compiled)
        if not self._compiled.is_set():
            self.start_warm_up()
        return png_indexed(entries, rgba)

    def select_polygon(self, px, py) -> np.ndarray:
        """Indices inside the polygon (axis units)."""
        return points_in_polygon(self.x, self.y, self.x_axis, self.y_axis, px, py)

    def nearest(self, view: View, cx, cy) -> int:
        """The frame under the mouse at ``(cx, cy)`` (axis units), or -1."""
        return nearest_point(self.x, self.y, self.x_axis, self.y_axis, view, cx, cy)


def _numeric(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu" or array.dtype == np.float16:
        array = array.astype(np.float64)
    return array


def _load_numba() -> bool:
    """Load numba's compiler target now (~0.4 s, once per process), not in a plot's first
    image, with the render kernels of the commonest first image: frame or float x, float y
    (feature table columns: read-only, which numba compiles apart), the store's label column
    as codes (a read-only, strided int32 view); ~40 ms more. False (and a warning) if numba
    cannot run here."""
    labels = np.zeros((2, 2), np.int32)[:, 0]
    frames, y = np.zeros(2, np.int64), np.zeros(2)
    for array in (labels, frames, y):
        array.flags.writeable = False
    try:
        _code_counts(labels, 1)
        for x in (frames, y):
            render_indexed(x, y, make_axis(x), make_axis(y), labels, ["#000000", "#ffffff"],
                           View(0.0, 1.0, 0.0, 1.0, 1, 1))
    except Exception:  # noqa: BLE001 - the NumPy twins draw the same images: say why
        log.warning("numba could not be loaded; big scatters are drawn with NumPy "
                    "(~3x slower)", exc_info=True)
        return False
    return True


#: True once numba's compiler target is loaded (at import): images are drawn by numba.
NUMBA_LOADED = _load_numba()
