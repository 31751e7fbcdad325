"""The "coefficient view" of a scattering frame: its polar unwrapping about the beam centre,
with radial and azimuthal profiles.

Scattering features are simple in polar coordinates ``(r, phi)``: a powder ring is a
line at one radius, an amorphous halo a broad band, a streak or the beamstop holder a
line at one azimuth, a Bragg spot a point. The NSLS-II study fed such a view
(Fourier-Bessel coefficients) to a second CNN; xlabel uses the polar image itself (cell
means, a linear map of the frame), which keeps the azimuth a CNN needs to tell spots
from rings and is one sparse matrix product.

>>> frame = np.zeros((32, 32)); frame[16, 26] = 1.0   # one bright pixel, r = 10.5 of 16
>>> view = polar_view(frame, n_radial=8, n_azimuth=16)
>>> view.shape, int(view[0].max(axis=1).argmax())       # its ring: 10.5 / 16 * 8 -> 5
((1, 8, 16), 5)
>>> radial_profile(frame, n_radial=8).shape
(1, 8)
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import sparse

__all__ = ["polar_matrix", "polar_view", "radial_profile", "azimuthal_contrast"]


@functools.lru_cache(maxsize=16)
def polar_matrix(shape, n_radial=24, n_azimuth=32, center=None) -> sparse.csr_matrix:
    """Sparse ``(n_radial * n_azimuth, H * W)`` map from a frame to its polar cells.

    Cells are ``n_radial`` equal rings from the beam ``center`` (row, col; default: the
    frame centre) out to the nearest frame edge, times ``n_azimuth`` equal sectors.
    A cell is the mean of the pixels whose centres fall in it; a cell with no pixel
    (small radii) takes the bilinear interpolation at its centre instead, so no cell
    is empty.
    """
    h, w = (int(s) for s in shape)
    cy, cx = ((h - 1) / 2, (w - 1) / 2) if center is None else (float(center[0]), float(center[1]))
    r_max = min(cy, cx, h - 1 - cy, w - 1 - cx) + 0.5
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - cy, xx - cx).ravel()
    phi = np.mod(np.arctan2(yy - cy, xx - cx).ravel(), 2 * np.pi)
    r_bin = np.floor(r / r_max * n_radial).astype(np.int64)
    a_bin = np.minimum(np.floor(phi / (2 * np.pi) * n_azimuth).astype(np.int64), n_azimuth - 1)
    inside = r_bin < n_radial
    cells = r_bin[inside] * n_azimuth + a_bin[inside]
    pixels = np.flatnonzero(inside)
    counts = np.bincount(cells, minlength=n_radial * n_azimuth)
    rows, cols, vals = [cells], [pixels], [1.0 / counts[cells]]
    for cell in np.flatnonzero(counts == 0):
        radius = (cell // n_azimuth + 0.5) * r_max / n_radial
        angle = (cell % n_azimuth + 0.5) * 2 * np.pi / n_azimuth
        y, x = cy + radius * np.sin(angle), cx + radius * np.cos(angle)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        for yi, xi, weight in ((y0, x0, (1 - (y - y0)) * (1 - (x - x0))),
                               (y0 + 1, x0, (y - y0) * (1 - (x - x0))),
                               (y0, x0 + 1, (1 - (y - y0)) * (x - x0)),
                               (y0 + 1, x0 + 1, (y - y0) * (x - x0))):
            if 0 <= yi < h and 0 <= xi < w and weight > 0:
                rows.append([cell]), cols.append([yi * w + xi]), vals.append([weight])
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(n_radial * n_azimuth, h * w), dtype=np.float32)
    return matrix


def polar_view(frames, n_radial=24, n_azimuth=32, center=None, valid=None) -> np.ndarray:
    """Polar cells ``(n, n_radial, n_azimuth)`` of frames ``(n, H, W)`` (or one ``(H, W)``).

    ``valid``: optional ``(H, W)`` weights in [0, 1], the share of valid pixels of each
    (binned) pixel whose invalid pixels hold 0 (as ``prepare_frames`` gives them): cells are
    then means over valid pixels only, so detector gaps do not darken the cells they cross.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    matrix = polar_matrix(frames.shape[1:], n_radial, n_azimuth,
                          None if center is None else tuple(center))
    flat = frames.reshape(len(frames), -1)
    cells = np.asarray(matrix @ flat.T).T
    if valid is not None:
        share = matrix @ np.asarray(valid, dtype=np.float32).ravel()
        cells = cells / np.maximum(share, 0.05)
    return cells.reshape(len(frames), n_radial, n_azimuth)


def radial_profile(frames, n_radial=24, center=None, valid=None) -> np.ndarray:
    """Mean over azimuth of each ring ``(n, n_radial)`` (``valid``: see :func:`polar_view`)."""
    return polar_view(frames, n_radial, 32, center, valid).mean(axis=2)


def azimuthal_contrast(frames, n_radial=24, n_azimuth=32, center=None, valid=None) -> np.ndarray:
    """Max over azimuth minus the median, per ring ``(n, n_radial)``: high for spots and
    streaks (one bright sector), low for rings and halos (uniform in azimuth)."""
    view = polar_view(frames, n_radial, n_azimuth, center, valid)
    return view.max(axis=2) - np.median(view, axis=2)
