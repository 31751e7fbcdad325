"""Clustering of per-frame features, label alignment and comparison of clusterings.

Features come from :func:`xlabel.features.frame_stats` (a DataFrame; default column
``mean``, the average flux), a 2-D array (frames x features) or a 1-D array.

- :func:`kmeans` and :func:`dbscan` return one int label per frame. For a single feature
  (the common case: mean flux) both run exact, fast 1-D algorithms on sorted data;
  with several columns they use scikit-learn.
- Cluster ids never carry meaning by accident: :func:`order_by` renumbers clusters by a
  feature (cluster 0 = darkest), :func:`align_labels` renumbers one clustering to best
  match another (Hungarian matching). Noise (-1) always stays -1.
- :func:`compare` gives the contingency table, ARI, NMI and the disagreeing frames.

>>> import numpy as np
>>> flux = np.r_[np.full(5, 10.0), np.full(20, 1000.0)] + np.arange(25) % 3
>>> labels = order_by(kmeans(flux, k=2), flux)
>>> labels.tolist()[:6]
[0, 0, 0, 0, 0, 1]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ClusterError

__all__ = [
    "kmeans",
    "dbscan",
    "order_by",
    "align_labels",
    "compare",
    "Comparison",
    "ClusterWarning",
    "k_distances",
    "knee_eps",
]

DEFAULT_COLUMN = "mean"
DEFAULT_MIN_SAMPLES = 5
EXACT_KMEANS_MAX_DISTINCT = 1500  # up to this many distinct values 1-D k-means is exact


class ClusterWarning(UserWarning):
    """A clustering ran, but its result is probably not what was wanted (e.g. only noise)."""


# --------------------------------------------------------------------------- input


def _frame_names(features, rows) -> list:
    """How the user knows the frames at positional ``rows``: the ``frame`` column if any."""
    if isinstance(features, pd.DataFrame) and "frame" in features.columns:
        names = features["frame"].to_numpy()[rows]
        if "scan" in features.columns and features["scan"].nunique() > 1:
            scans = features["scan"].to_numpy()[rows]
            return [f"{s}#{f}" for s, f in zip(scans, names)]
        return names.tolist()
    return np.asarray(rows).tolist()


def _feature_matrix(features, columns) -> tuple[np.ndarray, list]:
    """Return (float matrix frames x columns, column names) from a table or array."""
    if isinstance(features, pd.Series):
        features = features.to_frame(features.name if features.name is not None else 0)
    if isinstance(features, pd.DataFrame):
        cols = [DEFAULT_COLUMN] if columns is None else (
            [columns] if isinstance(columns, str) else list(columns))
        missing = [c for c in cols if c not in features.columns]
        if missing and columns is None and features.shape[1] == 1:
            cols = list(features.columns)
        elif missing:
            raise ClusterError(f"feature column(s) {missing} not in table; "
                               f"available: {list(features.columns)}")
        try:
            matrix = features[cols].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ClusterError(f"feature columns {cols} are not numeric: {err}") from None
        return matrix, cols
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ClusterError("features must be a table, a 1-D or a 2-D array, "
                           f"got shape {matrix.shape}")
    if columns is not None:
        cols = [columns] if np.isscalar(columns) else list(columns)
        matrix = matrix[:, cols]
        return matrix, cols
    return matrix, list(range(matrix.shape[1]))


def _prepare(features, columns, scale: bool, n_needed: int, what: str):
    """Validated float matrix (scaled if asked) plus the per-column scale factors."""
    matrix, cols = _feature_matrix(features, columns)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        names = _frame_names(features, bad)
        shown = ", ".join(map(str, names[:20])) + (" ..." if len(names) > 20 else "")
        raise ClusterError(f"NaN/inf in feature column(s) {cols} at {bad.size} frame(s): "
                           f"{shown}; drop or fill these frames before clustering")
    n = matrix.shape[0]
    if n < n_needed:
        raise ClusterError(f"{what} needs at least {n_needed} frames, got {n}")
    spread = matrix.max(axis=0) - matrix.min(axis=0) if n else np.zeros(matrix.shape[1])
    if n and not spread.any():
        raise ClusterError(f"all {n} frames have identical features {cols} "
                           f"(value {matrix[0].tolist()}); there is nothing to cluster")
    scales = None
    if scale:
        scales = matrix.std(axis=0)
        scales[scales == 0] = 1.0  # a constant column carries no information either way
        matrix = (matrix - matrix.mean(axis=0)) / scales
    return matrix, cols, scales


# --------------------------------------------------------------------------- k-means


def _segment_stats(cs1, cs2, bounds):
    """Counts, sums and sums of squares of the sorted data between consecutive bounds."""
    counts = np.diff(bounds)
    return counts, np.diff(cs1[bounds]), np.diff(cs2[bounds])


def _lloyd_1d(xs, cs1, cs2, centers, max_iter):
    """Exact Lloyd iterations on sorted 1-D data; returns (bounds, centers, inertia).

    In 1-D every cluster is a run of the sorted data, so one iteration is k binary
    searches plus k differences of cumulative sums. A point exactly on a midpoint goes to
    the lower center (nearest center, ties to the first, as scikit-learn does).
    """
    n = xs.size
    bounds = None
    for _ in range(max_iter):
        mids = (centers[:-1] + centers[1:]) / 2
        new = np.r_[0, np.searchsorted(xs, mids, side="right"), n]
        if bounds is not None and np.array_equal(new, bounds):
            break
        bounds = new
        counts, sums, _ = _segment_stats(cs1, cs2, bounds)
        empty = counts == 0
        centers = np.where(empty, centers, sums / np.maximum(counts, 1))
        if empty.any():  # relocate empty clusters to the points farthest from their center
            centers = _relocate_empty(xs, bounds, centers, empty)
    counts, sums, squares = _segment_stats(cs1, cs2, bounds)
    inertia = float(np.sum(squares - sums**2 / np.maximum(counts, 1)))
    return bounds, centers, inertia


def _relocate_empty(xs, bounds, centers, empty):
    owner = np.repeat(np.arange(centers.size), np.diff(bounds))
    far = np.argsort(-np.abs(xs - centers[owner]), kind="stable")
    taken = set(centers[~empty].tolist())
    fresh = [v for v in xs[far[: 4 * centers.size]].tolist() if v not in taken]
    centers = centers.copy()
    centers[empty] = (fresh + [centers[empty][0]] * int(empty.sum()))[: int(empty.sum())]
    return np.sort(centers)


def _kmeanspp_1d(xs, k, rng):
    """k-means++ seeding on 1-D sorted data."""
    centers = [xs[rng.integers(xs.size)]]
    dist2 = (xs - centers[0]) ** 2
    for _ in range(1, k):
        total = dist2.sum()
        pick = rng.integers(xs.size) if total == 0 else np.searchsorted(
            np.cumsum(dist2), rng.random() * total, side="right")
        centers.append(xs[min(pick, xs.size - 1)])
        dist2 = np.minimum(dist2, (xs - centers[-1]) ** 2)
    return np.sort(np.asarray(centers))


def _kmeans_1d_optimal(x, xc, order, k):
    """Globally optimal 1-D k-means by dynamic programming over the distinct values.

    O(k m^2) for m distinct values, so only used for small m, where Lloyd's local optima
    are most likely (discrete or heavily tied data).
    """
    starts = np.r_[0, np.flatnonzero(xc[1:] != xc[:-1]) + 1, xc.size]  # runs of equal values
    cs1 = np.r_[0.0, np.cumsum(xc)][starts]
    cs2 = np.r_[0.0, np.cumsum(xc**2)][starts]
    count = starts.astype(np.float64)
    m = starts.size - 1
    i, j = np.triu_indices(m + 1, 1)  # segment of distinct values i..j-1
    cost = np.full((m + 1, m + 1), np.inf)
    seg_n = count[j] - count[i]
    cost[i, j] = np.maximum((cs2[j] - cs2[i]) - (cs1[j] - cs1[i]) ** 2 / seg_n, 0.0)
    best = cost[0].copy()  # best[j]: optimal cost of distinct values 0..j-1 in 1 cluster
    split = np.zeros((k, m + 1), dtype=np.int64)
    for c in range(1, k):
        total = best[:, None] + cost
        split[c] = np.argmin(total, axis=0)
        best = total[split[c], np.arange(m + 1)]
    bounds = [m]
    for c in range(k - 1, 0, -1):
        bounds.append(split[c][bounds[-1]])
    run_bounds = starts[np.array(bounds[::-1] if k > 1 else [m])]
    edges = np.r_[0, run_bounds] if k > 1 else np.r_[0, xc.size]
    labels = np.empty(x.size, dtype=np.int64)
    labels[order] = np.repeat(np.arange(k), np.diff(edges))
    return labels


def _kmeans_1d(x, k, seed, n_init, max_iter):
    order = np.argsort(x, kind="stable")
    xs = x[order]
    distinct = xs[np.r_[True, xs[1:] != xs[:-1]]]
    if distinct.size < k:
        raise ClusterError(f"k-means with k={k} needs at least {k} distinct feature values, "
                           f"the data has {distinct.size}")
    xc = xs - xs[xs.size // 2]  # centering keeps the cumulative sums of squares accurate
    cs1 = np.r_[0.0, np.cumsum(xc)]
    cs2 = np.r_[0.0, np.cumsum(xc**2)]
    if distinct.size <= EXACT_KMEANS_MAX_DISTINCT:
        return _kmeans_1d_optimal(x, xc, order, k)
    rng = np.random.default_rng(seed)
    quantiles = np.linspace(0, distinct.size - 1, 2 * k + 1)[1::2].astype(int)
    starts = [distinct[quantiles] - xs[xs.size // 2]]
    starts += [_kmeanspp_1d(xc, k, rng) for _ in range(max(n_init - 1, 0))]
    best = min((_lloyd_1d(xc, cs1, cs2, s, max_iter) for s in starts),
               key=lambda result: result[2])
    labels = np.empty(x.size, dtype=np.int64)
    labels[order] = np.repeat(np.arange(k), np.diff(best[0]))
    return labels


def kmeans(features, k: int = 2, columns=None, scale: bool = True, seed: int = 0,
           n_init: int = 4, max_iter: int = 300) -> np.ndarray:
    """K-means labels, one int per frame, clusters numbered by ascending center.

    ``features``: a frame_stats table (default column ``mean``), a 2-D array (frames x
    features) or a 1-D array. ``scale`` standardizes each column (z-score) first, so
    columns in different units weigh equally (no effect on a single column).
    With one column and at most 1500 distinct values the result is the global optimum
    (dynamic programming); otherwise exact Lloyd iterations run on the sorted data
    (cumulative sums) from a quantile start plus ``n_init - 1`` k-means++ starts, and
    the lowest inertia wins.
    With several columns scikit-learn's ``KMeans(n_init=n_init)`` is used.
    Cluster ``i`` has the ``i``-th smallest center in the first column; still use
    :func:`order_by` / :func:`align_labels` to give ids a meaning on purpose.

    Raises :class:`~xlabel.errors.ClusterError` for fewer frames (or distinct values)
    than ``k``, identical frames, or NaN features (naming the frames).

    >>> kmeans(np.array([1.0, 1.1, 9.0, 9.2, 1.05]), k=2).tolist()
    [0, 0, 1, 1, 0]
    """
    if int(k) < 1:
        raise ClusterError(f"k must be >= 1, got {k}")
    matrix, _, _ = _prepare(features, columns, scale, n_needed=int(k), what=f"k-means with k={k}")
    if matrix.shape[1] == 1:
        return _kmeans_1d(matrix[:, 0], int(k), seed, n_init, max_iter)
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=int(k), n_init=n_init, max_iter=max_iter, random_state=seed)
    labels = model.fit_predict(matrix)
    rank = np.argsort(np.argsort(model.cluster_centers_[:, 0], kind="stable"), kind="stable")
    return rank[labels].astype(np.int64)


# --------------------------------------------------------------------------- DBSCAN


def _upper_bounds(xs, eps):
    """For each sorted point i: one past the last j with ``xs[j] - xs[i] <= eps``.

    ``searchsorted(xs + eps)`` is only a guess: ``xs[i] + eps`` is rounded, so it is
    corrected to the exact predicate on the computed difference (which is what a
    distance computation sees, and is symmetric between i and j).
    """
    n, idx = xs.size, np.arange(xs.size)
    hi = np.searchsorted(xs, xs + eps, side="right")
    while True:  # grow past neighbours the rounded bound missed
        grow = np.zeros(n, bool)
        inside = hi < n
        grow[inside] = xs[hi[inside]] - xs[idx[inside]] <= eps
        if not grow.any():
            break
        hi[grow] = np.searchsorted(xs, xs[hi[grow]], side="right")
    while True:  # shrink below points the rounded bound wrongly took
        shrink = xs[hi - 1] - xs[idx] > eps
        if not shrink.any():
            return hi
        hi[shrink] = np.searchsorted(xs, xs[hi[shrink] - 1], side="left")


def _lower_bounds(xs, eps):
    """For each sorted point i: the first j with ``xs[i] - xs[j] <= eps`` (mirror image)."""
    return xs.size - _upper_bounds(-xs[::-1], eps)[::-1]


def _dbscan_1d(x, eps, min_samples):
    """Exact DBSCAN on one feature, with scikit-learn's labels.

    Sorting makes neighbourhoods contiguous: counts come from two bound searches, a
    cluster is a run of core points (in sorted order) whose gaps are <= eps, and a border
    point can only see the clusters of its nearest core on either side. scikit-learn
    expands clusters in order of their first core point (by frame index) and a border point
    joins the first cluster that reaches it, so clusters are numbered in that order and a
    border point between two clusters takes the lower number: identical to sklearn.
    """
    n = x.size
    order = np.argsort(x, kind="stable")
    xs = x[order]
    lo, hi = _lower_bounds(xs, eps), _upper_bounds(xs, eps)
    core = (hi - lo) >= min_samples
    labels_sorted = np.full(n, -1, dtype=np.int64)
    core_pos = np.flatnonzero(core)
    if core_pos.size == 0:
        return labels_sorted[order]  # all noise; the caller warns
    run = np.r_[0, np.cumsum(xs[core_pos[1:]] - xs[core_pos[:-1]] > eps)]
    first_frame = np.full(run[-1] + 1, n, dtype=np.int64)
    np.minimum.at(first_frame, run, order[core_pos])
    cluster_of_run = np.argsort(np.argsort(first_frame, kind="stable"), kind="stable")
    labels_sorted[core_pos] = cluster_of_run[run]
    _attach_border(xs, core, core_pos, labels_sorted, eps)
    labels = np.empty(n, dtype=np.int64)
    labels[order] = labels_sorted
    return labels


def _attach_border(xs, core, core_pos, labels_sorted, eps):
    """Give each non-core point within eps of a core the lower id of its two nearest cores."""
    border = np.flatnonzero(~core)
    after = np.searchsorted(core_pos, border)  # index into core_pos of the next core
    best = np.full(border.size, np.iinfo(np.int64).max)
    has_left = after > 0
    left = core_pos[np.maximum(after - 1, 0)]
    ok = has_left & (xs[border] - xs[left] <= eps)
    best[ok] = labels_sorted[left[ok]]
    has_right = after < core_pos.size
    right = core_pos[np.minimum(after, core_pos.size - 1)]
    ok = has_right & (xs[right] - xs[border] <= eps)
    best[ok] = np.minimum(best[ok], labels_sorted[right[ok]])
    reached = best != np.iinfo(np.int64).max
    labels_sorted[border[reached]] = best[reached]


def k_distances(matrix, k: int) -> np.ndarray:
    """Distance of every point to its k-th nearest point, counting itself (as DBSCAN does).

    A point is a DBSCAN core point for ``min_samples=k`` exactly when this is <= eps.
    Exact and O(n k) for one column (windows of k consecutive sorted points); scikit-learn's
    NearestNeighbors otherwise.

    >>> k_distances(np.array([0.0, 1.0, 3.0]), 2).tolist()
    [1.0, 1.0, 2.0]
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    matrix = matrix[:, None] if matrix.ndim == 1 else matrix
    n = matrix.shape[0]
    k = min(int(k), n)
    if matrix.shape[1] > 1:
        from sklearn.neighbors import NearestNeighbors

        dist, _ = NearestNeighbors(n_neighbors=k).fit(matrix).kneighbors(matrix)
        return dist[:, -1]
    order = np.argsort(matrix[:, 0], kind="stable")
    xs = matrix[order, 0]
    idx = np.arange(n)
    best = np.full(n, np.inf)
    for offset in range(k):  # window [start, start + k - 1] containing i at position offset
        start = idx - offset
        ok = (start >= 0) & (start + k - 1 < n)
        s = start[ok]
        reach = np.maximum(xs[idx[ok]] - xs[s], xs[s + k - 1] - xs[idx[ok]])
        best[ok] = np.minimum(best[ok], reach)
    out = np.empty(n)
    out[order] = best
    return out


