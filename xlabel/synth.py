"""Synthetic photon-counting detector scans with per-frame ground truth.

:func:`make_scan` simulates an acquisition (a stack of frames of a hybrid
pixel detector such as an Eiger) together with the truth of every frame;
:func:`write_scan` writes it in the NeXus/Eiger layout real beamlines produce
(master file + external-link data files, one-frame chunks, optional
bitshuffle/LZ4 or gzip compression), so readers are exercised on the real
layout. ``python -m xlabel.synth --samples data_samples`` regenerates the
bundled samples (see :data:`SAMPLES`).

>>> scan = make_scan(n_frames=200, seed=3)
>>> scan.frames.shape, scan.frames.dtype.name
((200, 64, 64), 'uint16')
>>> sorted(set(scan.truth["label"]))
['bad', 'good']

The model
---------
Expected counts of pixel ``p`` in frame ``i`` (then Poisson counting noise):

``lam[i, p] = level * beam[i] * transmission[i] * content[i, p]`` (+ hot pixels)

- ``level``: mean counts per pixel at full beam (exposure: count time x flux);
  drawn per scan (log-uniform 15-250 counts) so scans differ in mean level.
- ``beam[i]``: relative incident intensity, the physical ground truth.

  * Good frames: the stored beam decays slowly (3-7 % between top-up
    refills every 80-250 frames, floor 0.925) with 0.3 % jitter:
    ``beam >= GOOD_BEAM_MIN = 0.925``.
  * Shutter ramp (reason ``"shutter"``): the first 3-12 frames (at most
    n_frames / 8; knob ``ramp_frames``) while the shutter opens; the beam rises from ~0 to at most
    ``BAD_BEAM_MAX = 0.78``.
  * Beam loss (reason ``"beam_loss"``): 4-22 frames (shorter than half of a
    51-frame running-median window) at 0-60 % beam, a partial frame as the beam
    goes and a rise during the refill, all ``<= BAD_BEAM_MAX``; after it the
    stored beam restarts at 1.0. Losses keep 30 frames from each other and the
    ramp. Count per scan: Poisson(n_frames / 300), at least one for scans of
    150 frames or more (knob ``losses``: a count or a list of (start, length)).

  Label: a frame is ``"bad"`` when ``beam < BEAM_THRESHOLD = 0.85``. No frame
  has a beam inside ``BEAM_GAP = (0.80, 0.92)``, so the classes are separable
  in principle: an ambiguous band would cap any classifier's recall/precision.
- ``transmission[i]``: sample absorption/thickness, a smooth random curve
  (periods of 150-800 frames) within +-6-12 %. Together with the beam decay and
  the changing content, a good frame's raw mean flux varies by about +-15 %
  over a scan, so raw flux alone does not separate good from bad, while flux
  relative to the scan's running median (window 51) and image content do.
- ``content[i]``: scattering normalised to a spatial mean near 1: diffuse
  background (a Lorentzian-like falloff from the beam centre + flat part),
  a small-angle halo, 1-3 Debye-Scherrer rings (texture, radius drifting by a
  pixel or two, slowly varying intensity), Bragg spots that appear and fade
  over 5-60 frames, and a beamstop shadow at the beam centre.
- Saturation (reason ``"saturated"``): events of 1-3 good-beam frames in which
  a direct-beam / parasitic reflection saturates 3-10 % of the valid pixels
  (their counts are clipped at ``count_cutoff = dtype max - 1``). A frame is
  also ``"bad"`` when its fraction of valid pixels at the cutoff is
  ``>= SATURATION_THRESHOLD = 0.005``; ordinary frames never saturate (expected
  counts stay below 40 % of the cutoff), so no frame falls inside
  ``SATURATION_GAP = (0.001, 0.02)``. Count per scan: Poisson(n_frames / 1000)
  (knob ``saturation``).
- Detector: a grid of modules separated by gap rows/columns and a few dead
  pixels (``pixel_mask`` True, Eiger flags 1 = gap, 2 = dead; their values are
  the dtype's maximum, the Eiger convention), and 1-4 hot pixels that are not
  in the mask: they count at 10-60 x ``level`` whatever the beam.

Random streams for the beam history, content, detector and noise are spawned
from ``seed`` separately, so the same seed always gives the same frames.
Different seeds give different beam histories, levels, content and detectors.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import XLabelError

__all__ = [
    "SynthScan",
    "SynthError",
    "make_scan",
    "write_scan",
    "write_samples",
    "SAMPLES",
    "BEAM_THRESHOLD",
    "BEAM_GAP",
    "SATURATION_THRESHOLD",
    "SATURATION_GAP",
    "main",
    "make_gisaxs",
    "GisaxsSet",
    "GISAXS_STRUCTURES",
]

BEAM_THRESHOLD = 0.85
BEAM_GAP = (0.80, 0.92)
GOOD_BEAM_MIN = 0.925
BAD_BEAM_MAX = 0.78
SATURATION_THRESHOLD = 0.005
SATURATION_GAP = (0.001, 0.02)
REASONS = ("", "shutter", "beam_loss", "saturated")

LOSS_LENGTH = (4, 23)       # frames, high end exclusive
LOSS_MARGIN = 30            # frames kept between losses and the ramp
SATURATION_LENGTH = (1, 4)
LEVEL_RANGE = (15.0, 250.0)
MAX_EXPECTED_FRACTION = 0.4  # ordinary expected counts stay below this fraction of the cutoff
PIXEL_SIZE = 75e-6           # metres (Eiger)
GAP_FLAG, DEAD_FLAG = 1, 2   # Eiger pixel_mask bits


class SynthError(XLabelError, ValueError):
    """Invalid parameters for the synthetic scan generator."""


@dataclass(repr=False)
class SynthScan:
    """A simulated scan: frames plus per-frame ground truth.

    Attributes: ``frames`` (n, H, W) uint16/uint32; ``truth`` DataFrame with
    ``frame``, ``label`` ("good"/"bad"), ``reason`` ("", "shutter",
    "beam_loss", "saturated"), ``beam``, ``transmission``, ``flux`` (expected
    mean counts of valid pixels), ``frac_saturated``, ``ring_radius``,
    ``n_spots``; ``pixel_mask`` bool (True = gap/dead); ``pixel_flags`` (Eiger
    uint32 bits); ``hot_pixels`` bool (not in the mask); ``name``; ``seed``;
    ``count_time`` (s); ``count_cutoff`` (saturation value); ``params``
    (the knobs that were used).
    """

    frames: np.ndarray
    truth: pd.DataFrame
    pixel_mask: np.ndarray
    name: str
    seed: int = 0
    pixel_flags: np.ndarray | None = None
    hot_pixels: np.ndarray | None = None
    count_time: float = 0.1
    count_cutoff: int = 65534
    beam_center: tuple = (32.0, 32.0)
    params: dict = field(default_factory=dict)

    @property
    def is_bad(self) -> np.ndarray:
        """Boolean array, True for the frames labeled "bad"."""
        return self.truth["label"].to_numpy() == "bad"

    def source(self):
        """The frames as an :class:`xlabel.io.ArraySource` (with this scan's pixel mask)."""
        from .io.base import ArraySource
        return ArraySource(self.frames, name=self.name, pixel_mask=self.pixel_mask)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        counts = self.truth["reason"].value_counts().to_dict()
        counts.pop("", None)
        return (f"<SynthScan {self.name!r} {n} frames {h}x{w} {self.frames.dtype.name}, "
                f"{int(self.is_bad.sum())} bad {counts}>")


# ---------------------------------------------------------------------------
# Beam history
# ---------------------------------------------------------------------------
def _slow_curve(n: int, rng: np.random.Generator, periods=(150.0, 800.0), terms=3) -> np.ndarray:
    """A smooth random curve over ``n`` frames, max |value| = 1."""
    t = np.arange(n, dtype=float)
    period = rng.uniform(*periods, terms)
    phase = rng.uniform(0, 2 * np.pi, terms)
    amp = rng.uniform(0.3, 1.0, terms)
    curve = (amp[:, None] * np.sin(2 * np.pi * t / period[:, None] + phase[:, None])).sum(0)
    return curve / max(np.abs(curve).max(), 1e-12)


def _place_intervals(n, rng, request, length_range, busy, margin, what):
    """Intervals ``(start, length)`` for losses or saturation events.

    ``request``: a count (random placement, as many as fit away from ``busy``
    frames by ``margin``) or an explicit list of ``(start, length)``.
    ``busy`` (bool array) is updated in place.
    """
    if not np.isscalar(request):
        spans = [(int(s), int(m)) for s, m in request]
        for start, length in spans:
            if start < 0 or length < 1 or start + length > n:
                raise SynthError(f"{what} interval ({start}, {length}) is outside a scan of {n} frames")
            busy[start:start + length] = True
        return spans
    spans = []
    for _ in range(int(request)):
        length = int(rng.integers(*length_range))
        blocked = np.concatenate([np.ones(margin, bool), busy, np.ones(margin, bool)])
        window = length + 2 * margin
        if len(blocked) < window:
            break
        run = np.convolve(blocked, np.ones(window, int), mode="valid")[: n - length + 1]
        starts = np.flatnonzero(run == 0)
        if starts.size == 0:
            break
        start = int(rng.choice(starts))
        busy[start:start + length] = True
        spans.append((start, length))
    return spans


def _stored_beam(n, rng, refills) -> np.ndarray:
    """Good-beam intensity: slow decay, restarting at 1.0 at every refill/top-up."""
    period = int(rng.integers(80, 250))
    offset = int(rng.integers(0, period))
    frames = np.arange(n)
    is_refill = np.zeros(n, bool)
    is_refill[[r for r in refills if 0 <= r < n]] = True
    is_refill[(frames + offset) % period == 0] = True
    last = np.maximum.accumulate(np.where(is_refill, frames, -offset))
    decay = rng.uniform(0.03, 0.07) / period
    beam = (1.0 - decay * (frames - last)) * (1 + rng.normal(0, 0.003, n))
    return np.clip(beam, GOOD_BEAM_MIN, 1.02)


def _ramp_profile(length, rng) -> np.ndarray:
    """Shutter opening: beam rising from ~0 towards BAD_BEAM_MAX."""
    x = np.arange(1, length + 1) / length
    return BAD_BEAM_MAX * x ** rng.uniform(1.0, 2.5)


def _loss_profile(length, rng) -> np.ndarray:
    """Beam loss: a partial frame, a stretch at 0-60 %, a rise while refilling."""
    level = rng.uniform(0.0, 0.6)
    profile = level * (1 + rng.normal(0, 0.05, length))
    profile[0] = rng.uniform(level, BAD_BEAM_MAX)
    rise = min(2, length - 2)
    if rise > 0:
        profile[-rise:] = np.linspace(level, BAD_BEAM_MAX, rise + 2)[1:-1]
    return np.clip(profile, 0.0, BAD_BEAM_MAX)


def _beam_history(n, rng, ramp_frames, losses):
    """Beam factor per frame and the reason ("", "shutter", "beam_loss")."""
    if ramp_frames is None:  # 3-12 frames, at most an eighth of a short scan
        ramp = min(int(rng.integers(3, 13)), max(1, n // 8))
    else:
        ramp = min(max(int(ramp_frames), 0), n)
    requested = losses
    if losses is None:  # as many as fit, for short scans possibly none
        losses = max(int(n >= 150), int(rng.poisson(n / 300)))
    busy = np.zeros(n, bool)
    busy[:ramp] = True
    spans = _place_intervals(n, rng, losses, LOSS_LENGTH, busy, LOSS_MARGIN, "beam loss")
    if requested is not None and np.isscalar(requested) and len(spans) < int(requested):
        raise SynthError(f"cannot place {losses} beam losses in a scan of {n} frames "
                         f"(placed {len(spans)}); use fewer losses or more frames")
    beam = _stored_beam(n, rng, [s + m for s, m in spans])
    reason = np.full(n, "", dtype=object)
    beam[:ramp] = _ramp_profile(ramp, rng)
    reason[:ramp] = "shutter"
    for start, length in spans:
        beam[start:start + length] = _loss_profile(length, rng)
        reason[start:start + length] = "beam_loss"
    return beam, reason, busy


# ---------------------------------------------------------------------------
# Detector and scattering content
# ---------------------------------------------------------------------------
def _detector(shape, rng, gaps, modules, n_hot):
    """Eiger pixel flags (1 gap, 2 dead) and the hot pixel mask."""
    h, w = shape
    flags = np.zeros(shape, np.uint32)
    if gaps:
        width = max(1, round(0.03 * min(h, w)))
        for axis, size, count in ((0, h, modules[0]), (1, w, modules[1])):
            for k in range(1, count):
                edge = round(k * size / count) - width // 2
                index = [slice(None), slice(None)]
                index[axis] = slice(edge, edge + width)
                flags[tuple(index)] |= GAP_FLAG
    dead = rng.random(shape) < 5e-4
    flags[dead] |= DEAD_FLAG
    n_hot = int(rng.integers(1, 5)) if n_hot is None else int(n_hot)
    candidates = np.flatnonzero(flags.ravel() == 0)
    hot = np.zeros(h * w, bool)
    hot[rng.choice(candidates, size=min(n_hot, candidates.size), replace=False)] = True
    return flags, hot.reshape(shape)


def _normalised(image: np.ndarray) -> np.ndarray:
    return (image / image.mean()).astype(np.float32)


def _static_templates(shape, rng, center):
    """Radius and azimuth maps, background, halo and beamstop transmission."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    r = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)
    size = min(h, w)
    background = _normalised(0.4 + 1 / np.sqrt(1 + (r / (rng.uniform(0.1, 0.3) * size)) ** 2))
    halo = _normalised(np.exp(-0.5 * (r / (rng.uniform(0.05, 0.1) * size)) ** 2))
    beamstop = np.where(r < max(1.5, 0.04 * size), 0.02, 1.0).astype(np.float32)
    return r, phi, background, halo, beamstop


def _rings(n, r, phi, rng, weight):
    """Debye-Scherrer rings with drifting radius and intensity; returns (image, radius of ring 0).

    Ring profiles are evaluated on a fine radial grid (1/20 pixel) and looked up per
    pixel: n x bins exponentials instead of n x H x W.
    """
    step = 0.05
    radial_index = np.rint(r / step).astype(np.intp)
    grid = np.arange(radial_index.max() + 1, dtype=np.float32) * step
    pixels_per_bin = np.bincount(radial_index.ravel(), minlength=grid.size)
    size = 2 * float(r.max()) / math.sqrt(2)
    count = int(rng.integers(1, 4))
    image = np.zeros((n, *r.shape), np.float32)
    radius0 = None
    for k in range(count):
        radius = rng.uniform(0.15, 0.42) * size + 1.5 * _slow_curve(n, rng)
        width = rng.uniform(0.8, 2.0)
        texture = (1 + rng.uniform(0, 0.5) * np.cos(2 * (phi - rng.uniform(0, np.pi)))).astype(np.float32)
        amp = (weight / count) * (1 + 0.2 * _slow_curve(n, rng)) * (1 + rng.normal(0, 0.03, n))
        profile = np.exp(-0.5 * ((grid[None] - radius[:, None].astype(np.float32)) / width) ** 2)
        mean = (profile @ pixels_per_bin.astype(np.float32)) / r.size + 1e-12
        profile *= (amp / mean).astype(np.float32)[:, None]
        image += profile[:, radial_index] * texture
        radius0 = radius if radius0 is None else radius0
    return image, radius0


def _spots(n, shape, rng):
    """Bragg spots appearing and fading over 5-60 frames: (n, H, W) image and spots per frame."""
    h, w = shape
    count = max(1, n // 15)
    centre = rng.uniform(0, 1, (count, 2)) * (h - 1, w - 1)
    sigma = rng.uniform(0.6, 1.4, count)
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = np.exp(-0.5 * ((yy[None] - centre[:, 0, None, None]) ** 2
                           + (xx[None] - centre[:, 1, None, None]) ** 2) / sigma[:, None, None] ** 2)
    t_mid = rng.uniform(0, n, count)
    t_width = rng.uniform(2, 20, count)
    peak = rng.uniform(2, 20, count)  # x the mean level
    amp = peak * np.exp(-0.5 * ((np.arange(n)[:, None] - t_mid) / t_width) ** 2)
    amp[amp < 0.05 * peak] = 0
    image = (amp.astype(np.float32) @ blobs.reshape(count, -1).astype(np.float32)).reshape(n, h, w)
    return image, (amp > 0).sum(1)


def _content(n, shape, rng, center):
    """Expected scattering per frame (spatial mean near 1) and truth columns."""
    r, phi, background, halo, beamstop = _static_templates(shape, rng, center)
    w_ring, w_halo = rng.uniform(0.1, 0.25), rng.uniform(0.05, 0.15)
    image, ring_radius = _rings(n, r, phi, rng, w_ring)
    spots, n_spots = _spots(n, shape, rng)
    image += spots
    bg_amp = (1 - w_ring - w_halo) * (1 + 0.01 * _slow_curve(n, rng)) * (1 + rng.normal(0, 0.01, n))
    halo_amp = w_halo * (1 + 0.2 * _slow_curve(n, rng)) * (1 + rng.normal(0, 0.03, n))
    image += bg_amp.astype(np.float32)[:, None, None] * background
    image += halo_amp.astype(np.float32)[:, None, None] * halo
    image *= beamstop
    return image, ring_radius, n_spots


def _saturation_blob(shape, rng, center, valid, fraction):
    """Pixels of a saturating blob near the beam centre: ``fraction`` of the valid pixels."""
    h, w = shape
    cy, cx = center[0] + rng.uniform(-0.1, 0.1) * h, center[1] + rng.uniform(-0.1, 0.1) * w
    yy, xx = np.mgrid[0:h, 0:w]
    distance = np.hypot(yy - cy, xx - cx)[valid]
    k = math.ceil(fraction * valid.sum())
    blob = np.zeros(int(valid.sum()), bool)
    blob[np.argsort(distance, kind="stable")[:k]] = True
    full = np.zeros(shape, bool)
    full[valid] = blob
    return full


# ---------------------------------------------------------------------------
# make_scan
# ---------------------------------------------------------------------------
def _check_args(n_frames, frame_shape, dtype, level):
    if int(n_frames) < 1:
        raise SynthError(f"n_frames must be >= 1, got {n_frames}")
    if len(frame_shape) != 2 or min(frame_shape) < 8:
        raise SynthError(f"frame_shape must be (H, W) with H, W >= 8, got {frame_shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise SynthError(f"dtype must be uint16 or uint32, got {dtype}")
    cutoff = int(np.iinfo(dtype).max) - 1
    # Spots peak at 20x level above a halo of up to ~10x: keep expected counts below the cutoff.
    if level is not None and not 0 < level * 100 <= MAX_EXPECTED_FRACTION * cutoff:
        raise SynthError(f"level {level} counts/pixel must be in (0, {MAX_EXPECTED_FRACTION * cutoff / 100:g}]"
                         f" for {dtype.name} (use dtype='uint32' for higher levels)")
    return dtype, cutoff


def make_scan(n_frames: int = 400, frame_shape=(64, 64), seed: int = 0, *, name: str | None = None,
              dtype="uint16", level: float | None = None, ramp_frames: int | None = None,
              losses=None, saturation=None, hot_pixels: int | None = None, gaps: bool = True,
              modules=(2, 2), count_time: float | None = None) -> SynthScan:
    """Simulate a scan of ``n_frames`` detector frames with per-frame ground truth.

    Knobs (``None`` = drawn from ``seed``): ``level`` mean counts/pixel at full beam;
    ``ramp_frames`` shutter-ramp length (0 for none); ``losses`` number of beam losses or
    a list of ``(start, length)``; ``saturation`` number of saturation events or a list of
    ``(start, length)``; ``hot_pixels`` count; ``gaps`` module gaps on/off with
    ``modules`` = (rows, cols) of modules; ``count_time`` in seconds (metadata).
    See the module docstring for the physics and the label definition.

    >>> scan = make_scan(n_frames=300, seed=5, ramp_frames=10, losses=[(150, 12)], saturation=0)
    >>> scan.truth["reason"].value_counts().to_dict()
    {'': 278, 'beam_loss': 12, 'shutter': 10}
    >>> bool((scan.frames[:, scan.pixel_mask] == 65535).all())
    True
    """
    dtype, cutoff = _check_args(n_frames, frame_shape, dtype, level)
    n, shape = int(n_frames), (int(frame_shape[0]), int(frame_shape[1]))
    beam_rng, content_rng, detector_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    if level is None:
        level = float(np.exp(beam_rng.uniform(*np.log(LEVEL_RANGE))))
    if count_time is None:
        count_time = float(beam_rng.choice([0.01, 0.02, 0.05, 0.1, 0.2]))
    beam, reason, busy = _beam_history(n, beam_rng, ramp_frames, losses)
    transmission = 1 + beam_rng.uniform(0.06, 0.12) * _slow_curve(n, beam_rng)
    if saturation is None:
        saturation = int(beam_rng.poisson(n / 1000))
    saturated_spans = _place_intervals(n, beam_rng, saturation, SATURATION_LENGTH, busy, 1, "saturation")

    flags, hot = _detector(shape, detector_rng, gaps, modules, hot_pixels)
    valid = flags == 0
    center = (shape[0] / 2 + detector_rng.uniform(-0.06, 0.06) * shape[0],
              shape[1] / 2 + detector_rng.uniform(-0.06, 0.06) * shape[1])
    content, ring_radius, n_spots = _content(n, shape, content_rng, center)

    lam = content
    lam *= (level * beam * transmission).astype(np.float32)[:, None, None]
    lam[:, hot] = (level * detector_rng.uniform(10, 60, int(hot.sum()))).astype(np.float32)
    for start, length in saturated_spans:
        blob = _saturation_blob(shape, detector_rng, center, valid & ~hot, detector_rng.uniform(0.03, 0.10))
        lam[start:start + length, blob] = 5.0 * cutoff
    weights = (valid / valid.sum()).astype(np.float32).ravel()
    flux = np.minimum(lam, cutoff).reshape(n, -1) @ weights  # mean over valid pixels

    counts = noise_rng.poisson(lam)
    np.minimum(counts, cutoff, out=counts)
    frames = counts.astype(dtype)
    frames[:, ~valid] = np.iinfo(dtype).max
    # Masked pixels hold dtype max, never the cutoff: count over the whole frame.
    frac_saturated = np.count_nonzero((frames == cutoff).reshape(n, -1), axis=1) / valid.sum()

    truth = _truth_table(beam, reason, frac_saturated, transmission, flux, ring_radius, n_spots)
    params = dict(n_frames=n, frame_shape=shape, seed=seed, dtype=dtype.name, level=level,
                  ramp_frames=int((reason == "shutter").sum()), saturation=saturated_spans,
                  hot_pixels=int(hot.sum()), gaps=gaps, modules=tuple(modules), count_time=count_time)
    return SynthScan(frames=frames, truth=truth, pixel_mask=~valid, name=name or f"synth_{seed}",
                     seed=seed, pixel_flags=flags, hot_pixels=hot, count_time=count_time,
                     count_cutoff=cutoff, beam_center=center, params=params)


def _truth_table(beam, reason, frac_saturated, transmission, flux, ring_radius, n_spots):
    """Per-frame truth: label from the beam threshold and the saturated fraction."""
    reason = reason.copy()
    saturated = frac_saturated >= SATURATION_THRESHOLD
    reason[(reason == "") & saturated] = "saturated"
    bad = (beam < BEAM_THRESHOLD) | saturated
    return pd.DataFrame({
        "frame": np.arange(len(beam)),
        "label": np.where(bad, "bad", "good"),
        "reason": reason.astype(str),
        "beam": beam,
        "transmission": transmission,
        "flux": flux,
        "frac_saturated": frac_saturated,
        "ring_radius": ring_radius,
        "n_spots": n_spots,
    })


# ---------------------------------------------------------------------------
# Writing NeXus / Eiger files
# ---------------------------------------------------------------------------
LAYOUTS = ("eiger", "nexus")
COMPRESSIONS = (None, "gzip", "bslz4")


def _compression_options(compression) -> dict:
    if compression is None:
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    import hdf5plugin  # registers the bitshuffle filter with HDF5
    return dict(hdf5plugin.Bitshuffle(cname="lz4"))


def _write_frames(group, frames, compression):
    """One-frame chunks, the way Eiger/Pilatus data files are written."""
    return group.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]),
                                **_compression_options(compression))


def _nx_group(parent, name, nx_class, **attrs):
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    for key, value in attrs.items():
        group.attrs[key] = value
    return group


def _write_metadata(entry, scan: SynthScan):
    """NXinstrument/NXdetector (Eiger style), the beam monitor and sample ground truth."""
    instrument = _nx_group(entry, "instrument", "NXinstrument")
    detector = _nx_group(instrument, "detector", "NXdetector")
    n, h, w = scan.frames.shape
    mask = (scan.pixel_flags if scan.pixel_flags is not None else scan.pixel_mask).astype(np.uint32)
    detector["description"] = "xlabel.synth simulated photon-counting detector (Eiger-like)"
    detector["sensor_material"] = "Si"
    for key, value, units in (("count_time", scan.count_time, "s"), ("frame_time", scan.count_time, "s"),
                              ("x_pixel_size", PIXEL_SIZE, "m"), ("y_pixel_size", PIXEL_SIZE, "m"),
                              ("beam_center_x", scan.beam_center[1], "pixel"),
                              ("beam_center_y", scan.beam_center[0], "pixel")):
        detector[key] = value
        detector[key].attrs["units"] = units
    detector["saturation_value"] = np.int64(scan.count_cutoff)
    detector["bit_depth_readout"] = np.int32(scan.frames.dtype.itemsize * 8)
    detector["pixel_mask"] = mask
    specific = _nx_group(detector, "detectorSpecific", "NXcollection")
    specific["pixel_mask"] = mask
    specific["nimages"] = np.int64(n)
    specific["ntrigger"] = np.int64(1)
    specific["x_pixels_in_detector"] = np.int64(w)
    specific["y_pixels_in_detector"] = np.int64(h)
    specific["countrate_correction_count_cutoff"] = np.int64(scan.count_cutoff)
    monitor = _nx_group(entry, "control", "NXmonitor")
    monitor["data"] = scan.truth["beam"].to_numpy(np.float64)
    monitor["data"].attrs["long_name"] = "relative incident beam intensity (simulation ground truth)"
    sample = _nx_group(entry, "sample", "NXsample")
    sample["name"] = scan.name
    sample["transmission"] = scan.truth["transmission"].to_numpy(np.float64)


def _create_file(path):
    """``h5py.File(path, "w")`` with a clear error (locked by a reader, no permission...)."""
    import h5py
    try:
        return h5py.File(path, "w")
    except OSError as err:
        raise SynthError(f"cannot create the file: {err}", path=path) from None


def _open_entry(path):
    f = _create_file(path)
    f.attrs["default"] = "entry"
    f.attrs["creator"] = "xlabel.synth"
    entry = _nx_group(f, "entry", "NXentry", default="data")
    entry["definition"] = "NXmx"
    return f, entry


def _write_eiger(scan: SynthScan, folder: Path, compression, frames_per_file: int) -> Path:
    import h5py
    master = folder / f"{scan.name}_master.h5"
    f, entry = _open_entry(master)
    with f:
        data = _nx_group(entry, "data", "NXdata")
        for k, start in enumerate(range(0, len(scan.frames), frames_per_file), 1):
            stop = min(start + frames_per_file, len(scan.frames))
            file_name = f"{scan.name}_data_{k:06d}.h5"
            with _create_file(folder / file_name) as part:
                group = _nx_group(_nx_group(part, "entry", "NXentry"), "data", "NXdata", signal="data")
                dset = _write_frames(group, scan.frames[start:stop], compression)
                dset.attrs["image_nr_low"] = np.int64(start + 1)
                dset.attrs["image_nr_high"] = np.int64(stop)
            data[f"data_{k:06d}"] = h5py.ExternalLink(file_name, "/entry/data/data")
        _write_metadata(entry, scan)
    return master


def _write_nexus(scan: SynthScan, folder: Path, compression) -> Path:
    path = folder / f"{scan.name}.nxs"
    f, entry = _open_entry(path)
    with f:
        data = _nx_group(entry, "data", "NXdata", signal="data")
        _write_frames(data, scan.frames, compression)
        _write_metadata(entry, scan)
        entry["instrument/detector/data"] = data["data"]  # hard link, as NXmx files do
    return path


def write_scan(scan: SynthScan, path, layout: str = "eiger", compression=None,
               frames_per_file: int = 100) -> Path:
    """Write ``scan`` into the folder ``path`` (created if needed); return the master file.

    ``layout="eiger"``: ``<path>/<name>_master.h5`` whose ``/entry/data/data_000001``,
    ``data_000002``, ... are external links to ``<name>_data_00000k.h5:/entry/data/data``
    (``frames_per_file`` frames each). ``layout="nexus"``: one file ``<path>/<name>.nxs``
    with ``/entry/data/data`` (NXdata ``@signal``, ``@default`` chain from the root).
    Data are chunked one frame per chunk; ``compression`` is ``None``, ``"gzip"`` or
    ``"bslz4"`` (bitshuffle + LZ4, via hdf5plugin). The Eiger pixel mask (uint32,
    non-zero = bad) is written at ``/entry/instrument/detector/pixel_mask`` and
    ``.../detectorSpecific/pixel_mask``; the beam ground truth at ``/entry/control/data``.

    >>> import tempfile
    >>> master = write_scan(make_scan(n_frames=30, seed=1), tempfile.mkdtemp(), frames_per_file=20)
    >>> master.name
    'synth_1_master.h5'
    """
    if layout not in LAYOUTS:
        raise SynthError(f"layout must be one of {LAYOUTS}, got {layout!r}", path=path)
    if compression not in COMPRESSIONS:
        raise SynthError(f"compression must be one of {COMPRESSIONS}, got {compression!r}", path=path)
    if int(frames_per_file) < 1:
        raise SynthError(f"frames_per_file must be >= 1, got {frames_per_file}", path=path)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "nexus":
        return _write_nexus(scan, folder, compression)
    return _write_eiger(scan, folder, compression, int(frames_per_file))


# ---------------------------------------------------------------------------
# Bundled samples
# ---------------------------------------------------------------------------
#: The scans in data_samples/: ``make`` = make_scan arguments, ``write`` = write_scan arguments.
SAMPLES = {
    "scan_a": dict(description="shutter ramp of 12 frames and one beam loss; bslz4, 4 data files",
                   make=dict(n_frames=400, seed=101, ramp_frames=12, losses=1, saturation=0, level=25.0),
                   write=dict(compression="bslz4", frames_per_file=100)),
    "scan_b": dict(description="short ramp (5 frames) and two beam losses; gzip, 5 data files",
                   make=dict(n_frames=500, seed=202, ramp_frames=5, losses=2, saturation=0, level=40.0),
                   write=dict(compression="gzip", frames_per_file=100)),
    "scan_c": dict(description="ramp of 8 frames, one short beam loss and two saturation events; "
                               "bslz4, 3 data files",
                   make=dict(n_frames=300, seed=303, ramp_frames=8, losses=1, saturation=2, level=15.0),
                   write=dict(compression="bslz4", frames_per_file=100)),
    "scan_d": dict(description="uint32 frames (invalid = 2**32-1), ramp of 10 frames, one beam loss, "
                               "one saturation event; bslz4, 2 data files of 150 frames",
                   make=dict(n_frames=300, seed=404, ramp_frames=10, losses=1, saturation=1, level=60.0,
                             dtype="uint32"),
                   write=dict(compression="bslz4", frames_per_file=150)),
}


def make_sample(name: str) -> SynthScan:
    """The :class:`SynthScan` of bundled sample ``name`` (see :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise SynthError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    return make_scan(name=name, **SAMPLES[name]["make"])


def write_sample(name: str, folder) -> Path:
    """Regenerate sample ``name`` into ``folder/<name>/``: master, data files, labels CSV.

    Files are written to a temporary folder first and moved into place only where their
    bytes changed (``os.replace``, atomic), so a reader holding a sample open never sees a
    truncated file and unchanged samples are left untouched.
    """
    scan = make_sample(name)
    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".regenerate-") as tmp:
        staging = Path(tmp)
        write_scan(scan, staging, **SAMPLES[name]["write"])
        scan.truth[["frame", "label", "reason"]].to_csv(staging / f"{name}_labels.csv", index=False)
        for new in sorted(staging.iterdir()):
            old = target / new.name
            if not (old.is_file() and filecmp.cmp(old, new, shallow=False)):
                os.replace(new, old)
    return target / f"{name}_master.h5"


def write_samples(folder, names=None, progress: bool = True) -> list[Path]:
    """Regenerate the bundled samples (all, or ``names``) into ``folder``; return the masters."""
    from tqdm.auto import tqdm
    names = list(SAMPLES) if names is None else list(names)
    return [write_sample(name, folder) for name in tqdm(names, desc="samples", disable=not progress)]


def main(argv=None) -> int:
    """``python -m xlabel.synth``: write one synthetic scan, or regenerate the samples."""
    parser = argparse.ArgumentParser(prog="python -m xlabel.synth", description=main.__doc__)
    parser.add_argument("out", nargs="?", help="folder to write one scan into")
    parser.add_argument("--samples", metavar="FOLDER", help="regenerate the bundled samples into FOLDER")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="with --samples: only these samples")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--shape", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name")
    parser.add_argument("--layout", choices=LAYOUTS, default="eiger")
    parser.add_argument("--compression", choices=["none", "gzip", "bslz4"], default="none")
    parser.add_argument("--frames-per-file", type=int, default=100)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.samples:
        for master in write_samples(args.samples, args.only, progress=not args.quiet):
            print(master)
        return 0
    if not args.out:
        parser.error("give an output folder, or --samples FOLDER")
    scan = make_scan(args.frames, tuple(args.shape), args.seed, name=args.name)
    compression = None if args.compression == "none" else args.compression
    master = write_scan(scan, args.out, layout=args.layout, compression=compression,
                        frames_per_file=args.frames_per_file)
    scan.truth.to_csv(Path(args.out) / f"{scan.name}_truth.csv", index=False)
    print(master)
    return 0



# ---------------------------------------------------------------------------
# GISAXS-like series (system 4 of the domain notes: binning by embedding)
# ---------------------------------------------------------------------------
GISAXS_STRUCTURES = ("spheres", "cylinders", "lamellae", "disordered")
GISAXS_EXPOSURE = (2.0, 400.0)   # mean counts per valid pixel, drawn log-uniform per frame


@dataclass(repr=False)
class GisaxsSet:
    """Simulated GISAXS series: frames plus per-frame truth.

    Attributes: ``frames`` (n, H, W) uint32 counts; ``truth`` DataFrame with ``scan``
    (series name), ``frame`` (index within the series), ``structure`` (one of
    :data:`GISAXS_STRUCTURES`), ``size`` and ``spacing`` (pixels of the detector: the
    first form-factor minimum / the Bragg rod or sheet period; NaN where a type has none),
    ``exposure`` (mean expected counts per valid pixel), ``background`` (detector dark
    counts per pixel), ``beam_x`` / ``beam_y`` (direct-beam position, drifting);
    ``pixel_mask`` (True = module gap / dead pixel / beamstop: one detector for the whole
    set); ``seed``.
    """

    frames: np.ndarray
    truth: pd.DataFrame
    pixel_mask: np.ndarray
    seed: int = 0

    def source(self):
        """The frames as an :class:`xlabel.io.ArraySource` with the gap/beamstop mask."""
        from .io.base import ArraySource
        return ArraySource(self.frames, name=f"gisaxs_seed{self.seed}", pixel_mask=self.pixel_mask)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        counts = self.truth["structure"].value_counts().sort_index().to_dict()
        return f"<GisaxsSet {self.truth['scan'].nunique()} series, {n} frames {h}x{w} {counts}>"


def _gisaxs_geometry(shape, beam):
    """(qy, qz) in pixels from the direct beam; qz > 0 above the sample horizon."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = beam[0] - 0.12 * h          # specular/horizon above the direct beam
    return xx - beam[1], horizon - yy


def _structure_image(kind, qy, qz, rng, h):
    """Scattering of one structure type (no Yoneda/background), and its (size, spacing)."""
    q = np.hypot(qy, qz)
    if kind == "spheres":
        first_min = rng.uniform(0.12, 0.32) * h
        x = np.maximum(q * (4.493 / first_min), 1e-3)
        image = (3 * (np.sin(x) - x * np.cos(x)) / x ** 3) ** 2 * 40 + 0.02 / (1 + (q / first_min) ** 2)
        return image, first_min, np.nan
    if kind == "cylinders":
        spacing = rng.uniform(0.08, 0.2) * h
        width = rng.uniform(0.8, 1.6)
        rods = sum(np.exp(-0.5 * ((np.abs(qy) - n * spacing) / width) ** 2) / n
                   for n in range(1, 6))
        image = rods * np.exp(-np.maximum(qz, 0) / (rng.uniform(0.3, 0.6) * h)) * 4
        return image + 0.05 / (1 + (q / (0.1 * h)) ** 2), np.nan, spacing
    if kind == "lamellae":
        spacing = rng.uniform(0.07, 0.18) * h
        width = rng.uniform(0.8, 1.6)
        sheets = sum(np.exp(-0.5 * ((qz - n * spacing) / width) ** 2) / n for n in range(1, 6))
        image = sheets / (1 + (qy / (rng.uniform(0.15, 0.35) * h)) ** 2) * 4
        return image + 0.05 / (1 + (q / (0.1 * h)) ** 2), np.nan, spacing
    if kind == "disordered":
        corr = rng.uniform(0.04, 0.15) * h
        return 3 / (1 + (q / corr) ** 2) ** 2, corr, np.nan
    raise SynthError(f"unknown GISAXS structure {kind!r}; choose from {GISAXS_STRUCTURES}")


def _gisaxs_frame(kind, params, shape, beam, rng_params):
    """Expected scattering (spatial mean 1 over valid pixels) for one frame."""
    h = shape[0]
    qy, qz = _gisaxs_geometry(shape, beam)
    image, size, spacing = _structure_image(kind, qy, qz, rng_params, h)
    yoneda = np.exp(-0.5 * ((qz - params["yoneda"]) / 1.5) ** 2) * params["yoneda_amp"]
    image = (image + yoneda + 0.01) * (qz > -1.0)   # the sample shadows below the horizon
    return image.astype(np.float32), size, spacing


def _gisaxs_mask(shape, beam, rng):
    """Module gaps plus the beamstop (a vertical strip from the bottom edge to the beam),
    and the hot pixels (not in the mask)."""
    flags, hot = _detector(shape, rng, gaps=True, modules=(2, 2), n_hot=int(rng.integers(2, 6)))
    mask = flags != 0
    h, w = shape
    half = max(1, round(0.03 * w))
    col = int(round(beam[1]))
    mask[int(round(beam[0])) - half:, col - half:col + half + 1] = True
    return mask, hot


def make_gisaxs(n_series: int = 8, frames_per_series: int = 20, frame_shape=(128, 128),
                seed: int = 0, structures=GISAXS_STRUCTURES, exposure=GISAXS_EXPOSURE) -> GisaxsSet:
    """GISAXS-like series of a few structure types, with the noise simulations lack.

    Each series is one sample of one structure type (types are dealt round-robin, so
    every type is present once ``n_series >= len(structures)``) with its own size /
    spacing; its frames differ in exposure (log-uniform over ``exposure`` mean counts per
    pixel, a 200x range by default), Poisson noise, a detector background (dark counts
    with a slow gradient), hot pixels (not in the mask) and a direct beam drifting by up
    to ~2 pixels over the series. Types: ``spheres`` (form-factor rings around the
    horizon), ``cylinders`` (vertical Bragg rods), ``lamellae`` (horizontal Bragg
    sheets), ``disordered`` (smooth decay); all share a Yoneda band just above the
    horizon and the shadow of the sample below it. The beamstop and the module gaps are
    in ``pixel_mask`` and hold 0 counts. Same seed, same set; different seeds give
    different series (use them as held-out data).

    >>> data = make_gisaxs(n_series=4, frames_per_series=3, frame_shape=(64, 64), seed=1)
    >>> data.frames.shape, sorted(data.truth["structure"].unique())
    ((12, 64, 64), ['cylinders', 'disordered', 'lamellae', 'spheres'])
    """
    _check_args(n_series * frames_per_series, frame_shape, np.uint32, 1.0)
    structures = tuple(structures)
    if not structures or any(s not in GISAXS_STRUCTURES for s in structures):
        raise SynthError(f"structures must be among {GISAXS_STRUCTURES}, got {structures}")
    h, w = (int(s) for s in frame_shape)
    rng = np.random.default_rng([seed, 4])
    beam0 = np.array([0.85 * h, w / 2 + rng.uniform(-0.05, 0.05) * w])
    mask, hot = _gisaxs_mask((h, w), beam0, rng)      # one instrument for the whole set
    frames, rows = [], []
    for series in range(int(n_series)):
        kind = structures[series % len(structures)]
        stack, truth = _gisaxs_series(kind, int(frames_per_series), (h, w), rng, exposure,
                                      beam0, mask, hot)
        truth.insert(0, "scan", f"gisaxs_s{seed}_{series:02d}")
        frames.append(stack)
        rows.append(truth)
    return GisaxsSet(np.concatenate(frames), pd.concat(rows, ignore_index=True), mask, int(seed))


def _gisaxs_series(kind, n, shape, rng, exposure, beam0, mask, hot):
    h, w = shape
    params = {"yoneda": rng.uniform(0.03, 0.06) * h, "yoneda_amp": rng.uniform(0.3, 1.0)}
    structure_seed = int(rng.integers(2 ** 31))
    drift = np.cumsum(rng.normal(0, 0.4, (n, 2)), axis=0).clip(-2, 2)
    levels = np.exp(rng.uniform(*np.log(exposure), n))
    dark = rng.uniform(0.2, 2.0)
    gradient = (1 + 0.5 * np.linspace(-1, 1, w, dtype=np.float32))[None, :]
    stack = np.zeros((n, h, w), np.uint32)
    truth = []
    for i in range(n):
        beam = beam0 + drift[i]
        image, size, spacing = _gisaxs_frame(kind, params, shape, beam,
                                             np.random.default_rng(structure_seed))
        image /= image[~mask].mean()
        lam = levels[i] * image + dark * gradient
        lam[hot] = levels[i] * rng.uniform(20, 80)
        counts = rng.poisson(lam)
        counts[mask] = 0
        stack[i] = counts
        truth.append({"frame": i, "structure": kind, "size": size, "spacing": spacing,
                      "exposure": levels[i], "background": dark,
                      "beam_x": beam[1], "beam_y": beam[0]})
    return stack, pd.DataFrame(truth)




# ---------------------------------------------------------------------------
# Frames with known spots (spot finding, issue 13 B)
# ---------------------------------------------------------------------------
SPOT_SIGMA = (0.8, 1.6)      # pixels, Gaussian width of a spot
SPOT_SNR = (6.0, 60.0)       # peak height over the local background noise sqrt(bg + 1)
SPOT_SEPARATION = 8.0        # pixels between spot centres
SPOT_MARGIN = 3              # pixels kept between a spot centre and an invalid pixel / the edge


@dataclass(repr=False)
class SpotScan:
    """Frames with known spots, for spot finding (made by :func:`make_spot_scan`).

    Attributes: ``frames`` (n, H, W) uint16 (invalid pixels hold 65535); ``spots``
    DataFrame, one row per true spot: ``frame``, ``y``, ``x`` (centre, pixels),
    ``sigma`` (pixels), ``peak`` (expected counts above background at the centre),
    ``intensity`` (expected integrated counts, ``2 pi sigma^2 peak``); ``truth``
    DataFrame per frame: ``frame``, ``hit`` (bool), ``n_spots``, ``n_rings``,
    ``background`` (expected counts of a background pixel far from the centre);
    ``pixel_mask`` (True = gap / dead pixel); ``hot_pixels`` (True = hot, NOT in
    the mask); ``name``; ``seed``; ``params``.
    """

    frames: np.ndarray
    spots: pd.DataFrame
    truth: pd.DataFrame
    pixel_mask: np.ndarray
    hot_pixels: np.ndarray
    name: str
    seed: int = 0
    params: dict = field(default_factory=dict)

    def source(self):
        """The frames as an :class:`xlabel.io.ArraySource` (with this scan's pixel mask)."""
        from .io.base import ArraySource
        return ArraySource(self.frames, name=self.name, pixel_mask=self.pixel_mask)

    def spot_pixels(self, frames=None, radius: float = 1.2) -> np.ndarray:
        """Boolean (n, H, W) truth of the pixels that belong to a spot (segmentation target).

        A pixel belongs to a spot when it lies within ``max(1.5, radius * sigma)`` of the
        spot's centre and is valid. ``frames``: indices (default: all).
        """
        index = np.arange(len(self.frames)) if frames is None else np.asarray(frames)
        h, w = self.frames.shape[1:]
        out = np.zeros((index.size, h, w), bool)
        yy, xx = np.mgrid[0:h, 0:w]
        by_frame = self.spots.groupby("frame")
        for k, i in enumerate(index):
            if int(i) not in by_frame.groups:
                continue
            for y, x, sigma in by_frame.get_group(int(i))[["y", "x", "sigma"]].to_numpy():
                out[k] |= (yy - y) ** 2 + (xx - x) ** 2 <= max(1.5, radius * sigma) ** 2
        out &= ~self.pixel_mask
        return out

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        return (f"<SpotScan {self.name!r} {n} frames {h}x{w}, {int(self.truth['hit'].sum())} hits, "
                f"{len(self.spots)} spots, {int(self.hot_pixels.sum())} hot pixels>")


def _spot_positions(count, valid, rng, separation):
    """Up to ``count`` spot centres on pixels far enough from invalid pixels and each other."""
    from scipy import ndimage

    h, w = valid.shape
    inner = np.zeros_like(valid)
    inner[SPOT_MARGIN:h - SPOT_MARGIN, SPOT_MARGIN:w - SPOT_MARGIN] = True
    allowed = ndimage.binary_erosion(valid, np.ones((2 * SPOT_MARGIN + 1,) * 2), border_value=0) & inner
    where = np.flatnonzero(allowed)
    chosen = []
    for _ in range(30 * count):  # rejection sampling; gives up quietly on crowded frames
        if len(chosen) == count or where.size == 0:
            break
        y, x = divmod(int(rng.choice(where)), w)
        y, x = y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)
        if all((y - cy) ** 2 + (x - cx) ** 2 >= separation ** 2 for cy, cx in chosen):
            chosen.append((y, x))
    return chosen


def _add_gaussian(image, y, x, sigma, peak):
    h, w = image.shape
    half = int(math.ceil(4 * sigma))
    y0, y1 = max(0, int(y) - half), min(h, int(y) + half + 2)
    x0, x1 = max(0, int(x) - half), min(w, int(x) + half + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    image[y0:y1, x0:x1] += peak * np.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / sigma ** 2)


def _ring_image(r, rng, background, count):
    """Thin powder / ice rings: amplitude 3-12 x the local noise, width 0.6-1.2 pixels."""
    image = np.zeros_like(r)
    radii = rng.uniform(0.15, 0.65, count) * min(r.shape) / 2 + 8
    for radius in radii:
        width = rng.uniform(0.6, 1.2)
        amp = rng.uniform(3, 12) * np.sqrt(background + 1)
        image += amp * np.exp(-0.5 * ((r - radius) / width) ** 2)
    return image


def make_spot_scan(n_frames: int = 64, frame_shape=(128, 128), seed: int = 0, *,
                   name: str | None = None, hit_fraction: float = 0.5, spots_per_hit=(5, 40),
                   level: float | None = None, rings=(0, 3), hot_pixels: int | None = None,
                   gaps: bool = True, snr=SPOT_SNR, sigma=SPOT_SIGMA) -> SpotScan:
    """Frames of a serial-crystallography-like scan with known spots and distractors.

    Each frame: a diffuse background falling off from a beam centre (``level`` counts
    per pixel far from the centre, log-uniform 1-30 per scan when None, +-20 % per
    frame), a beamstop shadow, 0 to ``rings`` thin powder/ice rings (on hits and blanks),
    and on hit frames (probability ``hit_fraction``) ``spots_per_hit`` Gaussian spots
    (width ``sigma`` pixels, peak ``snr`` x ``sqrt(background + 1)``, log-uniform;
    centres at least 8 pixels apart and 3 from invalid pixels, outside the beamstop);
    blanks have none.
    Detector: module gaps and dead pixels (``pixel_mask``, value 65535) and hot pixels
    (``hot_pixels``, default ~1 per 2000 pixels, single pixels counting 10-100 x the
    background in every frame, not in the mask, never within 4 pixels of a spot).
    Poisson noise. Seeded: the same arguments give the same frames.

    >>> scan = make_spot_scan(n_frames=8, frame_shape=(64, 64), seed=1)
    >>> scan.frames.shape, int(scan.truth["n_spots"].sum()) == len(scan.spots)
    ((8, 64, 64), True)
    >>> bool((scan.frames[:, scan.pixel_mask] == 65535).all())
    True
    """
    n, shape = int(n_frames), (int(frame_shape[0]), int(frame_shape[1]))
    if n < 1 or min(shape) < 32:
        raise SynthError(f"need n_frames >= 1 and frames of at least 32x32, got {n} x {shape}")
    if not 0 <= hit_fraction <= 1:
        raise SynthError(f"hit_fraction must be in [0, 1], got {hit_fraction}")
    frame_rng, spot_rng, detector_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    if level is None:
        level = float(np.exp(frame_rng.uniform(np.log(1.0), np.log(30.0))))
    n_hot = max(1, shape[0] * shape[1] // 2000) if hot_pixels is None else int(hot_pixels)
    flags, _ = _detector(shape, detector_rng, gaps, (2, 2), 0)
    valid = flags == 0
    center = (shape[0] / 2 + detector_rng.uniform(-0.08, 0.08) * shape[0],
              shape[1] / 2 + detector_rng.uniform(-0.08, 0.08) * shape[1])
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    r = np.hypot(yy - center[0], xx - center[1])
    profile = (1 + 3 / (1 + (r / (0.15 * min(shape))) ** 2)).astype(np.float32)
    beamstop = np.where(r < max(2.0, 0.04 * min(shape)), 0.05, 1.0).astype(np.float32)

    rows, truth, lam = [], [], np.empty((n, *shape), np.float32)
    for i in range(n):
        background = level * frame_rng.uniform(0.8, 1.2)
        image = background * profile
        n_rings = int(frame_rng.integers(rings[0], rings[1] + 1))
        image += _ring_image(r, frame_rng, background, n_rings)
        hit = bool(spot_rng.random() < hit_fraction)
        count = int(spot_rng.integers(spots_per_hit[0], spots_per_hit[1] + 1)) if hit else 0
        placed = _spot_positions(count, valid & (beamstop == 1), spot_rng, SPOT_SEPARATION)
        for y, x in placed:
            width = float(spot_rng.uniform(*sigma))
            local = float(image[int(round(y)), int(round(x))])
            peak = float(np.exp(spot_rng.uniform(*np.log(snr)))) * math.sqrt(local + 1)
            _add_gaussian(image, y, x, width, peak)
            rows.append((i, y, x, width, peak, 2 * math.pi * width ** 2 * peak))
        lam[i] = image * beamstop
        truth.append((i, hit and bool(placed), len(placed), n_rings, background))
    spots = pd.DataFrame(rows, columns=["frame", "y", "x", "sigma", "peak", "intensity"])
    hot = _hot_pixels(shape, valid, spots, n_hot, detector_rng)
    lam[:, hot] = (level * detector_rng.uniform(10, 100, int(hot.sum()))).astype(np.float32)
    frames = np.minimum(noise_rng.poisson(lam), 65534).astype(np.uint16)
    frames[:, ~valid] = 65535
    truth = pd.DataFrame(truth, columns=["frame", "hit", "n_spots", "n_rings", "background"])
    params = dict(n_frames=n, frame_shape=shape, seed=seed, hit_fraction=hit_fraction,
                  spots_per_hit=tuple(spots_per_hit), level=level, rings=tuple(rings),
                  hot_pixels=int(hot.sum()), gaps=gaps, snr=tuple(snr), sigma=tuple(sigma))
    return SpotScan(frames=frames, spots=spots, truth=truth, pixel_mask=~valid, hot_pixels=hot,
                    name=name or f"spots_{seed}", seed=seed, params=params)


def _hot_pixels(shape, valid, spots, count, rng):
    """Single hot pixels on valid pixels at least 4 pixels from every true spot."""
    far = valid.copy()
    for y, x in spots[["y", "x"]].to_numpy():
        y0, x0 = int(round(y)), int(round(x))
        far[max(0, y0 - 4):y0 + 5, max(0, x0 - 4):x0 + 5] = False
    hot = np.zeros(shape[0] * shape[1], bool)
    candidates = np.flatnonzero(far.ravel())
    hot[rng.choice(candidates, size=min(count, candidates.size), replace=False)] = True
    return hot.reshape(shape)


__all__ += ["SpotScan", "make_spot_scan"]


# ---------------------------------------------------------------------------
# Multi-label scattering frames (NSLS-II style tags, issue 13 A)
# ---------------------------------------------------------------------------
#: Tags of :func:`make_tagged` frames, in column order.
TAGS = ("rings", "spots", "halo", "streak", "beamstop")
#: Probability that a frame carries each tag (drawn independently, so a frame has 0 to 5).
TAG_RATES = {"rings": 0.45, "spots": 0.4, "halo": 0.4, "streak": 0.3, "beamstop": 0.55}
#: Range of a batch's median exposure (mean counts per pixel, log-uniform); frames of a
#: batch spread a further x/÷ 3 around it, so the whole set spans about 0.7 to 1500.
TAG_LEVEL_RANGE = (2.0, 500.0)


@dataclass(repr=False)
class TagScan:
    """Scattering frames with multi-label truth (see :func:`make_tagged`).

    Attributes: ``frames`` (n, H, W) uint32 counts (gap pixels hold the dtype max);
    ``tags`` DataFrame of bool, one column per name in :data:`TAGS`; ``truth``
    DataFrame (``frame``, ``level`` (mean counts/pixel before features), ``n_rings``,
    ``n_spots``); ``pixel_mask`` (True = gap/dead); ``name``; ``seed``;
    ``beam_center`` (row, col); ``params``.
    """

    frames: np.ndarray
    tags: pd.DataFrame
    truth: pd.DataFrame
    pixel_mask: np.ndarray
    name: str
    seed: int = 0
    beam_center: tuple = (128.0, 128.0)
    params: dict = field(default_factory=dict)

    def source(self):
        """The frames as an :class:`xlabel.io.ArraySource` (with the pixel mask)."""
        from .io.base import ArraySource
        return ArraySource(self.frames, name=self.name, pixel_mask=self.pixel_mask)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        n, h, w = self.frames.shape
        counts = {tag: int(self.tags[tag].sum()) for tag in self.tags.columns}
        return f"<TagScan {self.name!r} {n} frames {h}x{w}, tagged {counts}>"


def _ray_distance(dy, dx, angle):
    """Distance along and across a ray from the beam centre at ``angle``."""
    along = dy * np.sin(angle) + dx * np.cos(angle)
    across = -dy * np.cos(angle) + dx * np.sin(angle)
    return along, across


def _tag_contrast(present, r, phi, dy, dx, size, rng):
    """Feature contrast (relative to the diffuse background) and beamstop transmission of
    one frame; returns ``(contrast, transmission, n_rings, n_spots)``."""
    contrast = np.zeros(r.shape, np.float32)
    n_rings = n_spots = 0
    if present["rings"]:
        n_rings = int(rng.integers(1, 5))
        for _ in range(n_rings):
            radius, width = rng.uniform(0.1, 0.45) * size, rng.uniform(0.8, 2.5) * size / 256
            texture = 1 + rng.uniform(0, 0.8) * np.cos(rng.integers(1, 4) * (phi - rng.uniform(0, np.pi)))
            contrast += (rng.uniform(0.4, 3.0) * texture
                         * np.exp(-0.5 * ((r - radius) / max(width, 0.6)) ** 2)).astype(np.float32)
    if present["spots"]:
        n_spots = int(rng.integers(3, 41))
        ys, xs = rng.uniform(0, r.shape[0], n_spots), rng.uniform(0, r.shape[1], n_spots)
        sigmas = rng.uniform(0.7, 2.0, n_spots) * size / 256
        for y, x, sigma, peak in zip(ys, xs, np.maximum(sigmas, 0.6), rng.uniform(3, 30, n_spots)):
            lo_y, hi_y = int(max(y - 4 * sigma, 0)), int(min(y + 4 * sigma + 1, r.shape[0]))
            lo_x, hi_x = int(max(x - 4 * sigma, 0)), int(min(x + 4 * sigma + 1, r.shape[1]))
            yy, xx = np.mgrid[lo_y:hi_y, lo_x:hi_x]
            contrast[lo_y:hi_y, lo_x:hi_x] += peak * np.exp(
                -0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / sigma ** 2)
    if present["halo"]:
        radius, width = rng.uniform(0.15, 0.35) * size, rng.uniform(0.05, 0.12) * size
        contrast += (rng.uniform(0.5, 2.0) * np.exp(-0.5 * ((r - radius) / width) ** 2)).astype(np.float32)
    if present["streak"]:
        # starts outside the largest beamstop shadow (0.08 size), so a tagged streak is visible
        along, across = _ray_distance(dy, dx, rng.uniform(0, 2 * np.pi))
        start, length = 0.1 * size, rng.uniform(0.25, 0.5) * size
        width = max(rng.uniform(1.0, 2.5) * size / 256, 0.6)
        on_ray = (along > start) & (along < start + length)
        contrast += np.where(on_ray, rng.uniform(1.5, 6.0) * np.exp(-0.5 * (across / width) ** 2)
                             * np.exp(-0.5 * (along - start) / length), 0).astype(np.float32)
    transmission = np.ones(r.shape, np.float32)
    if present["beamstop"]:
        along, across = _ray_distance(dy, dx, rng.choice([0.5, 1.0, 1.5, 2.0]) * np.pi
                                      + rng.normal(0, 0.1))
        arm = (along > 0) & (np.abs(across) < rng.uniform(0.01, 0.02) * size)
        shadow = (r < rng.uniform(0.04, 0.08) * size) | arm
        transmission[shadow] = rng.uniform(0.005, 0.03)
    return contrast, transmission, n_rings, n_spots


def make_tagged(n_frames: int = 200, frame_shape=(256, 256), seed: int = 0, *,
                name: str | None = None, level: float | None = None, tag_rates=None,
                gaps: bool = True, modules=(2, 2), hot_pixels: int | None = None) -> TagScan:
    """Simulate scattering frames that each carry 0 to all of :data:`TAGS`.

    Every frame has a diffuse background (a Lorentzian-like falloff from the beam centre
    plus a flat part) times ``1 + contrast`` of its features: Debye-Scherrer ``rings``
    (1-4, textured, 0.4-3x the background), Bragg ``spots`` (3-40 Gaussian peaks, 3-30x),
    an amorphous ``halo`` (a broad ring, 0.5-2x), a ``streak`` (a ray pointing away from the
    beam centre, starting outside the beamstop shadow, 1.5-6x) and a ``beamstop`` shadow (disc plus holder arm, 0.5-3 % transmission).
    Tags are drawn independently (``tag_rates``, default :data:`TAG_RATES`), so overlaps
    are common and some frames have none or all. Exposure: ``level`` is the scan's median
    mean counts per pixel (default: log-uniform in :data:`TAG_LEVEL_RANGE`); frames spread
    x/÷ 3 around it; Poisson noise. Module ``gaps`` (masked, dtype max), dead and hot pixels
    as in :func:`make_scan`. The beam centre sits within 4 % of the frame centre.

    >>> scan = make_tagged(40, (64, 64), seed=1)
    >>> scan.frames.shape, list(scan.tags.columns) == list(TAGS)
    ((40, 64, 64), True)
    >>> bool(scan.tags.sum(axis=1).between(0, 5).all())
    True
    """
    dtype, cutoff = _check_args(n_frames, frame_shape, "uint32", level if level else 1.0)
    n, shape = int(n_frames), (int(frame_shape[0]), int(frame_shape[1]))
    rates = dict(TAG_RATES, **(tag_rates or {}))
    unknown = set(rates) - set(TAGS)
    if unknown:
        raise SynthError(f"unknown tags {sorted(unknown)}; known: {TAGS}")
    tag_rng, content_rng, detector_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    if level is None:
        level = float(np.exp(tag_rng.uniform(*np.log(TAG_LEVEL_RANGE))))
    levels = level * np.exp(tag_rng.uniform(-np.log(3), np.log(3), n))
    present = pd.DataFrame({tag: tag_rng.random(n) < rates[tag] for tag in TAGS})
    flags, hot = _detector(shape, detector_rng, gaps, modules, hot_pixels)
    valid = flags == 0
    size = min(shape)
    center = (shape[0] / 2 + detector_rng.uniform(-0.04, 0.04) * shape[0],
              shape[1] / 2 + detector_rng.uniform(-0.04, 0.04) * shape[1])
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    r, phi = np.hypot(dy, dx), np.arctan2(dy, dx)
    frames = np.empty((n, *shape), dtype)
    n_rings, n_spots = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i in range(n):
        falloff = content_rng.uniform(0.05, 0.2) * size
        background = _normalised(content_rng.uniform(0.1, 0.5) + 1 / (1 + (r / falloff) ** 2))
        contrast, transmission, n_rings[i], n_spots[i] = _tag_contrast(
            present.iloc[i], r, phi, dy, dx, size, content_rng)
        lam = levels[i] * background * (1 + contrast) * transmission
        lam[hot] = levels[i] * detector_rng.uniform(10, 60, int(hot.sum()))
        frames[i] = np.minimum(noise_rng.poisson(lam), cutoff)
    frames[:, ~valid] = np.iinfo(dtype).max
    truth = pd.DataFrame({"frame": np.arange(n), "level": levels, "n_rings": n_rings,
                          "n_spots": n_spots})
    params = dict(n_frames=n, frame_shape=shape, seed=seed, level=level, tag_rates=rates,
                  gaps=gaps, modules=tuple(modules), hot_pixels=int(hot.sum()))
    return TagScan(frames=frames, tags=present, truth=truth, pixel_mask=~valid,
                   name=name or f"tagged_{seed}", seed=seed, beam_center=center, params=params)


def make_tagged_batches(n_batches: int = 10, frames_per_batch: int = 200, frame_shape=(256, 256),
                        seed: int = 0, progress: bool = False, **knobs) -> list:
    """``n_batches`` independent :func:`make_tagged` scans (``tags_b0`` ..), as in the NSLS-II
    study (10 batches: train on the first 9, test on the last). Each batch has its own
    seed, exposure, beam centre and detector defects.

    >>> batches = make_tagged_batches(3, 8, (32, 32))
    >>> [b.name for b in batches], len(batches[0])
    (['tags_b0', 'tags_b1', 'tags_b2'], 8)
    """
    seeds = np.random.SeedSequence(seed).generate_state(n_batches)
    items = range(n_batches)
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="tagged batches", unit="batch")
    return [make_tagged(frames_per_batch, frame_shape, int(seeds[i]), name=f"tags_b{i}", **knobs)
            for i in items]


# ---------------------------------------------------------------------------
# Frame-model tasks (issue 10): scans of very different exposure, whole-frame flux
# defects (shutter ramp, beam losses) and local detector defects with their boxes
# ---------------------------------------------------------------------------
FLUX_TASK_LEVELS = (2.5, 250.0)      # counts/pixel at full beam: 100x between scans
DEFECT_TASK_LEVELS = (8.0, 240.0)    # 30x between scans
DEFECT_REASONS = ("dead_module", "streak", "shadow")
BOX_COLUMNS = ("box_y0", "box_y1", "box_x0", "box_x1")
SHADOW_TRANSMISSION = 0.1


@dataclass(repr=False)
class FrameTask:
    """Training and held-out scans of one frame-classification task.

    ``train`` and ``test`` are lists of :class:`SynthScan`; every test scan has an exposure
    (``params["level"]``) that no training scan has, and the lowest and highest exposures
    of the task are test scans. ``write(folder)`` puts them on disk for ``xlabel train`` /
    ``xlabel filter``.
    """

    name: str
    train: list
    test: list

    def write(self, folder, compression=None) -> dict:
        """Write every scan (Eiger layout) and its ``frame,label,reason`` CSV into ``folder``.

        Returns ``{"train": [(master, labels_csv), ...], "test": [...]}``.
        """
        folder = Path(folder)
        written = {}
        for part in ("train", "test"):
            written[part] = []
            for scan in getattr(self, part):
                master = write_scan(scan, folder / part / scan.name, compression=compression)
                csv = master.parent / f"{scan.name}_labels.csv"
                scan.truth[["frame", "label", "reason"]].to_csv(csv, index=False)
                written[part].append((master, csv))
        return written

    def __repr__(self) -> str:
        def levels(scans):
            return ", ".join(f"{s.params['level']:.3g}" for s in scans)
        return (f"<FrameTask {self.name!r}: {len(self.train)} train scans (levels {levels(self.train)}), "
                f"{len(self.test)} test scans (levels {levels(self.test)})>")


def _task_levels(n_train, n_test, levels):
    """Log-spaced exposures; test gets an evenly spread subset including both extremes."""
    if int(n_train) < 1 or int(n_test) < 1:
        raise SynthError(f"a task needs at least one train and one test scan, got {n_train}, {n_test}")
    low, high = float(levels[0]), float(levels[1])
    if not 0 < low < high:
        raise SynthError(f"levels must be (low, high) with 0 < low < high, got {levels}")
    n = int(n_train) + int(n_test)
    all_levels = np.geomspace(low, high, n)
    test = np.unique(np.round(np.linspace(0, n - 1, int(n_test))).astype(int))
    train = np.setdiff1d(np.arange(n), test)
    return all_levels[train], all_levels[test]


def _task_seeds(seed, n):
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def make_flux_task(n_train: int = 8, n_test: int = 10, n_frames: int = 300, frame_shape=(64, 64),
                   seed: int = 0, levels=FLUX_TASK_LEVELS) -> FrameTask:
    """Whole-frame flux defects in scans whose exposure differs up to 100x.

    Each scan is a :func:`make_scan` scan (shutter ramp, beam losses; no saturation events)
    at its own ``level``: exposures are log-spaced over ``levels``, the test scans take an
    even spread of them including the lowest and the highest, so a model is judged on count
    levels it never saw (scans of 150 frames or more have a beam loss per 150 frames;
    shorter ones may have none). Bad frames are dim *relative to their scan* (beam < 0.85); a good
    frame of a bright scan has 100x the counts of a good frame of the dimmest one.

    >>> task = make_flux_task(n_train=2, n_test=2, n_frames=150, seed=1)
    >>> [round(s.params["level"], 1) for s in task.test]
    [2.5, 250.0]
    >>> sorted(set(task.train[0].truth["reason"]) - {""})
    ['beam_loss', 'shutter']
    """
    train_levels, test_levels = _task_levels(n_train, n_test, levels)
    seeds = iter(_task_seeds(seed, len(train_levels) + len(test_levels)))

    def scans(part, part_levels):
        return [make_scan(n_frames, frame_shape, next(seeds), name=f"flux_{part}_{i}", level=float(lv),
                          saturation=0, losses=None if n_frames < 150 else int(n_frames) // 150)
                for i, lv in enumerate(part_levels)]
    return FrameTask("flux-defect", scans("train", train_levels), scans("test", test_levels))


def _chip_box(shape, rng):
    """One readout chip of a 4 x 4 grid of chips (a sixteenth of the frame)."""
    h, w = shape
    row, col = rng.integers(0, 4, 2)
    return (round(row * h / 4), round((row + 1) * h / 4), round(col * w / 4), round((col + 1) * w / 4))


def _streak(shape, rng):
    """A straight streak of parasitic scattering: profile (peak 1) and its box."""
    h, w = shape
    size = min(h, w)
    length = rng.uniform(0.25, 0.45) * size
    sigma = rng.uniform(0.6, 1.2)
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    across = -(yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    beyond = np.maximum(np.abs(along) - length / 2, 0)
    profile = np.exp(-0.5 * (across ** 2 + beyond ** 2) / sigma ** 2).astype(np.float32)
    rows, cols = np.nonzero(profile > 0.1)
    return profile, (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)


def _corner_box(shape, rng):
    h, w = shape
    side = round(rng.uniform(0.2, 0.3) * min(h, w))
    top, left = rng.integers(0, 2, 2)
    y0, x0 = (0 if top else h - side), (0 if left else w - side)
    return (y0, y0 + side, x0, x0 + side)


def _apply_defect(frame, valid, reason, lam_scale, rng):
    """Put one local defect into ``frame`` (counts, in place); return its box."""
    if reason == "dead_module":
        box = _chip_box(frame.shape, rng)
        region = np.zeros(frame.shape, bool)
        region[box[0]:box[1], box[2]:box[3]] = True
        frame[region & valid] = 0
    elif reason == "shadow":
        box = _corner_box(frame.shape, rng)
        region = np.zeros(frame.shape, bool)
        region[box[0]:box[1], box[2]:box[3]] = True
        region &= valid
        frame[region] = rng.binomial(frame[region].astype(np.int64), SHADOW_TRANSMISSION)
    else:  # streak: extra Poisson counts along a line, 3-8x the frame's level at its core
        profile, box = _streak(frame.shape, rng)
        extra = rng.poisson(rng.uniform(3, 8) * lam_scale * profile)
        frame[valid] = np.minimum(frame[valid].astype(np.int64) + extra[valid], np.iinfo(frame.dtype).max - 1)
    return box


def make_defect_scan(n_frames: int = 300, frame_shape=(64, 64), seed: int = 0, *, level: float | None = None,
                     defect_fraction: float = 0.1, jitter: float = 0.08, reasons=DEFECT_REASONS,
                     name: str | None = None) -> SynthScan:
    """A scan with local detector defects in about ``defect_fraction`` of its frames.

    The frames are a :func:`make_scan` scan at ``level`` (no ramp, no beam loss, no
    saturation) whose exposure jitters by up to ``+-jitter`` from frame to frame (exact
    binomial thinning of the Poisson counts). Defect frames (label "bad") carry one of
    ``reasons``: ``"dead_module"`` (a readout chip, 1/16 of the frame, reads 0),
    ``"streak"`` (a straight streak of parasitic scattering, 3-8x the level at its core),
    ``"shadow"`` (a corner, 20-30 % of the frame side, shadowed to 10 %). Each changes the
    frame's mean flux by less than the jitter, so flux features cannot see it.
    ``truth`` adds ``exposure`` (the jitter factor) and the defect box ``box_y0``,
    ``box_y1``, ``box_x0``, ``box_x1`` (slice bounds; -1 on good frames).

    >>> scan = make_defect_scan(n_frames=200, seed=4, level=50.0)
    >>> sorted(set(scan.truth["reason"]) - {""})
    ['dead_module', 'shadow', 'streak']
    >>> row = scan.truth[scan.truth["reason"] == "dead_module"].iloc[0]
    >>> y0, y1, x0, x1 = (int(row[c]) for c in BOX_COLUMNS)
    >>> box = scan.frames[int(row["frame"]), y0:y1, x0:x1]
    >>> bool((box[~scan.pixel_mask[y0:y1, x0:x1]] == 0).all())
    True
    """
    unknown = set(reasons) - set(DEFECT_REASONS)
    if unknown or not len(reasons):
        raise SynthError(f"reasons must be a non-empty subset of {DEFECT_REASONS}, got {reasons}")
    if not 0 <= defect_fraction <= 1 or not 0 <= jitter < 1:
        raise SynthError(f"defect_fraction must be in [0, 1] and jitter in [0, 1), got "
                         f"{defect_fraction}, {jitter}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 10]))
    if level is None:
        level = float(np.exp(rng.uniform(*np.log(DEFECT_TASK_LEVELS))))
    base = make_scan(n_frames, frame_shape, seed, name=name or f"defects_{seed}", level=level * (1 + jitter),
                     ramp_frames=0, losses=0, saturation=0)
    n = len(base.frames)
    valid = ~base.pixel_mask
    exposure = 1 + rng.uniform(-jitter, jitter, n)
    frames = base.frames
    frames[:, valid] = rng.binomial(frames[:, valid].astype(np.int64),
                                    (exposure / (1 + jitter))[:, None]).astype(frames.dtype)
    is_defect = rng.random(n) < defect_fraction
    reason = np.full(n, "", dtype=object)
    reason[is_defect] = rng.choice(list(reasons), int(is_defect.sum()))
    boxes = np.full((n, 4), -1, np.int64)
    beam = base.truth["beam"].to_numpy() * base.truth["transmission"].to_numpy()
    for i in np.flatnonzero(is_defect):
        boxes[i] = _apply_defect(frames[i], valid, reason[i], level * exposure[i] * beam[i], rng)
    truth = pd.DataFrame({"frame": np.arange(n), "label": np.where(is_defect, "bad", "good"),
                          "reason": reason.astype(str), "beam": base.truth["beam"],
                          "transmission": base.truth["transmission"], "exposure": exposure,
                          "flux": base.truth["flux"] * exposure / (1 + jitter),
                          **{c: boxes[:, k] for k, c in enumerate(BOX_COLUMNS)}})
    params = dict(base.params, level=level, jitter=jitter, defect_fraction=defect_fraction,
                  reasons=tuple(reasons))
    return SynthScan(frames=frames, truth=truth, pixel_mask=base.pixel_mask, name=base.name, seed=seed,
                     pixel_flags=base.pixel_flags, hot_pixels=base.hot_pixels, count_time=base.count_time,
                     count_cutoff=base.count_cutoff, beam_center=base.beam_center, params=params)


def make_defect_task(n_train: int = 8, n_test: int = 8, n_frames: int = 300, frame_shape=(64, 64),
                     seed: int = 0, levels=DEFECT_TASK_LEVELS, defect_fraction: float = 0.1,
                     jitter: float = 0.08) -> FrameTask:
    """Local detector defects (:func:`make_defect_scan`) in scans whose exposure differs 30x.

    Exposures are log-spaced over ``levels``; the test scans take an even spread of them,
    including the lowest and the highest, so no test scan shares a training scan's level.

    >>> task = make_defect_task(n_train=2, n_test=2, n_frames=50, seed=1)
    >>> [round(s.params["level"]) for s in task.test]
    [8, 240]
    """
    train_levels, test_levels = _task_levels(n_train, n_test, levels)
    seeds = iter(_task_seeds(seed, len(train_levels) + len(test_levels)))

    def scans(part, part_levels):
        return [make_defect_scan(n_frames, frame_shape, next(seeds), level=float(lv), name=f"defects_{part}_{i}",
                                 defect_fraction=defect_fraction, jitter=jitter)
                for i, lv in enumerate(part_levels)]
    return FrameTask("local-defect", scans("train", train_levels), scans("test", test_levels))


def defect_boxes(truth: pd.DataFrame) -> np.ndarray:
    """The defect boxes of a truth table as an ``(n, 4)`` int array (y0, y1, x0, x1; -1 = none)."""
    return truth.loc[:, list(BOX_COLUMNS)].to_numpy(np.int64)


__all__ += ["FrameTask", "make_flux_task", "make_defect_scan", "make_defect_task", "defect_boxes",
            "FLUX_TASK_LEVELS", "DEFECT_TASK_LEVELS", "DEFECT_REASONS", "BOX_COLUMNS"]



# ---------------------------------------------------------------------------
# Active-learning task (issue 14 C): several failure kinds, some rare, in one scan
# ---------------------------------------------------------------------------
FAULT_CLASSES = ("good", "low_beam", "saturated", "dead_chip")
FAULT_TASK_LEVELS = (4.0, 250.0)     # counts/pixel at full beam: 60x between scans
DROPOUT_LENGTH = (2, 9)              # frames a readout chip stays dead, high end exclusive


def make_fault_scan(n_frames: int = 600, frame_shape=(32, 32), seed: int = 0, *,
                    level: float | None = None, losses=2, saturation=2, dropouts=2,
                    name: str | None = None) -> SynthScan:
    """A :func:`make_scan` scan whose bad frames have one of several kinds of fault.

    Truth column ``fault`` is one of :data:`FAULT_CLASSES`: ``"low_beam"`` (shutter ramp or
    beam loss, a few % of the frames), ``"saturated"`` (``saturation`` events of 1-3 frames:
    the rarest class), ``"dead_chip"`` (``dropouts`` runs of 2-8 good-beam frames in which one
    readout chip, 1/16 of the frame, reads 0; ``reason`` ``"dead_chip"``). A dead chip is
    hard to see in dim scans, where many pixels count 0 anyway.

    >>> scan = make_fault_scan(300, seed=2, level=50.0)
    >>> sorted(set(scan.truth["fault"]))
    ['dead_chip', 'good', 'low_beam', 'saturated']
    >>> row = int(scan.truth.index[scan.truth["fault"] == "dead_chip"][0])
    >>> int((scan.frames[row][~scan.pixel_mask] == 0).sum()) > 40
    True
    """
    base = make_scan(n_frames, frame_shape, seed, name=name or f"faults_{seed}", level=level,
                     losses=losses, saturation=saturation)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 14]))
    truth = base.truth.copy()
    busy = (truth["reason"] != "").to_numpy().copy()
    spans = _place_intervals(len(truth), rng, dropouts, DROPOUT_LENGTH, busy, 1, "dropout")
    valid = ~base.pixel_mask
    for start, length in spans:
        box = _chip_box(base.frames.shape[1:], rng)
        region = np.zeros(valid.shape, bool)
        region[box[0]:box[1], box[2]:box[3]] = True
        base.frames[start:start + length, region & valid] = 0
        truth.loc[start:start + length - 1, ["label", "reason"]] = ["bad", "dead_chip"]
    fault = np.where(truth["reason"].isin(["shutter", "beam_loss"]), "low_beam",
                     np.where(truth["label"] == "good", "good", truth["reason"]))
    truth["fault"] = fault
    base.truth = truth
    base.params = dict(base.params, dropouts=spans)
    return base


def make_fault_task(n_train: int = 6, n_test: int = 4, n_frames: int = 600, frame_shape=(32, 32),
                    seed: int = 0, levels=FAULT_TASK_LEVELS) -> FrameTask:
    """Scans with all :data:`FAULT_CLASSES` (:func:`make_fault_scan`), exposures log-spaced over
    ``levels``; the test scans take an even spread of them, including both extremes.

    >>> task = make_fault_task(n_train=2, n_test=2, n_frames=200, seed=1)
    >>> [round(s.params["level"]) for s in task.test]
    [4, 250]
    """
    train_levels, test_levels = _task_levels(n_train, n_test, levels)
    n = len(train_levels)
    names = [f"faults_train_{i}" for i in range(n)] + [f"faults_test_{i}" for i in range(len(test_levels))]
    scans = [make_fault_scan(n_frames, frame_shape, s, level=float(lv), name=name) for s, lv, name in
             zip(_task_seeds(seed, len(names)), np.r_[train_levels, test_levels], names)]
    return FrameTask("faults", scans[:n], scans[n:])


__all__ += ["make_fault_scan", "make_fault_task", "FAULT_CLASSES", "FAULT_TASK_LEVELS"]


if __name__ == "__main__":
    raise SystemExit(main())
