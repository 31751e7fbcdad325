"""Where do the class activation maps of the frame CNN point? (issue 10, local defects)

Run from the repository root: ``python -m bench.bench_gradcam`` (``--quick`` for a smoke
run). The CNN (kind "cnn", :class:`~xlabel.models.pixelnet.PixelCNN`) is trained on the
training scans of :func:`xlabel.synth.make_defect_task` (dead module, streak, shadowed
corner; exposures 30x apart, +-8 % jitter) and explained on the defect frames of its test
scans, whose exposures no training scan has. For every CAM method and layer choice: the
fraction of defect frames whose map maximum lies inside the defect box (the "pointing
score", :func:`xlabel.models.gradcam.pointing_score`), per defect kind, with a 1-pixel
margin, and on the defect frames the model calls bad; the time per frame relative to
Grad-CAM at the last layer in the same process. The trained model is kept in
``--cache`` (a folder under the system temp dir by default) and reused when its
settings match, so methods can be compared without training again.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

#: Grad-CAM first: the time column is relative to the first row.
DEFAULT_METHODS = ("gradcam", "gradcam++", "xgradcam", "smoothgrad++", "layercam")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small task, few epochs (smoke run)")
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300, help="frames per scan")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="task seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--cache", type=Path, default=None,
                        help="model folder to reuse or write (default: one per setting in the temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.frames, args.epochs = 4, 2, 120, 8
    if args.cache is None:
        name = f"xlabel_bench_gradcam_{args.n_train}_{args.n_test}_{args.frames}_{args.epochs}_{args.seed}"
        args.cache = Path(tempfile.gettempdir()) / f"{name}.xlmodel"
    return args


def trained_model(args, task):
    """The task's CNN: loaded from ``args.cache`` when there, else trained and saved there."""
    from xlabel.models import load_model, registry, save_model
    if args.cache.is_dir():
        try:
            return load_model(args.cache), "cached"
        except Exception as error:  # noqa: BLE001 - a stale or foreign cache is retrained
            print(f"(cache {args.cache} not usable: {error}; training again)")
    labels = np.concatenate([scan.truth["label"] for scan in task.train])
    model = registry.get("cnn")(epochs=args.epochs, threads=args.threads, progress=True)
    start = time.perf_counter()
    model.fit([scan.source() for scan in task.train], labels)
    took = time.perf_counter() - start
    save_model(model, args.cache)
    return model, f"trained in {took:.0f} s ({model.info['epochs_run']} epochs)"


def held_out(model, task):
    """Per-class recall/precision pooled over the test scans, the worst scan, predictions."""
    from sklearn.metrics import precision_recall_fscore_support
    truth, predicted, worst, per_scan = [], [], (1.0, 1.0, ""), {}
    for scan in task.test:
        pred = np.asarray(model.predict(scan.source())) == "bad"
        per_scan[scan.name] = pred
        p, r, _, _ = precision_recall_fscore_support(scan.is_bad, pred, labels=[True], zero_division=0)
        if r[0] < worst[0] or (r[0] == worst[0] and p[0] < worst[1]):
            worst = (float(r[0]), float(p[0]), scan.name)
        truth.append(scan.is_bad)
        predicted.append(pred)
    p, r, _, _ = precision_recall_fscore_support(np.concatenate(truth), np.concatenate(predicted),
                                                 labels=[True, False], zero_division=0)
    return {"bad": (r[0], p[0]), "good": (r[1], p[1]), "worst": worst}, per_scan


def pointing_rows(model, task, methods, layers, per_scan):
    """One result dict per (method, layer): pointing per defect kind, margin 1, called-bad, time."""
    from xlabel.models.gradcam import cam, pointing_score
    from xlabel.synth import DEFECT_REASONS, defect_boxes
    results = []
    for method in methods:
        for layer in layers:
            hits, hits1, kinds, called, took = [], [], [], [], 0.0
            for scan in task.test:
                bad = np.flatnonzero(scan.is_bad)
                start = time.perf_counter()
                maps = cam(model, scan.source(), target="bad", layer=layer, method=method, rows=bad)
                took += time.perf_counter() - start
                boxes = defect_boxes(scan.truth)[bad]
                hits.append(pointing_score(maps, boxes, return_hits=True)[1])
                hits1.append(pointing_score(maps, boxes, margin=1, return_hits=True)[1])
                kinds.append(scan.truth["reason"].to_numpy()[bad])
                called.append(per_scan[scan.name][bad])
            hits, hits1 = np.concatenate(hits), np.concatenate(hits1)
            kinds, called = np.concatenate(kinds), np.concatenate(called)
            results.append({"method": method, "layer": layer or "last conv", "all": hits.mean(),
                            "margin1": hits1.mean(), "called": hits[called].mean() if called.any() else np.nan,
                            "kinds": {k: hits[kinds == k].mean() for k in DEFECT_REASONS},
                            "ms": 1e3 * took / len(hits)})
            print(row_text(results[-1], results[0]["ms"]), flush=True)
    return results


def row_text(result, baseline_ms):
    kinds = " | ".join(f"{v:.3f}" for v in result["kinds"].values())
    return (f"| {result['method']} | {result['layer']} | {kinds} | **{result['all']:.3f}** | "
            f"{result['margin1']:.3f} | {result['called']:.3f} | {result['ms'] / baseline_ms:.2f}x |")


def main(argv=None):
    import torch
    args = parse(argv)
    torch.set_num_threads(args.threads)
    from xlabel.synth import DEFECT_REASONS, make_defect_task
    task = make_defect_task(n_train=args.n_train, n_test=args.n_test, n_frames=args.frames, seed=args.seed)
    model, how = trained_model(args, task)
    scores, per_scan = held_out(model, task)
    n_bad = sum(int(s.is_bad.sum()) for s in task.test)
    print(f"{task}\nCNN {how}; held-out: bad recall {scores['bad'][0]:.3f} precision "
          f"{scores['bad'][1]:.3f}, good recall {scores['good'][0]:.3f} precision {scores['good'][1]:.3f}, "
          f"worst scan {scores['worst'][2]} bad recall {scores['worst'][0]:.3f} precision "
          f"{scores['worst'][1]:.3f}; {n_bad} defect frames explained (target 'bad')\n")
    print(f"| method | layer | {' | '.join(DEFECT_REASONS)} | all defect frames | margin 1 px "
          f"| frames the CNN calls bad | time per frame vs first row |\n"
          f"|---|---|{'---|' * len(DEFECT_REASONS)}---|---|---|---|")
    pointing_rows(model, task, args.methods, [None, "all"], per_scan)


if __name__ == "__main__":
    main()
