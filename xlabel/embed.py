"""Embeddings for binning: a denoising convolutional autoencoder's latent space as features.

System 4 of the domain notes (GISAXS autoencoders): series of detector frames are binned
by grouping their latent vectors. :func:`fit_embedding` trains the autoencoder on frames
(invalid pixels zeroed, binned to ``size`` x ``size``, ``log1p``, then each frame
standardised to zero mean / unit std so exposure does not dominate); the returned
:class:`Embedding` turns any frames into a feature table: ``scan``, ``frame``, the latent
columns ``z0..`` (pooled encoder activations: see :func:`_network`) and a 2-D projection ``proj_x``, ``proj_y`` (PCA fitted on the
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
(['scan', 'frame', 'z0', 'z1'], (12, 68))
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MissingDependencyError, ModelError
from .models._deps import require_torch
from .models.frames import as_source, iter_prepared

__all__ = ["fit_embedding", "Embedding", "load_embedding", "prepare_input"]

PROJECTIONS = ("pca", "umap")


def prepare_input(frames, size: int = 64, progress: bool = False, what: str = "frames") -> np.ndarray:
    """Frames -> float32 (n, size, size): invalid pixels 0, binned, log1p, per-frame z-score.

    ``frames``: a FrameSource, a path or an array (n, H, W). Frames smaller than ``size``
    are not upsampled here (the network resizes them).
    """
    return _zscore_log(_binned_counts(as_source(frames), size, progress, what)[0])


def _binned_counts(source, size, progress, what):
    """Block-mean counts (n, h, w) float32 and the number of pixels per block."""
    from tqdm.auto import tqdm
    if len(source) == 0:
        raise ModelError(f"no {what} to embed", path=getattr(source, "path", None))
    blocks = []
    with tqdm(total=len(source), desc=f"prepare {what}", disable=not progress) as bar:
        for _, block in iter_prepared(source, size):
            blocks.append(np.expm1(block))      # iter_prepared checks frames and log1p's the means
            bar.update(len(block))
    stack = np.concatenate(blocks)
    return stack, float(np.prod(source.frame_shape)) / float(np.prod(stack.shape[1:]))


def _zscore_log(means):
    """log1p then each frame to zero mean / unit std (numpy or torch, frames on axis 0)."""
    logs = np.log1p(means) if isinstance(means, np.ndarray) else means.log1p()
    flat = logs.reshape(len(logs), -1)
    centred = flat - flat.mean(1, keepdims=True) if isinstance(flat, np.ndarray) else \
        flat - flat.mean(1, keepdim=True)
    std = centred.std(1, keepdims=True) if isinstance(flat, np.ndarray) else centred.std(1, keepdim=True)
    std = np.where(std > 0, std, 1) if isinstance(flat, np.ndarray) else std.clamp_min(1e-6)
    out = (centred / std).reshape(logs.shape)
    return out.astype(np.float32) if isinstance(out, np.ndarray) else out


def _network(size: int, latent_dim: int, channels=(16, 32)):
    """Fully convolutional autoencoder: stride-2 conv blocks down to a ``latent_dim``-channel
    map of ``size / 2**(len(channels)+1)`` pixels a side, transposed convs back up.

    The features (``encode``) are each bottleneck channel's spatial mean and max, then
    the spatial mean of every hidden encoder block's channels (``2 * latent_dim +
    sum(channels)`` numbers). Pooled over position they describe *what* patterns a frame
    holds (rings, vertical rods, horizontal sheets, smooth decay) rather than where, so
    frames of one structure with another size, spacing or beam position land closer. Tried
    and dropped on the GISAXS benchmark: a flat linear bottleneck (grouped frames by
    spacing: held-out ARI 0.39), the bottleneck pooled alone (0.47-0.52).
    """
    torch = require_torch()
    nn = torch.nn
    factor = 2 ** (len(channels) + 1)
    if size % factor:
        raise ModelError(f"size must be a multiple of {factor} for this autoencoder, got {size}")

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            enc, previous = [], 1
            for width in channels:
                enc += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.ReLU()]
                previous = width
            enc.append(nn.Conv2d(previous, latent_dim, 3, stride=2, padding=1))
            self.encoder = nn.Sequential(*enc)
            dec, previous = [], latent_dim
            for width in channels[::-1]:
                dec += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1), nn.ReLU()]
                previous = width
            dec.append(nn.ConvTranspose2d(previous, 1, 4, stride=2, padding=1))
            self.decoder = nn.Sequential(*dec)

        def code(self, x):
            if x.shape[-2:] != (size, size):
                x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            return self.encoder(x)

        def encode(self, x):
            if x.shape[-2:] != (size, size):
                x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            pooled = []
            for layer in self.encoder:
                x = layer(x)
                if isinstance(layer, nn.ReLU):
                    pooled.append(x.flatten(2).mean(2))
            code = x.flatten(2)
            return torch.cat([code.mean(2), code.amax(2)] + pooled, dim=1)

        def forward(self, x):
            return self.decoder(self.code(x))

    return AutoEncoder()


@dataclass
class Embedding:
    """A fitted autoencoder plus the projection of its latent space (see :func:`fit_embedding`).

    Attributes: ``network`` (the torch module), ``size``, ``latent_dim``, ``projection``
    (name), ``losses`` (training loss per epoch), ``device``.
    """

    network: object
    size: int
    latent_dim: int
    projection: str
    projector: object
    losses: list
    device: str = "cpu"
    channels: tuple = (16, 32)

    @property
    def latent_columns(self) -> list[str]:
        """``["z0", ...]``: the latent columns of :meth:`transform`'s table: the mean, then
        the max, of each of the ``latent_dim`` bottleneck channels, then the mean of each
        hidden encoder channel (``2 * latent_dim + sum(channels)`` columns)."""
        return [f"z{i}" for i in range(2 * self.latent_dim + sum(self.channels))]

    def encode(self, frames, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Latent vectors (n, latent_dim) of ``frames`` (FrameSource, path or array)."""
        return _encode(self.network, prepare_input(frames, self.size, progress), self.device,
                       batch_size)

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
        payload = {"format": "xlabel-embedding-1", "size": self.size, "latent_dim": self.latent_dim,
                   "channels": list(self.channels), "losses": [float(x) for x in self.losses],
                   "state_dict": {k: v.cpu() for k, v in self.network.state_dict().items()},
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


def fit_embedding(frames, size: int = 64, latent_dim: int = 8, epochs: int = 30,
                  batch_size: int = 32, lr: float = 2e-3, thinning: float = 30.0, noise: float = 0.2,
                  dropout: float = 0.05,
                  projection: str = "pca", seed: int = 0, device: str = "cpu",
                  progress: bool = True) -> Embedding:
    """Train a denoising convolutional autoencoder on ``frames``; return an :class:`Embedding`.

    Parameters
    ----------
    frames : FrameSource, path or array (n, H, W); all frames are held in memory once
        binned (``n * size**2 * 4`` bytes).
    size : frames are binned (block means) to ``size`` x ``size`` (a multiple of 8).
    latent_dim : channels of the bottleneck map (the code the decoder reconstructs from).
    epochs, batch_size, lr : Adam training on the mean squared reconstruction error.
    thinning, noise, dropout : denoising. Each training input is the frame counted again
        (Poisson) at a random fraction (log-uniform in ``[1/thinning, 1]``) of its
        photons, then gets Gaussian noise of std ``noise`` (in units of the z-scored
        frame) and ``dropout`` of its pixels zeroed; the target is the clean frame, so the
        latent space learns to ignore exposure, counting noise and hot/dead pixels.
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
    means, per_block = _binned_counts(as_source(frames), int(size), progress, "training frames")
    prepared = _zscore_log(means)
    if len(prepared) < 2:
        raise ModelError(f"an embedding needs at least 2 training frames, got {len(prepared)}")
    with _seeded(torch, seed):
        network = _network(int(size), int(latent_dim)).to(device)
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    data = (torch.from_numpy(means[:, None]), torch.from_numpy(prepared[:, None]))
    corrupt = _Corruption(per_block, thinning, noise, dropout, generator)
    losses = []
    for _ in tqdm(range(int(epochs)), desc="autoencoder", disable=not progress):
        losses.append(_epoch(network, optimizer, data, batch_size, corrupt, generator, device))
    latent = _encode(network, prepared, device, 256)
    return Embedding(network, int(size), int(latent_dim), projection,
                     _projector(projection, latent, seed), losses, device)


@contextlib.contextmanager
def _seeded(torch, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@dataclass
class _Corruption:
    """Denoising input: the frame re-counted at a lower exposure, plus noise and dropout."""

    per_block: float
    thinning: float
    noise: float
    dropout: float
    generator: object

    def __call__(self, means):
        torch = require_torch()
        g = self.generator
        if self.thinning > 1:
            # keep a log-uniform fraction in [1/thinning, 1] of the photons, counted again
            fraction = torch.exp(-torch.rand(len(means), 1, 1, 1, generator=g) * np.log(self.thinning))
            counts = means * self.per_block * fraction
            means = torch.poisson(counts, generator=g) / (self.per_block * fraction)
        noisy = _zscore_log(means)
        noisy = noisy + self.noise * torch.randn(noisy.shape, generator=g)
        return noisy * (torch.rand(noisy.shape, generator=g) >= self.dropout)


def _epoch(network, optimizer, data, batch_size, corrupt, generator, device) -> float:
    torch = require_torch()
    network.train()
    means, targets = data
    order = torch.randperm(len(targets), generator=generator)
    total = 0.0
    for start in range(0, len(targets), batch_size):
        rows = order[start:start + batch_size]
        clean, noisy = targets[rows].to(device), corrupt(means[rows]).to(device)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(network(noisy), clean)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(clean)
    return total / len(targets)


def load_embedding(path, device: str = "cpu") -> Embedding:
    """Load a file written by :meth:`Embedding.save` (``torch.load(weights_only=True)``)."""
    torch = require_torch()
    from sklearn.decomposition import PCA
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt/unsafe files
        raise ModelError(f"not a readable xlabel embedding file: {err}", path=path) from err
    if not isinstance(payload, dict) or payload.get("format") != "xlabel-embedding-1":
        raise ModelError("not an xlabel embedding file (format tag missing)", path=path)
    network = _network(payload["size"], payload["latent_dim"], tuple(payload["channels"]))
    network.load_state_dict(payload["state_dict"])
    network.to(device)
    projector = PCA(n_components=2)
    projector.mean_ = payload["pca_mean"].numpy()
    projector.components_ = payload["pca_components"].numpy()
    projector.n_components_ = 2
    projector.n_features_in_ = projector.components_.shape[1]
    return Embedding(network, payload["size"], payload["latent_dim"], "pca", projector,
                     list(payload["losses"]), device, tuple(payload["channels"]))
