"""Evaluation of a classifier on held-out frames, built for imbalanced classes.

>>> ev = evaluate(["good", "good", "bad", "good"], ["good", "bad", "bad", "good"],
...               classes=("good", "bad"))
>>> ev.confusion.loc["good", "bad"], ev.per_class.loc["bad", "recall"], ev.misclassified.tolist()
(np.int64(1), np.float64(1.0), [1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelError

__all__ = ["Evaluation", "evaluate", "encode_labels"]


@dataclass(frozen=True)
class Evaluation:
    """Scores of predictions against true labels.

    ``confusion``: DataFrame, rows = true class, columns = predicted class (counts).
    ``per_class``: DataFrame indexed by class with ``precision``, ``recall``, ``f1``,
    ``support`` (0.0 where undefined, as scikit-learn's ``zero_division=0``).
    ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
    ``misclassified``: positions (into ``y_true``) where prediction and truth differ.
    """

    confusion: pd.DataFrame
    per_class: pd.DataFrame
    balanced_accuracy: float
    misclassified: np.ndarray
    classes: tuple

    @property
    def accuracy(self) -> float:
        """Plain accuracy (misleading on imbalanced data; prefer ``balanced_accuracy``)."""
        total = int(self.confusion.to_numpy().sum())
        return float(np.trace(self.confusion.to_numpy()) / total) if total else float("nan")

    def summary(self) -> str:
        """A short text report (what ``xlabel train`` prints)."""
        lines = [f"balanced accuracy {self.balanced_accuracy:.4f}, "
                 f"{len(self.misclassified)} misclassified of "
                 f"{int(self.confusion.to_numpy().sum())} frames",
                 "confusion (rows: true, columns: predicted):",
                 self.confusion.to_string(),
                 self.per_class.to_string(float_format=lambda v: f"{v:.4f}")]
        return "\n".join(lines)


def encode_labels(labels, classes) -> np.ndarray:
    """Class names or indices -> int array of indices into ``classes`` (-1: unlabeled).

    Unlabeled entries are ``-1``, ``None``, ``""`` or NaN. Unknown names raise ModelError.
    """
    classes = tuple(classes)
    values = np.asarray(labels, dtype=object).ravel()
    lookup = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        out[i] = _encode_one(value, lookup, len(classes))
    return out


def _encode_one(value, lookup, n_classes) -> int:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return -1
    if isinstance(value, str):
        if value not in lookup:
            raise ModelError(f"unknown class {value!r}; classes are {tuple(lookup)}")
        return lookup[value]
    index = int(value)
    if not -1 <= index < n_classes:
        raise ModelError(f"class index {index} out of range for {n_classes} classes")
    return index


def evaluate(y_true, y_pred, classes) -> Evaluation:
    """Confusion matrix, per-class precision/recall/F1, balanced accuracy, misclassified frames.

    ``y_true`` and ``y_pred``: class names or indices into ``classes`` (same length).

    >>> ev = evaluate([0, 0, 0, 1], [0, 0, 1, 1], classes=("good", "bad"))
    >>> round(ev.balanced_accuracy, 4), ev.per_class.loc["bad", "precision"]
    (0.8333, np.float64(0.5))
    """
    classes = tuple(classes)
    true = encode_labels(y_true, classes)
    pred = encode_labels(y_pred, classes)
    if len(true) != len(pred):
        raise ModelError(f"y_true has {len(true)} entries but y_pred has {len(pred)}")
    if (true < 0).any() or (pred < 0).any():
        raise ModelError("evaluate() needs a label for every frame (found unlabeled entries)")
    n = len(classes)
    matrix = np.bincount(true * n + pred, minlength=n * n).reshape(n, n)
    confusion = pd.DataFrame(matrix, index=pd.Index(classes, name="true"),
                             columns=pd.Index(classes, name="predicted"))
    per_class = _per_class(matrix, classes)
    present = matrix.sum(axis=1) > 0
    balanced = float(per_class["recall"].to_numpy()[present].mean()) if present.any() else float("nan")
    return Evaluation(confusion, per_class, balanced, np.flatnonzero(true != pred), classes)


def _per_class(matrix: np.ndarray, classes) -> pd.DataFrame:
    hits = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                        index=pd.Index(classes, name="class"))
