"""Multi-label frame models: which tags (rings, spots, halo...) a scattering frame carries.

Three views of a frame, as in the NSLS-II study (image CNN, coefficient CNN, joint
"double-view" CNN), each a registered kind:

- ``"tags-cnn"`` (:class:`TagCNN`): conv blocks (batch norm) on the binned, log-scaled
  frame, its valid-pixel share and two fixed :class:`RadialRidges` planes (bright lines
  across / along the direction from the beam centre: a streak vs a ring arc); global
  mean *and* max pooling (a few bright spot pixels vanish in a mean).
- ``"tags-polar"`` (:class:`TagPolarCNN`): the coefficient view: the frame unwrapped
  about its centre into ``n_radial`` x ``n_azimuth`` polar cells (means over valid
  pixels, :mod:`xlabel.coefficients`) and their excess over each ring's median, conv
  blocks with circular padding in azimuth, pooled over azimuth (the radius of a ring or
  halo stays known) and over radius (a streak is one bright sector at many radii).
- ``"tags-joint"`` (:class:`TagJointCNN`): both branches, features concatenated.

Input (:func:`prepare_tag_frames`): each frame binned to at most ``size`` x ``size`` as the
mean of its *valid* pixels, ``log1p``, centred on the frame's median (exposure drops out),
bins without a valid pixel filled from their neighbours, plus the valid share: ``(n, 2,
h, w)``. The polar map is a fixed sparse layer inside the network, so
:func:`xlabel.models.gradcam.cam` explains any tag of the image and joint models
(:meth:`TagModel.explain`). Training: one sigmoid output per tag,
``BCEWithLogitsLoss(pos_weight = negatives / positives)`` per tag, random flips,
early stopping on the loss of validation frames from other scans (batches), and a
per-tag threshold chosen on those validation frames (the one with the best F1).
Labels: a frames x tags 0/1 table (DataFrame, array with ``tag_names``, or a
LabelStore's tags); a row with a missing value (NaN or -1) is unlabeled.

>>> import pandas as pd
>>> from xlabel.synth import make_tagged_batches
>>> batches = make_tagged_batches(3, 30, (32, 32), seed=1)  # 3 scans of 30 small frames
>>> list(batches[0].tags.columns)
['rings', 'spots', 'halo', 'streak', 'beamstop']
>>> model = TagCNN(size=16, epochs=2, progress=False).fit(  # a quick demo: 2 epochs
...     [b.source() for b in batches[:2]], pd.concat([b.tags for b in batches[:2]]))
>>> evaluation = evaluate_tags(batches[2].tags, model.predict_proba(batches[2].source()))
>>> evaluation.per_tag["support"].to_dict()  # frames of the held-out scan with each tag
{'rings': 11, 'spots': 13, 'halo': 17, 'streak': 13, 'beamstop': 21}
>>> 0 <= evaluation.mean_ap <= 1
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from ..errors import ModelArgumentError, ModelError
from ._deps import require_torch
from .base import FrameModel, TorchNetworkMixin
from .cnn import _fit, _torch_settings
from .data import MIN_FRAMES_PER_CLASS, concat_prepared
from .persist import load_weights, save_weights
from .registry import register
from .split import split

torch = require_torch()
nn = torch.nn

#: What :func:`prepare_tag_frames` and :class:`TagNet` take; saved with a model, checked on load.
INPUT_VERSION = "v2: centred log frame + valid share"

__all__ = ["TagModel", "TagCNN", "TagPolarCNN", "TagJointCNN", "TagNet", "TagEvaluation",
           "evaluate_tags", "resolve_tags", "train_tags", "prepare_tag_frames", "RadialRidges",
           "INPUT_VERSION"]


# ---------------------------------------------------------------- networks

def _conv_blocks(channels, conv, n_in=1):
    """Conv, batch norm, ReLU per width, max pooling between. Batch norm: without it the
    image CNN sat on a plateau for the thin streaks for many epochs (BENCHMARKS.md)."""
    layers, previous = [], n_in
    for i, width in enumerate(channels):
        if i:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        layers += [conv(previous, width), nn.BatchNorm2d(width), nn.ReLU()]
        previous = width
    return nn.Sequential(*layers)


class _PolarConv(nn.Module):
    """3x3 conv on polar cells: circular padding in azimuth (last axis), zeros in radius."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, kernel_size=3)

    def forward(self, x):
        x = nn.functional.pad(x, (1, 1, 0, 0), mode="circular")
        return self.conv(nn.functional.pad(x, (0, 0, 1, 1)))


