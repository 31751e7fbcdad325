"""Benchmark xlabel.labels.LabelStore: assign/undo/redo/observers, with and without a journal.

Run from the repository root: ``python -m bench.bench_labels`` (``--n`` frames, ``--k``
indices per step, ``--repeat`` steps timed per case, ``--dir`` where the journal goes,
default a temp folder). The baseline is the bare numpy scatter ``labels[idx] = 1`` on an
array of the same size, in the same process; the issue's limit is 10 ms per assign of
100,000 indices into 1,000,000 frames.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from xlabel.labels import LabelStore


def timings(func, repeat):
    """Wall times (seconds) of ``repeat`` calls of ``func(i)``."""
    out = []
    for i in range(repeat):
        start = time.perf_counter()
        func(i)
        out.append(time.perf_counter() - start)
    return out


def report(name, seconds, baseline):
    median, worst = statistics.median(seconds), max(seconds)
    print(f"{name:<46s} median {median * 1e3:7.2f} ms  max {worst * 1e3:7.2f} ms  "
          f"({median / baseline:5.1f}x numpy scatter)")


def bench_store(store, blocks, repeat, baseline, label):
    report(f"assign {label}", timings(lambda i: store.assign(blocks[i], i % 2), repeat), baseline)
    report(f"undo {label}", timings(lambda i: store.undo(), repeat), baseline)
    report(f"redo {label}", timings(lambda i: store.redo(), repeat), baseline)
    seen = []
    store.observe(lambda change: seen.append(len(change.indices)))
    report(f"assign + 1 observer {label}",
           timings(lambda i: store.assign(blocks[i], i % 2), repeat), baseline)
    assert len(seen) == repeat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    blocks = [rng.choice(args.n, args.k, replace=False) for _ in range(args.repeat)]
    plain = np.full(args.n, -1, dtype=np.int32)
    scatter = timings(lambda i: plain.__setitem__(blocks[i], 1), args.repeat)
    baseline = statistics.median(scatter)
    print(f"n={args.n:,} frames, {args.k:,} random indices per step, {args.repeat} steps")
    report("numpy labels[idx] = 1 (baseline)", scatter, baseline)
    bench_store(LabelStore(args.n), blocks, args.repeat, baseline, "(in memory)")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "bench.xlabel"
        store = LabelStore(args.n, path=path)
        bench_store(store, blocks, args.repeat, baseline, "(journal + fdatasync)")
        size = (path / "journal.bin").stat().st_size
        store.close()
        start = time.perf_counter()
        LabelStore.open(path).close()
        print(f"reopen: replay {4 * args.repeat} records ({size / 1e6:.1f} MB journal) "
              f"in {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        LabelStore.open(path).snapshot()
        print(f"reopen + snapshot: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
