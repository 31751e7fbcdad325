"""Suspected label errors: out-of-fold probabilities and a confident-learning ranking.

:func:`out_of_fold_proba` predicts every labeled frame with a model that never saw
the frame's *scan* (scikit-learn ``StratifiedGroupKFold`` + ``cross_val_predict``
on the feature table, with a fast ``HistGradientBoostingClassifier`` by default).
:func:`rank_label_issues` ranks the labeled frames by how probably their label is
wrong, in the manner of confident learning (Northcutt et al., JAIR 2021): a frame
is *flagged* when another class's probability reaches that class's own threshold
(the mean probability of the class over the frames labeled with it); flagged frames
come first, each group ordered by how little probability the given label keeps.

The ranking is written here rather than taken from ``cleanlab``: cleanlab is
AGPL-3.0, which a BSD-3 project cannot depend on, and the part needed is ~20 lines.

>>> import numpy as np
>>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.1, 0.9]])
>>> labels = np.array(["good", "good", "good", "bad"], dtype=object)
>>> issues = rank_label_issues(labels, proba, ("good", "bad"))
>>> issues.loc[0, ["row", "label", "suggested"]].astype(str).tolist()
['1', 'good', 'bad']
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .active import next_to_label  # noqa: F401  (moved to xlabel.active; kept importable here)
from .errors import XLabelError

__all__ = ["out_of_fold_proba", "rank_label_issues", "find_label_issues", "DEFAULT_COLUMNS",
           "flip_labels", "next_to_label", "audit_sample", "audit_summary"]

#: Feature columns of a ``frame_stats`` table used by default (all numeric, scan-relative
#: ones included so that exposure differences between scans matter less).
DEFAULT_COLUMNS = ["mean", "median", "std", "min", "max", "frac_saturated", "frac_zero",
                   "flux_rel", "flux_rank"]


class ReviewError(XLabelError, ValueError):
    """The labels or features cannot be reviewed (too few scans, one class only...)."""


def fast_model(seed: int = 0):
    """The default out-of-fold model: a small, strongly regularised gradient-boosting model.

    Shallow trees with large leaves do not learn the wrong labels they are meant to find
    (on 3 %-flipped synth scans, 60 deeper trees put 63 % flipped frames in the top k,
    these 99 %; see BENCHMARKS.md "Suspected label errors").
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(max_iter=40, learning_rate=0.1, max_depth=3,
                                          min_samples_leaf=100, l2_regularization=1.0,
                                          early_stopping=False, random_state=seed)


def smooth_model():
    """Standardise, cubic splines per feature, logistic regression: smooth probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer, StandardScaler
    return make_pipeline(StandardScaler(), SplineTransformer(n_knots=5),
                         LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced"))


def out_of_fold_proba(features, labels, groups, classes=None, *, model=None, n_splits=5,
                      seed=0) -> np.ndarray:
    """Class probabilities of every labeled row from models that never saw its group (scan).

    Parameters
    ----------
    features : (n, d) array or DataFrame of numeric features.
    labels : (n,) class names; ``""`` or ``None`` = unlabeled (not fitted, NaN rows out).
    groups : (n,) scan of each row; folds never split a scan (``StratifiedGroupKFold``).
    classes : class names in column order (default: sorted labels present).
    model : a scikit-learn classifier (default :func:`fast_model`).
    n_splits : folds, at most the number of scans.

    Returns
    -------
    (n, len(classes)) float array; NaN rows for unlabeled frames.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2)); y = np.where(x[:, 0] > 0, "bad", "good")
    >>> p = out_of_fold_proba(x, y, np.repeat(np.arange(4), 500), ("good", "bad"))
    >>> bool(((p[:, 1] > 0.5) == (y == "bad")).mean() > 0.9)
    True
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from threadpoolctl import threadpool_limits
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    groups = np.asarray(groups)
    if not len(x) == len(labels) == len(groups):
        raise ReviewError(f"features ({len(x)}), labels ({len(labels)}) and groups "
                          f"({len(groups)}) differ in length")
    labeled = np.array([lab not in ("", None) and lab == lab for lab in labels])
    classes = _classes(labels[labeled], classes)
    n_groups = len(np.unique(groups[labeled]))
    if n_groups < 2:
        raise ReviewError("out-of-fold probabilities need labeled frames of at least 2 scans "
                          "(folds keep whole scans apart)")
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[lab] for lab in labels[labeled]], dtype=np.int64)
    folds = StratifiedGroupKFold(n_splits=min(n_splits, n_groups), shuffle=True,
                                 random_state=seed)
    # One OpenMP thread: on a loaded machine the default pool spins (30x slower measured).
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        proba = cross_val_predict(clone(model if model is not None else fast_model(seed)),
                                  x[labeled], y, groups=groups[labeled], cv=folds,
                                  method="predict_proba")
    full = np.full((len(x), len(classes)), np.nan)
    present = np.unique(y)
    full[np.ix_(labeled, present)] = proba
    full[np.ix_(labeled, np.setdiff1d(np.arange(len(classes)), present))] = 0.0
    return full