class PolarTransform(nn.Module):
    """Fixed sparse map (n, 1, h, w) -> (n, 1, n_radial, n_azimuth) (see polar_matrix).

    The matrix is rebuilt from the shape, never saved with the weights."""

    def __init__(self, shape, n_radial, n_azimuth):
        super().__init__()
        from ..coefficients import polar_matrix
        coo = polar_matrix(tuple(shape), n_radial, n_azimuth).tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        matrix = torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), coo.shape,
                                         check_invariants=True)
        self.register_buffer("matrix", matrix.coalesce(), persistent=False)
        self.out_shape = (n_radial, n_azimuth)

    def forward(self, x):
        flat = x.flatten(1).T                                 # (h*w, n)
        cells = torch.sparse.mm(self.matrix, flat).T          # (n, cells)
        return cells.reshape(len(x), 1, *self.out_shape)


class RadialRidges(nn.Module):
    """Fixed steerable filters: bright ridges across and along the radial direction.

    From the Hessian of the Gaussian-smoothed frame (``sigma`` pixels), with ``u`` the unit
    vector from the frame centre: ``-t.H.t`` (``t`` perpendicular to ``u``) is high on a
    bright line pointing away from the centre (a streak, the edge of the beamstop arm) and
    ``-u.H.u`` on a line around it (a ring, a halo's crest). A convolution alone is
    translation invariant: it sees a straight radial streak and a piece of a large ring
    as the same thin line, so these two planes tell it which way the line points
    relative to the beam (BENCHMARKS.md, issue 13 A). Not trained, never saved.

    >>> ridges = RadialRidges((16, 16))
    >>> frame = torch.zeros(1, 1, 16, 16); frame[0, 0, 7:9, 9:15] = 1  # a radial line
    >>> across, along = ridges(frame)[0, :, 7:9, 10:14].mean(dim=(1, 2))
    >>> bool(across > 3 * along.abs())
    True
    """

    def __init__(self, shape, sigma=1.0):
        super().__init__()
        half = int(np.ceil(3 * sigma))
        t = np.arange(-half, half + 1, dtype=np.float64)
        g = np.exp(-0.5 * (t / sigma) ** 2)
        g /= g.sum()
        d1, d2 = -t / sigma ** 2 * g, (t ** 2 / sigma ** 4 - 1 / sigma ** 2) * g
        d2 -= d2.mean()                                           # a flat frame gives 0
        kernels = np.stack([np.outer(d2, g), np.outer(d1, d1), np.outer(g, d2)])  # yy, xy, xx
        self.register_buffer("kernels", torch.from_numpy(kernels[:, None]).float(),
                             persistent=False)
        h, w = (int(s) for s in shape)
        yy, xx = np.mgrid[0:h, 0:w]
        dy, dx = yy - (h - 1) / 2, xx - (w - 1) / 2
        r = np.maximum(np.hypot(dy, dx), 1e-6)
        uy, ux = dy / r, dx / r
        weights = np.stack([[ux * ux, -2 * uy * ux, uy * uy],        # t.H.t
                            [uy * uy, 2 * uy * ux, ux * ux]])        # u.H.u
        self.register_buffer("weights", torch.from_numpy(weights).float(), persistent=False)
        self.padding = half

    def forward(self, x):
        hessian = nn.functional.conv2d(x, self.kernels, padding=self.padding)  # (n, 3, h, w)
        return -torch.einsum("oihw,nihw->nohw", self.weights, hessian)


def _sector_features(maps):
    """Per channel: the brightest azimuth sector of the radius-averaged maps, and how
    far it stands above the mean sector (a streak is one sector at many radii; a spot is
    one cell, a ring every sector)."""
    sectors = maps.mean(dim=2)                                  # (n, c, phi)
    top = sectors.amax(dim=2)
    return [top, top - sectors.mean(dim=2)]


