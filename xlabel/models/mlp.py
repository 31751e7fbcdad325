"""scikit-learn MLPs: on the feature table (:class:`FeatureMLP`) and on binned frames
(:class:`PixelMLP`); ``train_mlp``/``train_pixel_mlp`` build and fit them in one call.

Adam, cross-entropy, ReLU; scaling lives inside the Pipeline, so a saved model carries
its preprocessing. Classes are balanced with sample weights (imbalance is the normal
case). There is no imputer: rows with NaN features are left out of training and get
no probability at prediction (see :class:`~xlabel.models.base.FeatureModel`).

>>> sorted(PRESETS)
['256-128-64', '512-256-128']
>>> build_pipeline("256-128-64")[-1].hidden_layer_sizes
(256, 128, 64)
"""

from __future__ import annotations

import contextvars
import io
from contextlib import contextmanager, redirect_stdout

import numpy as np
import pandas as pd
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ModelArgumentError
from .base import FeatureModel, FrameModel, signed_log
from .data import class_weights
from .persist import dump_pipeline, load_pipeline
from .registry import register

__all__ = ["PRESETS", "DEFAULT_COLUMNS", "BASELINE_COLUMNS", "build_pipeline", "FeatureMLP",
           "PixelMLP", "train_mlp", "train_pixel_mlp", "fit_progress"]

#: The two architectures of the PETRA-III study (hidden layer sizes).
PRESETS = {"512-256-128": (512, 256, 128), "256-128-64": (256, 128, 64)}
#: Default feature columns (issue 11, measured in bench/bench_safe_defaults.py on the real
#: K11, APS 2-BM and Savu scans and on synthetic ramps/losses/saturation): flux relative to
#: the running median of the frames *with beam* (flux_local: ~0 inside a block of darks or
#: at a closed-shutter start, where flux_rel reads ~1 or NaN), flux relative to the scan's
#: beam-on reference (flux_scan: sees losses longer than the window) and frac_saturated.
#: Scale-free, so a model trained on one detector applies to another; raw mean, std or
#: flux_rank tie a model to the training scans' levels and bad-frame fractions.
DEFAULT_COLUMNS = ("flux_local", "flux_scan", "frac_saturated")
#: The domain's plain baseline: raw mean flux only.
BASELINE_COLUMNS = ("mean",)


def build_pipeline(preset="512-256-128", seed=0, max_iter=300, early_stopping=True) -> Pipeline:
    """StandardScaler and an MLPClassifier of ``preset``.

    ``preset``: a name of :data:`PRESETS` or a tuple of hidden layer sizes.
    ``early_stopping``: stop when the score on 15% held-out frames stops improving;
    False: train until the training loss stops improving (``max_iter`` at most).
    """
    hidden = _hidden_layers(preset)
    mlp = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam",
                        early_stopping=early_stopping, validation_fraction=0.15,
                        n_iter_no_change=15, max_iter=max_iter, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("mlp", mlp)])


def _hidden_layers(preset):
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ModelArgumentError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[preset]
    hidden = tuple(int(h) for h in preset)
    if not hidden or min(hidden) < 1:
        raise ModelArgumentError(f"hidden layer sizes must be positive, got {preset!r}")
    return hidden


def _preset_name(preset):
    return preset if isinstance(preset, str) else "-".join(str(h) for h in _hidden_layers(preset))


_FIT_PROGRESS = contextvars.ContextVar("xlabel_mlp_fit_progress", default=False)


@contextmanager
def fit_progress(enabled: bool = True):
    """Inside this block, MLP fits show a tqdm bar: one step per epoch, with the loss.

    scikit-learn's MLPClassifier has no epoch callback, and a ``partial_fit`` loop would
    restart Adam and drop the ``n_iter_no_change`` stopping rule (another result). So the
    fit runs unchanged with ``verbose=True`` and its "Iteration N, loss = x" lines, sent to
    stdout, are turned into bar steps instead of being printed (``verbose`` changes no
    number; it is switched off again before the model is saved).

    >>> import xlabel
    >>> from xlabel.synth import make_scan
    >>> scan = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(20, 10)], saturation=0)
    >>> table = xlabel.frame_stats(xlabel.open_scan(scan.frames), progress=False)
    >>> with fit_progress():  # a bar "training MLP" on stderr, one step per epoch
    ...     model = train_mlp(table, scan.truth["label"], preset="256-128-64")
    >>> list(model.classes_)
    ['good', 'bad']
    """
    token = _FIT_PROGRESS.set(bool(enabled))
    try:
        yield
    finally:
        _FIT_PROGRESS.reset(token)


