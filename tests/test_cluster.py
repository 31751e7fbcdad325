"""Tests of xlabel.cluster: exactness against scikit-learn, renumbering, comparison, errors."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from xlabel.cluster import (
    ClusterWarning,
    align_labels,
    compare,
    dbscan,
    k_distances,
    kmeans,
    knee_eps,
    order_by,
)
from xlabel.errors import ClusterError


def sklearn_dbscan(x, eps, min_samples, **kw):
    x = np.asarray(x, dtype=float)
    return DBSCAN(eps=eps, min_samples=min_samples, **kw).fit_predict(x.reshape(len(x), -1))


def quiet_dbscan(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClusterWarning)
        return dbscan(x, scale=False, **kw)


def flux_scan(n_good=300, n_bad=40, seed=0):
    """Mean flux of a scan: bright good frames, dark bad frames at the start (shutter)."""
    rng = np.random.default_rng(seed)
    flux = np.r_[rng.normal(50.0, 5.0, n_bad), rng.normal(1000.0, 30.0, n_good)]
    truth = np.r_[np.zeros(n_bad, int), np.ones(n_good, int)]  # 0 = bad, 1 = good
    return flux, truth


# ----------------------------------------------------------------------- DBSCAN exactness

# Values and eps on a 0.5 grid: every distance is exact in floating point, so ties at
# exactly eps (inclusive) and duplicates are compared without rounding ambiguity.
grid_data = st.lists(st.integers(0, 40), min_size=1, max_size=80).map(lambda v: np.array(v) * 0.5)


@settings(max_examples=100, deadline=None)
@given(x=grid_data, eps_steps=st.integers(1, 8), min_samples=st.integers(1, 7))
def test_dbscan_1d_matches_sklearn_exactly_with_ties_and_duplicates(x, eps_steps, min_samples):
    eps = eps_steps * 0.5
    if len(x) < min_samples or np.ptp(x) == 0:
        return  # degenerate inputs are tested separately
    ours = quiet_dbscan(x, eps=eps, min_samples=min_samples)
    # Same partition, noise, border assignment and even the same numbering.
    np.testing.assert_array_equal(ours, sklearn_dbscan(x, eps, min_samples))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(10, 400), eps=st.floats(0.01, 2.0),
       min_samples=st.integers(2, 10))
def test_dbscan_1d_matches_sklearn_on_continuous_data(seed, n, eps, min_samples):
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(0, 1, n), rng.normal(6, 0.5, n // 3)]
    ours = quiet_dbscan(x, eps=eps, min_samples=min_samples)
    np.testing.assert_array_equal(ours, sklearn_dbscan(x, eps, min_samples, algorithm="kd_tree"))


def test_border_point_reachable_from_two_clusters_goes_where_sklearn_puts_it():
    # Frame 0 (value 5, 3 neighbours) is a border point within eps of core 7 (right
    # cluster) and core 3 (left cluster); eps=2, min_samples=4. sklearn expands clusters
    # in order of their first core frame and the border point joins the first that
    # reaches it: here the right cluster (frame 1).
    x = np.array([5.0, 7.0, 8.5, 8.5, 8.5, 3.0, 1.5, 1.5, 1.5])
    ours = dbscan(x, eps=2.0, min_samples=4, scale=False)
    np.testing.assert_array_equal(ours, sklearn_dbscan(x, 2.0, 4))
    assert ours.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    # Reversing the frame order moves the border point to the other cluster.
    rev = dbscan(x[::-1], eps=2.0, min_samples=4, scale=False)
    np.testing.assert_array_equal(rev, sklearn_dbscan(x[::-1], 2.0, 4))
    assert rev.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0]


def test_dbscan_2d_matches_sklearn():
    rng = np.random.default_rng(3)
    pts = np.r_[rng.normal(0, 0.3, (60, 2)), rng.normal(4, 0.3, (60, 2)), [[2.0, 10.0]]]
    ours = dbscan(pts, eps=0.6, min_samples=4, scale=False)
    np.testing.assert_array_equal(ours, sklearn_dbscan(pts, 0.6, 4))
    assert ours[-1] == -1 and ours.max() == 1


def test_dbscan_on_frame_stats_table_uses_mean_and_reports_eps():
    flux, truth = flux_scan()
    table = pd.DataFrame({"scan": "s", "frame": np.arange(flux.size), "mean": flux,
                          "std": np.ones(flux.size)})
    labels, info = dbscan(table, return_info=True)
    assert labels.dtype.kind == "i"
    assert info["eps_source"] == "knee" and info["eps"] > 0 and info["columns"] == ["mean"]
    assert not hasattr(dbscan, "last_info")  # no state kept between calls: return_info
    assert info["n_clusters"] == labels.max() + 1 and info["n_noise"] == np.sum(labels == -1)
    # with the knee eps the dark and the bright frames are never in one cluster
    assert not set(labels[truth == 0]) - {-1} & set(labels[truth == 1]) - {-1}


def test_dbscan_scale_makes_eps_in_standard_deviations():
    flux, _ = flux_scan()
    std = flux.std()
    scaled, info = dbscan(flux, eps=0.05, min_samples=5, scale=True, return_info=True)
    raw = dbscan(flux, eps=0.05 * std, min_samples=5, scale=False)
    assert compare(scaled, raw).ari == 1.0
    assert info["scales"] == pytest.approx([std])


def test_k_distances_and_knee():
    x = np.array([0.0, 1.0, 3.0, 3.0, 10.0])
    np.testing.assert_allclose(k_distances(x, 2), [1.0, 1.0, 0.0, 0.0, 7.0])
    np.testing.assert_allclose(k_distances(x, 3), [3.0, 2.0, 2.0, 2.0, 7.0])
    curve = np.r_[np.full(95, 0.1), [5.0, 9.0, 20.0, 40.0, 80.0]]
    assert knee_eps(curve) == pytest.approx(0.1)


# ----------------------------------------------------------------------- k-means


def test_kmeans_separates_well_separated_groups():
    flux, truth = flux_scan(seed=4)
    labels = kmeans(flux, k=2)
    assert compare(truth, labels).ari == 1.0
    three = kmeans(np.r_[np.full(30, 0.0), np.full(30, 50.0), np.full(30, 100.0)]
                   + np.tile([0.0, 0.5, 1.0], 30), k=3)
    assert np.bincount(three).tolist() == [30, 30, 30]


def test_kmeans_2d_uses_all_columns():
    rng = np.random.default_rng(1)
    pts = np.r_[rng.normal([0, 0], 0.2, (40, 2)), rng.normal([0, 5], 0.2, (40, 2))]
    labels = kmeans(pd.DataFrame(pts, columns=["mean", "std"]), k=2, columns=["mean", "std"])
    assert compare(np.r_[np.zeros(40), np.ones(40)], labels).ari == 1.0


def inertia(x, labels):
    return sum(((x[labels == i] - x[labels == i].mean()) ** 2).sum() for i in np.unique(labels))


def best_contiguous_inertia(x, k):
    """Brute force: optimal 1-D k-means clusters are runs of the sorted distinct values."""
    from itertools import combinations

    distinct = np.unique(x)
    best = np.inf
    for cuts in combinations(distinct[1:], k - 1):
        best = min(best, inertia(x, np.searchsorted(np.array(cuts), x, side="right")))
    return best


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, 11), min_size=6, max_size=60), k=st.integers(1, 4))
def test_kmeans_1d_finds_the_optimum_on_tied_data(values, k):
    x = np.array(values, dtype=float)
    if np.unique(x).size < max(k, 2):
        return  # tested in test_fewer_frames_than_clusters / test_identical_frames
    labels = kmeans(x, k=k)
    assert sorted(np.unique(labels)) == list(range(k))
    assert inertia(x, labels) == pytest.approx(best_contiguous_inertia(x, k), abs=1e-9)


def test_kmeans_1d_at_least_as_good_as_sklearn():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(5)
    for seed in range(3):
        x = rng.integers(0, 20, 50).astype(float)
        labels = kmeans(x, k=4, seed=seed)
        theirs = KMeans(4, n_init=10, random_state=seed).fit(x[:, None]).inertia_
        assert inertia(x, labels) <= theirs * (1 + 1e-9)


def test_kmeans_1d_lloyd_path_matches_exact_path(monkeypatch):
    import xlabel.cluster as cluster

    rng = np.random.default_rng(7)
    x = np.r_[rng.normal(0, 1, 500), rng.normal(8, 1, 300), rng.normal(20, 2, 200)]
    exact = kmeans(x, k=3)
    monkeypatch.setattr(cluster, "EXACT_KMEANS_MAX_DISTINCT", 0)
    lloyd = kmeans(x, k=3)
    np.testing.assert_array_equal(lloyd, exact)
    assert np.bincount(exact).tolist() == [500, 300, 200]


def test_order_by_kmeans_mean_puts_dark_frames_in_cluster_0():
    for seed in range(5):
        flux, truth = flux_scan(seed=seed)
        perm = np.random.default_rng(seed).permutation(flux.size)
        table = pd.DataFrame({"frame": np.arange(flux.size), "mean": flux[perm]})
        labels = order_by(kmeans(table), table)
        np.testing.assert_array_equal(labels, truth[perm])


# ----------------------------------------------------------------------- order_by / align


def test_order_by_puts_darkest_cluster_first_and_keeps_noise():
    values = np.array([900.0, 910.0, 5.0, 6.0, 400.0, 410.0, 77.0])
    labels = np.array([0, 0, 2, 2, 1, 1, -1])
    np.testing.assert_array_equal(order_by(labels, values), [2, 2, 0, 0, 1, 1, -1])
    table = pd.DataFrame({"mean": values})
    np.testing.assert_array_equal(order_by(labels, table), [2, 2, 0, 0, 1, 1, -1])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_align_labels_recovers_permuted_reference_with_noise(k):
    rng = np.random.default_rng(k)
    ref = rng.integers(-1, k, 200)
    perm = rng.permutation(k)
    relabeled = np.where(ref >= 0, perm[np.maximum(ref, 0)], -1)
    np.testing.assert_array_equal(align_labels(ref, relabeled), ref)


def test_align_labels_more_clusters_than_reference_and_noise_stays_noise():
    ref = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    labels = np.array([7, 7, 3, 5, 5, 5, 7, -1])
    out = align_labels(ref, labels)
    np.testing.assert_array_equal(out, [0, 0, 2, 1, 1, 1, 0, -1])


def test_flip_trick_fails_when_first_frame_is_good_but_alignment_does_not():
    # The shutter opened early: frame 0 is a good (bright) frame, frames 1..40 are dark.
    flux, _ = flux_scan(n_good=300, n_bad=40, seed=2)
    flux = np.r_[1000.0, flux]
    truth = np.r_[1, np.zeros(40, int), np.ones(300, int)]  # 0 = bad, 1 = good
    for raw in (kmeans(flux), 1 - kmeans(flux)):  # either arbitrary numbering
        flipped = 1 - raw if raw[0] == 1 else raw  # the "flip if first frame is 1" trick
        assert np.mean(flipped == truth) < 0.2  # meaning inverted: good called bad
        np.testing.assert_array_equal(order_by(raw, flux), truth)
        np.testing.assert_array_equal(align_labels(truth, raw), truth)


# ----------------------------------------------------------------------- compare


@settings(max_examples=80, deadline=None)
@given(a=st.lists(st.integers(-1, 4), min_size=1, max_size=60), data=st.data())
def test_compare_scores_match_sklearn(a, data):
    b = data.draw(st.lists(st.integers(-1, 5), min_size=len(a), max_size=len(a)))
    result = compare(a, b)
    assert result.ari == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert result.nmi == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    np.testing.assert_array_equal(result.disagree, np.flatnonzero(np.array(a) != result.aligned_b))
    assert result.table.to_numpy().sum() == len(a)


def test_compare_table_disagree_and_repr():
    a = np.array([0, 0, 0, 1, 1, 1, -1])
    b = np.array([1, 1, 0, 0, 0, 0, -1])
    result = compare(a, b)
    np.testing.assert_array_equal(result.aligned_b, [0, 0, 1, 1, 1, 1, -1])
    assert result.disagree.tolist() == [2]
    assert result.table.loc[0, 1] == 1 and result.table.loc[-1, -1] == 1
    assert "disagree=1 frames" in repr(result) and "ari=" in repr(result)


# ----------------------------------------------------------------------- degenerate input


def test_fewer_frames_than_clusters():
    with pytest.raises(ClusterError, match="at least 3 frames"):
        kmeans(np.array([1.0, 2.0]), k=3)
    with pytest.raises(ClusterError, match="distinct"):
        kmeans(np.array([1.0, 1.0, 2.0, 2.0]), k=3)
    with pytest.raises(ClusterError, match="min_samples=5"):
        dbscan(np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("func", [kmeans, dbscan])
def test_identical_frames(func):
    with pytest.raises(ClusterError, match="identical"):
        func(np.full(20, 3.0))


@pytest.mark.parametrize("func", [kmeans, dbscan])
def test_nan_features_name_the_frames(func):
    table = pd.DataFrame({"frame": np.arange(10, 30), "mean": np.linspace(0, 1, 20)})
    table.loc[[3, 8], "mean"] = np.nan
    with pytest.raises(ClusterError, match=r"2 frame\(s\): 13, 18"):
        func(table)


def test_dbscan_only_noise_warns_with_suggested_eps():
    x = np.arange(0.0, 100.0, 10.0)
    with pytest.warns(ClusterWarning, match=r"only noise.*Try eps=") as caught:
        labels, info = dbscan(x, eps=1.0, min_samples=3, scale=False, return_info=True)
    assert (labels == -1).all() and info["n_clusters"] == 0
    suggested = [float(v) for v in re.findall(r"eps=([0-9.e+-]+) \(", str(caught[0].message))]
    assert len(suggested) == 2
    for eps in suggested:  # every suggestion finds the one cluster
        assert (dbscan(x, eps=eps, min_samples=3, scale=False) == 0).all()


def test_missing_column_is_a_clear_error():
    with pytest.raises(ClusterError, match="not in table"):
        kmeans(pd.DataFrame({"flux": [1.0, 2.0], "x": [0, 1]}))


def test_pipeline_on_real_frame_stats_table_puts_dark_frames_in_cluster_0():
    from xlabel.features import frame_stats

    rng = np.random.default_rng(0)
    # frame 0 good (shutter opened early), frames 1..12 underexposed, then good frames
    lam = np.r_[100.0, np.full(12, 5.0), np.full(50, 100.0)]
    frames = rng.poisson(lam[:, None, None], (lam.size, 16, 16)).astype(np.uint16)
    table = frame_stats(frames, progress=False)
    truth = (lam > 50).astype(int)  # 0 = dark/bad
    np.testing.assert_array_equal(order_by(kmeans(table), table), truth)
    labels, info = dbscan(table, return_info=True)
    dbscan_ordered = order_by(labels, table)
    assert info["n_clusters"] >= 2 and set(dbscan_ordered[truth == 0]) <= {0, -1}
    assert compare(truth, kmeans(table, k=2, columns=["mean", "std"])).ari == 1.0
