"""What to label next: batch-mode active learning on a feature table.

The standard recipe (e.g. Settles, *Active Learning Literature Survey*, 2009; Zhdanov,
*Diverse mini-batch active learning*, 2019), on the numeric columns of a ``frame_stats``
table:

1. **Start** (:func:`first_batch`): with fewer than two classes labeled a model has nothing
   to be uncertain about, so the first frames are the medoids of K-means clusters of the
   standardised features. Rare, odd frames (saturation, a dead chip) form clusters of their
   own, so the start holds more classes than a random start of the same size.
2. **Batch** (:func:`next_to_label`): a model (default :func:`active_model`, a random forest)
   fitted on the labeled frames scores every unlabeled one by its uncertainty
   (``"margin"``: 1 minus the gap between the two most probable classes, or ``"entropy"``);
   the batch is picked greedily, each pick damping the scores of frames near it (a distance
   penalty), so a batch does not spend its labels on near-duplicates (consecutive frames of
   one beam loss). On the fault task a K-means
   batch (most uncertain frame of each of ``n`` clusters) did as well within the spread,
   but it must fill ``n`` clusters even where few frames are uncertain.
3. Label the batch (e.g. in a :class:`~xlabel.widgets.ReviewQueue`), refit, repeat.

:func:`learning_curve` runs this loop with known answers (synthetic truth) against labeling
in random order and scores every round on held-out scans, so the gain can be checked on
data like one's own before an expert spends time on it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 2))
>>> truth = np.where(x[:, 0] > 1.5, "bad", "good").astype(object)
>>> labels = np.full(2000, "", dtype=object)
>>> picks = next_to_label(x, labels, ("good", "bad"), n=8)       # cold start: K-means medoids
>>> labels[picks["row"]] = truth[picks["row"]]
>>> picks = next_to_label(x, labels, ("good", "bad"), n=8)
>>> list(picks.columns), bool((labels[picks["row"]] == "").all())
(['row', 'suggested', 'score'], True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import XLabelError

__all__ = ["active_model", "first_batch", "next_to_label", "uncertainty", "learning_curve",
           "heldout_scores",
           "ActiveError"]

ORDERS = ("random", "uncertainty")


class ActiveError(XLabelError, ValueError):
    """The features or labels cannot be used to choose frames (wrong shapes, classes...)."""


def active_model(seed: int = 0):
    """The default model: a balanced random forest (100 trees, one thread).

    Trees need no scaling and split a rare class off on one feature (a saturated fraction,
    a fraction of zeros) from a handful of examples; the spline + logistic model of
    :func:`xlabel.review.smooth_model` is additive and, with two kinds of bad frames in one
    class, a few labels of one kind pulled its boundary away from the other (BENCHMARKS.md,
    "Active learning").
    """
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=100, class_weight="balanced", n_jobs=1,
                                  random_state=seed)


def uncertainty(proba, strategy: str = "margin") -> np.ndarray:
    """Uncertainty in [0, 1] of each row of class probabilities.

    ``"margin"``: 1 - (p1 - p2), the two most probable classes; ``"entropy"``: the entropy
    divided by log(k).

    >>> uncertainty(np.array([[0.5, 0.5], [0.9, 0.1]])).round(2).tolist()
    [1.0, 0.2]
    """
    proba = np.asarray(proba, dtype=np.float64)
    if strategy == "margin":
        top2 = np.sort(proba, axis=1)[:, -2:]
        return 1.0 - (top2[:, -1] - top2[:, 0]) if proba.shape[1] > 1 else np.zeros(len(proba))
    if strategy == "entropy":
        safe = np.clip(proba, 1e-12, 1.0)
        return -(safe * np.log(safe)).sum(axis=1) / np.log(max(proba.shape[1], 2))
    raise ActiveError(f"unknown strategy {strategy!r}; choose 'margin' or 'entropy'")


def first_batch(features, n: int = 20, *, exclude=None, seed: int = 0) -> np.ndarray:
    """Rows of ``n`` K-means medoids of the standardised features (a cluster-stratified start).

    ``exclude``: boolean mask (or rows) never returned (e.g. frames already labeled).

    >>> x = np.r_[np.zeros((500, 2)), np.ones((5, 2)) * 10]    # 5 outliers
    >>> x += np.random.default_rng(0).normal(scale=0.1, size=x.shape)
    >>> bool((first_batch(x, 4) >= 500).any())
    True
    """
    x = _matrix(features)
    _check_n(n)
    allowed = np.ones(len(x), bool)
    if exclude is not None:
        allowed[np.asarray(exclude)] = False
    rows = np.flatnonzero(allowed)
    if len(rows) <= n:
        return rows
    points = _standardised(x)[rows]
    return rows[_medoids(points, n, seed)]


def next_to_label(features, labels, classes=None, *, n: int = 20, strategy: str = "margin",
                  diversity: bool = True, radius: float = 0.2, model=None,
                  seed: int = 0) -> pd.DataFrame:
    """The ``n`` unlabeled rows to label next: uncertain ones, spread over the feature space.

    Parameters
    ----------
    features : (m, d) numeric array or DataFrame (e.g. ``frame_stats`` columns).
    labels : (m,) class names; ``""`` / ``None`` / NaN = unlabeled.
    classes : class names (default: those labeled); a label outside them is an error.
    n : frames to return. strategy : ``"margin"`` or ``"entropy"``.
    diversity : pick greedily, each pick damping the score of the rows near it by
        ``1 - exp(-(d / r)**2)`` (standardised features; ``r`` = ``radius`` x the median
        distance between unlabeled rows), so near-duplicates of a pick wait; False: the ``n``
        most uncertain, near-duplicates and all.
    model : scikit-learn classifier with ``predict_proba`` (default :func:`active_model`).

    Returns
    -------
    DataFrame ``row, suggested, score`` (score = uncertainty; most uncertain first), ready for
    :class:`~xlabel.widgets.ReviewQueue`. With fewer than two classes labeled there is no model
    yet: the rows are :func:`first_batch` medoids, ``suggested`` the one labeled class (or the
    first class) and ``score`` NaN.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(3000, 2))
    >>> labels = np.where(x[:, 0] > 0, "bad", "good").astype(object)
    >>> labels[rng.random(3000) < 0.8] = ""
    >>> picks = next_to_label(x, labels, ("good", "bad"), n=10)
    >>> bool(np.median(np.abs(x[picks["row"], 0])) < 0.2 * np.median(np.abs(x[:, 0])))
    True
    """
    x = _matrix(features)
    _check_n(n)
    labels, labeled, classes = _labels(labels, classes, len(x))
    if labeled.all():
        raise ActiveError("every frame is labeled: nothing to suggest")
    uncertainty(np.ones((1, 2)) / 2, strategy)  # checks the name before any work
    present = sorted(set(labels[labeled].tolist()), key=classes.index)
    fitted = None
    if len(present) >= 2:
        index = {name: i for i, name in enumerate(classes)}
        y = np.array([index[lab] for lab in labels[labeled]])
        fitted = _fit(model if model is not None else active_model(seed), x[labeled], y)
    return _choose(x, labeled, fitted, classes, present, n=n, strategy=strategy,
                   diversity=diversity, radius=radius, seed=seed)


def _choose(x, labeled, fitted, classes, present, *, n, strategy, diversity, radius, seed):
    """The batch of :func:`next_to_label` from a model fitted on class indices (None: too
    few classes labeled, K-means medoids)."""
    unlabeled = np.flatnonzero(~labeled)
    if fitted is None:
        rows = first_batch(x, n, exclude=labeled, seed=seed)
        guess = present[0] if present else classes[0]
        return pd.DataFrame({"row": rows, "suggested": np.full(len(rows), guess, dtype=object),
                             "score": np.full(len(rows), np.nan)})
    proba = _proba(fitted, x[unlabeled], len(classes))
    score = uncertainty(proba, strategy)
    # Random tie-breaking: a forest gives many equal scores, and row order must not decide.
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(score)), -score))
    if diversity:
        chosen = order[_spread(_standardised(x)[unlabeled[order]], score[order], n, radius, rng)]
    else:
        chosen = order[:n]
    table = pd.DataFrame({"row": unlabeled[chosen],
                          "suggested": np.asarray(classes, dtype=object)[proba[chosen].argmax(1)],
                          "score": score[chosen]})
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _proba(fitted, x, n_classes) -> np.ndarray:
    """Probabilities in class-index columns (a model fitted on a subset of the classes)."""
    from threadpoolctl import threadpool_limits
    proba = np.zeros((len(x), n_classes))
    with threadpool_limits(1):
        proba[:, fitted.classes_.astype(int)] = fitted.predict_proba(x)
    return proba


# ------------------------------------------------------------------------ helpers

def _matrix(features) -> np.ndarray:
    if isinstance(features, pd.DataFrame):
        text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
        if text:
            raise ActiveError(f"feature columns must be numeric; {text} are not (pass e.g. "
                              "table[xlabel.review.DEFAULT_COLUMNS])")
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ActiveError(f"features must be a numeric table: {err}") from None
    if x.ndim != 2:
        raise ActiveError(f"features must be a 2-D table (frames x columns), got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise ActiveError(f"features of row {bad[0]} are not finite ({len(bad)} such rows): "
                          "drop or fill them first")
    return x


def _check_n(n):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ActiveError(f"n (frames to choose) must be a positive integer, got {n!r}")


def _labels(labels, classes, n_rows):
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (n_rows,):
        raise ActiveError(f"{labels.shape[0] if labels.ndim else 0} labels for {n_rows} frames")
    labeled = np.array([lab not in ("", None) and lab == lab for lab in labels], dtype=bool)
    present = sorted(set(labels[labeled].tolist()))
    classes = list(present if classes is None else classes)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise ActiveError(f"labels {unknown} are not among the classes {classes}")
    if not classes:
        raise ActiveError("no classes: pass classes=(...) while nothing is labeled yet")
    return labels, labeled, classes


def _standardised(x) -> np.ndarray:
    scale = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def _kmeans(points, n, seed):
    import warnings
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1), warnings.catch_warnings():
        # fewer distinct points than clusters: some clusters stay empty, _medoids skips them
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=n, n_init=1, random_state=seed).fit(points)


def _medoids(points, n, seed) -> np.ndarray:
    """Position of the point nearest each of ``n`` K-means centres (distinct)."""
    fit = _kmeans(points, n, seed)
    picks = []
    for c in range(n):
        members = np.flatnonzero(fit.labels_ == c)
        if len(members):
            distance = ((points[members] - fit.cluster_centers_[c]) ** 2).sum(axis=1)
            picks.append(members[distance.argmin()])
    return np.array(picks, dtype=np.int64)


def _spread(points, score, n, radius, rng) -> np.ndarray:
    """Greedy batch: the most uncertain point, then the most uncertain after a distance penalty.

    Each pick multiplies the others' scores by ``1 - exp(-(d / r)**2)`` (``d`` the distance to
    it, ``r = radius`` x the median distance between points, from a sample of 1000), so a
    near-duplicate of a pick scores ~0 and is taken only when nothing else is left. Ties go
    to the earlier point (the caller shuffles ties).
    """
    from scipy.spatial.distance import pdist
    if len(points) <= n:
        return np.arange(len(points))
    sample = points[rng.choice(len(points), min(len(points), 1000), replace=False)]
    r = radius * max(float(np.median(pdist(sample))), 1e-12)
    gain = score.astype(np.float64) + 1e-9  # a zero score must still be a valid pick
    picks = []
    for _ in range(n):
        i = int(gain.argmax())
        picks.append(i)
        distance2 = ((points - points[i]) ** 2).sum(axis=1)
        gain *= -np.expm1(-distance2 / r ** 2)
        gain[i] = -1.0
    return np.array(picks, dtype=np.int64)



# ------------------------------------------------------------------ learning curves

def heldout_scores(model, features, truth, scans, classes) -> dict:
    """Scores of a fitted model on held-out frames: balanced accuracy (all frames and the
    worst scan, named) and the recall of every class.

    >>> from sklearn.dummy import DummyClassifier
    >>> model = DummyClassifier(strategy="constant", constant="good")
    >>> model = model.fit([[0], [1]], ["good", "bad"])
    >>> s = heldout_scores(model, [[0], [1], [2]], ["good", "bad", "good"], ["a", "a", "b"],
    ...                    ("good", "bad"))
    >>> s["balanced_accuracy"], s["recall_bad"], s["worst_scan"]
    (0.5, 0.0, 'a')
    """
    from sklearn.metrics import balanced_accuracy_score, recall_score
    predicted = _predict(model, features, classes)
    truth, scans = np.asarray(truth, dtype=object), np.asarray(scans)
    scores = {"balanced_accuracy": _balanced(balanced_accuracy_score, truth, predicted)}
    by_scan = {scan: _balanced(balanced_accuracy_score, truth[scans == scan],
                               predicted[scans == scan]) for scan in pd.unique(scans)}
    worst = min(by_scan, key=by_scan.get)
    scores.update(worst_scan_balanced_accuracy=by_scan[worst], worst_scan=str(worst))
    recalls = recall_score(truth, predicted, labels=list(classes), average=None,
                           zero_division=np.nan)
    scores.update({f"recall_{name}": float(r) for name, r in zip(classes, recalls)})
    return scores


def _predict(model, features, classes):
    """Predictions as class names; ``model`` may be a class name (nothing to fit yet)."""
    if isinstance(model, str):
        return np.full(len(features), model, dtype=object)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        predicted = model.predict(np.asarray(features, dtype=np.float64))
    if predicted.dtype.kind in "iu":      # fitted on class indices
        return np.asarray(classes, dtype=object)[predicted.astype(int)]
    return predicted.astype(object)


def _balanced(metric, truth, predicted) -> float:
    import warnings
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected here
        warnings.simplefilter("ignore")
        return float(metric(truth, predicted))


def learning_curve(features, truth, test_features, test_truth, test_scans, *,
                   order: str = "uncertainty", start: int = 12, batch: int = 12, rounds: int = 8,
                   first: str | None = None, diversity: bool = True, classes=None,
                   model_factory=None, ask=None, seed: int = 0, progress: bool = False
                   ) -> pd.DataFrame:
    """Held-out scores against the number of labels, labeling a pool in one ``order``.

    The pool (``features``, its true classes ``truth``) starts unlabeled; ``start`` frames are
    labeled first (``first``: ``"kmeans"`` = :func:`first_batch` medoids, ``"random"``;
    default ``"kmeans"`` for the uncertainty order, ``"random"`` for the random order), then
    ``rounds`` batches of ``batch`` frames, chosen by :func:`next_to_label` (``order=
    "uncertainty"``) or at random (``"random"``). After every batch a fresh model
    (``model_factory(seed)``, default :func:`active_model`) is fitted on the labels, scored
    on the held-out frames (:func:`heldout_scores`; ``test_scans`` names each held-out frame's
    scan) and, in the uncertainty order, used to pick the next batch: with the default model
    these are the batches ``ReviewQueue.to_label(..., seed=seed)`` asks for. ``ask(rows,
    suggested)`` answers (default: ``truth[rows]``; e.g. a function that records the rows).

    Returns one row per round: ``labels``, ``classes_found`` and the scores.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1200, 2)); y = np.where(x[:, 0] > 1.2, "bad", "good")
    >>> curve = learning_curve(x[:800], y[:800], x[800:], y[800:], np.repeat(["a", "b"], 200),
    ...                        start=6, batch=6, rounds=2)
    >>> curve["labels"].tolist()
    [6, 12, 18]
    """
    from tqdm.auto import tqdm
    if order not in ORDERS:
        raise ActiveError(f"unknown order {order!r}; choose one of {ORDERS}")
    first = first or ("kmeans" if order == "uncertainty" else "random")
    if first not in ("kmeans", "random"):
        raise ActiveError(f"unknown first batch {first!r}; choose 'kmeans' or 'random'")
    x, test_x = _matrix(features), _matrix(test_features)
    truth = np.asarray(truth, dtype=object)
    seen = set(truth.tolist()) | set(np.asarray(test_truth, dtype=object).tolist())
    classes = list(classes or sorted(seen))
    if seen - set(classes):
        raise ActiveError(f"true classes {sorted(seen - set(classes))} are not among the "
                          f"classes {classes}")
    factory = model_factory or active_model
    ask = ask or (lambda rows, suggested: truth[rows])
    rng = np.random.default_rng(seed)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(len(x), "", dtype=object)
    rows = (first_batch(x, start, seed=seed) if first == "kmeans"
            else rng.choice(len(x), min(start, len(x)), replace=False))
    suggested = None
    out = []
    for step in tqdm(range(rounds + 1), desc=f"{order} order", disable=not progress):
        labels[rows] = ask(rows, suggested)
        known = labels != ""
        found = sorted(set(labels[known].tolist()), key=classes.index)
        # One fit per round: scored on the held-out scans, then (same model) picking the batch.
        model = None if len(found) < 2 else _fit(
            factory(seed), x[known], np.array([index[lab] for lab in labels[known]]))
        out.append({"labels": int(known.sum()), "classes_found": len(found),
                    **heldout_scores(found[0] if model is None else model, test_x, test_truth,
                                     test_scans, classes)})
        if step == rounds or known.all():
            break
        if order == "random":
            rows, suggested = rng.choice(np.flatnonzero(~known), min(batch, (~known).sum()),
                                         replace=False), None
        else:
            # seed + step + 1: the seeds ReviewQueue.to_label(seed=seed) uses for its batches
            picks = _choose(x, known, model, classes, found, n=batch, strategy="margin",
                            diversity=diversity, radius=0.2, seed=seed + step + 1)
            rows, suggested = picks["row"].to_numpy(), picks["suggested"].to_numpy()
    return pd.DataFrame(out)


def _fit(model, x, y):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        return model.fit(x, y)