def _classes(labels, classes):
    present = sorted(set(labels.tolist()))
    if classes is None:
        classes = present
    classes = tuple(classes)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise ReviewError(f"labels {unknown} are not among the classes {classes}")
    if len(present) < 2:
        raise ReviewError(f"need labeled frames of at least 2 classes, got {present}")
    return classes


def rank_label_issues(labels, proba, classes) -> pd.DataFrame:
    """Labeled rows ranked by how probably their label is wrong (most suspicious first).

    Parameters
    ----------
    labels : (n,) class names (``""`` = unlabeled, never ranked).
    proba : (n, k) out-of-fold probabilities (see :func:`out_of_fold_proba`).
    classes : the k class names, in column order.

    Returns
    -------
    DataFrame with ``row``, ``label``, ``suggested`` (the most probable other class),
    ``score`` (in [0, 2]: ``1.5 + margin / 2`` for flagged rows, margin = p(suggested) -
    p(label); ``0.999 * (1 - p(label))`` for the rest, so flagged rows always come first) and
    ``flagged`` (confident-learning off-diagonal).
    """
    labels = np.asarray(labels, dtype=object)
    proba = np.asarray(proba, dtype=np.float64)
    classes = tuple(classes)
    if proba.shape != (len(labels), len(classes)):
        raise ReviewError(f"probabilities of shape {proba.shape} for {len(labels)} labels "
                          f"and {len(classes)} classes")
    unknown = sorted({str(lab) for lab in labels if lab not in classes and lab not in ("", None)
                      and lab == lab})
    if unknown:
        raise ReviewError(f"labels {unknown} are not among the classes {classes}")
    labeled = np.array([lab in classes for lab in labels])
    rows = np.flatnonzero(labeled & np.isfinite(proba).all(axis=1))
    index = {name: i for i, name in enumerate(classes)}
    given = np.array([index[lab] for lab in labels[rows]], dtype=np.int64)
    p = proba[rows]
    thresholds = _thresholds(p, given, len(classes))
    self_conf = p[np.arange(len(rows)), given]
    # Confident joint: the most probable class among those reaching their threshold.
    above = np.where(p >= thresholds, p, -np.inf)
    confident = above.argmax(axis=1)
    flagged = np.isfinite(above.max(axis=1)) & (confident != given)
    others = p.copy()
    others[np.arange(len(rows)), given] = -np.inf
    suggested = np.where(flagged, confident, others.argmax(axis=1))
    margin = p[np.arange(len(rows)), suggested] - self_conf
    score = np.where(flagged, 1.0 + np.clip(margin, -1, 1) / 2 + 0.5, (1.0 - self_conf) * 0.999)
    table = pd.DataFrame({"row": rows, "label": labels[rows],
                          "suggested": np.asarray(classes, dtype=object)[suggested],
                          "score": score, "flagged": flagged})
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _thresholds(p, given, n_classes) -> np.ndarray:
    """Per-class threshold: mean probability of class j over rows labeled j (1.0 if none)."""
    out = np.ones(n_classes)
    for j in range(n_classes):
        if (given == j).any():
            out[j] = p[given == j, j].mean()
    return out


