"""Frame classifiers that learn from pixels and hold on scans of other exposure.

:class:`PixelCNN` (kind "cnn") and :class:`SupervisedAEClassifier` (kind "sae") share one
recipe (:mod:`xlabel.models.frame_fit`) and one input (:mod:`xlabel.models.frame_input`):
each frame normalised by its own mean and by its scan's median pattern, plus its flux
relative to its scan as a second input, so a model trained on scans of one count level
judges scans of 100x more or less.

>>> import xlabel
>>> from xlabel.synth import make_scan
>>> def scan_with_loss(seed, start):  # 40 small frames, beam lost for frames start..start+7
...     scan = make_scan(n_frames=40, frame_shape=(32, 32), seed=seed, ramp_frames=0,
...                      losses=[(start, 8)], saturation=0)
...     return xlabel.open_scan(scan.frames, name=f"seed{seed}"), list(scan.truth["label"])
>>> (scan_a, labels_a), (scan_b, labels_b) = scan_with_loss(1, 10), scan_with_loss(2, 25)
>>> new_scan, new_truth = scan_with_loss(3, 5)  # held out: never seen in training
>>> model = PixelCNN(epochs=5, progress=False).fit([scan_a, scan_b], labels_a + labels_b)
>>> predicted = model.predict(new_scan)
>>> list(predicted[3:15:2])
['good', 'bad', 'bad', 'bad', 'bad', 'good']
>>> bool((predicted == new_truth).all())
True
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelArgumentError
from ._deps import require_torch
from .base import FrameModel, TorchNetworkMixin
from .data import check_class_counts, dtype_kind, scan_name
from .frame_fit import (fit_network, load_counts, predict_source, prior_shift, resolve_device,
                        torch_settings, validation_split)
from .frame_input import DEFAULT_INPUT, input_norm, n_input_channels, network_input, prepare_counts
from .gradcam import invalid_mask
from .networks import build
from .persist import load_weights, save_weights
from .registry import register

torch = require_torch()

__all__ = ["PixelCNN", "SupervisedAEClassifier"]


@register("cnn")
class PixelCNN(TorchNetworkMixin, FrameModel):
    """CNN on exposure-invariant frames (kind "cnn").

    Parameters: ``class_names``; ``size`` (frames binned to at most ``size`` x ``size``);
    ``input`` ("median" | "frame" | "scan" | "global", see :mod:`xlabel.models.frame_input`);
    ``channels`` (conv widths) and ``hidden`` (head width); ``epochs`` (at most),
    ``batch_size``, ``lr``, ``patience`` (early stopping on the validation loss of held-out
    scans), ``val_fraction``; ``augment`` (random flips), ``augment_exposure`` (thinning to
    lower exposures, integer counts only), ``minority_factor`` (smaller classes repeated up
    to this factor per epoch); ``seed``; ``threads`` (torch threads while training);
    ``progress``; ``device`` ("cpu" default, "cuda", "auto").
    Fitted: ``classes_``, ``network_``, ``norm_`` (train-set mean/std of the image channel),
    ``downsample_`` (encoder layout, see :mod:`xlabel.models.networks`), ``logit_bias_``
    (offsets added to the logits, chosen on the validation scans:
    :func:`~xlabel.models.frame_fit.prior_shift`),
    ``frame_shape_``, ``info_`` (history, epochs run, seconds per epoch, validation scans).
    """

    network_kind = "cnn"

    def __init__(self, class_names=("good", "bad"), size=64, input=DEFAULT_INPUT, channels=(16, 32, 64, 64),
                 hidden=64, epochs=60, batch_size=64, lr=2e-3, patience=10, val_fraction=0.25, augment=True,
                 augment_exposure=True, augment_spots=True, minority_factor=4.0, seed=0, threads=None,
                 progress=True, device=None):
        self.class_names = class_names
        self.size = size
        self.input = input
        self.channels = channels
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.augment = augment
        self.augment_exposure = augment_exposure
        self.augment_spots = augment_spots
        self.minority_factor = minority_factor
        self.seed = seed
        self.threads = threads
        self.progress = progress
        self.device = device

    # ------------------------------------------------------------------ training
    def fit(self, X, y, groups=None):
        """Train on frames ``X`` (one scan or a list of scans) and labels ``y`` (names,
        indices, ``-1``/``""`` unlabeled, or a LabelStore) covering all of them.
        ``groups``: scan id per frame (default: the scans of ``X``)."""
        data, frame_shape, dtype = load_counts(X, self.size, progress=self.progress)
        codes, classes = self._labels(y, len(data))
        check_class_counts(codes, classes, data.scans)
        groups = data.scans if groups is None else np.asarray(groups, dtype=object)
        if len(groups) != len(data):
            raise ModelArgumentError(f"{len(groups)} groups for {len(data)} frames")
        keep = np.flatnonzero(codes >= 0)
        fit_pos, val_pos = validation_split(groups[keep], codes[keep], self.val_fraction, self.seed)
        fit_idx, val_idx = keep[fit_pos], keep[val_pos]
        device = resolve_device(self.device)
        self.classes_ = np.asarray(classes, dtype=object)
        self.frame_shape_, self.dtype_kind_ = tuple(int(s) for s in frame_shape), dtype_kind(dtype)
        self.norm_ = input_norm(data, self.input, fit_idx)
        config = {"mode": self.input, "norm": self.norm_, "epochs": int(self.epochs),
                  "batch_size": int(self.batch_size), "lr": float(self.lr), "patience": int(self.patience),
                  "augment_flips": bool(self.augment),
                  "augment_exposure": bool(self.augment_exposure) and self.dtype_kind_ == "integer",
                  "augment_spots": bool(self.augment_spots),
                  "minority_factor": float(self.minority_factor), "seed": int(self.seed)}
        self.downsample_ = "stride"
        with torch_settings(self.seed, self.threads):
            self.network_ = self._build_network().to(device)
            history = fit_network(self.network_, data, codes, fit_idx, val_idx, config, device=device,
                                  progress=self.progress)
            self.logit_bias_ = prior_shift(self.network_, data, codes, val_idx, config, device)
        self.info_ = {"history": history, "epochs_run": len(history),
                      "epoch_seconds": [round(t, 3) for t in config["epoch_seconds"]],
                      "validation_scans": sorted(set(map(str, groups[val_idx]))),
                      "trained_frames": int(len(fit_idx))}
        return self

    def _network_params(self) -> dict:
        return {"in_channels": n_input_channels(self.input), "channels": list(self.channels),
                "hidden": int(self.hidden), "downsample": self.downsample_}

    def _build_network(self):
        return build(self.network_kind, len(self.classes_), **self._network_params())

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X, progress=False, reference=None) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))`` for one scan (FrameSource, path or
        array ``(n, H, W)``), streamed chunk by chunk. The flux of each frame is judged
        against its scan's running median, so pass whole scans (or contiguous parts), or
        give ``reference`` (the scan's running-median flux per frame)."""
        source = self.check_frames(X)
        with torch.inference_mode():
            return predict_source(self.network_, source, self.size, self.input, self.norm_,
                                  resolve_device(self.device), progress=progress, reference=reference,
                                  bias=self._logit_bias())

    def _logit_bias(self):
        return np.asarray(self.__dict__.get("logit_bias_", np.zeros(len(self.classes_))), dtype=np.float32)

    def predict(self, X, progress=False, reference=None) -> np.ndarray:
        """Predicted class names (object array), one per frame."""
        proba = self.predict_proba(X, progress=progress, reference=reference)
        return np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]

    def cam_input(self, frames, reference=None, rows=None):
        """What Grad-CAM needs: ``(network, input tensor, frame shape, class names, invalid)``;
        ``invalid`` (n, H, W) bool marks the pixels no model input came from. ``rows``:
        only these frames of the scan ``frames``, judged in the whole scan's context (its
        running flux and median pattern, computed once per scan and cached)."""
        from .frame_input import as_tensors
        source = self.check_frames(frames)
        if rows is None:
            stack, pattern = source.read_all(), None
        else:
            rows = np.asarray(rows, dtype=np.int64)
            full_reference, pattern = self._scan_context(source)
            stack = source[rows]
            reference = full_reference[rows] if reference is None else np.asarray(reference)[rows]
        data = prepare_counts(stack, self.size, source, reference=reference, scan=scan_name(source),
                              pattern=pattern)
        device = resolve_device(self.device)
        x = network_input(*as_tensors(data, None, device), self.input, self.norm_)
        return self.network_, x, self.frame_shape_, self.classes, invalid_mask(stack, source)

    def _scan_context(self, source):
        """(running flux per frame, median pattern) of a whole scan, cached for the last scan."""
        from .frame_fit import scan_pattern, scan_reference
        key = (id(source), len(source), scan_name(source))
        cached = self.__dict__.get("_context")
        if cached is None or cached[0] != key:
            cached = (key, scan_reference(source), scan_pattern(source, self.size))
            self._context = cached
        return cached[1], cached[2]

    # ------------------------------------------------------------------ persistence
    def _save_state(self, folder) -> dict:
        save_weights(self.network_, folder)
        return {**super()._save_state(folder), "norm": [float(v) for v in self.norm_],
                "downsample": self.downsample_, "logit_bias": [float(v) for v in self._logit_bias()]}

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        self.norm_ = tuple(float(v) for v in state["norm"])
        # Models saved before the strided encoder have the same weight shapes: without this
        # their weights would load into the wrong layout and predict silently wrong.
        self.downsample_ = str(state.get("downsample", "pool"))
        self.logit_bias_ = np.asarray(state.get("logit_bias", np.zeros(len(self.classes_))), dtype=np.float64)
        if self.logit_bias_.shape != (len(self.classes_),):
            raise ValueError(f"logit_bias has {self.logit_bias_.size} values for {len(self.classes_)} classes")
        network = load_weights(self._build_network(), folder)
        self.network_ = network.to(resolve_device(self.device))


