"""Active learning on synthetic scans: held-out accuracy against the number of labels,
labeling in random order vs in ``xlabel.review.next_to_label`` order (margin + diversity).

Run from the repository root: ``python -m bench.bench_active`` (``--train-scans`` pool scans,
``--test-scans`` held-out scans of other seeds, ``--rounds`` x ``--batch`` labels after a
start of 5 good + 5 bad). The model scored is the same for both orders (``smooth_model``);
held-out scores are balanced accuracy and bad-frame recall, the worst over the test scans.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, recall_score
from tqdm.auto import tqdm

from xlabel.features import frame_stats
from xlabel.review import DEFAULT_COLUMNS, next_to_label, smooth_model
from xlabel.synth import make_scan


COLUMNS = list(DEFAULT_COLUMNS)


def scans_table(seeds, n_frames):
    scans = [make_scan(n_frames, (16, 16), seed=s, name=f"s{s}") for s in seeds]
    table = frame_stats([s.source() for s in scans], progress=False)
    return table, np.concatenate([s.truth["label"] for s in scans]).astype(object)


def worst_scores(model, table, truth):
    scores = []
    for _, rows in table.groupby("scan").indices.items():
        predicted = model.predict(table.iloc[rows][COLUMNS].to_numpy())
        scores.append((balanced_accuracy_score(truth[rows], predicted),
                       recall_score(truth[rows], predicted, pos_label="bad")))
    return np.min(scores, axis=0)


def run(order, pool, truth, test, test_truth, rounds, batch, seed):
    rng = np.random.default_rng(seed)
    labels = np.full(len(truth), "", dtype=object)
    start = np.r_[rng.choice(np.flatnonzero(truth == "bad"), 5, replace=False),
                  rng.choice(np.flatnonzero(truth == "good"), 5, replace=False)]
    labels[start] = truth[start]
    x = pool[COLUMNS].to_numpy()
    rows_out = []
    for step in range(rounds + 1):
        known = labels != ""
        model = smooth_model().fit(x[known], labels[known])
        rows_out.append((int(known.sum()), *worst_scores(model, test, test_truth)))
        if step == rounds:
            break
        if order == "random":
            rows = rng.choice(np.flatnonzero(~known), batch, replace=False)
        else:
            rows = next_to_label(x, labels, ("good", "bad"), n=batch, seed=seed)["row"]
        labels[rows] = truth[rows]
    return rows_out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-scans", type=int, default=6)
    parser.add_argument("--test-scans", type=int, default=4)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--columns", default=",".join(DEFAULT_COLUMNS),
                        help="feature columns (comma-separated)")
    args = parser.parse_args(argv)
    COLUMNS[:] = args.columns.split(",")
    pool, truth = scans_table(range(args.train_scans), args.frames)
    test, test_truth = scans_table(range(1000, 1000 + args.test_scans), args.frames)
    results = {}
    for order in tqdm(("random", "uncertainty"), desc="orders"):
        runs = [run(order, pool, truth, test, test_truth, args.rounds, args.batch, seed)
                for seed in range(args.repeats)]
        results[order] = np.mean(np.array(runs), axis=0)
    table = pd.DataFrame({"labels": results["random"][:, 0].astype(int)})
    for order, values in results.items():
        table[f"{order} worst-scan bal. acc."] = values[:, 1].round(3)
        table[f"{order} worst-scan bad recall"] = values[:, 2].round(3)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
