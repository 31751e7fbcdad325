"""Benchmark xlabel.models: held-out accuracy, Grad-CAM speed, ``xlabel filter`` throughput.

Run from the repository root: ``python -m bench.bench_models`` (``--quick`` for a smoke run:
fewer test scans and frames, one MLP preset, shorter CNN training).

1. Accuracy: models trained on the labels of the four bundled sample scans, tested on
   fresh ``xlabel.synth`` scans (seeds 1000+i, 400-600 frames, other beam histories),
   written to disk with ``write_scan`` and read back with ``open_scan`` like the samples.
   Bad-frame recall/precision pooled over the test scans, plus the worst scan.
2. Grad-CAM: ``cam`` on 256x256 frames with xlabel's CNN, per frame, for every method,
   vs a plain forward+backward of the same network on the same batch.
3. Filter: ``xlabel.cli.filter_scan`` (what ``xlabel filter`` runs) on a generated scan vs
   ``frame_stats`` alone on the same file, frames/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from xlabel import samples
from xlabel.features import frame_stats
from xlabel.io import open_scan
from xlabel.synth import make_scan, write_scan

SAMPLES = ("scan_a", "scan_b", "scan_c", "scan_d")


def timed(func):
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def recall_precision(truth_bad, pred_bad):
    hits = int((truth_bad & pred_bad).sum())
    recall = hits / max(int(truth_bad.sum()), 1)
    precision = hits / max(int(pred_bad.sum()), 1)
    return recall, precision


def training_data():
    sources = [open_scan(samples.path(name)) for name in SAMPLES]
    tables = [frame_stats(s, progress=False) for s in sources]
    labels = [samples.truth(name)["label"].to_numpy() for name in SAMPLES]
    return sources, tables, labels


def test_scans(folder: Path, n_scans: int, rng_lengths):
    """Fresh synthetic scans written as Eiger files and opened as the samples are."""
    scans = []
    for i in range(n_scans):
        scan = make_scan(n_frames=int(rng_lengths[i]), seed=1000 + i, name=f"test_{i}")
        source = open_scan(write_scan(scan, folder / scan.name, compression="bslz4"))
        scans.append((source, frame_stats(source, progress=False), scan.is_bad))
    return scans


def score(name, predict_bad, tests, train_time):
    """Pooled and worst-scan bad-frame recall/precision of ``predict_bad(source, table)``."""
    per_scan = [(truth, predict_bad(source, table)) for source, table, truth in tests]
    pooled = recall_precision(np.concatenate([t for t, _ in per_scan]),
                              np.concatenate([p for _, p in per_scan]))
    scans = [recall_precision(t, p) for t, p in per_scan]
    worst = (min(r for r, _ in scans), min(p for _, p in scans))
    return (f"| {name} | {pooled[0]:.3f} | {pooled[1]:.3f} | {worst[0]:.3f} | {worst[1]:.3f} "
            f"| {train_time:.1f} s |")


def accuracy_rows(args, tests):
    from xlabel.models import BASELINE_COLUMNS, DEFAULT_COLUMNS, train_cnn, train_mlp, \
        train_pixel_mlp
    sources, tables, labels = training_data()
    import pandas as pd
    table, label = pd.concat(tables, ignore_index=True), np.concatenate(labels)

    def by_table(model):
        return lambda source, table: model.predict(table) == "bad"

    def by_frames(model):
        return lambda source, table: model.predict(source) == "bad"

    rows = []
    presets = ["256-128-64"] if args.quick else ["512-256-128", "256-128-64"]
    for preset in presets:
        model, took = timed(lambda: train_mlp(table, label, preset=preset))
        rows.append(score(f"feature MLP {preset} {list(DEFAULT_COLUMNS)}", by_table(model),
                          tests, took))
    model, took = timed(lambda: train_mlp(table, label, preset="256-128-64",
                                          columns=BASELINE_COLUMNS))
    rows.append(score("raw-mean MLP 256-128-64 ['mean'] (baseline)", by_table(model), tests,
                      took))
    model, took = timed(lambda: train_pixel_mlp(sources, label))
    rows.append(score("pixel MLP 256-128-64, 32x32", by_frames(model), tests, took))
    groups = np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)])
    model, took = timed(lambda: train_cnn(sources, label, groups=groups,
                                          epochs=args.cnn_epochs, progress=False))
    rows.append(score(f"CNN 64x64, {model.info['epochs_run']} epochs", by_frames(model), tests,
                      took))
    return rows


def gradcam_rows(args):
    import torch

    from xlabel.models.cnn import CNNClassifier, FrameCNN
    from xlabel.models.gradcam import METHODS, cam
    size = 256
    network = FrameCNN(2).eval()
    model = CNNClassifier.from_network(network, frame_shape=(size, size), size=size)
    frames = np.random.default_rng(0).poisson(30, (args.batch, size, size)).astype(np.uint16)

    def forward_backward():
        x = torch.from_numpy(np.log1p(frames).astype(np.float32)).unsqueeze(1)
        x.requires_grad_(True)
        network.zero_grad()
        network(x)[:, 1].sum().backward()

    base = best_of(forward_backward, args.repeat)
    rows = [f"| forward+backward (baseline) | {1e3 * base / args.batch:.1f} ms | 1.00x |"]
    for method in METHODS:
        took = best_of(lambda: cam(model, frames, target=1, method=method), args.repeat)
        rows.append(f"| cam(method={method!r}) | {1e3 * took / args.batch:.1f} ms "
                    f"| {took / base:.2f}x |")
    return rows


def best_of(func, repeat):
    return min(timed(func)[1] for _ in range(repeat))


def filter_rows(args, folder: Path):
    from xlabel.cli import filter_scan
    from xlabel.models import train_mlp
    scan = make_scan(n_frames=args.filter_frames, frame_shape=(256, 256), seed=7,
                     name="filter")
    path = write_scan(scan, folder / "filter", compression="bslz4")
    model = train_mlp(frame_stats(scan.source(), progress=False), scan.truth["label"],
                      preset="256-128-64")
    n = args.filter_frames
    (folder / "out").mkdir()
    stats = best_of(lambda: frame_stats(open_scan(path), progress=False), args.repeat)
    filt = best_of(lambda: filter_scan(model, open_scan(path), folder / "out", "good",
                                       progress=False), args.repeat)
    return [f"| frame_stats alone (baseline) | {n / stats:.0f} frames/s | 1.00x |",
            f"| filter_scan (feature MLP) | {n / filt:.0f} frames/s | {filt / stats:.2f}x |"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--test-scans", type=int, default=8)
    parser.add_argument("--cnn-epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--filter-frames", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.quick:
        args.test_scans, args.cnn_epochs, args.repeat, args.filter_frames = 2, 3, 1, 300
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    lengths = np.random.default_rng(99).integers(400, 601, args.test_scans)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tests = test_scans(folder, args.test_scans, lengths)
        print(f"\nAccuracy: trained on {', '.join(SAMPLES)}; tested on {args.test_scans} "
              f"synthetic scans (seeds 1000+, {sum(len(t) for _, t, _ in tests)} frames, "
              f"{sum(int(b.sum()) for _, _, b in tests)} bad)\n")
        print("| model | recall | precision | worst-scan recall | worst-scan precision "
              "| train time |\n|---|---|---|---|---|---|")
        print("\n".join(accuracy_rows(args, tests)))
        print(f"\nGrad-CAM on {args.batch} frames of 256x256, per frame (best of "
              f"{args.repeat})\n\n| what | per frame | vs forward+backward |\n|---|---|---|")
        print("\n".join(gradcam_rows(args)))
        print(f"\nFilter on {args.filter_frames} frames of 256x256 (bslz4, best of "
              f"{args.repeat})\n\n| what | throughput | time vs frame_stats |\n|---|---|---|")
        print("\n".join(filter_rows(args, folder)))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
