"""Benchmark xlabel.review: quality of the suspect ranking and the out-of-fold time.

Run from the repository root: ``python -m bench.bench_review`` (``--scans`` x ``--frames``
synthetic scans of ``--shape`` pixels; 3 % of labels flipped, half near the class boundary).
The baseline for the time is one fit of the same model on every labeled frame, in the same
process (out of fold fits it once per fold on 4/5 of the frames, so ~4x one fit is ideal).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from xlabel.features import frame_stats
from xlabel.review import DEFAULT_COLUMNS, fast_model, flip_labels, out_of_fold_proba, \
    rank_label_issues
from xlabel.synth import make_scan


def noisy_table(n_scans, n_frames, shape):
    """Feature table, noisy labels and the flipped mask of ``n_scans`` synthetic scans."""
    tables, labels, flipped = [], [], []
    for seed in tqdm(range(n_scans), desc="scans"):
        scan = make_scan(n_frames, shape, seed=seed, name=f"s{seed}")
        tables.append(frame_stats(scan.source(), progress=False))
        noisy, mask = flip_labels(scan.truth, seed=seed)
        labels.append(noisy)
        flipped.append(mask)
    import pandas as pd
    return pd.concat(tables, ignore_index=True), np.concatenate(labels), np.concatenate(flipped)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--shape", type=int, nargs=2, default=(16, 16))
    args = parser.parse_args(argv)
    table, labels, flipped = noisy_table(args.scans, args.frames, tuple(args.shape))
    x = table[DEFAULT_COLUMNS].to_numpy()
    y = (labels == "bad").astype(int)
    from threadpoolctl import threadpool_limits

    def one_fit():
        with threadpool_limits(1):
            fast_model().fit(x, y)

    fit_wall, fit_cpu = timed(one_fit)
    (oof, oof_cpu), proba = timed(lambda: out_of_fold_proba(
        x, labels, table["scan"].to_numpy(), ("good", "bad")), result=True)
    fit_wall2, fit_cpu2 = timed(one_fit)
    fit_wall, fit_cpu = min(fit_wall, fit_wall2), min(fit_cpu, fit_cpu2)
    start = time.perf_counter()
    issues = rank_label_issues(labels, proba, ("good", "bad"))
    ranking = time.perf_counter() - start
    k = int(flipped.sum())
    ranked = flipped[issues["row"].to_numpy()]
    print(f"{len(table)} frames, {args.scans} scans, {k} flipped")
    print(f"top k: {ranked[:k].mean():.3f} flipped; top 2k holds {ranked[:2 * k].sum() / k:.3f} "
          f"of the flipped; {int(issues['flagged'].sum())} flagged")
    print(f"out-of-fold {oof:.2f} s wall / {oof_cpu:.2f} s CPU; one fit on all frames "
          f"(best of 2) {fit_wall:.2f} s wall / {fit_cpu:.2f} s CPU; CPU ratio "
          f"{oof_cpu / fit_cpu:.1f}; ranking {ranking:.3f} s")


def timed(func, result=False):
    """(wall s, process CPU s) of ``func()``, and its result if ``result``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = func()
    times = (time.perf_counter() - wall, time.process_time() - cpu)
    return (times, value) if result else times


if __name__ == "__main__":
    main()
