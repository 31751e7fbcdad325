"""Evaluation of a classifier on held-out frames, built for imbalanced classes.

The scores are scikit-learn's (``confusion_matrix``, ``precision_recall_fscore_support``,
``balanced_accuracy_score``); this module adds class names, the frames to look at, the
per-scan scores with the worst scan, and a loud :class:`HeldOutWarning` when a class
has no frame in the evaluated set (its recall is then undefined, shown as NaN).

>>> ev = evaluate(["good", "good", "bad", "good"], ["good", "bad", "bad", "good"],
...               classes=("good", "bad"))
>>> ev.confusion.loc["good", "bad"], ev.per_class.loc["bad", "recall"], ev.misclassified.tolist()
(np.int64(1), np.float64(1.0), [1])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics

from ..errors import ModelError

__all__ = ["Evaluation", "evaluate", "encode_labels", "HeldOutWarning"]


class HeldOutWarning(UserWarning):
    """A held-out evaluation cannot show what it claims (a class has no frame in it)."""


@dataclass(frozen=True)
class Evaluation:
    """Scores of predictions against true labels.

    ``confusion``: DataFrame, rows = true class, columns = predicted class (counts).
    ``per_class``: DataFrame indexed by class with ``precision``, ``recall``, ``f1``,
    ``support`` (NaN where undefined: no frame of the class, or none predicted).
    ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
    ``misclassified``: positions (into ``y_true``) where prediction and truth differ.
    ``missing``: classes without any frame in ``y_true`` (their recall means nothing).
    ``per_scan``: (given ``groups``) one row per scan: ``frames``, ``misclassified``,
    ``balanced_accuracy`` and ``recall_<class>``, worst scan first.
    """

    confusion: pd.DataFrame
    per_class: pd.DataFrame
    balanced_accuracy: float
    misclassified: np.ndarray
    classes: tuple
    missing: tuple = ()
    per_scan: pd.DataFrame | None = None

    @property
    def accuracy(self) -> float:
        """Plain accuracy (misleading on imbalanced data; prefer ``balanced_accuracy``)."""
        total = int(self.confusion.to_numpy().sum())
        return float(np.trace(self.confusion.to_numpy()) / total) if total else float("nan")

    @property
    def worst_scan(self):
        """Name of the scan with the lowest balanced accuracy (None without ``groups``)."""
        if self.per_scan is None or not len(self.per_scan):
            return None
        return self.per_scan.index[0]

    def summary(self) -> str:
        """A short text report (what ``xlabel train`` prints)."""
        lines = [f"balanced accuracy {self.balanced_accuracy:.4f}, "
                 f"{len(self.misclassified)} misclassified of "
                 f"{int(self.confusion.to_numpy().sum())} frames"]
        lines += [f"WARNING: {_missing_text(self.missing)}"] if self.missing else []
        lines += ["confusion (rows: true, columns: predicted):", self.confusion.to_string(),
                  self.per_class.to_string(float_format=lambda v: f"{v:.4f}")]
        if self.per_scan is not None:
            lines += [f"per scan (worst first: {self.worst_scan}):",
                      self.per_scan.to_string(float_format=lambda v: f"{v:.4f}")]
        return "\n".join(lines)


def _missing_text(missing) -> str:
    return (f"no frame of class {', '.join(map(repr, missing))} in the evaluated frames: "
            "its recall is undefined and the balanced accuracy covers the other classes only")


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


def evaluate(y_true, y_pred, classes, groups=None) -> Evaluation:
    """Confusion matrix, per-class precision/recall/F1, balanced accuracy, misclassified frames.

    ``y_true`` and ``y_pred``: class names or indices into ``classes`` (same length).
    ``groups``: optional scan name per frame, for :attr:`Evaluation.per_scan`.
    A class absent from ``y_true`` raises a :class:`HeldOutWarning`.

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
    index = list(range(len(classes)))
    confusion = pd.DataFrame(metrics.confusion_matrix(true, pred, labels=index),
                             index=pd.Index(classes, name="true"),
                             columns=pd.Index(classes, name="predicted"))
    per_class = _per_class(true, pred, classes)
    missing = tuple(c for c, n in zip(classes, per_class["support"]) if n == 0)
    if missing and len(true):
        warnings.warn(_missing_text(missing), HeldOutWarning, stacklevel=2)
    per_scan = None if groups is None else _per_scan(true, pred, classes, groups)
    return Evaluation(confusion, per_class, _balanced(true, pred),
                      np.flatnonzero(true != pred), classes, missing, per_scan)


def _balanced(true, pred) -> float:
    if not len(true):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes predicted but absent: ours says so
        return float(metrics.balanced_accuracy_score(true, pred))


def _per_class(true, pred, classes) -> pd.DataFrame:
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        true, pred, labels=list(range(len(classes))), zero_division=np.nan)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                        index=pd.Index(classes, name="class"))


def _per_scan(true, pred, classes, groups) -> pd.DataFrame:
    groups = np.asarray(groups, dtype=object)
    if len(groups) != len(true):
        raise ModelError(f"{len(groups)} groups for {len(true)} frames")
    rows = {}
    for scan in pd.unique(groups):
        inside = groups == scan
        recall = _per_class(true[inside], pred[inside], classes)["recall"]
        rows[scan] = {"frames": int(inside.sum()),
                      "misclassified": int((true[inside] != pred[inside]).sum()),
                      "balanced_accuracy": _balanced(true[inside], pred[inside]),
                      **{f"recall_{c}": recall[c] for c in classes}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "scan"
    return table.sort_values(["balanced_accuracy", "misclassified"],
                             ascending=[True, False], kind="stable")
