"""Benchmark the feature MLP's fit with BLAS limited to one thread vs BLAS's default threads.

Run from the repository root: ``python -m bench.bench_mlp_threads`` (``--rows``, ``--repeat``).

``FeatureMLP.fit`` runs scikit-learn's adam on 200-row minibatches. Each matmul is small, so
BLAS threads gain little on an idle machine and spin against other work on a loaded one (a
classroom laptop running a notebook server and a browser). Both settings run interleaved
in one process on the same table; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

from xlabel.models import mlp


def _table(rows, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({name: rng.normal(size=rows) for name in ("a", "b", "c")})
    labels = np.where(table["a"] + 0.3 * rng.normal(size=rows) > 1.0, "bad", "good")
    return table, labels


def _fit_seconds(table, labels, epochs):
    """Wall time of the pipeline fit ``FeatureMLP.fit`` runs (scaler + MLPClassifier)."""
    pipeline = mlp.build_pipeline("512-256-128", seed=0, max_iter=epochs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached: the bench fixes the epochs
        pipeline.fit(table.to_numpy(float), labels)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    table, labels = _table(args.rows)
    blas = [(info["internal_api"], info["num_threads"]) for info in threadpool_info()
            if info["user_api"] == "blas"]
    print(f"{args.rows} rows, preset 512-256-128, {args.epochs} epochs; BLAS {blas}; "
          f"load average {os.getloadavg()[0]:.1f}")
    times = {"BLAS default threads": [], "BLAS 1 thread": []}
    for _ in range(args.repeat):
        times["BLAS default threads"].append(_fit_seconds(table, labels, args.epochs))
        with threadpool_limits(1, user_api="blas"):
            times["BLAS 1 thread"].append(_fit_seconds(table, labels, args.epochs))
    base = np.median(times["BLAS default threads"])
    for name, values in times.items():
        print(f"{name:22s} median {np.median(values):6.2f} s  "
              f"({base / np.median(values):.2f}x)  runs {[round(v, 2) for v in values]}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