def knee_eps(kdist) -> float:
    """The knee of the sorted k-distance curve: the point farthest below its chord.

    Both axes are normalized to [0, 1], so the result does not depend on units.

    >>> knee_eps(np.r_[np.full(90, 1.0), np.linspace(1, 50, 10)])
    1.0
    """
    curve = np.sort(np.asarray(kdist, dtype=np.float64))
    span = curve[-1] - curve[0]
    if curve.size < 3 or span == 0:
        return float(curve[-1])
    height = (curve - curve[0]) / span
    chord = np.linspace(0.0, 1.0, curve.size)
    return float(curve[int(np.argmax(chord - height))])


def dbscan(features, eps: float | None = None, min_samples: int = DEFAULT_MIN_SAMPLES,
           columns=None, scale: bool = True, return_info: bool = False):
    """DBSCAN labels, one int per frame; noise is -1 and stays distinct.

    ``scale=True`` (default) standardizes each column first, so ``eps`` is in standard
    deviations; with ``scale=False`` ``eps`` is in the data's own units (e.g. counts).
    ``eps=None`` picks eps at the knee of the sorted k-distance curve (k = ``min_samples``).
    A point is core when at least ``min_samples`` points (itself included) lie within
    ``eps`` (inclusive), as in scikit-learn.

    One column: exact, O(n log n) 1-D DBSCAN giving the same labels as
    ``sklearn.cluster.DBSCAN`` (same partition, noise, border assignment and numbering:
    clusters numbered by their first core frame). Differences can only come from floating
    point rounding of a distance that equals ``eps``. Several columns: scikit-learn.

    The eps used is never printed. It is returned with ``return_info=True`` as
    ``(labels, info)``, ``info`` a dict with ``eps`` (in the units used for clustering),
    ``eps_source`` ("given" or "knee"), ``min_samples``, ``n_clusters``, ``n_noise``,
    ``scale``, ``columns`` and ``scales`` (per-column std divided out, or None). Nothing
    is kept between calls.

    Only noise gives a :class:`ClusterWarning` suggesting an eps; too few frames,
    identical frames and NaN features raise :class:`~xlabel.errors.ClusterError`.

    >>> labels, info = dbscan(np.array([1.0, 1.1, 1.2, 5.0, 5.1, 5.2, 20.0]), eps=0.5,
    ...                       min_samples=2, scale=False, return_info=True)
    >>> labels.tolist(), info["n_noise"]
    ([0, 0, 0, 1, 1, 1, -1], 1)
    """
    min_samples = int(min_samples)
    if min_samples < 1:
        raise ClusterError(f"min_samples must be >= 1, got {min_samples}")
    if eps is not None and not eps > 0:
        raise ClusterError(f"eps must be > 0, got {eps}")
    matrix, cols, scales = _prepare(features, columns, scale, n_needed=min_samples,
                                    what=f"DBSCAN with min_samples={min_samples}")
    kdist = None
    source = "given"
    if eps is None:
        kdist = k_distances(matrix, min_samples)
        eps, source = knee_eps(kdist), "knee"
        eps = eps if eps > 0 else float(np.min(kdist[kdist > 0]))
    labels = _run_dbscan(matrix, float(eps), min_samples)
    info = {"eps": float(eps), "eps_source": source, "min_samples": min_samples,
            "n_clusters": int(labels.max() + 1), "n_noise": int(np.sum(labels == -1)),
            "scale": bool(scale), "columns": cols,
            "scales": None if scales is None else scales.tolist()}
    if info["n_clusters"] == 0:
        _warn_only_noise(matrix, eps, min_samples, kdist)
    return (labels, info) if return_info else labels



