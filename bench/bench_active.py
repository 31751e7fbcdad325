"""Active learning: held-out balanced accuracy against the number of labels, labeling a pool
of synthetic scans in random order vs in ``xlabel.active`` order (K-means start, then margin
batches with a distance penalty).

Run from the repository root: ``python -m bench.bench_active``. Task ``faults`` (default):
``xlabel.synth.make_fault_task`` -- good, low_beam, saturated (rarest) and dead_chip frames;
the held-out scans have exposures no pool scan has, including both extremes. Task ``easy``:
the earlier two-class ``make_scan`` scans (separable, ~5 % bad; random order saturates at
~20 labels), kept to show why it could not tell the orders apart. ``--ablations`` adds the
orders between the two (K-means start + random batches, uncertainty without diversity,
random start + uncertainty). Every score is the mean +- standard deviation over ``--repeats``
seeds, each a different start; the model is the same for every order.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xlabel.active import active_model, heldout_scores, learning_curve, next_to_label
from xlabel.features import frame_stats
from xlabel.review import DEFAULT_COLUMNS, smooth_model
from xlabel.synth import make_fault_task, make_scan

#: Scan-relative columns: the held-out scans have exposures the pool never had.
FAULT_COLUMNS = ["flux_rel", "flux_rank", "frac_saturated", "frac_zero"]

#: name -> learning_curve keywords
ORDERS = {"random": dict(order="random"),
          "uncertainty+diversity": dict(order="uncertainty")}
ABLATIONS = {"kmeans start + random": dict(order="random", first="kmeans"),
             "uncertainty, no diversity": dict(order="uncertainty", diversity=False),
             "random start + uncertainty+div.": dict(order="uncertainty", first="random")}


def fault_tables(n_train, n_test, n_frames, seed=0):
    """(pool table, pool truth, test table, test truth) of ``make_fault_task``."""
    task = make_fault_task(n_train, n_test, n_frames, (32, 32), seed=seed)
    out = []
    for scans in (task.train, task.test):
        table = frame_stats([s.source() for s in scans], progress=False)
        out += [table, np.concatenate([s.truth["fault"] for s in scans]).astype(object)]
    return out


def easy_tables(n_train, n_test, n_frames, seed=0):
    """The earlier benchmark: two-class ``make_scan`` scans (16 x 16), seeds 0.. and 1000.."""
    out = []
    for seeds in (range(seed, seed + n_train), range(1000 + seed, 1000 + seed + n_test)):
        scans = [make_scan(n_frames, (16, 16), seed=s, name=f"s{s}") for s in seeds]
        table = frame_stats([s.source() for s in scans], progress=False)
        out += [table, np.concatenate([s.truth["label"] for s in scans]).astype(object)]
    return out


def curves(orders, pool, truth, test, test_truth, columns, args, factory):
    """{order name: list of learning_curve tables, one per seed}."""
    results = {}
    for name, kwargs in tqdm(orders.items(), desc="orders"):
        results[name] = [learning_curve(
            pool[columns], truth, test[columns], test_truth, test["scan"].to_numpy(),
            start=args.start, batch=args.batch, rounds=args.rounds, model_factory=factory,
            seed=seed, **kwargs) for seed in range(args.repeats)]
    return results


def summary(results, classes) -> pd.DataFrame:
    """Labels x order: mean +- sd of balanced accuracy, mean worst-scan balanced accuracy."""
    first = next(iter(results.values()))[0]
    table = pd.DataFrame({"labels": first["labels"]})
    for name, runs in results.items():
        values = np.array([run["balanced_accuracy"] for run in runs])
        worst = np.array([run["worst_scan_balanced_accuracy"] for run in runs])
        table[f"{name}: bal. acc."] = [f"{m:.3f} ± {s:.3f}" for m, s in
                                       zip(values.mean(0), values.std(0))]
        table[f"{name}: worst scan"] = worst.mean(0).round(3)
    return table


def final_recalls(results, classes) -> pd.DataFrame:
    rows = {}
    for name, runs in results.items():
        last = pd.DataFrame([run.iloc[-1] for run in runs])
        rows[name] = {c: f"{last[f'recall_{c}'].mean():.2f}" for c in classes}
        rows[name]["classes found"] = f"{last['classes_found'].mean():.1f}"
    return pd.DataFrame(rows).T


def timing(pool, truth, columns, batch, factory):
    """Seconds of one next_to_label call (100 labels) and of one fit of the model alone."""
    rng = np.random.default_rng(0)
    labels = np.full(len(truth), "", dtype=object)
    known = rng.choice(len(truth), 100, replace=False)
    labels[known] = truth[known]
    if len(set(truth[known])) < 2:
        return None
    x = pool[columns].to_numpy()
    start = time.perf_counter()
    factory(0).fit(x[known], labels[known])
    fit = time.perf_counter() - start
    start = time.perf_counter()
    next_to_label(x, labels, sorted(set(truth)), n=batch, model=factory(0))
    return time.perf_counter() - start, fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("faults", "easy"), default="faults")
    parser.add_argument("--model", choices=("forest", "smooth"), default="forest",
                        help="forest: xlabel.active.active_model; smooth: review.smooth_model")
    parser.add_argument("--train-scans", type=int, default=8)
    parser.add_argument("--test-scans", type=int, default=4)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--start", type=int, default=12)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--columns", default=None, help="feature columns (comma-separated)")
    args = parser.parse_args(argv)
    make = fault_tables if args.task == "faults" else easy_tables
    pool, truth, test, test_truth = make(args.train_scans, args.test_scans, args.frames)
    columns = (args.columns.split(",") if args.columns
               else FAULT_COLUMNS if args.task == "faults" else list(DEFAULT_COLUMNS))
    factory = active_model if args.model == "forest" else (lambda seed: smooth_model())
    classes = sorted(set(test_truth))
    print(f"pool: {len(truth)} frames {pd.Series(truth).value_counts().to_dict()}; held out: "
          f"{len(test_truth)} frames of {test['scan'].nunique()} scans; columns {columns}")
    orders = {**ORDERS, **(ABLATIONS if args.ablations else {})}
    results = curves(orders, pool, truth, test, test_truth, columns, args, factory)
    print(summary(results, classes).to_string(index=False))
    print(f"\nper-class recall at {results['random'][0]['labels'].iloc[-1]} labels "
          "(mean over seeds):")
    print(final_recalls(results, classes).to_string())
    ceiling = heldout_scores(factory(0).fit(pool[columns].to_numpy(), truth), test[columns],
                             test_truth, test["scan"].to_numpy(), classes)
    print(f"\nall {len(truth)} pool frames labeled: bal. acc. {ceiling['balanced_accuracy']:.3f}, "
          f"worst scan {ceiling['worst_scan_balanced_accuracy']:.3f}")
    timed = timing(pool, truth, columns, args.batch, factory)
    if timed:
        print(f"\nnext_to_label (100 labels, {len(truth)} frames): {timed[0]:.2f} s; "
              f"one fit of the model alone: {timed[1]:.2f} s (ratio {timed[0] / timed[1]:.1f})")


if __name__ == "__main__":
    main()
