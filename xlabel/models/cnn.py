"""A small PyTorch CNN on frames (optional dependency: ``pip install 'xlabel[deep]'``).

Input: ``log1p`` of the binned frame, normalized with the training mean/std (kept in
the model). A few conv layers and global average pooling, so any frame size works.
Training: class-weighted cross-entropy, random flips, early stopping on the loss of
validation frames from other scans (every class present where the labels allow),
seeded (the global torch RNG state is left untouched).

>>> from xlabel.synth import make_scan
>>> scan = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(20, 10)], saturation=0)
>>> frames, labels = scan.frames, scan.truth["label"]  # frames 20-29: beam lost, "bad"
>>> model = CNNClassifier(size=16, epochs=3, progress=False).fit(frames, labels)
>>> list(model.predict(frames[18:22]))
['good', 'good', 'bad', 'bad']
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np

from ..errors import ModelError
from ._deps import require_torch
from .base import FrameModel, TorchNetworkMixin
from .data import class_weights
from .persist import load_weights, save_weights
from .registry import register
from .split import split

torch = require_torch()
nn = torch.nn

__all__ = ["FrameCNN", "CNNClassifier", "train_cnn", "build_network"]


class FrameCNN(nn.Module):
    """Conv blocks (``conv1``.. ``convN``, each conv-ReLU, max-pool between them), global
    average pooling and a linear ``head``. The last conv layer is the Grad-CAM default.

    >>> FrameCNN(n_classes=2, channels=(8, 16))(torch.zeros(3, 1, 40, 24)).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_classes: int = 2, channels=(8, 16, 32)):
        super().__init__()
        from .networks import conv_encoder
        self.features = conv_encoder(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels[-1], n_classes)

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


@register("cnn-global")
class CNNClassifier(TorchNetworkMixin, FrameModel):
    """:class:`FrameCNN` on binned, log-scaled frames standardized with one global mean/std
    (kind "cnn-global": xlabel's first CNN; it learns the training scans' count levels, so
    kind "cnn", :class:`~xlabel.models.pixelnet.PixelCNN`, replaced it as the default).

    Parameters: ``class_names``, ``size`` (frames binned to at most ``size`` x ``size``),
    ``channels`` (conv widths), ``epochs`` (at most), ``batch_size``, ``lr``,
    ``patience`` (epochs without a better validation loss before stopping),
    ``val_fraction``, ``augment`` (random flips), ``seed``, ``threads`` (torch threads
    while training), ``progress``, ``device`` (e.g. "cuda"; default CPU).
    Fitted: ``network_`` (also ``network``, for Grad-CAM), ``mean_``, ``std_``,
    ``info["history"]`` (validation loss per epoch).

    >>> import xlabel
    >>> from xlabel.synth import make_scan
    >>> a = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(20, 10)], saturation=0)
    >>> b = make_scan(n_frames=60, seed=2, ramp_frames=0, losses=[(40, 10)], saturation=0)
    >>> scan_a, scan_b = xlabel.open_scan(a.frames, name="a"), xlabel.open_scan(b.frames, name="b")
    >>> labels = list(a.truth["label"]) + list(b.truth["label"])  # one per frame, in order
    >>> model = CNNClassifier(size=16, epochs=3, progress=False).fit([scan_a, scan_b], labels)
    >>> bool((model.predict(scan_b) == b.truth["label"]).all())
    True
    """

    def __init__(self, class_names=("good", "bad"), size=64, channels=(8, 16, 32), epochs=30,
                 batch_size=32, lr=2e-3, patience=5, val_fraction=0.2, augment=True, seed=0,
                 threads=None, progress=True, device=None):
        self.class_names = class_names
        self.size = size
        self.channels = channels
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

    @classmethod
    def from_network(cls, network, frame_shape, classes=("good", "bad"), mean=0.0, std=1.0,
                     dtype_kind="integer", **params):
        """Wrap an already trained :class:`FrameCNN` (imported weights, benchmarks)."""
        model = cls(class_names=tuple(classes), **params)
        model.classes_ = np.asarray(classes, dtype=object)
        model.frame_shape_, model.dtype_kind_ = tuple(frame_shape), dtype_kind
        model.network_, model.mean_, model.std_, model.info_ = network.eval(), mean, std, {}
        return model

    def _fit_prepared(self, stack, codes, groups):
        keep = np.flatnonzero(codes >= 0)
        self.mean_ = float(stack[keep].mean())
        self.std_ = float(stack[keep].std()) or 1.0
        x = torch.from_numpy((stack - self.mean_) / self.std_).unsqueeze(1)
        y = torch.from_numpy(codes)
        fit_idx, val_idx = _validation_split(groups[keep], codes[keep], self.val_fraction,
                                             self.seed)
        fit_idx, val_idx = keep[fit_idx], keep[val_idx]
        with _torch_settings(self.seed, self.threads):
            network = FrameCNN(len(self.classes_), tuple(self.channels)).to(self._device())
            weights = torch.tensor(class_weights(codes[fit_idx], len(self.classes_)),
                                   dtype=torch.float32)
            history = _fit(network, x, y, fit_idx, val_idx, weights, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                           augment=self.augment, progress=self.progress)
        self.network_ = network.eval()
        self.info_.update({"epochs_run": len(history), "history": history})

    def network_input(self, block: np.ndarray):
        """Prepared frames (n, h, w) -> normalized float tensor (n, 1, h, w) on the model's device."""
        tensor = torch.from_numpy((block - self.mean_) / self.std_).float().unsqueeze(1)
        return tensor.to(self._device())

    def _proba_block(self, block):
        self.network_.eval()
        with torch.no_grad():
            return torch.softmax(self.network_(self.network_input(block)), dim=1).cpu().numpy()

    def _device(self):
        return torch.device(self.device or "cpu")

    def _save_state(self, folder):
        save_weights(self.network_.cpu(), folder)
        self.network_.to(self._device())
        return {**super()._save_state(folder), "mean": self.mean_, "std": self.std_}

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        self.mean_, self.std_ = float(state["mean"]), float(state["std"])
        network = build_network(len(self.classes_), self.channels)
        self.network_ = load_weights(network, folder).to(self._device())


