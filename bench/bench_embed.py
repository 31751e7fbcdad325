"""Binning GISAXS-like series by the autoencoder's latent space vs by binned pixels.

Run from the repository root: ``python -m bench.bench_embed`` (``--quick``: one model seed,
two held-out sets). The autoencoder is trained on series of seed 0; every number is
measured on held-out sets of other seeds (other series, sizes, spacings, exposures and
another detector mask; never seen in training), for several training seeds. Sets 1-4 were
used while choosing the settings; sets 5-8 only once the training settings were fixed (the
spherical latent normalisation was kept after one look at them). Each feature matrix gets the same clusterings (K-means k=4, Ward agglomerative k=4, HDBSCAN, DBSCAN at
the knee eps) in the same process: the latent columns; the autoencoder's own input (the
same preprocessing: valid-pixel block means / frame mean, log, z-scored); log1p binned
pixels; and the latent of a plain denoising autoencoder (``consistency=0, zoom=1,
shift=0``: what the augmentation-consistency term adds). Wall times are noisy on a loaded
machine. A supervised reference (logistic regression on the same pixels, trained
with labels) shows that the type is visible in the frames.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

CLUSTERINGS = ("kmeans", "ward", "hdbscan", "dbscan")
SETS = ("1-4 (settings chosen on these)", "5-8 (fresh)")


def cluster_labels(matrix, k: int) -> dict:
    """Cluster ids of each clustering of ``matrix`` (columns standardised for all)."""
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering

    from xlabel.cluster import dbscan, kmeans
    scaled = (matrix - matrix.mean(0)) / np.where(matrix.std(0) > 0, matrix.std(0), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"kmeans": kmeans(matrix, k=k),
                "ward": AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(scaled),
                "hdbscan": HDBSCAN(min_cluster_size=5).fit_predict(scaled),
                "dbscan": dbscan(matrix)}


def matched_classes(truth, clusters) -> np.ndarray:
    """The class each frame's cluster stands for: clusters matched one-to-one to classes
    (Hungarian matching on the contingency table, scipy); unmatched clusters are wrong."""
    from scipy.optimize import linear_sum_assignment
    table = pd.crosstab(pd.Series(clusters, name="cluster"), pd.Series(truth, name="class"))
    rows, cols = linear_sum_assignment(-table.to_numpy())
    mapping = {table.index[r]: table.columns[c] for r, c in zip(rows, cols)}
    return np.array([mapping.get(c, "(unmatched)") for c in clusters], dtype=object)


def matched_report(truth, clusters, scans) -> tuple[pd.DataFrame, pd.Series]:
    """Per-class recall / precision of :func:`matched_classes`, and per series (scan) the
    fraction of its frames in its own class's cluster."""
    from sklearn.metrics import precision_recall_fscore_support
    predicted = matched_classes(truth, clusters)
    classes = sorted(set(truth))
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0)
    per_scan = pd.Series(predicted == truth).groupby(np.asarray(scans)).mean()
    return (pd.DataFrame({"recall": recall, "precision": precision, "frames": support}, index=classes),
            per_scan)


def supervised_reference(train, tests, size) -> dict:
    """Held-out accuracy of a logistic regression on the AE input pixels, trained with the
    training set's structure labels: is the type visible in the frames at all?"""
    from sklearn.linear_model import LogisticRegression

    from xlabel.embed import prepare_input
    flat = prepare_input(train.source(), size).reshape(len(train), -1)
    model = LogisticRegression(C=0.1, max_iter=2000).fit(flat, train.truth["structure"])
    return {seed: float((model.predict(prepare_input(d.source(), size).reshape(len(d), -1))
                         == d.truth["structure"]).mean()) for seed, d in tests.items()}


def feature_sets(emb, plain, data) -> dict:
    from xlabel.embed import prepare_input
    from xlabel.models.frames import prepare_frames
    n = len(data)
    out = {"latent (consistency AE)": emb.encode(data.source()),
           "pixels, AE input": prepare_input(data.source(), emb.size).reshape(n, -1).astype(float),
           "pixels, log1p binned": prepare_frames(data.frames, emb.size, data.source())
           .reshape(n, -1).astype(float)}
    if plain is not None:
        out["latent (plain denoising AE)"] = plain.encode(data.source())
    return out