class TagNet(nn.Module):
    """Image and/or polar branch, then a small head with one logit per tag.

    Input ``(n, 2, h, w)``: the log frame centred on its median and standardized (bins
    without a valid pixel filled from their neighbours) and the share of valid pixels of
    each binned pixel (see :meth:`TagModel.network_input`).
    ``view``: "image", "polar" or "joint". The image branch sees the frame, the valid share
    and the frame's :class:`RadialRidges`; the polar branch the polar cells of the frame
    (means over valid pixels only) and their excess over the ring's median. The polar
    branch is built first, so the last ``Conv2d`` (Grad-CAM's default layer) is the
    image branch's whenever there is one.

    >>> net = TagNet(5, (32, 32), view="joint", channels=(4, 8), n_radial=8, n_azimuth=16)
    >>> net(torch.zeros(2, 2, 32, 32)).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_tags, input_shape, view="image", channels=(16, 32, 64), n_radial=24,
                 n_azimuth=64, hidden=64):
        super().__init__()
        if view not in ("image", "polar", "joint"):
            raise ModelArgumentError(f"unknown view {view!r}: image, polar or joint")
        self.view = view
        widths = {}
        if view in ("polar", "joint"):
            polar_channels = channels[:2]
            self.polar = PolarTransform(input_shape, n_radial, n_azimuth)
            self.polar_features = _conv_blocks(polar_channels, _PolarConv, n_in=2)
            radial_after = -(-n_radial // 2 ** (len(polar_channels) - 1))
            widths["polar"] = (2 * radial_after + 2) * polar_channels[-1] + n_radial + n_azimuth
        if view in ("image", "joint"):
            self.ridges = RadialRidges(input_shape)
            self.image_features = _conv_blocks(
                channels, lambda i, o: nn.Conv2d(i, o, kernel_size=3, padding=1), n_in=4)
            widths["image"] = 2 * channels[-1]
        # one head per branch, logits summed (late fusion, trained together): with one
        # head on the concatenated features the joint model scored below either branch
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_tags))
            for name, width in widths.items()})

    def forward(self, x):
        frame, share = x[:, :1], x[:, 1:2]
        logits = 0
        if self.view != "image":
            polar = self.polar(frame * share) / self.polar(share).clamp_min(0.05)
            excess = polar - polar.median(dim=3, keepdim=True).values
            maps = self.polar_features(torch.cat([polar, excess], dim=1))   # (n, c, r', phi')
            # + the radial profile, and the sorted azimuthal profile of the excess over
            # the inner two thirds (rotation invariant: a streak is one bright sector)
            inner = excess[:, 0, : max(1, 2 * excess.shape[2] // 3)]
            azimuthal = torch.sort(inner.mean(dim=1), dim=1).values
            logits = logits + self.heads["polar"](torch.cat(
                [maps.mean(dim=3).flatten(1), maps.amax(dim=3).flatten(1),
                 *_sector_features(maps), polar.mean(dim=3).flatten(1), azimuthal], dim=1))
        if self.view != "polar":
            maps = self.image_features(torch.cat([frame, share, self.ridges(frame)], dim=1))
            logits = logits + self.heads["image"](
                torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1))
        return logits


# ---------------------------------------------------------------- input

def prepare_tag_frames(stack, size, source=None) -> np.ndarray:
    """Frames ``(n, H, W)`` -> ``(n, 2, h, w)`` float32: ``log1p`` of the mean over the
    *valid* pixels of each binned pixel (0 where none is valid), and the valid share.

    Unlike :func:`xlabel.models.frames.prepare_frames` (block means with invalid pixels
    as 0), a bin that a module gap half covers keeps its level, and the share plane tells
    the network where the gaps are, so they are not mistaken for dark lines.

    >>> stack = np.full((1, 4, 4), 3.0); stack[0, :, 0] = np.nan   # a dead column
    >>> out = prepare_tag_frames(stack, 2)
    >>> np.expm1(out[0, 0]).round(2).tolist(), out[0, 1].tolist()
    ([[3.0, 3.0], [3.0, 3.0]], [[0.5, 1.0], [0.5, 1.0]])
    """
    from ..io.base import invalid_pixels
    from .frames import bin_frames

    clean = np.asarray(stack, dtype=np.float32).copy()
    flagged = invalid_pixels(np.asarray(stack), source)
    bad = ~np.isfinite(clean) if flagged is None else flagged | ~np.isfinite(clean)
    clean[bad] = 0
    np.maximum(clean, 0, out=clean)
    share = bin_frames((~bad).astype(np.float32), size)
    mean = bin_frames(clean, size) / np.maximum(share, 1e-6)
    return np.stack([np.log1p(np.where(share > 0, mean, 0)), share], axis=1).astype(np.float32)


def _iter_tag_prepared(source, size):
    """``(start, prepared block)`` of a source, as :func:`prepare_tag_frames` gives them."""
    from .frames import check_finite_frames
    for start, stack in source.iter_chunks(None):
        check_finite_frames(stack, source, start)
        yield start, prepare_tag_frames(stack, size, source)


def _centred(block):
    """Log frames minus each frame's median over its valid bins (exposure drops out: a
    feature's contrast is a ratio, so a difference of logs); bins without a valid pixel
    filled from their neighbours (:func:`_fill_gaps`)."""
    frame, share = block[:, 0], block[:, 1]
    valid = share > 0.5
    values = np.where(valid, frame, np.nan).reshape(len(frame), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a frame without a valid bin
        median = np.nan_to_num(np.nanmedian(values, axis=1))
    centred = np.where(share > 0, frame - median[:, None, None], 0).astype(np.float32)
    return _fill_gaps(centred, share > 0)


def _fill_gaps(frames, valid, sigma=1.5):
    """Bins without a valid pixel take the Gaussian-weighted mean of the valid bins around
    them (normalized convolution). Module gaps cross the beam centre: left dark, or at
    the frame's median, they are straight radial lines, the very shape of a streak."""
    from scipy.ndimage import gaussian_filter

    if valid.all():
        return frames
    weight = valid.astype(np.float32)
    smooth = gaussian_filter(frames * weight, (0, sigma, sigma), mode="nearest")
    norm = gaussian_filter(weight, (0, sigma, sigma), mode="nearest")
    filled = np.where(norm > 1e-3, smooth / np.maximum(norm, 1e-3), 0)
    return np.where(valid, frames, filled).astype(np.float32)


