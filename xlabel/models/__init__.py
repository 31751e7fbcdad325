"""Classifiers for frames: MLPs on features or pixels, a small CNN, leak-free splits,
evaluation for imbalanced classes, safe persistence and Grad-CAM.

>>> from xlabel.models import evaluate
>>> evaluate(["good", "bad"], ["good", "good"], classes=("good", "bad")).balanced_accuracy
0.5

PyTorch is optional: ``train_cnn`` and ``gradcam`` import it on first use and raise
:class:`~xlabel.errors.MissingDependencyError` (saying what to install) when it is absent.
"""

from __future__ import annotations

import importlib

from .evaluate import Evaluation, encode_labels, evaluate  # noqa: F401
from .split import split  # noqa: F401
from .trained import KINDS, TrainedModel  # noqa: F401

_LAZY = {
    "train_mlp": "xlabel.models.mlp",
    "train_pixel_mlp": "xlabel.models.mlp",
    "PRESETS": "xlabel.models.mlp",
    "DEFAULT_COLUMNS": "xlabel.models.mlp",
    "BASELINE_COLUMNS": "xlabel.models.mlp",
    "train_cnn": "xlabel.models.cnn",
    "FrameCNN": "xlabel.models.cnn",
    "save_model": "xlabel.models.persist",
    "load_model": "xlabel.models.persist",
    "cam": "xlabel.models.gradcam",
}

__all__ = sorted([*_LAZY, "Evaluation", "evaluate", "encode_labels", "split", "TrainedModel",
                  "KINDS"])


def __getattr__(name):
    if name == "gradcam":
        return importlib.import_module("xlabel.models.gradcam")
    if name not in _LAZY:
        raise AttributeError(f"module 'xlabel.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return __all__
