"""Benchmark of xlabel.frame_stats on big HDF5 scans (uncompressed, gzip, bitshuffle/LZ4).

Writes a scan of ``--gb`` GB of 256x256 uint16 frames (one frame per chunk) to a
temporary folder for each compression, then compares in the same process:

- ``naive``: the per-frame loop ``[ds[i].mean() for i in range(n)]`` with h5py;
- ``numpy mean in memory``: ``frames.reshape(n, -1).mean(axis=1)`` over frames
  already in memory (the memory-bound limit; measured once on up to 512 MB);
- ``frame_stats(open_scan(path))`` with default settings (``workers`` = cores) and with
  ``workers=1``, each in a fresh Python process (``python -c``: import xlabel, load the
  compiled kernel on a tiny array, then time the call). Peak memory is that process's
  peak RSS (``VmHWM``): interpreter, imports, kernel and buffers, i.e. what a user's
  process needs to compute the features of the scan.

Each timing is the best of ``--repeat`` runs. Files are deleted afterwards.

    python -m bench.bench_frame_stats --gb 2      # the BENCHMARKS.md figures
    python -m bench.bench_frame_stats --quick     # smoke run, 64 MB per scan
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

FRAME = (256, 256)
POOL = 64  # distinct frames, cycled (compressed once, written as raw chunks)
COMPRESSIONS = {"none": {}, "gzip": {"compression": "gzip", "compression_opts": 4},
                "bslz4": dict(hdf5plugin.Bitshuffle(cname="lz4"))}


def pool_frames(seed=0):
    """Detector-like frames: a smooth beam profile with Poisson noise, a few zeros."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:FRAME[0], :FRAME[1]]
    beam = 800 * np.exp(-((x - 128) ** 2 + (y - 120) ** 2) / (2 * 70 ** 2)) + 20
    return rng.poisson(beam, size=(POOL, *FRAME)).astype(np.uint16)


def encoded_chunks(frames, filters, folder):
    """Compress each pool frame once with the HDF5 filter: (filter_mask, bytes) per frame."""
    path = folder / "pool.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("d", data=frames, chunks=(1, *FRAME), **filters)
        chunks = [ds.id.read_direct_chunk((i, 0, 0)) for i in range(len(frames))]
    path.unlink()
    return chunks


def write_scan(path, n_frames, filters, folder):
    chunks = encoded_chunks(pool_frames(), filters, folder)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=(n_frames, *FRAME), dtype=np.uint16,
                              chunks=(1, *FRAME), **filters)
        for i in range(n_frames):
            mask, data = chunks[i % POOL]
            ds.id.write_direct_chunk((i, 0, 0), data, filter_mask=mask)
    return os.path.getsize(path)


_CHILD = """
import json, resource, sys, time
import numpy as np
from xlabel import frame_stats
from xlabel.io import open_scan
frame_stats(np.zeros((2, 4, 4), np.uint16), progress=False)  # load the compiled kernel
workers = int(sys.argv[2]) or None
t0 = time.perf_counter()
table = frame_stats(open_scan(sys.argv[1]), workers=workers, progress=False)
seconds = time.perf_counter() - t0
try:  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's after exec)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"seconds": seconds, "peak_rss": peak, "frames": len(table)}))
"""


def frame_stats_run(path, workers):
    """(seconds, peak RSS bytes) of frame_stats on ``path`` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(workers)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["peak_rss"]


def best_of(repeat, fn):
    """Fastest of ``repeat`` runs of ``fn() -> (seconds, extra)``; extra = max over runs."""
    runs = [fn() for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def naive_loop(path):
    with h5py.File(path, "r") as f:
        ds = f["entry/data/data"]
        return [ds[i].mean() for i in range(ds.shape[0])]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, 0


def in_memory_mean(path, n_frames, repeat, max_bytes=512 << 20):
    n = min(n_frames, max_bytes // (FRAME[0] * FRAME[1] * 2))
    with h5py.File(path, "r") as f:
        frames = f["entry/data/data"][:n]
    seconds, _ = best_of(repeat, lambda: timed(lambda: frames.reshape(n, -1).mean(axis=1)))
    return frames.nbytes / seconds / 1e9


def report(label, nbytes, n_frames, seconds, peak=None, baseline=None):
    ratio = "" if baseline is None else f"  {baseline / seconds:5.2f}x naive"
    memory = "" if peak is None else f"  peak RSS {peak / 1e6:4.0f} MB"
    print(f"  {label:28s} {n_frames / seconds:9.0f} frames/s {nbytes / seconds / 1e9:6.2f} GB/s"
          f"{memory}{ratio}", flush=True)


def run(gb, folder, compressions, repeat):
    n_frames = int(gb * 1e9) // (FRAME[0] * FRAME[1] * 2)
    nbytes = n_frames * FRAME[0] * FRAME[1] * 2
    print(f"{n_frames} frames of 256x256 uint16 = {nbytes / 1e9:.2f} GB per scan; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; best of {repeat}",
          flush=True)
    memory_gbs = None
    for name in compressions:
        path = folder / f"scan_{name}.h5"
        size = write_scan(path, n_frames, COMPRESSIONS[name], folder)
        print(f"{name}: file {size / 1e9:.2f} GB (in page cache)", flush=True)
        if memory_gbs is None:
            memory_gbs = in_memory_mean(path, n_frames, repeat)
            print(f"  {'numpy mean in memory':28s} {memory_gbs:26.2f} GB/s", flush=True)
        naive_s, _ = best_of(repeat, lambda: timed(lambda: naive_loop(path)))
        report("naive h5py loop", nbytes, n_frames, naive_s)
        for label, workers in (("frame_stats (default)", 0), ("frame_stats workers=1", 1)):
            seconds, peak = best_of(repeat, lambda: frame_stats_run(path, workers))
            report(label, nbytes, n_frames, seconds, peak, baseline=naive_s)
            print(f"  {'':28s} time / in-memory numpy mean time: "
                  f"{memory_gbs / (nbytes / seconds / 1e9):.2f}x", flush=True)
        path.unlink()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="GB of frames per scan")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 MB per scan")
    parser.add_argument("--tmp", default=None, help="folder for the scans (default: /tmp)")
    parser.add_argument("--only", choices=sorted(COMPRESSIONS), action="append",
                        help="run only this compression (repeatable)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="xlabel-bench-", dir=args.tmp))
    try:
        run(0.064 if args.quick else args.gb, folder, args.only or list(COMPRESSIONS),
            args.repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
