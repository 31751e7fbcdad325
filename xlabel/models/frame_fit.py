"""Training and streaming prediction of the pixel networks (:mod:`xlabel.models.networks`).

The recipe (CNN and supervised autoencoder alike): exposure-invariant input
(:mod:`xlabel.models.frame_input`) standardised with the training set's statistics,
validation on whole held-out *scans* holding every class (scikit-learn's
:func:`xlabel.models.split` with labels), class-weighted cross-entropy, minority-class oversampling,
random flips and exposure thinning, early stopping on the validation loss, seeded.
Prediction streams a scan chunk by chunk (after one cheap pass for the scan's running
flux) with a progress bar, on the CPU or on a GPU (``device=``).
"""

from __future__ import annotations

import contextlib
import copy
import time

import numpy as np

from ..errors import ModelError
from ._deps import require_torch
from .frame_input import (Counts, _check_frames, _valid_mask, add_spots, as_tensors, median_pattern, network_input,
                          pattern_rows, prepare_counts, reference_flux, thin)
from .frames import as_source

torch = require_torch()
nn = torch.nn

__all__ = ["resolve_device", "torch_settings", "load_counts", "scan_reference", "validation_split",
           "FitTensors", "fit_network", "prior_shift", "predict_counts", "predict_source", "minority_oversample"]


def resolve_device(device=None):
    """``None``/"cpu" -> CPU; "cuda" (or "cuda:N") only when a GPU is there; "auto" -> GPU if any."""
    name = "cpu" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device={name!r} was asked for but PyTorch sees no CUDA GPU here; "
                         "use device='cpu' (the default) or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ModelError(f"unknown device {name!r}: {err}") from None


@contextlib.contextmanager
def torch_settings(seed: int, threads: int | None):
    """Seeded, optionally thread-limited section that restores the caller's torch state."""
    previous = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled)


def _scan_name(source) -> str:
    return str(getattr(source, "name", None) or getattr(source, "path", None) or "frames")


def load_counts(frames, size, progress=False):
    """Binned counts of one scan or a list of scans: ``(Counts, frame_shape, dtype)``.

    Each scan gets its own running reference flux. All scans must share one frame shape.
    """
    items = frames if isinstance(frames, (list, tuple)) else [frames]
    parts, frame_shape, dtype = [], None, None
    sources = [as_source(item) for item in items]
    with _progress(sum(len(s) for s in sources), "read frames", progress) as bar:
        for source in sources:
            name = _scan_name(source)
            if frame_shape is None:
                frame_shape, dtype = tuple(source.frame_shape), np.dtype(source.dtype)
            elif tuple(source.frame_shape) != frame_shape:
                raise ModelError(f"frame shape {tuple(source.frame_shape)} differs from the first "
                                 f"scan's {frame_shape}; train one model per detector geometry",
                                 path=name)
            chunks = []
            for start, stack in source.iter_chunks():
                chunk = prepare_counts(stack, size, source, reference=np.zeros(len(stack)), scan=name,
                                       start=start, pattern=np.ones(1))  # the scan's, below
                chunks.append(chunk)
                bar.update(len(stack))
            if not chunks:
                continue
            counts = np.concatenate([c.counts for c in chunks])
            valid = np.concatenate([c.valid for c in chunks])
            means = counts.reshape(len(counts), -1).sum(1, dtype=np.float64) / \
                valid.reshape(len(valid), -1).sum(1)
            parts.append(Counts(counts, valid, reference_flux(means),
                                np.full(len(counts), name, dtype=object),
                                median_pattern(counts, valid)[None], np.zeros(len(counts), np.int64)))
    if not parts:
        raise ModelError("no frames to train on")
    data = Counts(*(np.concatenate([getattr(p, f) for p in parts])
                    for f in ("counts", "valid", "reference", "scans", "patterns")),
                  np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)]))
    return data, frame_shape, dtype


def scan_pattern(source, size) -> np.ndarray:
    """The scan's median pattern (:func:`~xlabel.models.frame_input.median_pattern`) from
    :func:`~xlabel.models.frame_input.pattern_rows` of its frames, read by index."""
    rows = pattern_rows(len(source))
    data = prepare_counts(source[rows], size, source, reference=np.zeros(len(rows)),
                          scan=_scan_name(source), pattern=np.ones(1))
    return median_pattern(data.counts, data.valid)


def scan_reference(source, progress_bar=None) -> np.ndarray:
    """The running-median flux of every frame of ``source`` (first, cheap pass of prediction)."""
    means = []
    name = _scan_name(source)
    for start, stack in source.iter_chunks():
        good = _valid_mask(stack, source)
        n_valid = good.reshape(len(stack), -1).sum(axis=1)
        _check_frames(n_valid.reshape(-1, 1, 1), name, start)
        total = np.where(good, np.asarray(stack, dtype=np.float64), 0).reshape(len(stack), -1).sum(axis=1)
        means.append(total / n_valid)
        if progress_bar is not None:
            progress_bar.update(len(stack))
    return reference_flux(np.concatenate(means)) if means else np.zeros(0)


