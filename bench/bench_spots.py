"""Spot finding: U-Net pixel selection vs thresholding alone, side by side (issue 13 B).

Run from the repository root: ``python -m bench.bench_spots`` (smoke run: ``--quick``).

Trains the spot U-Net (``xlabel.models.unet.train_spot_unet``, focal loss) on synthetic
scans (``xlabel.synth.make_spot_scan``: spots, powder/ice rings, module gaps, dead and hot
pixels, Poisson noise), then runs ``find_spots`` with ``method="threshold"`` and
``method="unet"`` on held-out scans of other seeds (other exposure levels, detectors,
spots). Reports per method: true-spot recall (pooled and worst scan), false spots,
pixels sent to DBSCAN, DBSCAN time (best of ``--repeat`` on the very candidates each
method selected, same process) and the whole ``find_spots`` time; and the threshold's
recall / false-spot trade-off over ``k``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench._timing import best_of


def build_scans(seeds, n_frames, shape):
    from xlabel.synth import make_spot_scan

    return [make_spot_scan(n_frames=n_frames, frame_shape=(shape, shape), seed=s) for s in seeds]


def train(scans, steps, channels, device="cpu", alpha=0.95):
    from xlabel.models.unet import train_spot_unet

    start = time.perf_counter()
    selector = train_spot_unet([s.frames for s in scans], [s.spot_pixels() for s in scans],
                               pixel_mask=[s.pixel_mask for s in scans], steps=steps,
                               channels=channels, progress=False, threads=1, device=device,
                               alpha=alpha)
    return selector, time.perf_counter() - start


def candidates(scan, method, selector, k=4.0):
    """The candidate pixels and the counts above background that find_spots clusters."""
    from xlabel.io.base import invalid_pixels
    from xlabel.spots import estimate_hot_pixels, select_candidates, significance

    source = scan.source()
    invalid = invalid_pixels(scan.frames, source)
    z, background, _ = significance(scan.frames, invalid)
    chosen = select_candidates(z, invalid, method=method, k=k, model=selector,
                               hot=estimate_hot_pixels(source, k=k))
    return chosen, scan.frames.astype(np.float32) - background


def measure(scans, method, selector, repeat, k=4.0):
    from xlabel.spots import cluster_candidates, find_spots, match_spots

    rows = []
    for scan in scans:
        start = time.perf_counter()
        table = find_spots(scan.source(), method=method, model=selector, k=k, progress=False)
        total = time.perf_counter() - start
        result = match_spots(table, scan.spots)
        chosen, excess = candidates(scan, method, selector, k)
        dbscan = best_of(lambda: cluster_candidates(chosen, excess), repeat)
        rows.append(dict(scan=scan.name, recall=result["recall"], matched=result["matched"],
                         n_true=result["n_true"], false=result["false_spots"],
                         blanks_false=int(table["frame"].isin(
                             scan.truth.loc[~scan.truth["hit"], "frame"]).sum()),
                         pixels=int(chosen.sum()), dbscan=dbscan, total=total,
                         frames=len(scan)))
    return rows


def summary(name, rows):
    n_frames = sum(r["frames"] for r in rows)
    recall = sum(r["matched"] for r in rows) / sum(r["n_true"] for r in rows)
    return dict(name=name, recall=recall, worst=min(r["recall"] for r in rows),
                false=sum(r["false"] for r in rows), blanks_false=sum(r["blanks_false"] for r in rows),
                pixels=sum(r["pixels"] for r in rows) / n_frames,
                dbscan=sum(r["dbscan"] for r in rows), total=sum(r["total"] for r in rows),
                frames=n_frames)


def report(test_scans, selector, args):
    """Threshold vs U-Net on one set of held-out scans, side by side (printed)."""
    levels = ", ".join(f"{s.params['level']:.1f}" for s in test_scans)
    n_spots = sum(len(s.spots) for s in test_scans)
    print(f"held-out: {len(test_scans)} scans x {args.frames} frames {args.shape}x{args.shape}, "
          f"{n_spots} true spots, background levels {levels} counts/pixel")

    results = []
    for name, method, model in (("threshold k=4", "threshold", None),
                                (f"U-Net p>={selector.threshold:g}", "unet", selector)):
        rows = measure(test_scans, method, model, args.repeat)
        print(f"{name}: recall per held-out scan "
              + ", ".join(f"{r['scan']} {r['recall']:.4f} ({r['matched']}/{r['n_true']})"
                          for r in rows))
        results.append(summary(name, rows))
    base = results[0]
    print("\n| selection | recall | worst-scan recall | false spots (on blanks) | pixels to "
          "DBSCAN per frame | DBSCAN time | find_spots time |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['recall']:.4f} | {r['worst']:.4f} | {r['false']} "
              f"({r['blanks_false']}) | {r['pixels']:.0f} | {r['dbscan']:.3f} s "
              f"({r['dbscan'] / base['dbscan']:.2f}x) | {r['total']:.2f} s "
              f"({r['total'] / base['total']:.2f}x) |")
    if args.no_tradeoff:
        return
    print("\nthreshold trade-off (same held-out scans):")
    print("| k | recall | false spots |")
    print("|---|---|---|")
    for k in (2.5, 3.0, 4.0, 5.0, 6.0):
        r = summary(f"k={k}", measure(test_scans, "threshold", None, 1, k=k))
        print(f"| {k:g} | {r['recall']:.4f} | {r['false']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-seeds", type=int, default=4, help="training scans")
    parser.add_argument("--test-seeds", type=int, default=4, help="held-out scans")
    parser.add_argument("--frames", type=int, default=48, help="frames per scan")
    parser.add_argument("--shape", type=int, default=128, help="frame size (square)")
    parser.add_argument("--steps", type=int, default=800, help="U-Net training steps")
    parser.add_argument("--channels", default="4,8,16")
    parser.add_argument("--val-seeds", type=int, default=4, help="scans to tune the threshold")
    parser.add_argument("--criterion", default="worst", choices=("pooled", "worst"),
                        help="the validation recall that must reach --recall: pooled or worst scan")
    parser.add_argument("--recall", type=float, default=0.995,
                        help="validation recall the U-Net threshold must reach")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-tradeoff", action="store_true",
                        help="skip the threshold-alone table over k")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2+2 small scans")
    parser.add_argument("--device", default="cpu", help="torch device of the U-Net (cpu, cuda)")
    parser.add_argument("--alpha", type=float, default=0.95, help="focal loss alpha (spot pixels)")
    parser.add_argument("--test-start", default="2000",
                        help="first held-out seed; several sets: comma-separated (4000,5000)")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_seeds, args.test_seeds, args.frames, args.steps, args.repeat = 2, 2, 16, 60, 1
        args.val_seeds = 1
    channels = tuple(int(c) for c in args.channels.split(","))
    import torch

    torch.set_num_threads(1)  # one thread everywhere: on a loaded machine OpenMP spinning
    # would make the U-Net's times meaningless; DBSCAN and numpy are single-threaded anyway
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    train_scans = build_scans(range(1000, 1000 + args.train_seeds), args.frames, args.shape)
    selector, seconds = train(train_scans, args.steps, channels, args.device, args.alpha)
    print(f"U-Net {channels} alpha {args.alpha} on {args.device}: {args.steps} steps on {args.train_seeds} scans x {args.frames} "
          f"frames in {seconds:.1f} s, final focal loss {selector.info['final_loss']:.2e}")
    from xlabel.spots import tune_threshold

    grid = tune_threshold(selector, build_scans(range(3000, 3000 + args.val_seeds), args.frames,
                                                args.shape), recall=args.recall,
                          criterion=args.criterion)
    print(f"threshold tuned on {args.val_seeds} validation scans ({args.criterion} recall >= "
          f"{args.recall}): "
          f"{selector.threshold:g}\n{grid.to_string(index=False)}")
    for start in (int(v) for v in str(args.test_start).split(",")):
        report(build_scans(range(start, start + args.test_seeds), args.frames, args.shape),
               selector, args)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
