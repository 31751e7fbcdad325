"""Training input checks shared by every model: labels, class counts, class weights, frames.

>>> codes, classes = resolve_labels(["good", "bad", "", "good"])
>>> codes.tolist(), classes
([0, 1, -1, 0], ('good', 'bad'))
>>> class_weights(np.array([0, 0, 0, 1, -1]), 2).tolist()
[0.6666666666666666, 2.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from ..errors import ModelArgumentError, ModelError
from .evaluate import encode_labels
from .frames import as_source, iter_prepared

__all__ = ["MIN_FRAMES_PER_CLASS", "resolve_labels", "class_weights", "check_class_counts",
           "concat_prepared", "scan_name"]

#: Fewest labeled frames of each class a model trains on. Below 5 a class cannot be both
#: learned and checked on held-out frames, and early stopping sees at most one of them.
MIN_FRAMES_PER_CLASS = 5


def resolve_labels(labels, classes=("good", "bad")):
    """``(int array with -1 for unlabeled, classes tuple)`` from names, indices or a LabelStore."""
    if hasattr(labels, "labels") and hasattr(labels, "classes"):
        classes, labels = labels.classes, labels.labels
    if classes is None:
        raise ModelArgumentError(
            "pass the class names (class_names=...) in the order of predict_proba")
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ModelArgumentError(f"a classifier needs at least two distinct classes, got {classes}")
    return encode_labels(labels, classes), classes


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's 'balanced' weights ``n / (k * count)`` per class index.

    Adds to :func:`sklearn.utils.class_weight.compute_class_weight`: unlabeled ``-1``
    entries are ignored and a class absent from ``labels`` gets weight 1 (sklearn raises).
    """
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    weights = np.ones(n_classes)
    present = np.unique(labels)
    if len(present):
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def check_class_counts(codes: np.ndarray, classes, scans=None):
    """ModelError unless every class has at least :data:`MIN_FRAMES_PER_CLASS` labeled frames.

    ``scans``: the scan name of every frame (or None), so the message says where the
    labels came from.
    """
    counts = np.bincount(codes[codes >= 0], minlength=len(classes))
    short = [(name, int(n)) for name, n in zip(classes, counts) if n < MIN_FRAMES_PER_CLASS]
    if not short:
        return
    where = ""
    if scans is not None:
        names = pd.unique(np.asarray(scans, dtype=object)[codes >= 0])
        where = f" in scan(s) {', '.join(map(str, names))}"
    found = ", ".join(f"{name!r}: {n}" for name, n in short)
    raise ModelArgumentError(f"too few labeled frames per class{where} ({found}); every class of "
                             f"{classes} needs at least {MIN_FRAMES_PER_CLASS} to train a model")


def scan_name(source) -> str:
    """What messages call a FrameSource: its file path, else its ``name``."""
    return str(getattr(source, "path", None) or getattr(source, "name", None) or "frames")


def concat_prepared(frames, size, iter_blocks=iter_prepared):
    """Prepared frames of one scan or a list of scans, with what the model must remember.

    Returns ``(stack, frame_shape, dtype_kind, scans)``: ``scans`` names the scan of every
    frame. All scans must share one frame shape and one dtype kind (a model is trained
    for one detector geometry and one kind of values); a frame without any finite pixel
    raises ModelError naming its scan (see :func:`~xlabel.models.frames.iter_prepared`).
    ``iter_blocks(source, size)``: what prepares the frames (default ``iter_prepared``).
    """
    items = frames if isinstance(frames, (list, tuple)) else [frames]
    blocks, scans, frame_shape, kind = [], [], None, None
    for item in items:
        source = as_source(item)
        shape, this_kind = tuple(source.frame_shape), dtype_kind(source.dtype)
        if frame_shape is None:
            frame_shape, kind = shape, this_kind
        elif (shape, this_kind) != (frame_shape, kind):
            raise ModelArgumentError(f"frames {shape} of {this_kind} values differ from the first "
                                     f"scan's {frame_shape} of {kind} values; train one model per "
                                     "detector geometry", path=getattr(source, "path", None))
        blocks.extend(block for _, block in iter_blocks(source, size))
        scans.extend([scan_name(source)] * len(source))
    if not blocks:
        raise ModelArgumentError("no frames to train on")
    return np.concatenate(blocks), frame_shape, kind, np.asarray(scans, dtype=object)


def dtype_kind(dtype) -> str:
    """"integer" (counts, signed or not), "float" or the numpy kind letter of anything else.

    >>> dtype_kind(np.uint16), dtype_kind(np.int32), dtype_kind(np.float32)
    ('integer', 'integer', 'float')
    """
    kind = np.dtype(dtype).kind
    return {"u": "integer", "i": "integer", "f": "float", "b": "integer"}.get(kind, kind)
