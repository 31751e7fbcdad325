"""Classifiers for frames with the scikit-learn estimator contract: MLPs on features or
pixels, a small CNN, leak-free splits that hold every class, evaluation for imbalanced
classes, safe persistence and Grad-CAM.

>>> from xlabel.models import evaluate
>>> evaluate(["good", "bad"], ["good", "good"], classes=("good", "bad")).balanced_accuracy
0.5
>>> from xlabel.models import registry
>>> registry.names()[:3]
('mlp-features', 'mlp-pixels', 'cnn')

Models: :class:`FeatureMLP` (kind "mlp-features"), :class:`PixelMLP` ("mlp-pixels"),
:class:`CNNClassifier` ("cnn-global"), :class:`~xlabel.models.pixelnet.PixelCNN` ("cnn"),
:class:`~xlabel.models.pixelnet.SupervisedAEClassifier` ("sae"); ``registry.get(kind)``
gives the class of a kind.
PyTorch is optional: the CNN and ``gradcam`` import it on first use and raise
:class:`~xlabel.errors.MissingDependencyError` (saying what to install) when it is absent.
"""

from __future__ import annotations

import importlib

from . import registry  # noqa: F401
from .evaluate import Evaluation, HeldOutWarning, encode_labels, evaluate  # noqa: F401
from .split import split  # noqa: F401

_LAZY = {
    "Model": "xlabel.models.base",
    "FeatureModel": "xlabel.models.base",
    "FrameModel": "xlabel.models.base",
    "FeatureMLP": "xlabel.models.mlp",
    "PixelMLP": "xlabel.models.mlp",
    "train_mlp": "xlabel.models.mlp",
    "train_pixel_mlp": "xlabel.models.mlp",
    "PRESETS": "xlabel.models.mlp",
    "DEFAULT_COLUMNS": "xlabel.models.mlp",
    "BASELINE_COLUMNS": "xlabel.models.mlp",
    "CNNClassifier": "xlabel.models.cnn",
    "train_cnn": "xlabel.models.cnn",
    "FrameCNN": "xlabel.models.cnn",
    "save_model": "xlabel.models.persist",
    "load_model": "xlabel.models.persist",
    "MIN_FRAMES_PER_CLASS": "xlabel.models.data",
    "cam": "xlabel.models.gradcam",
}
#: Old names kept for notebooks and scripts: ``TrainedModel`` is the base of every model.
_ALIASES = {"TrainedModel": ("xlabel.models.base", "Model")}

__all__ = sorted([*_LAZY, *_ALIASES, "Evaluation", "HeldOutWarning", "evaluate",
                  "encode_labels", "split", "registry", "KINDS"])


def __getattr__(name):
    if name == "gradcam":
        return importlib.import_module("xlabel.models.gradcam")
    if name == "KINDS":
        return registry.names()
    if name in _ALIASES:
        module, attr = _ALIASES[name]
        return getattr(importlib.import_module(module), attr)
    if name not in _LAZY:
        raise AttributeError(f"module 'xlabel.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return __all__
