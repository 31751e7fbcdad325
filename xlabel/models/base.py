"""Base classes of xlabel's classifiers: the scikit-learn estimator contract for frames.

Every model is an estimator: parameters in ``__init__`` (``get_params``/``clone`` work),
``fit(X, y, groups=None)``, ``predict``, ``predict_proba`` and ``classes_``.
Two families share :class:`Model`:

- :class:`FeatureModel`: ``X`` is a ``frame_stats`` table. A row with a NaN/inf feature
  is never given a confident class: ``predict_proba`` returns NaN for it, ``predict``
  the model's ``unsafe_class`` and :meth:`FeatureModel.explain_unsafe` says why.
- :class:`FrameModel`: ``X`` is frames (array ``(n, H, W)``, FrameSource, path or a list
  of them). Frames of another shape or kind of values, or frames without a finite
  pixel, raise ModelError naming the scan.

A subclass implements ``_fit_matrix``/``_proba_matrix`` (features) or
``_fit_prepared``/``_proba_block`` (frames) and ``_save_state``/``_load_state``, and
registers itself with :func:`xlabel.models.registry.register`.

>>> from xlabel.models import FeatureMLP
>>> FeatureMLP(preset="256-128-64").get_params()["preset"]
'256-128-64'
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from ..errors import ModelArgumentError, ModelError
from .data import check_class_counts, concat_prepared, dtype_kind, resolve_labels, scan_name
from .frames import as_source, binned_shape, iter_prepared

__all__ = ["Model", "FeatureModel", "FrameModel", "signed_log"]


class Model(ClassifierMixin, BaseEstimator):
    """What every xlabel classifier has: ``classes_``, ``predict``, ``info`` and persistence hooks.

    ``kind`` (class attribute) is the registry name; ``uses_frames`` says whether
    ``predict`` wants frames (True) or a feature table (False).
    """

    kind: str = ""
    uses_frames: bool = False

    @property
    def classes(self) -> tuple:
        """Class names, the column order of ``predict_proba`` (``tuple(classes_)``)."""
        self._require_fitted()
        return tuple(self.classes_)

    @property
    def info(self) -> dict:
        """Free metadata saved with the model (preset, training scans, held-out scores...)."""
        if "info_" not in self.__dict__:
            self.info_ = {}
        return self.info_

    def predict(self, X, progress=False) -> np.ndarray:
        """Predicted class names (object array), one per frame."""
        return self.classes_from_proba(self.predict_proba(X, progress=progress))

    def classes_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Class names of ``predict_proba`` rows (what ``predict`` returns, without computing
        the probabilities again); a NaN row gets the model's unsafe class."""
        proba = np.asarray(proba, dtype=np.float64)
        unsafe = np.isnan(proba).any(axis=1)
        out = np.asarray(self.classes_, dtype=object)[np.nan_to_num(proba, nan=-1).argmax(axis=1)]
        if unsafe.any():
            out[unsafe] = self._unsafe_class()
        return out

    def explain_unsafe(self, X) -> np.ndarray:
        """Why each row gets the unsafe class without a probability (``""``: classified)."""
        self._require_fitted()
        return np.full(len(X), "", dtype=object)

    def _unsafe_class(self) -> str:
        raise ModelError(f"a {type(self).__name__} gave no probability for some frames")

    def _require_fitted(self):
        if "classes_" not in self.__dict__:
            raise ModelError(f"this {type(self).__name__} is not trained yet: call fit() first")

    def _labels(self, y, n_rows: int):
        codes, classes = resolve_labels(y, self.class_names)
        if len(codes) != n_rows:
            raise ModelArgumentError(f"{n_rows} frames but {len(codes)} labels")
        return codes, classes

    # ---------------------------------------------------------------- persistence hooks
    def _save_state(self, folder) -> dict:
        """Write the fitted parameters into ``folder``; return the JSON-able rest."""
        return {"classes": list(self.classes_)}

    def _load_state(self, folder, state: dict):
        """Restore what :meth:`_save_state` wrote (files are checked by xlabel.models.persist)."""
        self.classes_ = np.asarray(state["classes"], dtype=object)


