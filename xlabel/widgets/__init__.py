"""Thin views over the LabelStore: flux scatter with lasso, cluster comparison, galleries,
confusion matrix, Grad-CAM overlays. A widget never owns label state."""

from __future__ import annotations

import importlib

_LAZY = {
    "FluxScatter": "xlabel.widgets.scatter",
    "ClusterComparison": "xlabel.widgets.comparison",
    "FrameGallery": "xlabel.widgets.gallery",
    "ConfusionMatrixViewer": "xlabel.widgets.confusion",
    "PredictionScatter": "xlabel.widgets.confusion",
    "GradCAMOverlay": "xlabel.widgets.gradcam_view",
    "ReviewQueue": "xlabel.widgets.review",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'xlabel.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return __all__
