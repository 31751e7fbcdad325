"""Binning GISAXS-like series by the autoencoder's latent space vs by binned pixels.

Run from the repository root: ``python -m bench.bench_embed`` (``--quick`` for a smaller set).
The autoencoder is trained on series of seed 0; every number is measured on held-out series
of seed 1 (other sizes, spacings, exposures, detectors; never seen in training). Clustering
the latent columns (K-means k=4, DBSCAN at the knee eps, HDBSCAN) is compared, in the same
process, with the same clusterings of the autoencoder's own input (binned, log1p, per-frame
z-scored pixels) and of log1p binned pixels. Wall times are noisy on a loaded machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def cluster_scores(matrix, truth) -> dict:
    """ARI of K-means (k = number of types), DBSCAN (knee eps) and HDBSCAN against ``truth``."""
    import warnings

    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import adjusted_rand_score

    from xlabel.cluster import dbscan, kmeans
    k = len(set(truth))
    scaled = (matrix - matrix.mean(0)) / np.where(matrix.std(0) > 0, matrix.std(0), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"kmeans": adjusted_rand_score(truth, kmeans(matrix, k=k)),
                "dbscan": adjusted_rand_score(truth, dbscan(matrix)),
                "hdbscan": adjusted_rand_score(truth, HDBSCAN(min_cluster_size=5).fit_predict(scaled))}


def main(argv=None) -> int:
    import torch

    from xlabel.embed import fit_embedding, prepare_input
    from xlabel.models.frames import prepare_frames
    from xlabel.synth import make_gisaxs
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="12x8 training, 8x8 held-out frames")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_train, n_test = ((12, 8), (8, 8)) if args.quick else ((24, 12), (16, 12))
    train = make_gisaxs(*n_train, frame_shape=(64, 64), seed=0)
    test = make_gisaxs(*n_test, frame_shape=(64, 64), seed=1)
    start = time.perf_counter()
    emb = fit_embedding(train.source(), size=32, epochs=args.epochs, seed=0)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    table = emb.transform(test.source(), table=test.truth)
    transform_s = time.perf_counter() - start
    truth = test.truth["structure"].to_numpy()
    rows = {
        "latent (z0..)": cluster_scores(table[emb.latent_columns].to_numpy(), truth),
        "pixels, AE input (z-scored log)": cluster_scores(
            prepare_input(test.source(), 32).reshape(len(test), -1).astype(float), truth),
        "pixels, log1p binned": cluster_scores(
            prepare_frames(test.frames, 32, test.source()).reshape(len(test), -1).astype(float), truth),
    }
    print(f"train {len(train)} frames ({n_train[0]} series), held-out {len(test)} frames "
          f"({n_test[0]} series), 64x64 binned to 32x32, {args.epochs} epochs")
    print(f"fit {fit_s:.1f} s, transform {transform_s:.2f} s (loaded machine)")
    print(pd.DataFrame(rows).T.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