# ---------------------------------------------------------------- labels

def resolve_tags(y, tag_names=None, n_rows=None):
    """``(float matrix (n, k) of 0/1 with NaN = unlabeled, tag names)`` from a LabelStore
    (its tags), a DataFrame of 0/1/bool columns, or an array with ``tag_names``.

    >>> matrix, names = resolve_tags(pd.DataFrame({"rings": [1, 0], "spots": [0, -1]}))
    >>> names, matrix.tolist()
    (('rings', 'spots'), [[1.0, 0.0], [0.0, nan]])
    """
    if hasattr(y, "tags") and hasattr(y, "tag_names"):
        y = y.tags
    if isinstance(y, pd.DataFrame):
        names = tuple(str(c) for c in y.columns) if tag_names is None else tuple(tag_names)
        missing = [t for t in names if t not in y.columns]
        if missing:
            raise ModelArgumentError(f"labels lack tag columns {missing} (found {list(y.columns)})")
        values = y.loc[:, list(names)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    else:
        values = np.asarray(y, dtype=float)
        if values.ndim != 2:
            raise ModelArgumentError(
                f"multi-label targets are frames x tags, got shape {values.shape}")
        if tag_names is None:
            raise ModelArgumentError("pass tag_names= with an array of tag labels")
        names = tuple(str(t) for t in tag_names)
        if len(names) != values.shape[1]:
            raise ModelArgumentError(f"{len(names)} tag names for {values.shape[1]} tag columns")
    if not names:
        raise ModelArgumentError("no tags to learn")
    values = np.where(values == -1, np.nan, values)
    bad = ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ModelArgumentError(f"tag {names[col]!r} must be 0 or 1, got {values[row, col]!r}",
                                 frame=int(row))
    if n_rows is not None and len(values) != n_rows:
        raise ModelArgumentError(f"{n_rows} frames but {len(values)} rows of tags")
    return values, names


def _check_tag_counts(values, names):
    """ModelError unless each tag has MIN_FRAMES_PER_CLASS positive and negative frames."""
    labeled = values[~np.isnan(values).any(axis=1)]
    short = [(name, int(labeled[:, j].sum()), int((1 - labeled[:, j]).sum()))
             for j, name in enumerate(names)
             if min(labeled[:, j].sum(), (1 - labeled[:, j]).sum()) < MIN_FRAMES_PER_CLASS]
    if short:
        found = ", ".join(f"{n!r}: {p} with / {q} without" for n, p, q in short)
        raise ModelArgumentError(
            f"too few labeled frames per tag ({found}); every tag needs at least "
            f"{MIN_FRAMES_PER_CLASS} frames with it and {MIN_FRAMES_PER_CLASS} "
            f"without it")


# ---------------------------------------------------------------- the model

class TagModel(TorchNetworkMixin, FrameModel):
    """Multi-label frame model (base of the "tags-*" kinds; ``view`` set by the subclass).

    Parameters: ``tag_names`` (default: the label table's columns), ``size`` (frames binned
    to at most ``size`` x ``size``), ``channels``, ``n_radial``/``n_azimuth`` (polar
    cells), ``epochs`` (at most), ``batch_size``, ``lr``, ``patience``, ``val_fraction``,
    ``augment``, ``seed``, ``threads``, ``progress``, ``device``.
    Fitted: ``classes_`` (the tag names), ``thresholds_`` (one per tag), ``network_``,
    ``mean_``, ``std_``, ``info["history"]``, ``info["validation"]`` (per-tag AP on the
    validation frames).

    ``predict_proba`` gives one independent probability per tag ``(n, k)``; ``predict``
    a bool ``(n, k)`` array (probability >= the tag's threshold); ``predict_tags`` both as
    a DataFrame.
    """

    view = "image"

    def __init__(self, tag_names=None, size=64, channels=(16, 32, 64), n_radial=24,
                 n_azimuth=64, epochs=30, batch_size=32, lr=2e-3, patience=5,
                 val_fraction=0.2, augment=True, seed=0, threads=None, progress=True,
                 device=None):
        self.tag_names = tag_names
        self.size = size
        self.channels = channels
        self.n_radial = n_radial
        self.n_azimuth = n_azimuth
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.augment = augment
        self.seed = seed
        self.threads = threads
        self.progress = progress
        self.device = device

    def fit(self, X, y, groups=None):
        """Train on frames ``X`` (a scan or a list of scans) and a frames x tags 0/1 table
        ``y`` (rows with a missing value are unlabeled). ``groups``: scan per frame
        (default: the scans of ``X``); validation frames come from other scans."""
        stack, frame_shape, kind, scans = concat_prepared(X, self.size, _iter_tag_prepared)
        values, names = resolve_tags(y, self.tag_names, len(stack))
        _check_tag_counts(values, names)
        self.classes_ = np.asarray(names, dtype=object)
        self.frame_shape_, self.dtype_kind_ = tuple(int(s) for s in frame_shape), kind
        self.info_ = {}
        groups = scans if groups is None else np.asarray(groups)
        if len(groups) != len(stack):
            raise ModelArgumentError(f"{len(groups)} groups for {len(stack)} frames")
        self._fit_prepared(stack, values, groups)
        return self

    def _build(self):
        return TagNet(len(self.classes_), self.input_shape(), self.view, tuple(self.channels),
                      self.n_radial, self.n_azimuth)

    def _fit_prepared(self, stack, values, groups):
        keep = np.flatnonzero(~np.isnan(values).any(axis=1))
        centred = _centred(stack[keep])[stack[keep, 1] > 0.5]
        self.mean_ = 0.0                      # frames are centred one by one (_centred)
        self.std_ = float(centred.std()) if centred.size else 1.0
        self.std_ = self.std_ or 1.0
        x = self._tensor(stack)
        y = torch.from_numpy(np.nan_to_num(values).astype(np.float32))
        fit_idx, val_idx = _validation_split(groups[keep], self.val_fraction, self.seed)
        fit_idx, val_idx = keep[fit_idx], keep[val_idx]
        positives = values[fit_idx].sum(axis=0)
        pos_weight = (len(fit_idx) - positives) / np.maximum(positives, 1)
        with _torch_settings(self.seed, self.threads):
            network = self._build().to(self._device())
            loss_fn = nn.BCEWithLogitsLoss(
                pos_weight=torch.tensor(pos_weight).float().to(self._device()))
            history = _fit(network, x, y, fit_idx, val_idx, None, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                           augment=self.augment, progress=self.progress, loss_fn=loss_fn,
                           desc=f"train {self.kind}")
        self.network_ = network.eval()
        val_proba = self._proba_block(stack[val_idx])
        self.thresholds_ = _best_thresholds(values[val_idx], val_proba, self.classes_)
        self.info_.update({
            "epochs_run": len(history), "history": history,
            "validation_scans": sorted(map(str, set(groups[val_idx]))),
            "validation": evaluate_tags(values[val_idx], val_proba, self.classes,
                                        self.thresholds_).per_tag["ap"].round(4).to_dict()})

    def _tensor(self, block):
        frame = _centred(block) / self.std_
        return torch.from_numpy(np.stack([frame, block[:, 1]], axis=1).astype(np.float32))

    def network_input(self, block: np.ndarray):
        """Prepared frames (n, 2, h, w) (:func:`prepare_tag_frames`) -> the network's input
        tensor on the device: each log frame centred on its median, divided by the
        training frames' spread; the valid share as it is."""
        return self._tensor(block).to(self._device())

    def _iter_blocks(self, source):
        return _iter_tag_prepared(source, self.size)

    def prepared(self, frames) -> np.ndarray:
        """All frames of ``frames`` as the model sees them ``(n, 2, h, w)``
        (:func:`prepare_tag_frames`)."""
        source = self.check_frames(frames)
        parts = [block for _, block in self._iter_blocks(source)]
        return (np.concatenate(parts) if parts
                else np.zeros((0, 2, *self.input_shape()), np.float32))

    def _proba_block(self, block):
        self.network_.eval()
        with torch.no_grad():
            return torch.sigmoid(self.network_(self.network_input(block))).cpu().numpy()

    def predict(self, X, progress=False) -> np.ndarray:
        """Bool ``(n, k)``: frame carries tag ``classes_[j]`` (probability >= its threshold)."""
        return self.classes_from_proba(self.predict_proba(X, progress=progress))

    def classes_from_proba(self, proba) -> np.ndarray:
        """What :meth:`predict` returns, from ``predict_proba`` rows."""
        self._require_fitted()
        return np.asarray(proba) >= self.thresholds_[None, :]

    def predict_tags(self, X, progress=False) -> pd.DataFrame:
        """``p_<tag>`` probability columns, then one bool column per tag."""
        proba = self.predict_proba(X, progress=progress)
        table = pd.DataFrame(proba, columns=[f"p_{t}" for t in self.classes])
        for j, tag in enumerate(self.classes):
            table[tag] = proba[:, j] >= self.thresholds_[j]
        return table

    def explain(self, frames, tag, method="gradcam", invalid="keep") -> np.ndarray:
        """Grad-CAM maps ``(n, H, W)`` of ``tag``'s logit on the image branch (see
        :func:`xlabel.models.gradcam.cam`); ``invalid="keep"`` (default) keeps detector gaps
        in the [0, 1] maps, "nan" sets them to NaN. The polar-only model has no image
        layers to explain: ModelError."""
        from .gradcam import cam, default_layer
        self._require_fitted()
        if self.view == "polar":
            raise ModelArgumentError(
                "the coefficient-view model works on polar cells, which have no "
                "place in the frame to show; explain a 'tags-cnn' or 'tags-joint' "
                "model instead")
        layer = "image_features." + default_layer(self.network_.image_features)
        return cam(self, frames, target=tag, layer=layer, method=method, invalid=invalid)

    def _device(self):
        return torch.device(self.device or "cpu")

    def _save_state(self, folder):
        save_weights(self.network_.cpu(), folder)
        self.network_.to(self._device())
        return {**super()._save_state(folder), "mean": self.mean_, "std": self.std_,
                "thresholds": [float(t) for t in self.thresholds_], "input": INPUT_VERSION}

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        if state.get("input") != INPUT_VERSION:
            raise ModelError(f"this tag model was saved by an older xlabel (input "
                             f"{state.get('input', 'v1: one plane')!r}, now {INPUT_VERSION!r}: "
                             "valid share and radial ridge planes); train it again", path=folder)
        self.mean_, self.std_ = float(state["mean"]), float(state["std"])
        self.thresholds_ = np.asarray(state["thresholds"], dtype=np.float64)
        if self.thresholds_.shape != (len(self.classes_),):
            raise ValueError("one threshold per tag expected")
        self.network_ = load_weights(self._build(), folder).to(self._device())


@register("tags-cnn")
class TagCNN(TagModel):
    """Multi-label image CNN (kind "tags-cnn"); see :class:`TagModel`."""

    view = "image"


@register("tags-polar")
class TagPolarCNN(TagModel):
    """Multi-label CNN on the polar "coefficient view" (kind "tags-polar")."""

    view = "polar"


@register("tags-joint")
class TagJointCNN(TagModel):
    """Multi-label "double-view" CNN: image and polar branches (kind "tags-joint")."""

    view = "joint"


def train_tags(frames, tags, view="joint", **params) -> TagModel:
    """Train the multi-label model of ``view`` ("image", "polar", "joint") in one call."""
    cls = {"image": TagCNN, "polar": TagPolarCNN, "joint": TagJointCNN}.get(view)
    if cls is None:
        raise ModelArgumentError(f"unknown view {view!r}: image, polar or joint")
    return cls(**params).fit(frames, tags)


# ---------------------------------------------------------------- training

def _validation_split(groups, val_fraction, seed):
    """Validation frames from other scans (whole batches) where there are several."""
    return split(groups, test_size=val_fraction, seed=seed)


def _best_thresholds(truth, proba, names) -> np.ndarray:
    """Per tag, the probability threshold with the best F1 on the validation frames
    (0.5 where the validation frames lack the tag or its absence, with a warning)."""
    thresholds = np.full(len(names), 0.5)
    for j, name in enumerate(names):
        column = truth[:, j]
        if column.min() == column.max():
            warnings.warn(f"validation frames all {'have' if column[0] else 'lack'} tag "
                          f"{name!r}: its threshold stays 0.5", stacklevel=4)
            continue
        precision, recall, cuts = precision_recall_curve(column, proba[:, j])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        thresholds[j] = float(cuts[np.argmax(f1[:-1])])
    return thresholds


# ---------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class TagEvaluation:
    """Per-tag scores of a multi-label model on labeled frames.

    ``per_tag``: index ``tag``; columns ``ap`` (average precision, sklearn),
    ``precision``, ``recall``, ``f1`` (at the thresholds), ``support`` (frames with the
    tag), ``threshold``. ``mean_ap``: macro mAP (mean of ``ap`` over tags).
    """

    per_tag: pd.DataFrame
    mean_ap: float

    def summary(self) -> str:
        return f"macro mAP {self.mean_ap:.3f}\n{self.per_tag.round(3).to_string()}"


def evaluate_tags(y_true, proba, tag_names=None, thresholds=None) -> TagEvaluation:
    """Average precision per tag and macro mAP, with precision/recall/F1 at ``thresholds``
    (default 0.5). ``y_true``: frames x tags 0/1 (DataFrame, or array with ``tag_names``);
    unlabeled rows (NaN/-1) are left out.

    >>> truth = pd.DataFrame({"rings": [1, 0, 1, 0], "spots": [0, 0, 1, 1]})
    >>> proba = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.7], [0.3, 0.6]])
    >>> evaluate_tags(truth, proba).mean_ap
    1.0
    """
    values, names = resolve_tags(y_true, tag_names)
    proba = np.asarray(proba, dtype=float)
    if proba.shape != values.shape:
        raise ModelArgumentError(f"probabilities of shape {proba.shape} for labels of shape "
                                 f"{values.shape}")
    keep = ~np.isnan(values).any(axis=1)
    values, proba = values[keep].astype(int), proba[keep]
    cuts = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds, float)
    rows = []
    for j, name in enumerate(names):
        truth, score = values[:, j], proba[:, j]
        predicted = score >= cuts[j]
        tp = int((predicted & (truth == 1)).sum())
        precision = tp / max(int(predicted.sum()), 1)
        recall = tp / max(int(truth.sum()), 1)
        ap = average_precision_score(truth, score) if 0 < truth.sum() < len(truth) else np.nan
        rows.append({"tag": name, "ap": ap, "precision": precision, "recall": recall,
                     "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                     "support": int(truth.sum()), "threshold": float(cuts[j])})
    table = pd.DataFrame(rows).set_index("tag")
    return TagEvaluation(per_tag=table, mean_ap=float(np.nanmean(table["ap"])))
