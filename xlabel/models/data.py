"""Shared input handling for training: labels, class weights, frames from many scans."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .evaluate import encode_labels
from .frames import as_source, iter_prepared

__all__ = ["resolve_labels", "class_weights", "concat_prepared"]


def resolve_labels(labels, classes=("good", "bad")):
    """``(int array with -1 for unlabeled, classes tuple)`` from names, indices or a LabelStore."""
    if hasattr(labels, "labels") and hasattr(labels, "classes"):
        classes, labels = labels.classes, labels.labels
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2:
        raise ModelError(f"a classifier needs at least two classes, got {classes}")
    return encode_labels(labels, classes), classes


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights ``n / (k * count)`` per class (1 for classes absent from ``labels``)."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def concat_prepared(frames, size):
    """Prepared (binned, log-scaled) frames of one scan or a list of scans, and the frame shape.

    All scans must share one frame shape (a model is trained for one detector geometry).
    """
    items = frames if isinstance(frames, (list, tuple)) else [frames]
    blocks, frame_shape = [], None
    for item in items:
        source = as_source(item)
        if frame_shape is None:
            frame_shape = tuple(source.frame_shape)
        elif tuple(source.frame_shape) != frame_shape:
            raise ModelError(f"frame shape {tuple(source.frame_shape)} differs from the first "
                             f"scan's {frame_shape}; train one model per detector geometry",
                             path=getattr(source, "path", None))
        blocks.extend(block for _, block in iter_prepared(source, size))
    if not blocks:
        raise ModelError("no frames to train on")
    return np.concatenate(blocks), frame_shape