def validation_split(groups, codes, val_fraction=0.2, seed=0):
    """``(fit, validation)`` positions: whole scans held out, every class on both sides
    where the labels allow (:func:`xlabel.models.split` with ``labels``), else a warning
    naming the class and its scans and a plain scan split (the CNN's rule)."""
    from .cnn import _validation_split
    return _validation_split(np.asarray(groups, dtype=object), np.asarray(codes), val_fraction, seed)


def minority_oversample(codes, index, factor: float, rng) -> np.ndarray:
    """``index`` plus repeated frames of the smaller classes: each class grows to at most
    ``factor`` x its count and never beyond the largest class (the industrial recipe doubled
    its defect class by flipped copies). Copies get their own random flips in training."""
    index = np.asarray(index)
    counts = np.bincount(codes[index], minlength=codes.max() + 1)
    largest = counts.max()
    extra = []
    for cls, count in enumerate(counts):
        if 0 < count < largest and factor > 1:
            n_extra = int(min(largest, factor * count)) - count
            extra.append(rng.choice(index[codes[index] == cls], n_extra, replace=n_extra > count))
    return np.concatenate([index, *extra]) if extra else index


def _flip(batch, generator):
    """Random horizontal and vertical flips, each with p = 0.5 per frame, and for square
    frames a random transpose: any of the 8 symmetries of the square."""
    for dim in (2, 3):
        chosen = (torch.rand(len(batch), generator=generator) < 0.5).to(batch.device)
        batch = torch.where(chosen[:, None, None, None], batch.flip(dim), batch)
    if batch.shape[2] == batch.shape[3]:
        chosen = (torch.rand(len(batch), generator=generator) < 0.5).to(batch.device)
        batch = torch.where(chosen[:, None, None, None], batch.transpose(2, 3), batch)
    return batch


class FitTensors:
    """The training frames as tensors on the training device, made once per fit (not per
    batch): ``batch(rows)`` gives a batch's network input, augmented for training, and
    ``fixed(rows)`` the input of frames that are never augmented (validation), computed
    once and kept."""

    def __init__(self, data: Counts, config: dict, device):
        def tensor(array, dtype=np.float32):
            return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(device)
        self.counts, self.valid = tensor(data.counts), tensor(data.valid)
        self.reference, self.patterns = tensor(data.reference), tensor(data.patterns)
        self.scan_index = tensor(data.scan_index, np.int64)
        self.config, self.device = config, device

    def rows(self, rows):
        """``(counts, valid, reference, pattern)`` of ``rows`` (a 1-d int64 tensor)."""
        return (self.counts[rows], self.valid[rows], self.reference[rows],
                self.patterns[self.scan_index[rows]])

    def batch(self, rows, generator=None, train=False):
        counts, valid, reference, pattern = self.rows(rows)
        if train and self.config.get("augment_spots"):
            counts = add_spots(counts, valid, generator=generator)
        if train and self.config["augment_exposure"]:
            counts, reference = thin(counts, reference, generator=generator)
        x = network_input(counts, valid, reference, pattern, self.config["mode"], self.config["norm"])
        return _flip(x, generator) if train and self.config["augment_flips"] else x

    def fixed(self, rows, chunk=1024):
        with torch.inference_mode():
            return torch.cat([self.batch(part) for part in torch.split(rows, chunk)])


def fit_network(network, data: Counts, codes, fit_idx, val_idx, config: dict, *, device, progress=False):
    """Train ``network`` in place; returns the validation loss per epoch.

    ``config``: ``mode``, ``norm``, ``epochs``, ``batch_size``, ``lr``, ``patience``,
    ``augment_flips``, ``augment_exposure``, ``augment_spots``, ``minority_factor``, ``seed``.
    Early stopping: the weights of the epoch with the lowest validation cross-entropy
    (class-weighted) are kept; training stops ``patience`` epochs after it.
    The frames go to the device once; the validation input is computed once.
    ``config["epoch_seconds"]`` gets the wall time of each epoch (training + validation),
    ``config["class_weights"]`` the loss's class weights.
    """
    from .data import class_weights
    from tqdm.auto import tqdm
    generator = torch.Generator().manual_seed(int(config["seed"]))
    rng = np.random.default_rng(int(config["seed"]))
    tensors = FitTensors(data, config, device)
    y = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(device)
    n_classes = network.head[-1].out_features
    epoch_index = torch.from_numpy(minority_oversample(codes, fit_idx, config["minority_factor"], rng))
    weights = torch.tensor(class_weights(codes[epoch_index.numpy()], n_classes), dtype=torch.float32)
    config["class_weights"] = weights.tolist()
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device))
    optimizer = torch.optim.Adam(network.parameters(), lr=config["lr"])
    check = torch.from_numpy(np.asarray(val_idx if len(val_idx) else fit_idx, dtype=np.int64))
    check_x, check_y = tensors.fixed(check.to(device)), y[check.to(device)]
    best, best_state, waited, history = np.inf, copy.deepcopy(network.state_dict()), 0, []
    seconds = config.setdefault("epoch_seconds", [])
    for _ in tqdm(range(config["epochs"]), desc=f"train {type(network).__name__}", unit="epoch",
                  disable=not progress):
        started = time.perf_counter()
        network.train()
        order = epoch_index[torch.randperm(len(epoch_index), generator=generator)].to(device)
        for rows in torch.split(order, config["batch_size"]):
            x = tensors.batch(rows, generator, train=True)
            optimizer.zero_grad(set_to_none=True)
            network.training_loss(x, y[rows], loss_fn).backward()
            optimizer.step()
        history.append(_validation_loss(network, check_x, check_y, loss_fn))
        seconds.append(time.perf_counter() - started)
        if history[-1] < best - 1e-6:
            best, best_state, waited = history[-1], copy.deepcopy(network.state_dict()), 0
        else:
            waited += 1
            if waited >= config["patience"]:
                break
    network.load_state_dict(best_state)
    network.eval()
    return history