class _EpochLines(io.TextIOBase):
    """A stdout stand-in: each "Iteration N, loss = x" line is one step of ``bar``."""

    def __init__(self, bar):
        self.bar, self._pending = bar, ""

    def write(self, text):
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.startswith("Iteration "):
                self.bar.set_postfix_str(f"loss {line.rpartition('=')[2].strip()}",
                                         refresh=False)
                self.bar.update(1)
        return len(text)


class _PipelineMLP:
    """Fit/predict/save of a scikit-learn Pipeline on a matrix (shared by both MLPs)."""

    def _fit_matrix(self, matrix, codes):
        # One BLAS thread: adam's 200-row minibatches are too small to gain from more, and
        # on a loaded 2-core machine the spinning threads made a fit 5x slower
        # (BENCHMARKS.md "MLP fit and BLAS threads").
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, user_api="blas"):
            self._fit_pipeline(matrix, codes)
        self.info_["preset"] = _preset_name(self.preset)

    def _fit_pipeline(self, matrix, codes):
        self.pipeline_ = build_pipeline(self.preset, self.seed, self.max_iter,
                                        self.early_stopping)
        weights = class_weights(codes, len(self.classes_))[codes]
        if _FIT_PROGRESS.get():
            from tqdm.auto import tqdm
            self.pipeline_.set_params(mlp__verbose=True)
            with tqdm(total=self.max_iter, desc="training MLP", unit="epoch") as bar, \
                    redirect_stdout(_EpochLines(bar)):
                self.pipeline_.fit(matrix, codes, mlp__sample_weight=weights)
                bar.total = bar.n  # stopped early: the bar ends full
            self.pipeline_.set_params(mlp__verbose=False)
        else:
            self.pipeline_.fit(matrix, codes, mlp__sample_weight=weights)

    def _proba_matrix(self, matrix):
        """Pipeline probabilities spread into all classes (a class unseen in training gets 0)."""
        proba = self.pipeline_.predict_proba(matrix)
        full = np.zeros((len(matrix), len(self.classes_)))
        full[:, np.asarray(self.pipeline_.classes_, dtype=np.int64)] = proba
        return full

    def _save_state(self, folder):
        dump_pipeline(self.pipeline_, folder)
        return super()._save_state(folder)

    def _load_state(self, folder, state):
        super()._load_state(folder, state)
        self.pipeline_ = load_pipeline(folder)


