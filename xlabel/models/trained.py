"""``TrainedModel``: one wrapper for every xlabel classifier, used by notebooks and the CLI.

A model knows its class names, its input (feature columns, or frame shape and
preprocessing) and predicts class names and probabilities:

>>> model.predict(table)              # doctest: +SKIP  (kind "mlp-features")
array(['bad', 'good', ...], dtype=object)
>>> model.predict_proba(source)[:, 1]  # doctest: +SKIP  (kind "mlp-pixels" / "cnn")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ModelError
from .frames import as_source, binned_shape, iter_prepared

__all__ = ["TrainedModel", "KINDS", "signed_log"]

KINDS = ("mlp-features", "mlp-pixels", "cnn")


@dataclass
class TrainedModel:
    """A trained classifier with everything needed to apply it to new data.

    ``kind``: "mlp-features" (input: a ``frame_stats`` table), "mlp-pixels" or "cnn"
    (input: frames: an array ``(n, H, W)``, a FrameSource or a path).
    ``classes``: class names (column order of ``predict_proba``).
    ``columns``: feature columns (mlp-features) or ``()``.
    ``frame_shape``: frame shape the model was trained on (frame models) or ``None``.
    ``preprocessing``: dict (``size`` of the binned frame; CNN: ``mean``/``std``).
    ``estimator``: the scikit-learn Pipeline (MLPs) or the ``torch.nn.Module`` (CNN).
    ``info``: free metadata (preset, training scans, held-out evaluation...).
    """

    kind: str
    classes: tuple
    estimator: object
    columns: tuple = ()
    frame_shape: tuple | None = None
    preprocessing: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        self.classes = tuple(str(c) for c in self.classes)
        self.columns = tuple(self.columns)
        if self.frame_shape is not None:
            self.frame_shape = tuple(int(s) for s in self.frame_shape)

    @property
    def uses_frames(self) -> bool:
        """True when the model reads pixels (``predict`` wants frames, not a table)."""
        return self.kind != "mlp-features"

    @property
    def network(self):
        """The ``torch.nn.Module`` of a CNN model (for Grad-CAM)."""
        if self.kind != "cnn":
            raise ModelError(f"a {self.kind!r} model has no neural network layers for Grad-CAM")
        return self.estimator

    def predict(self, data, progress=False) -> np.ndarray:
        """Predicted class names (object array), one per frame."""
        proba = self.predict_proba(data, progress=progress)
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]

    def predict_proba(self, data, progress=False) -> np.ndarray:
        """Class probabilities ``(n, len(classes))``, columns in the order of ``classes``."""
        if self.kind == "mlp-features":
            return self._sklearn_proba(self.feature_matrix(data))
        source = self.check_frames(data)
        blocks = [self._frame_block_proba(block)
                  for _, block in _progress(iter_prepared(source, self.preprocessing.get("size")),
                                            progress, len(source), source)]
        if not blocks:
            return np.zeros((0, len(self.classes)))
        return np.concatenate(blocks)

    def feature_matrix(self, table: pd.DataFrame) -> np.ndarray:
        """The model's feature columns of ``table`` as a float matrix (clear error if missing)."""
        if not isinstance(table, pd.DataFrame):
            raise ModelError("a feature model needs a frame_stats table (pandas DataFrame)")
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise ModelError(f"feature table lacks the model's columns {missing}; "
                             f"the model was trained on {list(self.columns)}")
        matrix = table.loc[:, list(self.columns)].to_numpy(dtype=np.float64)
        if self.preprocessing.get("transform") == "signed-log":
            matrix = signed_log(matrix)
        return matrix

    def check_frames(self, frames):
        """A FrameSource for ``frames``; ModelError when its frame shape is not the model's."""
        source = as_source(frames)
        if self.frame_shape is not None and tuple(source.frame_shape) != self.frame_shape:
            raise ModelError(f"frames of shape {tuple(source.frame_shape)} do not fit this model "
                             f"(trained on frames of shape {self.frame_shape})",
                             path=getattr(source, "path", None),
                             dataset=getattr(source, "dataset", None))
        return source

    def input_shape(self) -> tuple[int, int]:
        """Shape of one preprocessed frame fed to the model."""
        return binned_shape(self.frame_shape, self.preprocessing.get("size"))

    def _frame_block_proba(self, block: np.ndarray) -> np.ndarray:
        if self.kind == "mlp-pixels":
            return self._sklearn_proba(block.reshape(len(block), -1))
        from .cnn import cnn_proba
        return cnn_proba(self, block)

    def _sklearn_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Pipeline probabilities spread into all classes (a class unseen in training gets 0)."""
        proba = self.estimator.predict_proba(matrix)
        full = np.zeros((len(matrix), len(self.classes)))
        full[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = proba
        return full

    def __repr__(self) -> str:
        what = f"columns={list(self.columns)}" if not self.uses_frames else \
            f"frame_shape={self.frame_shape}, size={self.preprocessing.get('size')}"
        return f"TrainedModel(kind={self.kind!r}, classes={list(self.classes)}, {what})"


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: tames heavy tails (a saturated frame's flux_rel can be 1e6)
    that would otherwise dominate the scaler and the network.

    >>> signed_log(np.array([-1.0, 0.0, np.e - 1])).round(3).tolist()
    [-0.693, 0.0, 1.0]
    """
    return np.sign(values) * np.log1p(np.abs(values))


def _progress(blocks, progress, total, source):
    if not progress:
        return blocks
    from tqdm.auto import tqdm
    bar = tqdm(total=total, unit="frame", desc=str(getattr(source, "name", "frames")))

    def counted():
        with bar:
            for start, block in blocks:
                yield start, block
                bar.update(len(block))
    return counted()
