"""The one list of model kinds: name -> estimator class, used by the CLI and by persistence.

Built-in kinds are listed here as ``"module:Class"`` strings so that naming them (e.g. in
``xlabel train --help``) imports neither scikit-learn nor PyTorch; a class is imported
on first use. Any class decorated with :func:`register` joins the registry too.

>>> "mlp-features" in names()
True
>>> get("mlp-features").__name__
'FeatureMLP'
"""

from __future__ import annotations

import importlib

from ..errors import ModelArgumentError, ModelError

__all__ = ["register", "get", "names"]

#: Built-in kinds (adding a model: write its class with ``@register("kind")`` in one new
#: module of xlabel/models and add its line here).
_BUILTIN = {
    "mlp-features": "xlabel.models.mlp:FeatureMLP",
    "mlp-pixels": "xlabel.models.mlp:PixelMLP",
    "cnn": "xlabel.models.pixelnet:PixelCNN",
    "sae": "xlabel.models.pixelnet:SupervisedAEClassifier",
    "cnn-global": "xlabel.models.cnn:CNNClassifier",
    "tags-cnn": "xlabel.models.multilabel:TagCNN",
    "tags-polar": "xlabel.models.multilabel:TagPolarCNN",
    "tags-joint": "xlabel.models.multilabel:TagJointCNN",
}
_CLASSES: dict = {}


def register(kind: str):
    """Class decorator: make ``cls`` the model of ``kind`` (sets ``cls.kind``).

    A built-in kind may only be registered by the class its entry names.
    """
    def decorate(cls):
        expected = _BUILTIN.get(kind)
        if expected is not None and expected != f"{cls.__module__}:{cls.__qualname__}":
            raise ModelArgumentError(f"model kind {kind!r} belongs to {expected}")
        cls.kind = kind
        _CLASSES[kind] = cls
        return cls
    return decorate


def names() -> tuple:
    """Every registered kind (built-ins first), without importing any model module."""
    return tuple(dict.fromkeys([*_BUILTIN, *_CLASSES]))


def get(kind: str):
    """The estimator class of ``kind`` (imported on first use); ModelError for an unknown kind."""
    if kind not in _CLASSES and kind in _BUILTIN:
        module, _, name = _BUILTIN[kind].partition(":")
        getattr(importlib.import_module(module), name)
    if kind not in _CLASSES:
        raise ModelArgumentError(f"unknown model kind {kind!r}; expected one of {names()}")
    return _CLASSES[kind]
