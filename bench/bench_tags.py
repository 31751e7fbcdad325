"""Benchmark the multi-label tag models on held-out synthetic batches (issue 13 A).

Run from the repository root: ``python -m bench.bench_tags`` (``--quick`` for a smoke run).

As in the NSLS-II study: 10 batches of ``xlabel.synth.make_tagged`` frames (each batch its
own seed, exposure, beam centre and detector defects), the models train on batches 0-8
(early stopping and per-tag thresholds on whole batches held out of those) and are
tested on batch 9, never seen. Reports macro mAP (sklearn ``average_precision_score`` per
tag, averaged), per-tag AP / precision / recall at the chosen thresholds, mAP per
exposure tercile of the test batch (the worst part), and training time of each model as
a ratio to the image CNN trained in the same process (the machine may be loaded).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from xlabel.models.multilabel import TagCNN, TagJointCNN, TagPolarCNN, evaluate_tags
from xlabel.synth import make_tagged_batches

MODELS = {"cnn": ("image CNN (tags-cnn)", TagCNN),
          "polar": ("coefficient view (tags-polar)", TagPolarCNN),
          "joint": ("joint (tags-joint)", TagJointCNN)}


def run(n_batches, frames, shape, size, epochs, threads, seed, channels, models=tuple(MODELS),
        patience=8):
    start = time.perf_counter()
    batches = make_tagged_batches(n_batches, frames, (shape, shape), seed=seed, progress=True)
    print(f"generated {n_batches} x {frames} frames of {shape}x{shape} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    train, test = batches[:-1], batches[-1]
    tags = pd.concat([b.tags for b in train], ignore_index=True)
    terciles = pd.qcut(test.truth["level"], 3, labels=["low", "mid", "high"]).to_numpy()
    results = {}
    for name, cls in (MODELS[key] for key in models):
        start = time.perf_counter()
        model = cls(size=size, epochs=epochs, threads=threads, seed=seed, progress=False,
                    channels=channels, patience=patience)
        model.fit([b.source() for b in train], tags)
        seconds = time.perf_counter() - start
        proba = model.predict_proba(test.source())
        scores = evaluate_tags(test.tags, proba, thresholds=model.thresholds_)
        by_exposure = {part: round(evaluate_tags(test.tags[terciles == part],
                                                 proba[terciles == part]).mean_ap, 4)
                       for part in ("low", "mid", "high")}
        results[name] = {"mAP": round(scores.mean_ap, 4), "train_s": round(seconds, 1),
                         "epochs": model.info["epochs_run"], "by_exposure": by_exposure,
                         "per_tag": scores.per_tag.round(3).to_dict(orient="index")}
        print(f"{name}: macro mAP {scores.mean_ap:.3f}, {seconds:.0f} s, "
              f"{model.info['epochs_run']} epochs; by exposure {by_exposure}\n"
              f"{scores.per_tag.round(3).to_string()}", flush=True)
    base = next(iter(results.values()))["train_s"]
    for entry in results.values():   # ratio to the first model run in this process
        entry["train_ratio"] = round(entry["train_s"] / base, 2)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 batches of 40 frames, 3 epochs")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--frames", type=int, default=150, help="frames per batch")
    parser.add_argument("--shape", type=int, default=256, help="frame size (square)")
    parser.add_argument("--size", type=int, default=64, help="binned model input size")
    parser.add_argument("--epochs", type=int, default=40, help="at most")
    parser.add_argument("--patience", type=int, default=8,
                        help="epochs without a better validation loss before stopping")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", default="8,16,32,64", help="conv widths")
    parser.add_argument("--models", default="cnn,polar,joint",
                        help="which models, in order (cnn, polar, joint)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.frames, args.epochs = 4, 40, 3
    channels = tuple(int(c) for c in args.channels.split(","))
    results = run(args.batches, args.frames, args.shape, args.size, args.epochs, args.threads,
                  args.seed, channels, args.models.split(","), args.patience)
    print(pd.DataFrame({k: {c: v[c] for c in ("mAP", "train_s", "train_ratio", "epochs")}
                        for k, v in results.items()}).T.to_string())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
