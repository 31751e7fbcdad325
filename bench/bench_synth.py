"""Benchmark xlabel.synth: make_scan and write_scan.

Run from the repository root: ``python -m bench.bench_synth`` (``--n`` frames of ``--shape``
pixels, ``--repeat`` runs, best kept). Baselines in the same process: ``rng.poisson`` on an
expected image of the same size (the noise step alone, which make_scan cannot avoid) and
``np.save`` of the frames (an uncompressed write).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench._timing import best_of
from xlabel.synth import make_scan, write_scan




def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--shape", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, shape = args.n, tuple(args.shape)
    lam = np.full((n, *shape), 100.0, np.float32)
    rng = np.random.default_rng(0)
    poisson = best_of(lambda: rng.poisson(lam), args.repeat)
    make = best_of(lambda: make_scan(n, shape, seed=1), args.repeat)
    print(f"rng.poisson baseline {n}x{shape[0]}x{shape[1]}: {poisson:.3f} s")
    print(f"make_scan            {n}x{shape[0]}x{shape[1]}: {make:.3f} s ({make / poisson:.2f}x poisson)")
    scan = make_scan(n, shape, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        raw = best_of(lambda: np.save(Path(tmp) / "raw.npy", scan.frames), args.repeat)
        print(f"np.save baseline: {raw:.3f} s, {scan.frames.nbytes / 1e6:.2f} MB")
        for compression in (None, "gzip", "bslz4"):
            target = Path(tmp) / str(compression)
            seconds = best_of(lambda: write_scan(scan, target, compression=compression), args.repeat)
            size = folder_size(target)
            print(f"write_scan eiger {str(compression):<6}: {seconds:.3f} s ({seconds / raw:.1f}x np.save), "
                  f"{size / 1e6:.2f} MB ({scan.frames.nbytes / size:.1f}x smaller than raw)")


if __name__ == "__main__":
    main()
