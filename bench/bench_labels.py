"""Benchmark xlabel.labels.LabelStore: assign/undo/redo/observers, in memory, with its journal,
and with an SQLite (WAL) journal in its place.

Run from the repository root: ``python -m bench.bench_labels`` (``--n`` frames, ``--k``
indices per step, ``--repeat`` steps timed per case, ``--dir`` where the journals go,
default a temp folder; ``--against FILE`` also times an older ``xlabel/labels.py`` loaded
from FILE, e.g. ``git show main~5:xlabel/labels.py > /tmp/old.py``). The baseline is the
bare numpy scatter ``labels[idx] = 1`` on an array of the same size, in the same process;
the issue's limit is 10 ms per assign of 100,000 indices into 1,000,000 frames.

The SQLite journal is a prototype made only for this comparison (the decision it informed
is in BENCHMARKS.md): the same record bytes as ``journal.bin``, one row per record in a WAL
database with ``synchronous=FULL`` (a commit is durable when it returns, as an append to
``journal.bin`` is), one transaction per step.
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xlabel.labels import LabelStore
from xlabel.labels.disk import StoreLock


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
    return median


def bench_store(store, blocks, repeat, baseline, label):
    medians = {"assign": report(f"assign {label}", timings(
        lambda i: store.assign(blocks[i], i % 2), repeat), baseline)}
    medians["undo"] = report(f"undo {label}", timings(lambda i: store.undo(), repeat), baseline)
    medians["redo"] = report(f"redo {label}", timings(lambda i: store.redo(), repeat), baseline)
    seen = []
    store.observe(lambda change: seen.append(len(change.indices)))
    report(f"assign + 1 observer {label}",
           timings(lambda i: store.assign(blocks[i], i % 2), repeat), baseline)
    assert len(seen) == repeat
    return medians


class SqliteJournal:
    """Prototype: journal records as rows of an SQLite WAL database (duck-types Journal)."""

    def __init__(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "journal.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, "
                        "payload BLOB NOT NULL)")
        self.closed, self.lock = False, StoreLock(folder)

    def check_writable(self):
        pass

    def append(self, record, what):
        with self.db:  # one transaction: durable (WAL fsync) when it commits
            self.db.execute("INSERT INTO records (payload) VALUES (?)", (record,))

    def close(self):
        self.db.close()
        self.closed = True


def load_older(path):
    """An older single-file ``xlabel/labels.py`` as a module inside the xlabel package."""
    spec = importlib.util.spec_from_file_location("xlabel._labels_older", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module.LabelStore


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--against", default=None, help="an older xlabel/labels.py to time too")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    blocks = [rng.choice(args.n, args.k, replace=False) for _ in range(args.repeat)]
    plain = np.full(args.n, -1, dtype=np.int32)
    scatter = timings(lambda i: plain.__setitem__(blocks[i], 1), args.repeat)
    baseline = statistics.median(scatter)
    print(f"n={args.n:,} frames, {args.k:,} random indices per step, {args.repeat} steps")
    report("numpy labels[idx] = 1 (baseline)", scatter, baseline)
    warm = LabelStore(args.n)  # untimed: the first store of a process pays for page faults
    timings(lambda i: warm.assign(blocks[i], i % 2), args.repeat)
    bench_store(LabelStore(args.n), blocks, args.repeat, baseline, "(in memory)")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "bench.xlabel"
        store = LabelStore(args.n, path=path)
        ours = bench_store(store, blocks, args.repeat, baseline, "(journal.bin + fdatasync)")
        size = (path / "journal.bin").stat().st_size
        store.close()
        start = time.perf_counter()
        LabelStore.open(path).close()
        print(f"reopen: replay {4 * args.repeat} records ({size / 1e6:.1f} MB journal) "
              f"in {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        LabelStore.open(path).snapshot()
        print(f"reopen + snapshot: {time.perf_counter() - start:.3f} s")

        lite = LabelStore(args.n)
        lite._session.journal = SqliteJournal(Path(folder) / "sqlite")  # the prototype
        theirs = bench_store(lite, blocks, args.repeat, baseline, "(SQLite WAL, sync FULL)")
        lite._session.journal.close()
        for kind in ("assign", "undo", "redo"):
            print(f"SQLite / journal.bin, {kind}: {theirs[kind] / ours[kind]:.2f}x")
        if args.against:
            older = load_older(args.against)
            bench_store(older(args.n), blocks, args.repeat, baseline, "(older, in memory)")
            old_store = older(args.n, path=Path(folder) / "older.xlabel")
            old = bench_store(old_store, blocks, args.repeat, baseline, "(older, journal)")
            old_store.close()
            for kind in ("assign", "undo", "redo"):
                print(f"this / older, journal, {kind}: {ours[kind] / old[kind]:.2f}x")


if __name__ == "__main__":
    main()