@register("sae")
class SupervisedAEClassifier(PixelCNN):
    """Supervised convolutional autoencoder (kind "sae"): the industrial OK/not-OK recipe.

    The encoder feeds a decoder (reconstruction of the normalised frame) and a classifier
    head; loss = class-weighted cross-entropy + ``reconstruction_weight`` x MSE. Same input,
    splits, minority oversampling (``minority_factor``, default 2: the report doubled its
    defect class), early stopping and parameters as :class:`PixelCNN`.
    """

    network_kind = "sae"

    def __init__(self, class_names=("good", "bad"), size=64, input=DEFAULT_INPUT, channels=(16, 32, 64, 64),
                 hidden=64, reconstruction_weight=1.0, epochs=60, batch_size=64, lr=2e-3, patience=10,
                 val_fraction=0.25, augment=True, augment_exposure=True, augment_spots=True,
                 minority_factor=2.0, seed=0, threads=None, progress=True, device=None):
        super().__init__(class_names=class_names, size=size, input=input, channels=channels, hidden=hidden,
                         epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                         val_fraction=val_fraction, augment=augment, augment_exposure=augment_exposure,
                         augment_spots=augment_spots, minority_factor=minority_factor, seed=seed, threads=threads, progress=progress,
                         device=device)
        self.reconstruction_weight = reconstruction_weight

    def _network_params(self) -> dict:
        return {**super()._network_params(), "reconstruction_weight": float(self.reconstruction_weight)}