def find_label_issues(table: pd.DataFrame, labels, classes=None, *, columns=None, model=None,
                      n_splits=5, seed=0) -> pd.DataFrame:
    """Suspected label errors of a ``frame_stats`` table: frame, scan, label, suggested, score.

    ``labels`` holds one class name per table row (``""`` = unlabeled). Folds keep the
    table's scans apart. Most suspicious first; ``row`` is the table row.

    >>> from xlabel.synth import make_scan
    >>> from xlabel.features import frame_stats
    >>> scans = [make_scan(300, (32, 32), seed=s).source() for s in (1, 2, 3)]
    >>> table = frame_stats(scans, progress=False)
    >>> labels = np.concatenate([make_scan(300, (32, 32), seed=s).truth["label"] for s in (1, 2, 3)])
    >>> labels[5] = "bad" if labels[5] == "good" else "good"
    >>> 5 in find_label_issues(table, labels)["row"].iloc[:3].tolist()
    True
    """
    columns = list(columns or DEFAULT_COLUMNS)
    missing = [c for c in ["scan", "frame", *columns] if c not in table.columns]
    if missing:
        raise ReviewError(f"feature table lacks columns {missing}")
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(table):
        raise ReviewError(f"{len(labels)} labels for {len(table)} frames")
    proba = out_of_fold_proba(table[columns], labels, table["scan"].to_numpy(), classes,
                              model=model, n_splits=n_splits, seed=seed)
    classes = _classes(labels[[lab not in ("", None) for lab in labels]], classes)
    issues = rank_label_issues(labels, proba, classes)
    issues.insert(0, "scan", table["scan"].to_numpy()[issues["row"]])
    issues.insert(0, "frame", table["frame"].to_numpy()[issues["row"]])
    return issues


