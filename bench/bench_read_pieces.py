"""Reading without mmap: frame_stats with today's reads vs the memory map and thread crew
they replaced (issues 12, 16), timed in one process, interleaved round by round.

Variants, on an uncompressed scan of 256x256 uint16 frames (one frame per chunk):

- ``old: crew+mmap``: uncompressed chunks mapped with ``mmap`` (zero copy; a file that
  another process truncates kills the process with SIGBUS) and the hand-made thread crew;
- ``crew+pread whole``: one ``pread`` of the whole ~8 MB task into a buffer;
- ``crew+pread pieces``: ``ChunkPlan.read_pieces`` (256 KB pieces, cache-hot) on the crew;
- ``new: pool+pread pieces``: what xlabel does (``concurrent.futures`` pool);
- ``h5py blocks``: ``chunk_frames=16`` (frames read through h5py by the calling thread):
  crew vs pool only.

Each is reported as median time / median time of numpy's in-memory mean over the same
frames (``frames.reshape(n, -1).mean(axis=1)``) measured in the same rounds.

    python -m bench.bench_read_pieces --gb 0.125 --rounds 15
"""

from __future__ import annotations

import argparse
import mmap
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

import xlabel
from bench.bench_frame_stats import COMPRESSIONS, write_scan
from xlabel import _frame_kernel
from xlabel.io import direct, open_scan

PIECES, WHOLE = direct.ChunkPlan.read_pieces, direct.ChunkPlan.read
POOL = _frame_kernel._run_threads


def mmap_read(plan, k0, k1, buffers, piece_bytes=None):
    """The replaced uncompressed path: the task's chunks mapped, not copied."""
    if plan.filters or not plan._one_span(k0, k1):
        yield WHOLE(plan, k0, k1, buffers)
        return
    first = int(plan.starts[k0])
    n = int(plan.starts[k1 - 1]) + plan.frames_in(k1 - 1) - first
    with open(plan.file, "rb", buffering=0) as f:
        plan._check_in_file(f, k0, k1)
        offset = int(plan.offsets[k0])
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mapped = mmap.mmap(f.fileno(), offset + n * plan.frame_nbytes - start,
                           access=mmap.ACCESS_READ, offset=start)
        frames = np.frombuffer(mapped, plan.dtype, n * plan.frame_pixels, offset - start)
        yield first, frames.reshape(n, plan.frame_pixels)


def whole_read(plan, k0, k1, buffers, piece_bytes=None):
    yield WHOLE(plan, k0, k1, buffers)


class Crew:
    """The replaced hand-made thread crew (threads pull tasks from a shared iterator)."""

    def __init__(self, tasks, work, workers):
        self.tasks, self.work, self.workers = iter(tasks), work, workers
        self.lock, self.done, self.stop = threading.Lock(), queue.SimpleQueue(), threading.Event()

    def run(self, on_block):
        threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        error, running = None, len(threads)
        try:
            while running:
                kind, value = self.done.get()
                if kind == "frames":
                    on_block(value)
                elif kind == "error" and error is None:
                    error = value
                    self.stop.set()
                elif kind == "exit":
                    running -= 1
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        if error is not None:
            raise error

    def loop(self):
        try:
            while not self.stop.is_set():
                with self.lock:
                    task = next(self.tasks, None)
                if task is None:
                    break
                self.done.put(("frames", self.work(task)))
        except BaseException as err:  # noqa: BLE001
            self.done.put(("error", err))
        finally:
            self.done.put(("exit", None))


def crew(tasks, work, workers, on_block, max_pending=None):
    Crew(tasks, work, workers).run(on_block)


VARIANTS = {"old: crew+mmap": (mmap_read, crew), "crew+pread whole": (whole_read, crew),
            "crew+pread pieces": (PIECES, crew), "new: pool+pread pieces": (PIECES, POOL)}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=0.125)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="xlabel-bench-read-"))
    try:
        n = int(args.gb * 1e9) // (256 * 256 * 2)
        path = folder / "scan.h5"
        write_scan(path, n, COMPRESSIONS["none"], folder)
        with h5py.File(path) as f:
            mem = f["entry/data/data"][:min(n, 2048)]
        xlabel.frame_stats(np.zeros((2, 4, 4), np.uint16), progress=False)  # compile once
        src = open_scan(str(path))
        times, loads = {}, []
        for _ in range(args.rounds):
            times.setdefault("numpy mean in memory", []).append(
                timed(lambda: mem.reshape(len(mem), -1).mean(axis=1)) * n / len(mem))
            for blocks in (None, 16):
                for label, (read, threads) in VARIANTS.items():
                    if blocks and label not in ("old: crew+mmap", "new: pool+pread pieces"):
                        continue
                    direct.ChunkPlan.read_pieces, _frame_kernel._run_threads = read, threads
                    for workers in (2, 1):
                        key = f"{'h5py blocks ' if blocks else ''}workers={workers} {label}"
                        times.setdefault(key, []).append(timed(lambda: xlabel.frame_stats(
                            src, progress=False, workers=workers, chunk_frames=blocks)))
            loads.append(os.getloadavg()[0])
        direct.ChunkPlan.read_pieces, _frame_kernel._run_threads = PIECES, POOL
    finally:
        direct.ChunkPlan.read_pieces, _frame_kernel._run_threads = PIECES, POOL
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{n} frames of 256x256 uint16 ({n * 131072 / 1e9:.3f} GB), {args.rounds} interleaved "
          f"rounds, load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    base = np.median(times["numpy mean in memory"])
    for key, values in times.items():
        print(f"  {key:44s} median {np.median(values) * 1e3:7.1f} ms  "
              f"median / numpy mean {np.median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
