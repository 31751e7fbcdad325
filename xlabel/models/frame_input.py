"""Exposure-invariant frame input for the pixel networks (CNN, supervised autoencoder).

A scan's count level (exposure x flux) can differ 100x from the scans a model was trained
on. The network must see the *pattern* of a frame whatever the level, and still see that a
frame is dim *relative to its scan* (an underexposed frame is bad because it is dim).
Frames are kept as binned photon counts (``counts``: sum of the valid pixels of each
block; ``valid``: how many valid pixels each block has) plus one number per frame, the
scan's ``reference`` flux (running median of the frames' mean counts, window 51: the
denominator of ``frame_stats``' ``flux_rel``). :func:`network_input` turns them into the
network's input for one of :data:`INPUTS`:

``"median"`` (default)
    channel 0: ``log1p(r / m)``, standardised, where ``r`` is the block mean / frame mean
    (the frame's pattern) and ``m`` the scan's median pattern (pixel-wise median of ``r``
    over up to :data:`PATTERN_FRAMES` frames spread over the scan): what is *unusual* in
    this frame for this scan (a dead module reads 0, a shadow 0.1, a streak several
    times 1), independent of count level and of the scan's scattering; channel 1: the
    relative flux plane as for "frame".
``"frame"``
    channel 0: ``log1p(block mean / frame mean)``, standardised with the training set's
    mean/std: the frame's pattern, independent of its count level; channel 1: a constant
    plane ``FLUX_GAIN x (frame mean / reference - 1)`` (the frame's flux relative to its
    scan, clipped to [0, 3]: a frame 10 % dimmer than its scan reads -1, a dark one -10).
``"scan"``
    one channel ``log1p(block mean / reference)``, standardised: pattern and relative
    flux mixed in one image.
``"global"``
    one channel ``log1p(block mean)`` standardised with the training set's mean/std: what
    xlabel's first CNN did (it learns the training scans' count levels).

The choice of default is measured in ``bench/bench_frame_models.py --inputs`` (BENCHMARKS.md).
Poisson statistics differ with exposure: :func:`thin` simulates the same frames at a lower
exposure (binomial thinning of the counts) for training.

>>> import numpy as np
>>> stack = np.full((2, 4, 4), 10, np.uint16); stack[1] *= 20   # same pattern, 20x the counts
>>> data = prepare_counts(stack, size=2, reference=[10.0, 200.0])   # two scans, 20x apart
>>> data.counts.shape, data.valid[0].tolist()
((2, 2, 2), [[4.0, 4.0], [4.0, 4.0]])
>>> x = network_input(*as_tensors(data), mode="median", norm=(0.0, 1.0))
>>> bool((x[0] == x[1]).all())     # the network sees the same input at both levels
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelArgumentError, ModelError
from ..io.base import invalid_pixels
from ._deps import require_torch
from .frames import binned_shape

torch = require_torch()

__all__ = ["INPUTS", "DEFAULT_INPUT", "REFERENCE_WINDOW", "PATTERN_FRAMES", "Counts", "prepare_counts",
           "median_pattern", "pattern_rows", "frame_means",
           "reference_flux", "as_tensors", "network_input", "n_input_channels", "thin",
           "add_spots", "input_norm"]

INPUTS = ("median", "frame", "scan", "global")
DEFAULT_INPUT = "median"
#: Frames (spread evenly over a scan) whose pixel-wise median is the scan's pattern.
PATTERN_FRAMES = 256
#: Frames in the running median of the scan's flux (as ``frame_stats``' ``flux_rel``).
REFERENCE_WINDOW = 51
_MAX_RATIO = 1e3
#: Scale of the relative-flux input: the +-8 % frame-to-frame jitter of a good scan is
#: of order 1, like the standardised image; as log(flux_rel) (0.1 between a good frame
#: and a shutter-ramp frame) the network did not learn the threshold in 15 epochs
#: (flux task recall 0.68 / precision 0.57, BENCHMARKS.md).
FLUX_GAIN = 10.0
_DARK = 0.01       # a frame darker than 1 % of its scan is normalised by 1 % of the scan
_PATTERN_FLOOR = 0.05  # behind a beamstop (pattern ~0) the ratio to the pattern is noise


@dataclass
class Counts:
    """Binned counts of frames: ``counts`` (n, h, w) sums of the valid pixels of each block,
    ``valid`` (n, h, w) number of valid pixels per block, ``reference`` (n,) the scan's
    running-median flux per frame (mean counts per valid pixel), ``scans`` (n,) scan names,
    ``patterns`` (k, h, w) the median pattern of each scan and ``scan_index`` (n,) which
    of them belongs to each frame."""

    counts: np.ndarray
    valid: np.ndarray
    reference: np.ndarray
    scans: np.ndarray
    patterns: np.ndarray
    scan_index: np.ndarray

    def __len__(self):
        return len(self.counts)


def _block_sums(stack: np.ndarray, size) -> np.ndarray:
    """Sums of ``stack`` (n, H, W) over blocks as even as the shape allows (see bin_frames)."""
    out = binned_shape(stack.shape[1:], size)
    for axis, n_out in ((1, out[0]), (2, out[1])):
        n_in = stack.shape[axis]
        if n_out == n_in:
            continue
        edges = np.linspace(0, n_in, n_out + 1).round().astype(np.int64)
        stack = np.add.reduceat(stack, edges[:-1], axis=axis)
    return stack


def _valid_mask(stack, source):
    """True where a pixel counts: not flagged by the scan, finite, not negative."""
    raw = np.asarray(stack)
    flagged = invalid_pixels(raw, source)
    good = np.ones(raw.shape, bool) if flagged is None else ~flagged
    if raw.dtype.kind == "f":
        good &= np.isfinite(raw)
    return good & (raw >= 0) if raw.dtype.kind in "if" else good


def prepare_counts(stack, size=None, source=None, reference=None, scan="frames", start=0,
                   pattern=None) -> Counts:
    """Block sums of the valid pixels of ``stack`` (n, H, W) and valid-pixel counts per block.

    ``reference``: the scan's flux per frame (default: :func:`reference_flux` of these
    frames, i.e. ``stack`` is taken as one whole scan); ``pattern``: the scan's median
    pattern (default: :func:`median_pattern` of these frames). Frames without a single
    valid pixel raise ModelError naming ``scan`` and the frames (numbered from ``start``).
    """
    good = _valid_mask(stack, source)
    values = np.where(good, np.asarray(stack, dtype=np.float32), np.float32(0))
    counts = _block_sums(values, size).astype(np.float32)
    valid = _block_sums(good.astype(np.float32), size)
    _check_frames(valid, scan, start)
    if reference is None:
        reference = reference_flux(frame_means(counts, valid))
    if pattern is None:
        pattern = median_pattern(counts, valid)
    return Counts(counts, valid, np.asarray(reference, np.float64),
                  np.full(len(counts), str(scan), dtype=object),
                  np.asarray(pattern, np.float32)[None], np.zeros(len(counts), np.int64))


def pattern_rows(n: int) -> np.ndarray:
    """The frames of a scan of ``n`` whose median makes its pattern (evenly spread)."""
    return np.unique(np.linspace(0, n - 1, min(n, PATTERN_FRAMES)).round().astype(np.int64))


def median_pattern(counts, valid) -> np.ndarray:
    """Pixel-wise median of the frames' patterns (block mean / frame mean; blocks without
    valid pixels read 1) over :func:`pattern_rows` of them."""
    rows = pattern_rows(len(counts))
    counts, valid = counts[rows].astype(np.float64), valid[rows]
    means = frame_means(counts, valid)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(valid > 0, counts / np.maximum(valid, 1) / np.maximum(means, 1e-12), 1.0)
    return np.median(ratio, axis=0).astype(np.float32)

def _check_frames(valid, scan, start=0):
    empty = np.flatnonzero(valid.reshape(len(valid), -1).sum(axis=1) == 0)
    if len(empty):
        listed = ", ".join(str(start + i) for i in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise ModelError(f"{len(empty)} frame(s) have no valid pixel (all NaN, negative or masked): "
                         f"frames {listed}; a model cannot judge them", path=str(scan),
                         frame=int(start + empty[0]))


def frame_means(counts, valid) -> np.ndarray:
    """Mean counts per valid pixel of every frame (float64)."""
    n = len(counts)
    return counts.reshape(n, -1).sum(axis=1, dtype=np.float64) / valid.reshape(n, -1).sum(axis=1)


def reference_flux(means, window: int = REFERENCE_WINDOW) -> np.ndarray:
    """Running median of a scan's frame means (centered, ``window`` frames, shorter at the ends).

    >>> reference_flux(np.array([10.0, 10, 1, 10, 10]), window=3).tolist()
    [10.0, 10.0, 10.0, 10.0, 10.0]
    """
    return pd.Series(np.asarray(means, dtype=np.float64)).rolling(
        window, center=True, min_periods=1).median().to_numpy()


def as_tensors(data: Counts, index=None, device="cpu"):
    """``(counts, valid, reference, pattern)`` as float32 tensors (optionally rows ``index``)."""
    rows = slice(None) if index is None else index
    arrays = (data.counts[rows], data.valid[rows], data.reference[rows],
              data.patterns[data.scan_index[rows]])
    return tuple(torch.from_numpy(np.array(a, dtype=np.float32)).to(device) for a in arrays)


def n_input_channels(mode: str) -> int:
    """Channels of :func:`network_input` for ``mode``."""
    _check_mode(mode)
    return 2 if mode in ("frame", "median") else 1


def _check_mode(mode):
    if mode not in INPUTS:
        raise ModelArgumentError(f"unknown frame input {mode!r}; choose one of {INPUTS}")


def _image(counts, valid, reference, pattern, mode):
    """Un-standardised channel 0 and the frame means (torch)."""
    n_valid = valid.sum(dim=(1, 2)).clamp_min(1)
    mean = counts.sum(dim=(1, 2)) / n_valid
    block = torch.where(valid > 0, counts / valid.clamp_min(1), mean[:, None, None])
    if mode == "global":
        return torch.log1p(block), mean
    reference = reference.clamp_min(1e-12)
    scale = reference if mode == "scan" else torch.maximum(mean, _DARK * reference)
    ratio = block / scale[:, None, None]
    if mode == "median":
        ratio = (ratio + _PATTERN_FLOOR) / (pattern + _PATTERN_FLOOR)
    return torch.log1p(ratio.clamp_max(_MAX_RATIO)), mean


def input_norm(data: Counts, mode: str, index=None, batch=512) -> tuple[float, float]:
    """Training-set mean and std of channel 0 (the "train-set normalisation")."""
    _check_mode(mode)
    rows = np.arange(len(data)) if index is None else np.asarray(index)
    total, total2, n = 0.0, 0.0, 0
    for start in range(0, len(rows), batch):
        image, _ = _image(*as_tensors(data, rows[start:start + batch]), mode)
        total += float(image.sum(dtype=torch.float64))
        total2 += float((image.double() ** 2).sum())
        n += image.numel()
    mean = total / max(n, 1)
    std = max(total2 / max(n, 1) - mean ** 2, 0.0) ** 0.5
    return mean, std if std > 1e-8 else 1.0


def network_input(counts, valid, reference, pattern, mode: str = DEFAULT_INPUT, norm=(0.0, 1.0)):
    """The network's input ``(n, channels, h, w)`` from binned counts (torch tensors;
    ``pattern``: each frame's scan pattern, see :class:`Counts`).

    ``norm``: ``(mean, std)`` of channel 0 on the training set (:func:`input_norm`).
    """
    _check_mode(mode)
    image, mean = _image(counts, valid, reference, pattern, mode)
    image = ((image - norm[0]) / norm[1]).unsqueeze(1)
    if n_input_channels(mode) == 1:
        return image
    relative = FLUX_GAIN * ((mean / reference.clamp_min(1e-12)).clamp(0, 3) - 1)
    return torch.cat([image, relative[:, None, None, None].expand_as(image)], dim=1)


def thin(counts, reference, low: float = 1 / 30, fraction: float = 0.5, generator=None):
    """The same frames at a random lower exposure: counts x p, p log-uniform in ``[low, 1]``,
    for ``fraction`` of the frames (the others keep p = 1); ``reference`` scales with them.

    Binomial thinning of Poisson counts gives the Poisson counts of the lower exposure; it
    is drawn in its normal approximation (same mean and variance ``c p (1 - p)``, clipped
    at 0) because exact ``torch.binomial`` costs ~1 ms per 64x64 frame on a CPU, longer than
    the network's forward and backward pass.
    """
    n = len(counts)
    log_p = torch.rand(n, generator=generator) * np.log(low)
    p = torch.where(torch.rand(n, generator=generator) < fraction, torch.exp(log_p), torch.ones(n))
    p = p.to(counts.device)
    mean = counts * p[:, None, None]
    noise = torch.randn(counts.shape, generator=generator).to(counts.device)
    thinned = (mean + noise * torch.sqrt(mean * (1 - p[:, None, None]))).clamp_min(0)
    return thinned, reference * p


def add_spots(counts, valid, generator=None, fraction: float = 0.8, most: int = 6,
              peak=(1.0, 30.0), sigma=(0.5, 1.5)):
    """The same frames with transient Bragg-like spots added: the negatives a local-defect
    model must learn to ignore (a bright round spot is scattering, a streak is not).

    ``fraction`` of the frames get 1 to ``most`` Gaussian spots (each spot after the
    first with p = 0.5), each at a random place
    with ``sigma`` (blocks) and a peak of ``peak`` (log-uniform) x the frame's mean counts
    per pixel, Poisson noise in its normal approximation (as :func:`thin`); blocks without
    valid pixels stay empty. Labels are unchanged: a good frame stays good, a defect
    frame keeps its defect. Each frame is then scaled back to its total counts, so its
    flux relative to its scan (a flux defect's evidence) is unchanged.
    """
    n, h, w = counts.shape
    device = counts.device

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)
    chosen = torch.rand(n, most, generator=generator)
    active = (chosen[:, :1] < fraction) & (torch.rand(n, most, generator=generator) <
                                          torch.tensor([1.0] + [0.5] * (most - 1)))
    centre_y, centre_x = uniform(0, h, n, most), uniform(0, w, n, most)
    width = uniform(*sigma, n, most)
    height = torch.exp(uniform(np.log(peak[0]), np.log(peak[1]), n, most)) * active
    along_y = torch.exp(-0.5 * ((torch.arange(h)[None, None] - centre_y[..., None]) / width[..., None]) ** 2)
    along_x = torch.exp(-0.5 * ((torch.arange(w)[None, None] - centre_x[..., None]) / width[..., None]) ** 2)
    shape = torch.einsum("nk,nky,nkx->nyx", height, along_y, along_x).to(device)
    level = counts.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1)
    mean = shape * level[:, None, None] * valid
    noise = torch.randn(counts.shape, generator=generator).to(device)
    spotted = counts + (mean + noise * mean.sqrt()).clamp_min(0)
    total = counts.sum(dim=(1, 2))
    return spotted * (total / spotted.sum(dim=(1, 2)).clamp_min(1e-12))[:, None, None]