def main(argv=None) -> int:
    import torch
    from sklearn.metrics import adjusted_rand_score

    from xlabel.embed import fit_embedding
    from xlabel.synth import make_gisaxs
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one training seed, two held-out sets")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_seeds, test_seeds = ((0,), (1, 5)) if args.quick else ((0, 1, 2), tuple(range(1, 9)))
    train = make_gisaxs(24, 12, frame_shape=(64, 64), seed=0)
    tests = {s: make_gisaxs(16, 12, frame_shape=(64, 64), seed=s) for s in test_seeds}
    rows, reports, series, fit_s = [], [], [], {}
    for model_seed in model_seeds:
        start = time.perf_counter()
        emb = fit_embedding(train.source(), size=32, epochs=args.epochs, seed=model_seed,
                            progress=False)
        fit_s.setdefault("consistency", []).append(time.perf_counter() - start)
        plain = None
        if model_seed == model_seeds[0]:
            start = time.perf_counter()
            plain = fit_embedding(train.source(), size=32, epochs=args.epochs, seed=model_seed,
                                  consistency=0, zoom=1, shift=0, progress=False)
            fit_s.setdefault("plain", []).append(time.perf_counter() - start)
        for test_seed, data in tests.items():
            truth = data.truth["structure"].to_numpy()
            for name, matrix in feature_sets(emb, plain, data).items():
                if name.startswith("pixels") and model_seed != model_seeds[0]:
                    continue                      # pixels do not depend on the model seed
                labels = cluster_labels(matrix, k=len(set(truth)))
                rows.append({"sets": SETS[test_seed > 4], "features": name,
                             "model_seed": model_seed, "test_seed": test_seed,
                             **{c: adjusted_rand_score(truth, labels[c]) for c in CLUSTERINGS}})
                if name.startswith("latent (consistency"):
                    report, per_scan = matched_report(truth, labels["kmeans"], data.truth["scan"])
                    reports.append(report)
                    series.append(per_scan)
    scores = pd.DataFrame(rows)
    print(f"train 288 frames (24 series, seed 0), held-out sets {list(test_seeds)} of 192 frames "
          f"(16 series, 4 per type); 64x64 binned to 32x32; {args.epochs} epochs; "
          f"training seeds {list(model_seeds)}")
    print("fit s (loaded machine): " + ", ".join(f"{k} {np.mean(v):.1f}" for k, v in fit_s.items()))
    summary = scores.groupby(["sets", "features"], sort=False)[list(CLUSTERINGS)].agg(["mean", "min"])
    print("ARI against the structure type, mean and worst over held-out sets x training seeds:")
    print(summary.round(2).to_string())
    accuracy = supervised_reference(train, tests, 32)
    print("supervised reference (logistic regression on the AE input pixels, trained with "
          "the training labels), held-out accuracy: "
          + ", ".join(f"set {k} {v:.2f}" for k, v in accuracy.items()))
    print("K-means on the latent, per held-out set and training seed:")
    latent = scores[scores["features"].str.startswith("latent (consistency")]
    print(latent.pivot(index="model_seed", columns="test_seed", values="kmeans").round(2).to_string())
    per_class = pd.concat(reports)
    print("K-means on the latent, clusters matched to classes: per-class recall/precision "
          "(mean and worst held-out set, all training seeds):")
    print(per_class.groupby(level=0)[["recall", "precision"]].agg(["mean", "min"]).round(2).to_string())
    per_series = pd.concat(series)
    print(f"series (held-out scans x training seeds) whose frames are mostly in another class's "
          f"cluster: {int((per_series < 0.5).sum())} of {len(per_series)}; worst series: "
          f"{per_series.idxmin()} ({per_series.min():.0%} of its frames right)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