class FeatureModel(Model):
    """A classifier of ``frame_stats`` rows (subclasses set ``columns`` and ``unsafe_class``)."""

    uses_frames = False

    def fit(self, X: pd.DataFrame, y, groups=None):
        """Train on the feature table ``X`` and labels ``y`` (names, indices, ``-1``/``""``
        unlabeled, or a LabelStore). Rows with a NaN/inf feature are left out, with a
        warning saying how many. ``groups`` is accepted for the common signature."""
        matrix = self._matrix(X, self._fit_columns())
        codes, classes = self._labels(y, len(matrix))
        finite = np.isfinite(matrix).all(axis=1)
        dropped = int((~finite & (codes >= 0)).sum())
        if dropped:
            warnings.warn(f"{dropped} labeled row(s) with NaN/inf features left out of training",
                          stacklevel=2)
        codes = np.where(finite, codes, -1)
        check_class_counts(codes, classes, X["scan"] if "scan" in X.columns else None)
        self.unsafe_class_ = self._resolve_unsafe(classes)
        self.classes_ = np.asarray(classes, dtype=object)
        self.columns_ = tuple(self._fit_columns())
        self.info_ = {}
        self._fit_matrix(matrix[codes >= 0], codes[codes >= 0])
        return self

    def predict_proba(self, X, progress=False) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))``; NaN rows where a feature is NaN/inf."""
        matrix = self.feature_matrix(X)
        finite = np.isfinite(matrix).all(axis=1)
        proba = np.full((len(matrix), len(self.classes_)), np.nan)
        if finite.any():
            proba[finite] = self._proba_matrix(matrix[finite])
        return proba

    def predict(self, X, progress=False) -> np.ndarray:
        """Class names; rows with a NaN/inf feature get ``unsafe_class_`` (see explain_unsafe)."""
        return super().predict(X, progress)

    def _unsafe_class(self) -> str:
        return self.unsafe_class_

    def explain_unsafe(self, X) -> np.ndarray:
        """Why each row is predicted ``unsafe_class_`` without a probability: ``""`` for rows
        the model classified, else e.g. ``"no usable feature: flux_rel=nan"``."""
        self._require_fitted()
        table = self._matrix(X, self.columns_, transform=False)
        reasons = np.full(len(table), "", dtype=object)
        for row in np.flatnonzero(~np.isfinite(table).all(axis=1)):
            bad = [f"{c}={v}" for c, v in zip(self.columns_, table[row]) if not np.isfinite(v)]
            reasons[row] = "no usable feature: " + ", ".join(bad)
        return reasons

    def feature_matrix(self, X) -> np.ndarray:
        """The model's feature columns of ``X`` as the float matrix it sees (clear error if missing)."""
        self._require_fitted()
        return self._matrix(X, self.columns_)

    def _matrix(self, table, columns, transform=True) -> np.ndarray:
        if not isinstance(table, pd.DataFrame):
            raise ModelArgumentError("a feature model needs a frame_stats table (pandas DataFrame)")
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ModelArgumentError(f"feature table lacks the model's columns {missing}; "
                                     f"the model was trained on {list(columns)}")
        matrix = table.loc[:, list(columns)].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return self._transform(matrix) if transform else matrix

    def _transform(self, matrix):
        """Feature transform applied before the estimator (identity; MLPs use signed_log)."""
        return matrix

    def _fit_columns(self) -> tuple:
        return tuple(self.columns)

    def _resolve_unsafe(self, classes) -> str:
        unsafe = "bad" if self.unsafe_class is None else str(self.unsafe_class)
        if unsafe not in classes:
            raise ModelArgumentError(
                f"unsafe_class {unsafe!r} is not one of the classes {classes}: "
                "pass unsafe_class= (the class given to frames a model cannot judge)")
        return unsafe

    def _save_state(self, folder) -> dict:
        return {**super()._save_state(folder), "columns": list(self.columns_),
                "unsafe_class": self.unsafe_class_}

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        self.columns_ = tuple(state["columns"])
        self.unsafe_class_ = str(state["unsafe_class"])


