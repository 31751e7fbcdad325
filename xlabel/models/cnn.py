"""A small PyTorch CNN on frames (optional dependency: ``pip install 'xlabel[deep]'``).

Input: ``log1p`` of the binned frame, normalized with the training mean/std (kept in
the model's ``preprocessing``). A few conv layers and global average pooling, so any
frame size works. Training: class-weighted cross-entropy, random flips, early stopping
on validation loss, seeded (the global torch RNG state is left untouched).

>>> model = train_cnn(frames, labels, epochs=5, progress=False)   # doctest: +SKIP
>>> model.predict(frames)                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import numpy as np

from ..errors import ModelError
from ._deps import require_torch
from .data import class_weights, concat_prepared, resolve_labels
from .split import split
from .trained import TrainedModel

torch = require_torch()
nn = torch.nn

__all__ = ["FrameCNN", "train_cnn", "cnn_proba", "build_network"]


class FrameCNN(nn.Module):
    """Conv blocks (``conv1``.. ``convN``, each conv-ReLU, max-pool between them), global
    average pooling and a linear ``head``. The last conv layer is the Grad-CAM default.

    >>> FrameCNN(n_classes=2, channels=(8, 16))(torch.zeros(3, 1, 40, 24)).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_classes: int = 2, channels=(8, 16, 32)):
        super().__init__()
        layers = OrderedDict()
        previous = 1
        for i, width in enumerate(channels, start=1):
            if i > 1:
                layers[f"pool{i - 1}"] = nn.MaxPool2d(2, ceil_mode=True)
            layers[f"conv{i}"] = nn.Conv2d(previous, width, kernel_size=3, padding=1)
            layers[f"relu{i}"] = nn.ReLU()
            previous = width
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(previous, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def build_network(n_classes: int, channels) -> FrameCNN:
    """The network described by a model's metadata (used by ``load_model``)."""
    return FrameCNN(n_classes=n_classes, channels=tuple(channels))


@contextlib.contextmanager
def _torch_settings(seed: int, threads: int | None):
    """Seeded, optionally thread-limited section that restores the caller's torch state."""
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)


def train_cnn(frames, labels, classes=("good", "bad"), *, size=64, channels=(8, 16, 32),
              groups=None, epochs=30, batch_size=32, lr=2e-3, patience=5, val_fraction=0.2,
              augment=True, seed=0, threads=None, progress=True) -> TrainedModel:
    """Train the CNN on labeled frames; returns a :class:`TrainedModel` of kind "cnn".

    ``frames``: array ``(n, H, W)``, FrameSource, path, or a list of these (scans are
    concatenated in order; ``labels`` then covers all of them). ``labels``: class names
    or indices (unlabeled ``-1``/``""`` frames are skipped) or a LabelStore. ``groups``:
    scan id per frame, so the validation set holds out whole scans (else contiguous
    blocks). ``size``: frames are binned to at most ``size`` x ``size``.
    """
    labels, classes = resolve_labels(labels, classes)
    stack, frame_shape = concat_prepared(frames, size)
    if len(stack) != len(labels):
        raise ModelError(f"{len(stack)} frames but {len(labels)} labels")
    keep = np.flatnonzero(labels >= 0)
    if len(keep) < 4:
        raise ModelError(f"need at least 4 labeled frames to train, got {len(keep)}")
    mean, std = float(stack[keep].mean()), float(stack[keep].std()) or 1.0
    x = torch.from_numpy((stack - mean) / std).unsqueeze(1)
    y = torch.from_numpy(labels)
    groups = None if groups is None else np.asarray(groups)[keep]
    fit_idx, val_idx = split(groups if groups is not None else len(keep), test_size=val_fraction,
                             seed=seed)
    fit_idx, val_idx = keep[fit_idx], keep[val_idx]
    with _torch_settings(seed, threads):
        network = FrameCNN(len(classes), channels)
        weights = torch.tensor(class_weights(labels[fit_idx], len(classes)), dtype=torch.float32)
        history = _fit(network, x, y, fit_idx, val_idx, weights, epochs=epochs,
                       batch_size=batch_size, lr=lr, patience=patience, augment=augment,
                       progress=progress)
    network.eval()
    return TrainedModel("cnn", classes, network, frame_shape=frame_shape,
                        preprocessing={"size": size, "mean": mean, "std": std,
                                       "channels": list(channels)},
                        info={"epochs_run": len(history), "history": history})


def _fit(network, x, y, fit_idx, val_idx, weights, *, epochs, batch_size, lr, patience,
         augment, progress):
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    best, best_state, waited, history = np.inf, copy.deepcopy(network.state_dict()), 0, []
    epochs_bar = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs_bar = tqdm(epochs_bar, desc="train cnn", unit="epoch")
    for _ in epochs_bar:
        network.train()
        for batch in torch.randperm(len(fit_idx)).split(batch_size):
            idx = torch.from_numpy(fit_idx)[batch]
            inputs = _flip(x[idx]) if augment else x[idx]
            optimizer.zero_grad()
            loss_fn(network(inputs), y[idx]).backward()
            optimizer.step()
        val_loss = _loss(network, loss_fn, x, y, val_idx if len(val_idx) else fit_idx)
        history.append(val_loss)
        if val_loss < best - 1e-6:
            best, best_state, waited = val_loss, copy.deepcopy(network.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    network.load_state_dict(best_state)
    return history


def _flip(batch):
    """Random horizontal and vertical flips, each with p=0.5 per frame."""
    for dim in (2, 3):
        chosen = torch.rand(len(batch)) < 0.5
        batch = torch.where(chosen[:, None, None, None], batch.flip(dim), batch)
    return batch


def _loss(network, loss_fn, x, y, idx) -> float:
    network.eval()
    with torch.no_grad():
        idx = torch.from_numpy(idx)
        return float(loss_fn(network(x[idx]), y[idx]))


def normalized_tensor(model: TrainedModel, block: np.ndarray):
    """Prepared frames (n, h, w) -> normalized float tensor (n, 1, h, w) for the network."""
    pre = model.preprocessing
    return torch.from_numpy((block - pre["mean"]) / pre["std"]).float().unsqueeze(1)


def cnn_proba(model: TrainedModel, block: np.ndarray) -> np.ndarray:
    """Softmax probabilities of the CNN for a block of prepared frames."""
    network = model.estimator
    network.eval()
    with torch.no_grad():
        return torch.softmax(network(normalized_tensor(model, block)), dim=1).numpy()