@register("mlp-features")
class FeatureMLP(_PipelineMLP, FeatureModel):
    """MLP on ``frame_stats`` columns (kind "mlp-features").

    Columns pass through ``sign(x) log1p(|x|)`` (heavy tails), then StandardScaler and
    the MLP. No early stopping by default: good and bad frames are separated by a wide
    gap in flux_rel, so the held-out accuracy is perfect after a few epochs and early
    stopping ends training with the boundary next to the bad frames (flux_rel 0.75-0.85,
    seed dependent); training on until the loss settles moves it to the middle of the
    gap (0.865 on the bundled samples), which generalizes to new scans
    (bench/bench_models.py).

    Parameters: ``columns`` (default :data:`DEFAULT_COLUMNS`), ``preset`` (a name of
    :data:`PRESETS` or hidden layer sizes), ``class_names`` (order of ``predict_proba``),
    ``unsafe_class`` (given to rows with NaN/inf features; default "bad"), ``seed``,
    ``max_iter``, ``early_stopping``.

    >>> import xlabel
    >>> from xlabel.synth import make_scan
    >>> def stats_and_truth(seed, loss_start):  # a scan with a 10-frame beam loss
    ...     scan = make_scan(n_frames=60, seed=seed, ramp_frames=0, losses=[(loss_start, 10)],
    ...                      saturation=0)
    ...     return xlabel.frame_stats(xlabel.open_scan(scan.frames), progress=False), scan.truth
    >>> table, truth = stats_and_truth(seed=1, loss_start=20)
    >>> new_table, new_truth = stats_and_truth(seed=2, loss_start=40)
    >>> model = FeatureMLP(preset="256-128-64").fit(table, truth["label"])
    >>> bool((model.predict(new_table) == new_truth["label"]).all())
    True
    >>> new_table.loc[3, "flux_local"] = float("nan")  # a row the model cannot classify
    >>> model.predict(new_table)[3], model.explain_unsafe(new_table)[3]
    ('bad', 'no usable feature: flux_local=nan')
    """

    def __init__(self, columns=None, preset="512-256-128", class_names=("good", "bad"),
                 unsafe_class=None, seed=0, max_iter=300, early_stopping=False):
        self.columns = columns
        self.preset = preset
        self.class_names = class_names
        self.unsafe_class = unsafe_class
        self.seed = seed
        self.max_iter = max_iter
        self.early_stopping = early_stopping

    def _fit_columns(self):
        return tuple(DEFAULT_COLUMNS if self.columns is None else self.columns)

    def _transform(self, matrix):
        return signed_log(matrix)


@register("mlp-pixels")
class PixelMLP(_PipelineMLP, FrameModel):
    """MLP on frames binned to ``size`` x ``size`` and log-scaled (kind "mlp-pixels").

    >>> from xlabel.synth import make_scan
    >>> scan = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(40, 10)], saturation=0)
    >>> model = PixelMLP(size=16).fit(scan.frames, scan.truth["label"])  # frames 40-49: "bad"
    >>> list(model.predict(scan.frames[38:42]))
    ['good', 'good', 'bad', 'bad']
    """

    def __init__(self, preset="256-128-64", size=32, class_names=("good", "bad"), seed=0,
                 max_iter=300, early_stopping=True):
        self.preset = preset
        self.size = size
        self.class_names = class_names
        self.seed = seed
        self.max_iter = max_iter
        self.early_stopping = early_stopping

    def _fit_prepared(self, stack, codes, groups):
        keep = codes >= 0
        self._fit_matrix(stack[keep].reshape(int(keep.sum()), -1), codes[keep])

    def _proba_block(self, block):
        return self._proba_matrix(block.reshape(len(block), -1))


def train_mlp(features: pd.DataFrame, labels, preset="512-256-128", columns=None,
              classes=("good", "bad"), seed=0, max_iter=300, early_stopping=False,
              unsafe_class=None) -> FeatureMLP:
    """``FeatureMLP(...).fit(features, labels)`` in one call (see :class:`FeatureMLP`).

    ``features``: a ``frame_stats`` table; ``labels``: one per row (names, indices with
    ``-1`` = unlabeled, or a LabelStore).

    >>> import xlabel
    >>> from xlabel.synth import make_scan
    >>> scan = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(20, 10)], saturation=0)
    >>> table, truth = xlabel.frame_stats(xlabel.open_scan(scan.frames), progress=False), scan.truth
    >>> model = train_mlp(table, truth["label"], preset="256-128-64")
    >>> list(model.predict(table.iloc[18:22]))
    ['good', 'good', 'bad', 'bad']
    """
    return FeatureMLP(columns=columns, preset=preset, class_names=classes,
                      unsafe_class=unsafe_class, seed=seed, max_iter=max_iter,
                      early_stopping=early_stopping).fit(features, labels)


def train_pixel_mlp(frames, labels, preset="256-128-64", size=32, classes=("good", "bad"),
                    seed=0, max_iter=300) -> PixelMLP:
    """``PixelMLP(...).fit(frames, labels)`` in one call (see :class:`PixelMLP`).

    ``frames``: array ``(n, H, W)``, FrameSource, path or a list of them (concatenated).
    """
    return PixelMLP(preset=preset, size=size, class_names=classes, seed=seed,
                    max_iter=max_iter).fit(frames, labels)
