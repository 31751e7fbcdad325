"""Benchmark of xlabel.io reading an Eiger-like scan (master + external data files).

Writes ``--mb`` MB of 256x256 uint16 frames, split into ``--files`` data files
(one frame per chunk, uncompressed and bitshuffle/LZ4), then compares in the same
process, each over the whole scan (best of ``--repeat``):

- ``h5py bulk``: ``ds[:]`` on each data file opened directly (baseline: the
  fastest plain h5py read, no xlabel);
- ``h5py per frame``: ``ds[i]`` frame by frame through the master's links (naive);
- ``iter_chunks``: ``for start, block in open_scan(master).iter_chunks()``;
- ``read_all``: ``open_scan(master).read_all()``;
- ``open_scan``: time to open the master (finds the stack, reads the mask).

    python -m bench.bench_io              # the BENCHMARKS.md figures (512 MB)
    python -m bench.bench_io --quick      # smoke run, 32 MB
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from bench._timing import best_of
from xlabel.io import open_scan

FRAME = (256, 256)
COMPRESSIONS = {"none": {}, "bslz4": dict(hdf5plugin.Bitshuffle(cname="lz4"))}


def write_scan(folder: Path, n_frames: int, n_files: int, create: dict) -> Path:
    rng = np.random.default_rng(0)
    pool = rng.poisson(300, size=(32, *FRAME)).astype(np.uint16)
    master = folder / "bench_master.h5"
    per_file = -(-n_frames // n_files)
    with h5py.File(master, "w") as f:
        group = f.create_group("entry/data")
        for k, start in enumerate(range(0, n_frames, per_file), 1):
            n = min(per_file, n_frames - start)
            name = f"bench_data_{k:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                ds = d.create_dataset("entry/data/data", shape=(n, *FRAME), dtype=np.uint16,
                                      chunks=(1, *FRAME), **create)
                for a in range(0, n, len(pool)):
                    b = min(n, a + len(pool))
                    ds[a:b] = pool[: b - a]
            group[f"data_{k:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    return master




def h5py_bulk(folder: Path):
    total = 0
    for path in sorted(folder.glob("bench_data_*.h5")):
        with h5py.File(path, "r") as f:
            total += int(f["entry/data/data"][:].shape[0])
    return total


def h5py_per_frame(master: Path):
    with h5py.File(master, "r") as f:
        for key in sorted(f["entry/data"]):
            ds = f["entry/data"][key]
            for i in range(ds.shape[0]):
                ds[i]


def xlabel_chunks(master: Path):
    src = open_scan(master)
    for _, block in src.iter_chunks():
        pass
    src.close()


def xlabel_read_all(master: Path):
    src = open_scan(master)
    src.read_all()
    src.close()


def run(mb: int, n_files: int, repeat: int):
    n_frames = mb * (1 << 20) // (FRAME[0] * FRAME[1] * 2)
    print(f"{n_frames} frames of {FRAME} uint16 ({mb} MB) in {n_files} data files, "
          f"best of {repeat}")
    for comp, create in COMPRESSIONS.items():
        folder = Path(tempfile.mkdtemp(prefix="bench_io_"))
        try:
            master = write_scan(folder, n_frames, n_files, create)
            base = best_of(lambda: h5py_bulk(folder), repeat)
            rows = [("h5py bulk ds[:] per file", base),
                    ("h5py per frame via master", best_of(lambda: h5py_per_frame(master), repeat)),
                    ("xlabel iter_chunks()", best_of(lambda: xlabel_chunks(master), repeat)),
                    ("xlabel read_all()", best_of(lambda: xlabel_read_all(master), repeat)),
                    ("xlabel open_scan() only", best_of(lambda: open_scan(master).close(), repeat))]
            print(f"\ncompression={comp}")
            print("| what | time | MB/s | vs h5py bulk |\n|---|---|---|---|")
            for what, t in rows:
                print(f"| {what} | {t:.3f} s | {mb / t:,.0f} | {t / base:.2f}x |")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.repeat = 32, 1
    run(args.mb, args.files, args.repeat)


if __name__ == "__main__":
    main()
