"""xlabel: explore and label X-ray detector frames in JupyterLab.

The loop: raw scans -> per-frame features -> clusters -> labels corrected by hand
(lasso) -> trained classifier -> explanations -> filtering new scans.

>>> import xlabel
>>> src = xlabel.open_scan(xlabel.synth.make_scan(n_frames=20, seed=1).frames)
>>> len(src), src.frame_shape
(20, (64, 64))
>>> table = xlabel.frame_stats(src)
>>> table.shape[0], list(table.columns[:4])
(20, ['scan', 'frame', 'mean', 'sum'])
"""

from __future__ import annotations

import importlib

from .errors import (  # noqa: F401  (re-exported)
    ClusterError,
    FeatureError,
    JournalError,
    LabelError,
    ModelError,
    ScanError,
    XLabelError,
)

__version__ = "0.1.0"

# Public names resolved lazily, so `import xlabel` stays fast and optional
# dependencies (torch, dask) are imported only when used.
_LAZY = {
    "open_scan": ("xlabel.io", "open_scan"),
    "FrameSource": ("xlabel.io", "FrameSource"),
    "frame_stats": ("xlabel.features", "frame_stats"),
    "LabelStore": ("xlabel.labels", "LabelStore"),
    "synth": ("xlabel.synth", None),
    "cluster": ("xlabel.cluster", None),
    "models": ("xlabel.models", None),
    "widgets": ("xlabel.widgets", None),
    "samples": ("xlabel.samples", None),
}

__all__ = sorted(_LAZY) + ["XLabelError", "ScanError", "FeatureError", "ClusterError",
                           "LabelError", "JournalError", "ModelError", "__version__"]


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'xlabel' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __dir__():
    return __all__