class TorchNetworkMixin:
    """The ``network`` property of xlabel's PyTorch frame models (set as ``network_`` by fit)."""

    @property
    def network(self):
        """The trained ``torch.nn.Module`` (Grad-CAM explains its conv layers)."""
        self._require_fitted()
        return self.network_


class FrameModel(Model):
    """A classifier of frames (subclasses set ``size``, the binned frame size)."""

    uses_frames = True

    def fit(self, X, y, groups=None):
        """Train on frames ``X`` (one scan or a list of scans, concatenated in order) and
        labels ``y`` covering all of them. ``groups``: scan id per frame (default: the
        scans of ``X``), so validation frames come from other scans where possible."""
        stack, frame_shape, kind, scans = concat_prepared(X, self.size)
        codes, classes = self._labels(y, len(stack))
        check_class_counts(codes, classes, scans)
        self.classes_ = np.asarray(classes, dtype=object)
        self.frame_shape_, self.dtype_kind_ = tuple(int(s) for s in frame_shape), kind
        self.info_ = {}
        groups = scans if groups is None else np.asarray(groups)
        if len(groups) != len(stack):
            raise ModelArgumentError(f"{len(groups)} groups for {len(stack)} frames")
        self._fit_prepared(stack, codes, groups)
        return self

    def predict_proba(self, X, progress=False) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))``, computed chunk by chunk."""
        source = self.check_frames(X)
        blocks = self._iter_blocks(source)
        if progress:
            blocks = _progress(blocks, len(source), str(getattr(source, "name", "frames")))
        parts = [self._proba_block(block) for _, block in blocks]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)))

    def _iter_blocks(self, source):
        """``(start, prepared block)`` of a source, as the network takes them."""
        return iter_prepared(source, self.size)

    def check_frames(self, frames):
        """A FrameSource for ``frames``; ModelError naming the scan when its frame shape or
        kind of values (integer counts / float) is not the one the model was trained on."""
        self._require_fitted()
        source = as_source(frames)
        where = {"path": scan_name(source),
                 "dataset": getattr(source, "dataset", None)}
        if tuple(source.frame_shape) != self.frame_shape_:
            raise ModelArgumentError(
                f"frames of shape {tuple(source.frame_shape)} do not fit this model "
                f"(trained on frames of shape {self.frame_shape_})", **where)
        if dtype_kind(source.dtype) != self.dtype_kind_:
            raise ModelArgumentError(
                f"frames of {dtype_kind(source.dtype)} values ({source.dtype}) do "
                f"not fit this model (trained on {self.dtype_kind_} values)", **where)
        return source

    def explain_unsafe(self, X) -> np.ndarray:
        """All ``""``: a frame model raises ModelError instead of guessing (see check_frames)."""
        self._require_fitted()
        return np.full(len(as_source(X)), "", dtype=object)

    def prepared(self, frames) -> np.ndarray:
        """All frames of ``frames`` preprocessed as the model sees them ``(n, h, w)``."""
        source = self.check_frames(frames)
        parts = [block for _, block in iter_prepared(source, self.size)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.input_shape()), np.float32)

    def input_shape(self) -> tuple[int, int]:
        """Shape of one preprocessed frame fed to the model."""
        return binned_shape(self.frame_shape_, self.size)

    def _save_state(self, folder) -> dict:
        return {**super()._save_state(folder), "frame_shape": list(self.frame_shape_),
                "dtype_kind": self.dtype_kind_}

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        self.frame_shape_ = tuple(int(s) for s in state["frame_shape"])
        self.dtype_kind_ = str(state["dtype_kind"])


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: tames heavy tails (a saturated frame's flux_rel can be 1e6)
    that would otherwise dominate the scaler and the network.

    >>> signed_log(np.array([-1.0, 0.0, np.e - 1])).round(3).tolist()
    [-0.693, 0.0, 1.0]
    """
    return np.sign(values) * np.log1p(np.abs(values))


def _progress(blocks, total, name):
    from tqdm.auto import tqdm
    bar = tqdm(total=total, unit="frame", desc=name)

    def counted():
        with bar:
            for start, block in blocks:
                yield start, block
                bar.update(len(block))
    return counted()