def _run_dbscan(matrix, eps, min_samples):
    if matrix.shape[1] == 1:
        return _dbscan_1d(matrix[:, 0], eps, min_samples)
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples).fit_predict(matrix).astype(np.int64)


def _warn_only_noise(matrix, eps, min_samples, kdist):
    kdist = k_distances(matrix, min_samples) if kdist is None else kdist
    warnings.warn(
        f"DBSCAN found only noise: no frame has {min_samples} frames within eps={eps:.6g}. "
        f"Try eps={knee_eps(kdist):.6g} (knee of the {min_samples}-distance curve) or "
        f"eps={np.quantile(kdist, 0.9):.6g} (90% of frames become core points), "
        f"or lower min_samples.", ClusterWarning, stacklevel=3)


# --------------------------------------------------------------------------- renumbering


def _as_labels(labels, name="labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ClusterError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ClusterError(f"{name} must be integer cluster ids (-1 = noise)")
    return arr.astype(np.int64)


def order_by(labels, values=None, column: str = DEFAULT_COLUMN, stat: str = "mean") -> np.ndarray:
    """Renumber clusters by a feature: cluster 0 has the smallest ``stat`` of ``values``.

    ``values``: one number per frame (array or Series) or a frame_stats table, whose
    ``column`` (default ``mean``, the average flux) is used: cluster 0 is then always the
    darkest. ``stat`` is "mean" or "median". Noise (-1) stays -1; ties keep the old order.

    >>> order_by([1, 1, 0, 0, -1], [900.0, 950.0, 3.0, 4.0, 500.0]).tolist()
    [1, 1, 0, 0, -1]
    """
    labels = _as_labels(labels)
    if values is None:
        raise ClusterError("order_by needs the values to order clusters by "
                           "(e.g. the frame_stats table)")
    if isinstance(values, pd.DataFrame):
        if column not in values.columns:
            raise ClusterError(f"column {column!r} not in table; available: {list(values.columns)}")
        values = values[column]
    values = np.asarray(values, dtype=np.float64)
    if values.shape != labels.shape:
        raise ClusterError(f"order_by: {labels.size} labels but {values.size} values")
    if stat not in ("mean", "median"):
        raise ClusterError(f"stat must be 'mean' or 'median', got {stat!r}")
    ids = np.unique(labels[labels >= 0])
    reduce = np.nanmean if stat == "mean" else np.nanmedian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN cluster sorts last
        key = np.array([reduce(values[labels == i]) for i in ids])
    rank = np.empty(ids.size, dtype=np.int64)
    rank[np.lexsort((ids, np.nan_to_num(key, nan=np.inf)))] = np.arange(ids.size)
    return _remap(labels, ids, rank)


def _remap(labels, old_ids, new_ids) -> np.ndarray:
    out = np.full(labels.shape, -1, dtype=np.int64)
    pos = np.searchsorted(old_ids, labels)
    hit = labels >= 0
    out[hit] = np.asarray(new_ids, dtype=np.int64)[pos[hit]]
    return out


def _contingency(a, b):
    """(row ids, column ids, counts) of the cross table of two label arrays.

    The counts are scikit-learn's ``contingency_matrix``; this adds the ids of its rows
    and columns (sorted, as scikit-learn orders them), which the tables show.
    """
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(a, b).astype(np.int64)
    return np.unique(a), np.unique(b), table


def align_labels(reference, labels) -> np.ndarray:
    """Renumber ``labels`` so its clusters take the ids of the best-matching ``reference`` ones.

    Matching maximizes the total overlap (Hungarian algorithm on the contingency table,
    ``scipy.optimize.linear_sum_assignment``), for any number of clusters on either side.
    Noise (-1) is never matched: -1 stays -1, and frames that are noise in ``reference``
    do not vote. Clusters left unmatched get new ids above the reference's largest.

    >>> align_labels([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]).tolist()
    [0, 0, 1, 1, 2]
    """
    from scipy.optimize import linear_sum_assignment

    ref, labels = _as_labels(reference, "reference"), _as_labels(labels)
    if ref.shape != labels.shape:
        raise ClusterError(f"align_labels: reference has {ref.size} frames, labels {labels.size}")
    own_ids = np.unique(labels[labels >= 0])
    both = (ref >= 0) & (labels >= 0)
    ref_ids, lab_ids, table = _contingency(ref[both], labels[both])
    new = {}
    if table.size:
        r, c = linear_sum_assignment(table, maximize=True)
        new = {int(lab_ids[j]): int(ref_ids[i]) for i, j in zip(r, c)}
    next_id = int(max(ref.max(initial=-1), -1)) + 1
    targets = []
    for old in own_ids.tolist():
        if old not in new:
            new[old], next_id = next_id, next_id + 1
        targets.append(new[old])
    return _remap(labels, own_ids, targets)


# --------------------------------------------------------------------------- comparison


@dataclass(repr=False)
class Comparison:
    """Result of :func:`compare`.

    ``table``: contingency DataFrame (rows: ``a`` ids, columns: aligned ``b`` ids, -1 =
    noise); ``ari``: adjusted Rand index; ``nmi``: normalized mutual information
    (arithmetic mean normalization); ``disagree``: frame indices where ``a`` and
    ``aligned_b`` differ; ``aligned_b``: ``b`` renumbered to match ``a``.
    """

    table: pd.DataFrame
    ari: float
    nmi: float
    disagree: np.ndarray
    aligned_b: np.ndarray

    def __repr__(self) -> str:
        n = int(self.table.to_numpy().sum())
        return (f"Comparison(n={n}, ari={self.ari:.4f}, nmi={self.nmi:.4f}, "
                f"disagree={self.disagree.size} frames)\n{self.table.to_string()}")


def compare(a, b) -> Comparison:
    """Compare two clusterings of the same frames (noise -1 counts as its own group).

    ``b`` is first aligned to ``a`` (:func:`align_labels`); ARI and NMI do not depend on
    numbering, the contingency table and ``disagree`` use the aligned ids.

    >>> result = compare([0, 0, 1, 1], [1, 1, 0, 0])
    >>> result.ari, result.disagree.tolist()
    (1.0, [])
    """
    a, b = _as_labels(a, "a"), _as_labels(b, "b")
    if a.shape != b.shape:
        raise ClusterError(f"compare: a has {a.size} frames, b has {b.size}")
    aligned = align_labels(a, b)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    rows, cols, table = _contingency(a, aligned)
    frame = pd.DataFrame(table, index=pd.Index(rows, name="a"), columns=pd.Index(cols, name="b"))
    return Comparison(table=frame, ari=float(adjusted_rand_score(a, aligned)),
                      nmi=float(normalized_mutual_info_score(a, aligned)),
                      disagree=np.flatnonzero(a != aligned), aligned_b=aligned)