def _validation_split(groups, codes, val_fraction, seed):
    """Validation frames from other scans holding every class; said loudly when impossible."""
    try:
        return split(groups, test_size=val_fraction, seed=seed, labels=codes)
    except ModelError as err:
        warnings.warn(f"early stopping validates on frames that lack a class: {err.reason}",
                      stacklevel=4)
        return split(groups, test_size=val_fraction, seed=seed)


def train_cnn(frames, labels, classes=("good", "bad"), *, groups=None, **params) -> CNNClassifier:
    """``CNNClassifier(...).fit(frames, labels, groups)`` in one call (see :class:`CNNClassifier`).

    ``frames``: array ``(n, H, W)``, FrameSource, path, or a list of these (scans are
    concatenated in order; ``labels`` then covers all of them). ``labels``: class names
    or indices (unlabeled ``-1``/``""`` frames are skipped) or a LabelStore. ``groups``:
    scan id per frame (default: the scans of ``frames``).
    """
    return CNNClassifier(class_names=classes, **params).fit(frames, labels, groups=groups)


def _fit(network, x, y, fit_idx, val_idx, weights, *, epochs, batch_size, lr, patience,
         augment, progress, loss_fn=None, desc="train cnn"):
    device = next(network.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss(weight=weights.to(device))
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    best, best_state, waited, history = np.inf, copy.deepcopy(network.state_dict()), 0, []
    epochs_bar = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs_bar = tqdm(epochs_bar, desc=desc, unit="epoch")
    for _ in epochs_bar:
        network.train()
        for batch in torch.randperm(len(fit_idx)).split(batch_size):
            idx = torch.from_numpy(fit_idx)[batch]
            inputs = (_flip(x[idx]) if augment else x[idx]).to(device)
            optimizer.zero_grad()
            loss_fn(network(inputs), y[idx].to(device)).backward()
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
        device = next(network.parameters()).device
        return float(loss_fn(network(x[idx].to(device)), y[idx].to(device)))
