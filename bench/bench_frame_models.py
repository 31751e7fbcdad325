"""Benchmark the frame models of issue 10 on held-out scans of other exposure.

Run from the repository root: ``python -m bench.bench_frame_models`` (``--quick`` for a
smoke run; ``--task flux`` or ``--task defect`` for one task; ``--inputs`` to compare the
exposure-invariant input alternatives instead; ``--speed`` for the epoch time only).

1. Accuracy: the two tasks of :mod:`xlabel.synth` (``make_flux_task``: shutter ramp and
   beam losses, exposures 100x apart; ``make_defect_task``: dead module, streak, shadowed
   corner, exposures 30x apart, +-8 % jitter) are written as Eiger HDF5 files; every model
   kind is trained with ``xlabel train`` on the training scans and applied with
   ``xlabel filter`` to the test scans (other exposures, the lowest and highest among
   them). Per-class recall/precision pooled over the test scans, the worst test scan's
   bad recall and precision, and the training time. For the CNN of the defect task:
   where its Grad-CAM maps point (fraction of defect frames whose map maximum lies in the
   defect box; SmoothGrad-CAM++ with 4 noisy samples).
2. Speed: one training epoch of the CNN on 2,000 frames of 64x64, against xlabel's first
   CNN (kind "cnn-global") in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("mlp-features", "mlp-pixels", "cnn-global", "cnn", "sae")


def task_of(name, quick, frames=None):
    from xlabel.synth import make_defect_task, make_flux_task
    n_frames = frames or (120 if quick else 300)
    if name == "flux":
        return make_flux_task(n_train=4 if quick else 8, n_test=3 if quick else 10, n_frames=n_frames,
                              seed=0)
    return make_defect_task(n_train=4 if quick else 8, n_test=3 if quick else 8, n_frames=n_frames,
                            seed=0)


def run_cli(argv):
    from xlabel.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(argv)
    if status != 0:
        raise SystemExit(f"xlabel {' '.join(argv)} failed:\n{out.getvalue()}")
    return out.getvalue()


def scores(task, folder: Path):
    """Per-class recall/precision pooled over the test scans and the worst scan (bad class)."""
    truth, predicted, worst = [], [], (1.0, 1.0)
    for scan in task.test:
        table = pd.read_csv(folder / f"{scan.name}_filter.csv")
        bad = table["prediction"].to_numpy() == "bad"
        hits = (bad & scan.is_bad).sum()
        worst = (min(worst[0], hits / max(scan.is_bad.sum(), 1)), min(worst[1], hits / max(bad.sum(), 1)))
        truth.append(scan.is_bad)
        predicted.append(bad)
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    out = {}
    for name, t, p in (("bad", truth, predicted), ("good", ~truth, ~predicted)):
        out[name] = ((t & p).sum() / max(t.sum(), 1), (t & p).sum() / max(p.sum(), 1))
    return out, worst


def pointing(model_folder, task, configs):
    from xlabel.models import load_model
    from xlabel.models.gradcam import cam, pointing_score
    from xlabel.synth import defect_boxes
    model = load_model(model_folder)
    rows = []
    for method, layer in configs:
        hits, total = 0.0, 0
        for scan in task.test:
            bad = np.flatnonzero(scan.is_bad)
            maps = cam(model, scan.source(), target="bad", layer=layer, method=method, n_samples=4)[bad]
            hits += pointing_score(maps, defect_boxes(scan.truth)[bad]) * len(bad)
            total += len(bad)
        rows.append(f"| {method} | {layer or 'last conv'} | {hits / total:.3f} |")
        print(rows[-1], flush=True)
    return rows


def accuracy(args, task_name, folder: Path):
    task = task_of(task_name, args.quick, args.frames)
    written = task.write(folder / task_name)
    masters = [str(m) for m, _ in written["train"]]
    csvs = [str(c) for _, c in written["train"]]
    tests = [str(m) for m, _ in written["test"]]
    levels = [f"{s.params['level']:.3g}" for s in task.test]
    train_levels = ", ".join(f"{s.params['level']:.3g}" for s in task.train)
    print(f"\n### {task.name} task: {len(task.train)} training scans (levels "
          f"{train_levels}), {len(task.test)} test scans "
          f"(levels {', '.join(levels)}), {sum(len(s) for s in task.test)} test frames, "
          f"{sum(int(s.is_bad.sum()) for s in task.test)} bad\n")
    print("| kind | bad recall | bad precision | good recall | good precision | worst-scan bad recall "
          "| worst-scan bad precision | train time |\n|---|---|---|---|---|---|---|---|")
    models = {}
    for kind in args.kinds:
        model = folder / task_name / f"{kind}.xlmodel"
        given = args.epochs is not None and kind in ("cnn", "sae", "cnn-global")
        extra = ["--epochs", str(args.epochs)] if given else []
        start = time.perf_counter()
        run_cli(["train", *masters, "--labels", *csvs, "--kind", kind, *extra, "--out", str(model)])
        took = time.perf_counter() - start
        out = folder / task_name / f"{kind}_filtered"
        run_cli(["filter", *tests, "--model", str(model), "--out", str(out), "--no-progress"])
        per_class, worst = scores(task, out)
        print(f"| {kind} | {per_class['bad'][0]:.3f} | {per_class['bad'][1]:.3f} | {per_class['good'][0]:.3f} "
              f"| {per_class['good'][1]:.3f} | {worst[0]:.3f} | {worst[1]:.3f} | {took:.0f} s |", flush=True)
        models[kind] = model
    if task_name == "defect" and "cnn" in models:
        print("\nGrad-CAM of the CNN on the defect frames of the test scans: fraction whose map "
              "maximum lies inside the defect box\n\n| method | layer | pointing score |\n|---|---|---|")
        configs = [("gradcam", None), ("gradcam", "all")]
        if not args.quick:
            configs += [("gradcam++", None), ("xgradcam", None), ("xgradcam", "all"), ("smoothgrad++", None)]
        pointing(models["cnn"], task, configs)


def inputs(args):
    """The exposure-invariant input alternatives, trained in-process on both tasks."""
    from xlabel.models.pixelnet import PixelCNN
    print("\n| task | input | exposure augmentation | bad recall | bad precision | worst-scan recall "
          "| worst-scan precision | epochs | train time |\n|---|---|---|---|---|---|---|---|---|")
    for task_name in args.tasks:
        task = task_of(task_name, args.quick, args.frames)
        labels = np.concatenate([s.truth["label"] for s in task.train])
        for mode, augment in (("median", True), ("frame", True), ("frame", False), ("scan", True), ("global", False)):
            model = PixelCNN(input=mode, augment_exposure=augment, epochs=args.epochs or 60, progress=False,
                             threads=args.threads)
            start = time.perf_counter()
            model.fit([s.source() for s in task.train], labels)
            took = time.perf_counter() - start
            hits = fn = fp = 0
            worst = (1.0, 1.0)
            for scan in task.test:
                bad = model.predict(scan.source()) == "bad"
                tp = (bad & scan.is_bad).sum()
                hits, fn, fp = hits + tp, fn + (~bad & scan.is_bad).sum(), fp + (bad & ~scan.is_bad).sum()
                worst = (min(worst[0], tp / max(scan.is_bad.sum(), 1)), min(worst[1], tp / max(bad.sum(), 1)))
            print(f"| {task_name} | {mode} | {augment} | {hits / (hits + fn):.3f} | {hits / max(hits + fp, 1):.3f} "
                  f"| {worst[0]:.3f} | {worst[1]:.3f} | {model.info_['epochs_run']} | {took:.0f} s |", flush=True)


def speed(args):
    """One epoch on 2,000 frames of 64x64: the CNN vs the first CNN, same process, best of 2.

    ``fit(epochs=1)`` time (reading and binning the frames, one epoch on the training
    scans, validation) and, for the pixel CNN, the epoch alone (``info_["epoch_seconds"]``).
    """
    from xlabel.models.cnn import CNNClassifier
    from xlabel.models.pixelnet import PixelCNN
    from xlabel.synth import make_defect_scan
    scans = [make_defect_scan(n_frames=500, seed=i, level=20.0 * (i + 1)) for i in range(4)]
    sources = [s.source() for s in scans]
    labels = np.concatenate([s.truth["label"] for s in scans])
    PixelCNN(epochs=1, progress=False).fit(sources[:2], labels[:1000])  # one-time torch imports
    candidates = (("cnn-global (first CNN, 8-16-32 pooled, batch 32)", CNNClassifier, {}),
                  ("cnn (PixelCNN default: 16-32-64-64 strided, minority x4)", PixelCNN, {}),
                  ("cnn (PixelCNN 8-16-32 strided, minority x2)", PixelCNN,
                   {"channels": (8, 16, 32), "hidden": 32, "minority_factor": 2.0}))
    rows = []
    for name, cls, params in candidates:
        took, epoch = [], []
        for _ in range(2):
            model = cls(epochs=1, progress=False, threads=args.threads, size=64, **params)
            start = time.perf_counter()
            model.fit(sources, labels)
            took.append(time.perf_counter() - start)
            epoch += model.info_.get("epoch_seconds", [])
        rows.append((name, min(took), min(epoch) if epoch else None))
    base = rows[0][1]
    print(f"\nOne epoch on 2,000 frames of 64x64 (fit with epochs=1: reading, training on the "
          f"training scans, validation), {args.threads} torch thread(s), best of 2\n\n"
          "| model | fit(epochs=1) | vs first CNN | the epoch alone |\n|---|---|---|---|")
    for name, took, epoch in rows:
        alone = "" if epoch is None else f"{epoch:.1f} s"
        print(f"| {name} | {took:.1f} s | {took / base:.2f}x | {alone} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small tasks, few epochs")
    parser.add_argument("--task", choices=("flux", "defect"), action="append", dest="tasks")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (at most) of the pixel networks (default: each model's own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=None, help="frames per scan (default 300; 120 --quick)")
    parser.add_argument("--inputs", action="store_true", help="compare the input alternatives")
    parser.add_argument("--speed", action="store_true", help="epoch time only")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or ["flux", "defect"]
    if args.quick:
        args.epochs = min(args.epochs or 3, 3)
    import torch
    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if args.speed:
        speed(args)
    elif args.inputs:
        inputs(args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for task_name in args.tasks:
                accuracy(args, task_name, Path(tmp))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
