"""Embeddings for binning: a denoising convolutional autoencoder's latent space as features.

System 4 of the domain notes (GISAXS autoencoders): series of detector frames are binned
by grouping their latent vectors. :func:`prepare_input` turns frames into the network's
input (block means over the *valid* pixels only, divided by the frame's mean, ``log(x +
floor)``, z-scored per frame, invalid blocks 0), so neither exposure nor the detector's
gaps/beamstop decide where a frame lands. :func:`fit_embedding` trains the autoencoder with
two corrupted views of each frame (zoomed and shifted about a random point, noise,
dropout; optionally re-counted at a lower exposure): it reconstructs the clean frame from
the first and its pooled latent must agree with the second's (see :func:`_consistency`),
so the latent keeps *what* structure a frame holds rather than its scale (size, lattice spacing),
position or exposure. The returned :class:`Embedding` turns any frames into a feature
table: ``scan``, ``frame``, the latent columns ``z0..`` (the spatial mean, then the max,
of each bottleneck channel, standardised with the training latents' mean/std and scaled to
unit length, so K-means on them groups by direction: cosine similarity) and a 2-D projection ``proj_x``, ``proj_y`` (PCA fitted on the
training latents, so every table shares the same axes; ``projection="umap"`` only where
the ``umap-learn`` package is installed: it is not a dependency).

The table goes straight into the existing components: :func:`xlabel.cluster.kmeans` /
:func:`xlabel.cluster.dbscan` with ``columns=emb.latent_columns``,
:class:`~xlabel.widgets.FluxScatter` with ``x="proj_x", y="proj_y"`` to lasso a group and
assign a bin, :class:`~xlabel.widgets.ClusterComparison` to compare two clusterings.

>>> import numpy as np
>>> from xlabel.synth import make_gisaxs
>>> from xlabel.cluster import kmeans
>>> train = make_gisaxs(n_series=8, frames_per_series=6, frame_shape=(64, 64), seed=0)
>>> emb = fit_embedding(train.source(), size=32, epochs=2, progress=False)
>>> new = make_gisaxs(n_series=4, frames_per_series=3, frame_shape=(64, 64), seed=1)
>>> table = emb.transform(new.source(), table=new.truth)
>>> table.columns.tolist()[:4], table.shape
(['scan', 'frame', 'z0', 'z1'], (12, 36))
>>> bins = kmeans(table, k=4, columns=emb.latent_columns)
>>> from xlabel.labels import LabelStore
>>> from xlabel.widgets import FluxScatter
>>> store = LabelStore(len(table), classes=("rings", "rods", "sheets", "smooth"))
>>> scatter = FluxScatter(store, table, x="proj_x", y="proj_y")
>>> scatter.select(np.flatnonzero(bins == 0))          # what a lasso does in the browser
>>> _ = scatter.assign("rings")
>>> int((store.labels == 0).sum()) == int((bins == 0).sum())
True

PyTorch is imported only when an embedding is fitted or loaded (``xlabel[deep]``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MissingDependencyError, ModelError
from .io.base import invalid_pixels
from .models._deps import require_torch
from .models.frames import as_source, bin_frames, check_finite_frames

__all__ = ["fit_embedding", "Embedding", "load_embedding", "prepare_input"]

PROJECTIONS = ("pca", "umap")
FORMAT = "xlabel-embedding-2"


def prepare_input(frames, size: int = 64, floor: float = 0.2, progress: bool = False,
                  what: str = "frames") -> np.ndarray:
    """Frames -> the autoencoder's input, float32 (n, size, size).

    Each block of ``size`` x ``size`` is the mean of its *valid* pixels (gaps, beamstop,
    flagged and non-finite pixels left out); the frame is divided by its mean over valid
    blocks, then ``log(x + floor)`` (``floor`` in units of the frame's mean: a low-count
    frame and a bright one of the same scattering give the same values, only noisier), then
    z-scored over its valid blocks; blocks without a valid pixel are 0 (the frame's mean).
    ``frames``: a FrameSource, a path or an array (n, H, W). Frames smaller than ``size``
    are not upsampled here (the network resizes them).

    >>> import numpy as np
    >>> frames = np.stack([np.arange(16.0).reshape(4, 4), 10 * np.arange(16.0).reshape(4, 4)])
    >>> x = prepare_input(frames, size=2)
    >>> x.shape, bool(np.allclose(x[0], x[1])), round(float(x[0].std()), 3)
    ((2, 2, 2), True, 1.0)
    """
    means, _ = _valid_block_means(as_source(frames), size, progress, what)
    return _normalise(means, floor)


def _valid_block_means(source, size, progress, what):
    """Per-block mean over valid pixels (NaN where a block has none), (n, h, w) float32,
    and the number of valid pixels per block (n, h, w), for re-counting at lower exposure."""
    from tqdm.auto import tqdm
    if len(source) == 0:
        raise ModelError(f"no {what} to embed", path=getattr(source, "path", None))
    means, counts = [], []
    with tqdm(total=len(source), desc=f"prepare {what}", disable=not progress) as bar:
        for start, stack in source.iter_chunks(None):
            check_finite_frames(stack, source, start)
            clean = np.asarray(stack, dtype=np.float32)
            valid = np.isfinite(clean)
            flagged = invalid_pixels(np.asarray(stack), source, start)
            if flagged is not None:
                valid &= ~flagged
            clean = np.maximum(np.where(valid, clean, 0), 0).astype(np.float32)
            sums = bin_frames(clean, size)
            fraction = bin_frames(valid.astype(np.float32), size)
            block = float(np.prod(stack.shape[1:])) / float(np.prod(sums.shape[1:]))
            means.append(np.where(fraction > 0, sums / np.maximum(fraction, 1e-12), np.nan))
            counts.append(fraction * block)
            bar.update(len(stack))
    return np.concatenate(means).astype(np.float32), np.concatenate(counts).astype(np.float32)


def _normalise(means, floor):
    """Block means (NaN = no valid pixel) -> per-frame ``log(x / mean + floor)``, z-scored
    over the valid blocks, invalid blocks 0 (see :func:`prepare_input`)."""
    flat = means.reshape(len(means), -1).astype(np.float64)
    valid = np.isfinite(flat)
    n_valid = np.maximum(valid.sum(1, keepdims=True), 1)
    level = np.where(valid, flat, 0).sum(1, keepdims=True) / n_valid
    logs = np.log(np.where(valid, flat, 0) / np.where(level > 0, level, 1) + floor)
    centred = np.where(valid, logs - (np.where(valid, logs, 0).sum(1, keepdims=True) / n_valid), 0)
    std = np.sqrt((centred ** 2).sum(1, keepdims=True) / n_valid)
    return (centred / np.where(std > 0, std, 1)).reshape(means.shape).astype(np.float32)


def _network(size: int, latent_dim: int, channels=(16, 32, 64)):
    """Fully convolutional autoencoder: stride-2 conv blocks down to a ``latent_dim``-channel
    map of ``size / 2**len(channels)`` pixels a side, transposed convs back up.

    The features (``encode``) are each bottleneck channel's spatial mean, then its max
    (``2 * latent_dim`` numbers): pooled over position they describe *what* patterns a
    frame holds (rings, vertical rods, horizontal sheets, smooth decay) rather than where.
    """
    torch = require_torch()
    nn = torch.nn
    factor = 2 ** len(channels)
    if size % factor:
        raise ModelError(f"size must be a multiple of {factor} for this autoencoder, got {size}")

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            enc, previous = [], 1
            for width in channels:
                enc += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.ReLU()]
                previous = width
            enc.append(nn.Conv2d(previous, latent_dim, 3, stride=1, padding=1))
            self.encoder = nn.Sequential(*enc)
            dec, previous = [], latent_dim
            for width in channels[::-1][1:]:
                dec += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1), nn.ReLU()]
                previous = width
            dec.append(nn.ConvTranspose2d(previous, 1, 4, stride=2, padding=1))
            self.decoder = nn.Sequential(*dec)

        def code(self, x):
            if x.shape[-2:] != (size, size):
                x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            return self.encoder(x)

        @staticmethod
        def pool(code):
            flat = code.flatten(2)
            return torch.cat([flat.mean(2), flat.amax(2)], dim=1)

        def encode(self, x):
            return self.pool(self.code(x))

        def forward(self, x):
            """Reconstruction and pooled features of ``x``."""
            code = self.code(x)
            return self.decoder(code), self.pool(code)

    return AutoEncoder()


@dataclass
class Embedding:
    """A fitted autoencoder plus the projection of its latent space (see :func:`fit_embedding`).

    Attributes: ``network`` (the torch module), ``size``, ``latent_dim``, ``projection``
    (name), ``losses`` (training loss per epoch), ``device``, ``channels``, ``floor``,
    ``latent_mean`` / ``latent_scale`` (the training latents' column mean and std).
    """

    network: object
    size: int
    latent_dim: int
    projection: str
    projector: object
    losses: list
    device: str = "cpu"
    channels: tuple = (16, 32, 64)
    floor: float = 0.2
    latent_mean: np.ndarray | None = None
    latent_scale: np.ndarray | None = None

    @property
    def latent_columns(self) -> list[str]:
        """``["z0", ...]``: the latent columns of :meth:`transform`'s table: the spatial
        mean, then the max, of each of the ``latent_dim`` bottleneck channels (standardised,
        unit length: see :meth:`encode`)."""
        return [f"z{i}" for i in range(2 * self.latent_dim)]

    def encode(self, frames, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Latent vectors (n, 2 * latent_dim) of ``frames`` (FrameSource, path or array).

        The pooled bottleneck activations, standardised with the training latents' column
        mean/std, then each row scaled to unit length ("spherical"): the consistency loss
        shapes directions more than lengths, and on the GISAXS benchmark K-means on unit
        vectors recovers the structure types better (BENCHMARKS.md).
        """
        prepared = prepare_input(frames, self.size, self.floor, progress)
        raw = _encode(self.network, prepared, self.device, batch_size)
        return _spherical(raw, self.latent_mean, self.latent_scale)

    def transform(self, frames, table=None, batch_size: int = 256, progress: bool = False) -> pd.DataFrame:
        """Feature table: ``scan``, ``frame``, ``z0..`` and ``proj_x``, ``proj_y``.

        ``table``: optional DataFrame with one row per frame whose ``scan``/``frame``
        columns (e.g. a synth truth table, or several scans' frame tables) are used;
        by default ``scan`` is the source's name and ``frame`` its index.
        """
        source = as_source(frames)
        latent = self.encode(source, batch_size, progress)
        out = _index_table(source, table, len(latent))
        for i, column in enumerate(self.latent_columns):
            out[column] = latent[:, i]
        xy = self.projector.transform(latent)
        out["proj_x"], out["proj_y"] = xy[:, 0], xy[:, 1]
        return out

    def save(self, path) -> Path:
        """Write weights and settings to one file, loadable with :func:`load_embedding`.

        Only tensors and plain numbers/strings are written (a ``state_dict``), read back
        with ``torch.load(weights_only=True)``; PCA projections only (UMAP is not saved).
        """
        torch = require_torch()
        if self.projection != "pca":
            raise ModelError(f"only PCA projections can be saved, this one is {self.projection!r}")
        payload = {"format": FORMAT, "size": self.size, "latent_dim": self.latent_dim,
                   "channels": list(self.channels), "floor": float(self.floor),
                   "losses": [float(x) for x in self.losses],
                   "state_dict": {k: v.cpu() for k, v in self.network.state_dict().items()},
                   "latent_mean": torch.as_tensor(self.latent_mean),
                   "latent_scale": torch.as_tensor(self.latent_scale),
                   "pca_mean": torch.as_tensor(self.projector.mean_),
                   "pca_components": torch.as_tensor(self.projector.components_)}
        path = Path(path)
        torch.save(payload, path)
        return path


def _index_table(source, table, n) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({"scan": getattr(source, "name", "frames"), "frame": np.arange(n)})
    table = pd.DataFrame(table)
    if len(table) != n:
        raise ModelError(f"table has {len(table)} rows for {n} frames",
                         path=getattr(source, "path", None))
    missing = {"scan", "frame"} - set(table.columns)
    if missing:
        raise ModelError(f"table lacks column(s) {sorted(missing)} (needs scan and frame)")
    return table[["scan", "frame"]].reset_index(drop=True).copy()


def _encode(network, prepared, device, batch_size) -> np.ndarray:
    torch = require_torch()
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(prepared), batch_size):
            batch = torch.from_numpy(prepared[start:start + batch_size, None]).to(device)
            out.append(network.encode(batch).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _spherical(raw, mean, scale) -> np.ndarray:
    """Standardise columns with the training ``mean``/``scale``, then rows to unit length."""
    centred = (raw - mean) / scale
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1)


def _projector(name, latent, seed):
    if name == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit(latent)
    if name == "umap":
        try:
            import umap
        except ImportError as err:
            raise MissingDependencyError("projection='umap' needs the umap-learn package "
                                         "(`pip install umap-learn`); the default is 'pca'") from err
        return umap.UMAP(n_components=2, random_state=seed).fit(latent)
    raise ModelError(f"projection must be one of {PROJECTIONS}, got {name!r}")


def fit_embedding(frames, size: int = 64, latent_dim: int = 16, epochs: int = 20,
                  batch_size: int = 32, lr: float = 2e-3, thinning: float = 1.0, noise: float = 0.2,
                  dropout: float = 0.05, zoom: float = 1.5, shift: float = 0.1,
                  consistency: float = 1.0, floor: float = 0.2,
                  projection: str = "pca", seed: int = 0, device: str = "cpu",
                  progress: bool = True) -> Embedding:
    """Train a denoising convolutional autoencoder on ``frames``; return an :class:`Embedding`.

    Parameters
    ----------
    frames : FrameSource, path or array (n, H, W); all frames are held in memory once
        binned (``2 * n * size**2 * 4`` bytes).
    size : frames are binned (block means over valid pixels) to ``size`` x ``size`` (a
        multiple of 8).
    latent_dim : channels of the bottleneck map; the latent vector is their spatial mean
        and max (``2 * latent_dim`` columns).
    epochs, batch_size, lr : Adam training.
    thinning, noise, dropout : denoising. Each view gets Gaussian noise of std ``noise``
        (in units of the z-scored frame) and ``dropout`` of its pixels zeroed; with
        ``thinning > 1`` it is first counted again (Poisson) at a random fraction
        (log-uniform in ``[1/thinning, 1]``) of its photons. Off by default: on the GISAXS
        benchmark, views of faint frames thinned 30x are nearly pure noise and agreeing
        with them keeps only coarse features (BENCHMARKS.md); the training frames' own
        exposure range teaches the rest.
    zoom, shift : geometry of the views. Each view is zoomed by a factor log-uniform in
        ``[1/zoom, zoom]`` and shifted by up to ``shift`` of the frame's width, so
        structures of other size / lattice spacing and a drifting beam look alike to the
        latent; the first view's target is the clean frame under the same geometry.
    consistency : weight of the agreement between the two views' pooled latents (VICReg
        terms, see :func:`_consistency`); 0 trains a plain denoising autoencoder.
    floor : the ``log(x / mean + floor)`` offset of :func:`prepare_input`.
    projection : "pca" (default) or "umap" (only where ``umap-learn`` is installed).
    seed : weights, batches and corruption are seeded; the global torch RNG is untouched.
    device : torch device ("cpu", "cuda", ...).
    progress : show a tqdm progress bar over epochs (loss in its postfix).

    Raises ModelError for no frames, fewer than 2 frames, frames without finite pixels
    (naming the frame), or a bad ``size``/``projection``.
    """
    torch = require_torch()
    from tqdm.auto import tqdm
    if projection not in PROJECTIONS:
        raise ModelError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    means, counts = _valid_block_means(as_source(frames), int(size), progress, "training frames")
    if len(means) < 2:
        raise ModelError(f"an embedding needs at least 2 training frames, got {len(means)}")
    with _seeded(torch, seed):
        network = _network(int(size), int(latent_dim)).to(device)
    generator = torch.Generator().manual_seed(int(seed))
    views = _Views(means, counts, floor, thinning, noise, dropout, zoom, shift,
                   np.random.default_rng(seed), generator)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    losses = []
    with tqdm(range(int(epochs)), desc="autoencoder", disable=not progress) as bar:
        for _ in bar:
            losses.append(_epoch(network, optimizer, views, batch_size, consistency, device))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    raw = _encode(network, _normalise(means, floor), device, 256)
    mean, std = raw.mean(0), raw.std(0)
    scale = np.where(std > 0, std, 1.0)
    latent = _spherical(raw, mean, scale)
    return Embedding(network, int(size), int(latent_dim), projection,
                     _projector(projection, latent, seed), losses, device, floor=float(floor),
                     latent_mean=mean, latent_scale=scale)


@contextlib.contextmanager
def _seeded(torch, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@dataclass
class _Views:
    """Corrupted views of training frames: (optionally) re-counted at a lower exposure, normalised,
    zoomed/shifted, plus noise and dropout; ``target`` is the clean frame, same geometry."""

    means: np.ndarray
    counts: np.ndarray
    floor: float
    thinning: float
    noise: float
    dropout: float
    zoom: float
    shift: float
    rng: np.random.Generator
    generator: object

    def __len__(self):
        return len(self.means)

    def geometry(self, n):
        """Affine matrices (n, 2, 3) for ``grid_sample``: zoom about a shifted centre."""
        torch = require_torch()
        scale = np.exp(self.rng.uniform(-1, 1, n) * math.log(max(self.zoom, 1.0)))
        theta = np.zeros((n, 2, 3), np.float32)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = self.rng.uniform(-1, 1, (n, 2)) * 2 * self.shift
        return torch.from_numpy(theta)

    def target(self, rows, theta):
        return _warp(_to_torch(_normalise(self.means[rows], self.floor)), theta)

    def view(self, rows, theta):
        torch = require_torch()
        means = self.means[rows]
        if self.thinning > 1:
            # keep a log-uniform fraction in [1/thinning, 1] of the photons, counted again
            fraction = np.exp(-self.rng.uniform(0, 1, (len(rows), 1, 1)) * math.log(self.thinning))
            expected = np.nan_to_num(means) * self.counts[rows] * fraction
            recounted = self.rng.poisson(expected) / np.maximum(self.counts[rows] * fraction, 1e-12)
            means = np.where(np.isfinite(means), recounted, np.nan)
        x = _warp(_to_torch(_normalise(means, self.floor)), theta)
        x = x + self.noise * torch.randn(x.shape, generator=self.generator)
        return x * (torch.rand(x.shape, generator=self.generator) >= self.dropout)


def _to_torch(prepared):
    return require_torch().from_numpy(np.ascontiguousarray(prepared[:, None]))


def _warp(x, theta):
    torch = require_torch()
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def _consistency(a, b):
    """VICReg loss (Bardes, Ponce & LeCun, ICLR 2022) between two views' latents, divided
    by its invariance weight 25: mean squared difference + a hinge keeping each column's
    std near 1 (no collapse to a constant) + off-diagonal covariance (no redundant
    columns). Written here because it is a dozen lines and no dependency offers it."""
    torch = require_torch()

    def spread(z):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + 1e-4)
        cov = (z.T @ z) / max(len(z) - 1, 1)
        off = cov - torch.diag(torch.diag(cov))
        return torch.relu(1 - std).mean(), off.pow(2).sum() / z.shape[1]

    (var_a, cov_a), (var_b, cov_b) = spread(a), spread(b)
    invariance = torch.nn.functional.mse_loss(a, b)
    return invariance + (var_a + var_b) / 2 + (cov_a + cov_b) / 25


def _epoch(network, optimizer, views, batch_size, consistency, device) -> float:
    """One pass: reconstruct the clean frame from view 1, latents of views 1 and 2 agree."""
    torch = require_torch()
    network.train()
    order = views.rng.permutation(len(views))
    total = 0.0
    for start in range(0, len(views), batch_size):
        rows = order[start:start + batch_size]
        if len(rows) < 2:       # batch statistics of the consistency loss need 2 frames
            continue
        first, second = views.geometry(len(rows)), views.geometry(len(rows))
        clean = views.target(rows, first).to(device)
        rebuilt, latent = network(views.view(rows, first).to(device))
        loss = torch.nn.functional.mse_loss(rebuilt, clean)
        if consistency > 0:
            _, other = network(views.view(rows, second).to(device))
            loss = loss + consistency * _consistency(latent, other)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
    return total / len(views)


def load_embedding(path, device: str = "cpu") -> Embedding:
    """Load a file written by :meth:`Embedding.save` (``torch.load(weights_only=True)``)."""
    torch = require_torch()
    from sklearn.decomposition import PCA
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt/unsafe files
        raise ModelError(f"not a readable xlabel embedding file: {err}", path=path) from err
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("xlabel-embedding"):
        raise ModelError("not an xlabel embedding file (format tag missing)", path=path)
    if payload["format"] != FORMAT:
        raise ModelError(f"embedding file format {payload['format']!r} is from another xlabel "
                         f"version (this one reads {FORMAT!r}): fit the embedding again", path=path)
    network = _network(payload["size"], payload["latent_dim"], tuple(payload["channels"]))
    network.load_state_dict(payload["state_dict"])
    network.to(device)
    projector = PCA(n_components=2)
    projector.mean_ = payload["pca_mean"].numpy()
    projector.components_ = payload["pca_components"].numpy()
    projector.n_components_ = 2
    projector.n_features_in_ = projector.components_.shape[1]
    return Embedding(network, payload["size"], payload["latent_dim"], "pca", projector,
                     list(payload["losses"]), device, tuple(payload["channels"]),
                     float(payload["floor"]), payload["latent_mean"].numpy(),
                     payload["latent_scale"].numpy())
