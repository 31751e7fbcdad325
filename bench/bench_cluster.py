"""Benchmark xlabel.cluster on 1-D mean flux against scikit-learn, in the same process.

Run from the repository root: ``python -m bench.bench_cluster`` (``--n`` frames for xlabel,
``--n-sklearn-dbscan`` frames for the sklearn DBSCAN baseline, which needs memory for every
neighbourhood and is far too slow/hungry at 1,000,000 frames of dense flux data).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic_flux(n: int, seed: int = 0) -> np.ndarray:
    """Mean flux of n frames: 95% good (bright), 5% bad (dark), shuffled."""
    rng = np.random.default_rng(seed)
    n_bad = n // 20
    flux = np.r_[rng.normal(50.0, 5.0, n_bad), rng.normal(1000.0, 30.0, n - n_bad)]
    return rng.permutation(flux)


def best_time(func, repeat: int = 3):
    """Best wall time of ``repeat`` runs and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def report(name, seconds, baseline=None):
    ratio = f"  ({baseline / seconds:.1f}x faster than sklearn)" if baseline else ""
    print(f"{name:<58s} {seconds:8.3f} s{ratio}")


def bench_kmeans(x):
    from sklearn.cluster import KMeans

    from xlabel.cluster import compare, kmeans

    column = x[:, None]
    t_ours, ours = best_time(lambda: kmeans(x, k=2))
    for n_init in (1, 4):
        t_sk, theirs = best_time(
            lambda: KMeans(2, n_init=n_init, random_state=0).fit_predict(column), repeat=1)
        report(f"sklearn KMeans k=2 n_init={n_init}, n={x.size:,}", t_sk)
    report(f"xlabel kmeans k=2 (exact 1-D Lloyd, 4 starts), n={x.size:,}", t_ours, t_sk)
    print(f"  ARI(xlabel, sklearn) = {compare(ours, theirs).ari:.6f}")


def bench_dbscan(x, n_sklearn, eps):
    from sklearn.cluster import DBSCAN

    from xlabel.cluster import compare, dbscan

    t_full, _ = best_time(lambda: dbscan(x, eps=eps, min_samples=5, scale=False))
    report(f"xlabel dbscan eps={eps} min_samples=5, n={x.size:,}", t_full)
    t_knee, (_, info) = best_time(lambda: dbscan(x, min_samples=5, return_info=True))
    report(f"xlabel dbscan eps=knee ({info['eps']:.3g} sd), n={x.size:,}", t_knee)

    small = x[:n_sklearn]
    t_sk, theirs = best_time(
        lambda: DBSCAN(eps=eps, min_samples=5).fit_predict(small[:, None]), repeat=1)
    report(f"sklearn DBSCAN eps={eps} min_samples=5, n={small.size:,}", t_sk)
    t_ours, ours = best_time(lambda: dbscan(small, eps=eps, min_samples=5, scale=False))
    report(f"xlabel dbscan eps={eps} min_samples=5, n={small.size:,}", t_ours, t_sk)
    print(f"  identical labels to sklearn: {np.array_equal(ours, theirs)}, "
          f"ARI = {compare(ours, theirs).ari:.6f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--n-sklearn-dbscan", type=int, default=100_000)
    parser.add_argument("--eps", type=float, default=0.1, help="DBSCAN eps in flux units")
    args = parser.parse_args(argv)
    x = synthetic_flux(args.n)
    bench_kmeans(x)
    bench_dbscan(x, args.n_sklearn_dbscan, args.eps)


if __name__ == "__main__":
    main()