def _validation_loss(network, x, y, loss_fn, batch=1024) -> float:
    """Class-weighted mean cross-entropy of prepared inputs ``x`` (as CrossEntropyLoss with
    ``weight`` over all of them, computed in batches)."""
    network.eval()
    total, weight = 0.0, 0.0
    with torch.inference_mode():
        for part_x, part_y in zip(torch.split(x, batch), torch.split(y, batch)):
            part_weight = float(loss_fn.weight[part_y].sum())
            total += float(loss_fn(network(part_x), part_y)) * part_weight
            weight += part_weight
    return total / max(weight, 1e-12)


def prior_shift(network, data: Counts, codes, val_idx, config, device, steps=(0, 0.25, 0.5, 0.75, 1)):
    """Logit offsets that undo part of the class weighting, chosen on the validation scans.

    Class-weighted training makes a rare class as likely a priori as a common one, which
    buys recall with precision. Offsets ``-a * log(class weight)`` (``a`` = 0: as trained,
    1: the training set's class frequencies) are tried for each ``a`` in ``steps``; the one
    with the best macro F1 on the validation frames wins (the smallest ``a`` among equals).
    Without validation frames of every class the offsets stay 0.
    """
    from sklearn.metrics import f1_score
    n_classes = len(config["class_weights"])
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if not len(val_idx) or len(np.unique(codes[val_idx])) < n_classes:
        return np.zeros(n_classes)
    tensors = FitTensors(data, config, device)
    network.eval()
    with torch.inference_mode():
        x = tensors.fixed(torch.from_numpy(val_idx).to(device))
        logits = torch.cat([network(part) for part in torch.split(x, 1024)]).cpu().numpy()
    log_weights = np.log(np.asarray(config["class_weights"], dtype=np.float64))
    scores = [f1_score(codes[val_idx], (logits - a * log_weights).argmax(axis=1), average="macro")
              for a in steps]
    return -steps[int(np.argmax(scores))] * log_weights


def predict_counts(network, data: Counts, mode, norm, device, batch=1024, bias=None) -> np.ndarray:
    """Softmax probabilities ``(n, classes)`` for prepared counts (``bias``: logit offsets
    per class, see :func:`prior_shift`)."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            x = network_input(*as_tensors(data, slice(start, start + batch), device), mode, norm)
            logits = network(x)
            if bias is not None:
                logits = logits + torch.as_tensor(bias, dtype=logits.dtype, device=logits.device)
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.head[-1].out_features))


def predict_source(network, source, size, mode, norm, device, progress=False, reference=None, bias=None):
    """Probabilities for every frame of ``source``, chunk by chunk.

    Pass 1 (skipped when ``reference`` is given): the scan's running-median flux, from the
    frames' mean counts; the scan's median pattern from up to PATTERN_FRAMES frames read
    by index. Pass 2: each chunk is binned, turned into the network input and classified;
    only one chunk is in memory at a time.
    """
    name = _scan_name(source)
    with _progress(len(source) * (1 if reference is not None else 2), name, progress) as bar:
        if reference is None:
            reference = scan_reference(source, bar)
        reference = np.asarray(reference, dtype=np.float64)
        if len(reference) != len(source):
            raise ModelError(f"{len(reference)} reference values for {len(source)} frames", path=name)
        pattern = scan_pattern(source, size) if len(source) else None
        parts = []
        for start, stack in source.iter_chunks():
            data = prepare_counts(stack, size, source, reference[start:start + len(stack)], scan=name,
                                  start=start, pattern=pattern)
            parts.append(predict_counts(network, data, mode, norm, device, bias=bias))
            bar.update(len(stack))
    n_classes = network.head[-1].out_features
    return np.concatenate(parts) if parts else np.zeros((0, n_classes))
