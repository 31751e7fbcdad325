"""Where do the class activation maps of the frame CNN point? (issue 10, local defects)

Run from the repository root: ``python -m bench.bench_gradcam`` (``--quick`` for a smoke
run). The CNN (kind "cnn", :class:`~xlabel.models.pixelnet.PixelCNN`) is trained on the
training scans of :func:`xlabel.synth.make_defect_task` (dead module, streak, shadowed
corner; exposures 30x apart, +-8 % jitter) and explained on the defect frames of its test
scans, whose exposures no training scan has. For every CAM method and layer choice: the
fraction of defect frames whose map maximum lies inside the defect box (the "pointing
score", :func:`xlabel.models.gradcam.pointing_score`), per defect kind, with a 1-pixel
margin, and on the defect frames the model calls bad (per-frame CAM time: see
``bench.bench_models``). Then why Grad-CAM misses: the cosine similarity of its channel
weights (mean gradient of the "bad" score over space, last conv layer) between defect
kinds, and for each kind the share of the positive weight on channels whose maximum lies
inside the defect box. The trained model is kept in
``--cache`` (a folder under the system temp dir by default) and reused when its
settings match, so methods can be compared without training again.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

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
    """Per-class recall/precision pooled over the test scans, the worst scans, predictions."""
    from sklearn.metrics import precision_recall_fscore_support
    truth, predicted, per_scan, worst = [], [], {}, []
    for scan in task.test:
        pred = np.asarray(model.predict(scan.source())) == "bad"
        per_scan[scan.name] = pred
        p, r, _, _ = precision_recall_fscore_support(scan.is_bad, pred, labels=[True], zero_division=0)
        worst.append((float(r[0]), float(p[0]), scan.name))
        truth.append(scan.is_bad)
        predicted.append(pred)
    p, r, _, _ = precision_recall_fscore_support(np.concatenate(truth), np.concatenate(predicted),
                                                 labels=[True, False], zero_division=0)
    return {"bad": (r[0], p[0]), "good": (r[1], p[1]), "worst_recall": min(worst),
            "worst_precision": min(worst, key=lambda w: (w[1], w[0]))}, per_scan


def pointing_rows(model, task, configs, per_scan):
    """One result dict per ``(method, layer, options)``: pointing per defect kind, with a
    1-pixel margin, and on the frames the CNN calls bad."""
    results = []
    for method, layer, options in configs:
        results.append(pointing_of(model, task, method, layer, options, per_scan))
        print(row_text(results[-1]), flush=True)
    return results


def pointing_of(model, task, method, layer, options, per_scan):
    from xlabel.models.gradcam import cam, pointing_score
    from xlabel.synth import DEFECT_REASONS, defect_boxes
    hits, hits1, kinds, called = [], [], [], []
    for scan in task.test:
        bad = np.flatnonzero(scan.is_bad)
        maps = cam(model, scan.source(), layer=layer, method=method, rows=bad, **{"target": "bad", **options})
        boxes = defect_boxes(scan.truth)[bad]
        hits.append(pointing_score(maps, boxes, return_hits=True)[1])
        hits1.append(pointing_score(maps, boxes, margin=1, return_hits=True)[1])
        kinds.append(scan.truth["reason"].to_numpy()[bad])
        called.append(per_scan[scan.name][bad])
    hits, hits1 = np.concatenate(hits), np.concatenate(hits1)
    kinds, called = np.concatenate(kinds), np.concatenate(called)
    from xlabel.models.gradcam import conv_layers
    names = {None: f"default ({default_layer_name(model, method)})", conv_layers(model.network)[-1]: "last conv"}
    what = names.get(layer, layer) + "".join(f", {k}={v!r}" for k, v in options.items())
    return {"method": method, "layer": what, "all": hits.mean(), "margin1": hits1.mean(),
            "called": hits[called].mean() if called.any() else np.nan,
            "kinds": {k: hits[kinds == k].mean() for k in DEFECT_REASONS}}


def default_layer_name(model, method):
    from xlabel.models.gradcam import conv_layers, default_layer
    layer = default_layer(model.network, method)
    return "last conv" if layer == conv_layers(model.network)[-1] else layer


def row_text(result):
    kinds = " | ".join(f"{v:.3f}" for v in result["kinds"].values())
    return (f"| {result['method']} | {result['layer']} | {kinds} | **{result['all']:.3f}** | "
            f"{result['margin1']:.3f} | {result['called']:.3f} |")


def gradcam_weights(model, task):
    """Per defect kind: Grad-CAM channel weights of the last conv layer (mean over frames)
    and the fraction of frames whose channel maximum lies in the defect box (+1 cell)."""
    import torch

    from xlabel.models.gradcam import default_layer
    from xlabel.synth import defect_boxes
    network = model.network
    layer = dict(network.named_modules())[default_layer(network)]
    bad_class = list(model.classes).index("bad")
    weights, inside = {}, {}
    for scan in task.test:
        bad = np.flatnonzero(scan.is_bad)
        _, x, shape, _, _ = model.cam_input(scan.source(), rows=bad)
        kept = []
        handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
        try:
            score = network.eval()(x)[:, bad_class].sum()
        finally:
            handle.remove()
        (grads,) = torch.autograd.grad(score, kept[0])
        acts = torch.relu(kept[0]).detach()
        scale = np.array(shape) / np.array(acts.shape[2:])
        reasons, boxes = scan.truth["reason"].to_numpy()[bad], defect_boxes(scan.truth)[bad]
        for i, (reason, box) in enumerate(zip(reasons, boxes)):
            flat = acts[i].reshape(len(acts[i]), -1).argmax(dim=1).numpy()
            rows, cols = np.unravel_index(flat, acts.shape[2:])
            y0, y1 = box[0] / scale[0] - 1, box[1] / scale[0] + 1
            x0, x1 = box[2] / scale[1] - 1, box[3] / scale[1] + 1
            weights.setdefault(reason, []).append(grads[i].mean(dim=(1, 2)).numpy())
            inside.setdefault(reason, []).append((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1))
    def mean(per_kind):
        return {kind: np.mean(values, axis=0) for kind, values in per_kind.items()}
    return mean(weights), mean(inside)


def why(model, task):
    weights, inside = gradcam_weights(model, task)
    kinds = sorted(weights)
    print("\nGrad-CAM channel weights (last conv), cosine similarity between defect kinds:")
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            cosine = weights[a] @ weights[b] / np.linalg.norm(weights[a]) / np.linalg.norm(weights[b])
            print(f"- {a} vs {b}: {cosine:.3f}")
    print("Share of the positive Grad-CAM weight on channels whose maximum lies in the defect box "
          "(LayerCAM weights each location instead):")
    for kind in kinds:
        positive = np.clip(weights[kind], 0, None)
        print(f"- {kind}: {positive @ inside[kind] / max(positive.sum(), 1e-30):.3f}")


def main(argv=None):
    import torch
    args = parse(argv)
    torch.set_num_threads(args.threads)
    from xlabel.synth import DEFECT_REASONS, make_defect_task
    task = make_defect_task(n_train=args.n_train, n_test=args.n_test, n_frames=args.frames, seed=args.seed)
    model, how = trained_model(args, task)
    scores, per_scan = held_out(model, task)
    worst = " and ".join(f"{name} {r:.3f}, {p:.3f}" for r, p, name in
                         (scores["worst_recall"], scores["worst_precision"]))
    n_bad = sum(int(s.is_bad.sum()) for s in task.test)
    print(f"{task}\nCNN {how}; held-out: bad recall {scores['bad'][0]:.3f} precision "
          f"{scores['bad'][1]:.3f}, good recall {scores['good'][0]:.3f} precision {scores['good'][1]:.3f}, "
          f"worst scans (bad recall, precision): {worst}; {n_bad} defect frames explained (target 'bad')\n")
    print(f"| method | layer | {' | '.join(DEFECT_REASONS)} | all defect frames | margin 1 px "
          f"| frames the CNN calls bad |\n|---|---|{'---|' * len(DEFECT_REASONS)}---|---|---|")
    from xlabel.models.gradcam import conv_layers
    last = conv_layers(model.network)[-1]
    configs = [(method, layer, {}) for method in args.methods for layer in (last, "all")]
    # the suspects of a miss: the map of the predicted class (for a missed defect frame:
    # "good"), maxima on invalid pixels (maps kept there)
    configs += [(method, None, options) for method in args.methods[:1] + args.methods[-1:]
                for options in ({"target": None}, {"invalid": "keep"})]
    pointing_rows(model, task, configs, per_scan)
    why(model, task)


if __name__ == "__main__":
    main()