def flip_labels(truth: pd.DataFrame, fraction=0.03, boundary_share=0.5, seed=0):
    """Wrong labels for evaluation: flip ``fraction`` of an ``xlabel.synth`` truth table.

    ``boundary_share`` of the flips are drawn among the 10 % of frames nearest the class
    boundary (beam near ``BEAM_THRESHOLD`` or saturated fraction near
    ``SATURATION_THRESHOLD``, in the synth's own units), the rest uniformly from the
    other frames. Returns ``(labels, flipped)``: the noisy labels and a boolean mask.

    >>> from xlabel.synth import make_scan
    >>> labels, flipped = flip_labels(make_scan(400, (32, 32), seed=1).truth, seed=0)
    >>> int(flipped.sum()), bool((labels[flipped] != make_scan(400, (32, 32), seed=1)
    ...                           .truth["label"].to_numpy()[flipped]).all())
    (12, True)
    """
    from . import synth
    rng = np.random.default_rng(seed)
    truth_labels = truth["label"].to_numpy(dtype=object)
    n = len(truth_labels)
    n_flip = int(round(fraction * n))
    n_near = int(round(boundary_share * n_flip))
    beam_distance = np.abs(truth["beam"].to_numpy() - synth.BEAM_THRESHOLD) / 0.15
    saturation_distance = np.abs(np.log10(truth["frac_saturated"].to_numpy() + 1e-5)
                                 - np.log10(synth.SATURATION_THRESHOLD))
    nearest = np.argsort(np.minimum(beam_distance, saturation_distance), kind="stable")
    near_pool = nearest[:max(n_near, n // 10)]
    near = rng.choice(near_pool, size=n_near, replace=False)
    rest = np.setdiff1d(np.arange(n), near)
    chosen = np.concatenate([near, rng.choice(rest, size=n_flip - n_near, replace=False)])
    flipped = np.zeros(n, bool)
    flipped[chosen] = True
    classes = sorted(set(truth_labels.tolist()))
    labels = truth_labels.copy()
    for i in chosen:
        others = [c for c in classes if c != labels[i]]
        labels[i] = others[rng.integers(len(others))]
    return labels, flipped


# ----------------------------------------------------------------- filter audit

AUDIT_COLUMNS = ["row", "frame", "scan", "prediction", "suggested", "keep", "keep_class",
                 "classes", "judged"]


def audit_sample(filter_table: pd.DataFrame, n: int, keep_class: str, classes, *, scan="",
                 seed=0):
    """A seeded sample of ``n`` dropped and ``n`` kept frames of a filter result, to judge.

    ``filter_table`` is a ``<scan>_filter.csv`` table (``frame``, ``prediction``, ``keep``);
    ``classes`` the model's classes (the answers ``judged`` may hold, kept as ``a|b``).
    Returns :data:`AUDIT_COLUMNS`, dropped frames first; ``judged`` is empty: the expert
    writes each frame's true class there (or decides it in a
    :class:`~xlabel.widgets.ReviewQueue`: ``row`` is the frame, ``suggested`` the prediction).
    Fewer frames are taken where fewer were dropped or kept.

    >>> table = pd.DataFrame({"frame": range(10), "prediction": ["good"] * 8 + ["bad"] * 2,
    ...                       "keep": [True] * 8 + [False] * 2})
    >>> audit_sample(table, 3, "good", classes=("good", "bad"))["keep"].tolist()
    [False, False, True, True, True]
    """
    if int(n) < 1:
        raise ReviewError(f"the audit needs at least 1 frame per side, got {n}")
    rng = np.random.default_rng(seed)
    parts = []
    for kept in (False, True):
        frames = filter_table.loc[filter_table["keep"].astype(bool) == kept]
        take = rng.choice(len(frames), size=min(int(n), len(frames)), replace=False)
        parts.append(frames.iloc[take])
    sample = pd.concat(parts, ignore_index=True)
    return pd.DataFrame({"row": sample["frame"].to_numpy(), "frame": sample["frame"].to_numpy(),
                         "scan": scan, "prediction": sample["prediction"].to_numpy(),
                         "suggested": sample["prediction"].to_numpy(),
                         "keep": sample["keep"].astype(bool).to_numpy(), "keep_class": keep_class,
                         "classes": "|".join(classes), "judged": ""})[AUDIT_COLUMNS]


def audit_summary(audit: pd.DataFrame, judged=None, *, where="audit") -> dict:
    """False-reject and false-keep rates of a judged audit sample, with 95 % intervals.

    ``judged`` (default: the ``judged`` column) is each sampled frame's true class (``""`` =
    not judged yet: left out and counted). False-reject rate: the share of dropped frames
    whose true class is the keep class; false-keep rate: the share of kept frames whose
    true class is not. Intervals are exact Clopper-Pearson (``scipy.stats.binomtest``).

    >>> audit = pd.DataFrame({"keep": [False] * 4 + [True] * 4, "keep_class": "good",
    ...                       "classes": "good|bad",
    ...                       "judged": ["bad", "bad", "good", "bad", "good"] + ["good"] * 3})
    >>> s = audit_summary(audit)
    >>> s["false_reject"]["rate"], s["false_keep"]["errors"], s["false_keep"]["judged"]
    (0.25, 0, 4)
    """
    from scipy.stats import binomtest
    judged = audit["judged"] if judged is None else pd.Series(judged, index=audit.index)
    judged = judged.fillna("").astype(str).str.strip()
    keep_class = str(audit["keep_class"].iloc[0]) if len(audit) else ""
    classes = set(str(audit["classes"].iloc[0]).split("|")) if len(audit) else set()
    wrong = np.flatnonzero(~judged.isin(classes | {""}).to_numpy())
    if len(wrong):
        raise ReviewError(f"{where}: line {wrong[0] + 2} (CSV row {wrong[0]}) is judged "
                          f"{judged.iloc[wrong[0]]!r}, not one of the classes {sorted(classes)}")
    summary = {"keep_class": keep_class, "not_judged": int((judged == "").sum())}
    for name, kept in (("false_reject", False), ("false_keep", True)):
        side = judged[(audit["keep"].astype(bool) == kept) & (judged != "")]
        errors = int((side == keep_class).sum()) if not kept else int((side != keep_class).sum())
        entry = {"judged": int(len(side)), "errors": errors, "rate": None, "ci95": None}
        if len(side):
            interval = binomtest(errors, len(side)).proportion_ci(0.95, method="exact")
            entry.update(rate=errors / len(side), ci95=[float(interval.low),
                                                        float(interval.high)])
        summary[name] = entry
    if summary["false_reject"]["judged"] + summary["false_keep"]["judged"] == 0:
        raise ReviewError(f"{where}: no frame is judged yet (fill the 'judged' column with "
                          "each frame's true class)")
    return summary
