"""scikit-learn MLPs: on the feature table (``train_mlp``) and on binned frames (``train_pixel_mlp``).

Adam, cross-entropy, ReLU, early stopping; scaling (and NaN imputation) live inside
the Pipeline, so a saved model carries its preprocessing. Classes are balanced with
sample weights (imbalance is the normal case).

>>> sorted(PRESETS)
['256-128-64', '512-256-128']
>>> build_pipeline("256-128-64")[-1].hidden_layer_sizes
(256, 128, 64)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ModelError
from .data import class_weights, concat_prepared, resolve_labels
from .trained import TrainedModel

__all__ = ["PRESETS", "DEFAULT_COLUMNS", "BASELINE_COLUMNS", "build_pipeline", "train_mlp",
           "train_pixel_mlp"]

#: The two architectures of the PETRA-III study (hidden layer sizes).
PRESETS = {"512-256-128": (512, 256, 128), "256-128-64": (256, 128, 64)}
#: Default feature columns: flux relative to its scan's running median generalizes across
#: scans of different exposure; raw mean, std or flux_rank tie a model to the training
#: scans' levels and bad-frame fractions (measured in bench/bench_models.py).
DEFAULT_COLUMNS = ("flux_rel", "frac_saturated")
#: The domain's plain baseline: raw mean flux only.
BASELINE_COLUMNS = ("mean",)


def build_pipeline(preset="512-256-128", seed=0, max_iter=300, early_stopping=True) -> Pipeline:
    """Imputer (NaN -> column median), StandardScaler and an MLPClassifier of ``preset``.

    ``preset``: a name of :data:`PRESETS` or a tuple of hidden layer sizes.
    ``early_stopping``: stop when the score on 15% held-out frames stops improving;
    False: train until the training loss stops improving (``max_iter`` at most).
    """
    hidden = _hidden_layers(preset)
    mlp = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam",
                        early_stopping=early_stopping, validation_fraction=0.15,
                        n_iter_no_change=15,
                        max_iter=max_iter, random_state=seed)
    return Pipeline([("impute", SimpleImputer(strategy="median")),
                     ("scale", StandardScaler()), ("mlp", mlp)])


def _hidden_layers(preset):
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ModelError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[preset]
    hidden = tuple(int(h) for h in preset)
    if not hidden or min(hidden) < 1:
        raise ModelError(f"hidden layer sizes must be positive, got {preset!r}")
    return hidden


def _fit(pipeline, matrix, labels, n_classes):
    keep = labels >= 0
    if keep.sum() < 4 or len(np.unique(labels[keep])) < 2:
        raise ModelError("training needs at least 4 labeled frames of at least two classes")
    weights = class_weights(labels[keep], n_classes)[labels[keep]]
    pipeline.fit(matrix[keep], labels[keep], mlp__sample_weight=weights)
    return pipeline


def train_mlp(features: pd.DataFrame, labels, preset="512-256-128", columns=None,
              classes=("good", "bad"), seed=0, max_iter=300,
              early_stopping=False) -> TrainedModel:
    """MLP on feature-table columns; returns a TrainedModel of kind "mlp-features".

    No early stopping by default: good and bad frames are separated by a wide gap in
    flux_rel, so the held-out accuracy is perfect after a few epochs and early stopping
    ends training with the boundary next to the bad frames (flux_rel 0.75-0.85, seed
    dependent); training on until the loss settles moves it to the middle of the gap
    (0.865 on the bundled samples), which generalizes to new scans (bench/bench_models.py).

    Columns pass through ``sign(x) log1p(|x|)`` first (heavy tails), then the Pipeline.
    ``features``: a ``frame_stats`` table; ``labels``: one per row (names, indices with
    ``-1`` = unlabeled, or a LabelStore); ``columns``: default :data:`DEFAULT_COLUMNS`.

    >>> model = train_mlp(table, truth["label"], preset="256-128-64")   # doctest: +SKIP
    """
    labels, classes = resolve_labels(labels, classes)
    columns = tuple(DEFAULT_COLUMNS if columns is None else columns)
    if len(labels) != len(features):
        raise ModelError(f"{len(features)} feature rows but {len(labels)} labels")
    model = TrainedModel("mlp-features", classes,
                         build_pipeline(preset, seed, max_iter, early_stopping),
                         columns=columns, preprocessing={"transform": "signed-log"},
                         info={"preset": _preset_name(preset)})
    _fit(model.estimator, model.feature_matrix(features), labels, len(classes))
    return model


def train_pixel_mlp(frames, labels, preset="256-128-64", size=32, classes=("good", "bad"),
                    seed=0, max_iter=300) -> TrainedModel:
    """MLP on frames binned to ``size`` x ``size`` and log-scaled (kind "mlp-pixels").

    ``frames``: array ``(n, H, W)``, FrameSource, path or a list of them (concatenated).
    """
    labels, classes = resolve_labels(labels, classes)
    stack, frame_shape = concat_prepared(frames, size)
    if len(stack) != len(labels):
        raise ModelError(f"{len(stack)} frames but {len(labels)} labels")
    model = TrainedModel("mlp-pixels", classes, build_pipeline(preset, seed, max_iter),
                         frame_shape=frame_shape, preprocessing={"size": size},
                         info={"preset": _preset_name(preset)})
    _fit(model.estimator, stack.reshape(len(stack), -1), labels, len(classes))
    return model


def _preset_name(preset):
    return preset if isinstance(preset, str) else "-".join(str(h) for h in _hidden_layers(preset))
