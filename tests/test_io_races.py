"""Reading a scan while another process truncates and rewrites it (a live beamline does).

A child process (the reader) reads the scan over and over while a second child (the
writer) cuts the file short and writes the missing bytes back, in a loop. The reader
must survive: every read gives the right frames or a ScanError naming a frame that
really was missing at that moment; never a crash (SIGBUS, when the file was mapped).
Both run as real processes so a crash fails the test instead of killing the session.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = "/entry/data/data"
N_FRAMES, SHAPE = 60, (256, 256)  # < 64 chunks: HDF5's chunk index stays before the data

WRITER = textwrap.dedent("""
    import os, sys, time
    path, cut, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    with open(path, "rb") as fh:
        fh.seek(cut)
        tail = fh.read()
    fd = os.open(path, os.O_WRONLY)
    end = time.monotonic() + seconds
    cycles = 0
    while time.monotonic() < end:
        os.ftruncate(fd, cut)             # the file ends mid-data for a moment ...
        time.sleep(0.0005)
        pos = 0
        while pos < len(tail):            # ... then grows back, in order, to the same bytes
            pos += os.pwrite(fd, tail[pos:pos + (1 << 20)], cut + pos)
        cycles += 1
    os.close(fd)
    print(cycles)
""")

READER = textwrap.dedent("""
    import json, sys, time
    import h5py, numpy as np
    import xlabel
    from xlabel.errors import ScanError
    from xlabel.io.direct import ReadBuffers, plan_dataset

    path, how, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    expected = np.load(path + ".frames.npy").reshape(60, -1).astype(np.float64)
    if how == "npy":
        src = xlabel.open_scan(path)
    else:
        with h5py.File(path, "r") as f:
            plan = plan_dataset(f["/entry/data/data"])
    sums, means = expected.sum(axis=1), expected.mean(axis=1)
    print("ready", flush=True)
    sys.stdin.readline()                   # the writer has started
    outcomes, buffers = [], ReadBuffers()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if how == "npy":
                frames = src.read_all().reshape(60, -1)
                ok = bool(np.array_equal(frames.sum(axis=1, dtype=np.float64), sums))
            elif how == "plan":
                first, frames = plan.read(0, plan.n_chunks, buffers)
                ok = bool(np.array_equal(frames.sum(axis=1, dtype=np.float64), sums))
            else:
                table = xlabel.frame_stats(path, workers=2, progress=False,
                                           exclude_invalid=False)
                ok = bool(np.allclose(table["mean"].to_numpy(), means))
            outcomes.append(["ok" if ok else "wrong", None, ""])
        except ScanError as err:
            outcomes.append(["ScanError", err.frame, str(err)])
    print(json.dumps(outcomes))
""")


def write_scan(path, chunked):
    frames = np.random.default_rng(5).poisson(50, (N_FRAMES, *SHAPE)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, data=frames, **({"chunks": (1, *SHAPE)} if chunked else {}))
    np.save(f"{path}.frames.npy", frames)  # what the reader must see
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        first = ds.id.get_chunk_info(0).byte_offset if chunked else ds.id.get_offset()
    return frames, int(first)


def claim_end_of_file(path, eof):
    """Store ``eof`` as the file's end in the superblock, so HDF5 opens the file whenever its
    size is at least ``eof`` (the chunk data past it is read by xlabel, not by HDF5)."""
    with open(path, "r+b") as fh:
        head = fh.read(48)
        assert head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] == 0  # superblock version 0
        fh.seek(40)
        fh.write(struct.pack("<Q", eof))


def race(path, how, cut, seconds=2.5):
    """Run reader and writer together; the reader's outcomes and the writer's cycles."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), how, str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    writer = None
    try:
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()[-3000:]
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(cut),
                                   str(seconds + 0.5)], stdout=subprocess.PIPE, text=True)
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out, err = reader.communicate(timeout=120)
        cycles = int(writer.communicate(timeout=60)[0])
    finally:
        for proc in (reader, writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
    code = reader.returncode
    died = signal.Signals(-code).name if code < 0 else code
    assert code == 0, f"reader died ({died}): {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1]), cycles


def check(outcomes, cycles, first_missing):
    assert cycles > 20, cycles
    kinds = {kind for kind, _, _ in outcomes}
    assert kinds <= {"ok", "ScanError"}, outcomes
    errors = [(frame, message) for kind, frame, message in outcomes if kind == "ScanError"]
    assert errors, "the race never hit a truncated file: the test did not test anything"
    for frame, message in errors:
        # the frame named really was missing: at or after the first frame past the cut
        assert frame is not None and first_missing <= frame < N_FRAMES, (frame, message)
        assert f"frame {frame}" in message and "truncated" in message, message


@pytest.mark.parametrize("chunked", [False, True], ids=["contiguous", "chunks1"])
def test_plan_read_survives_a_truncating_writer(tmp_path, chunked):
    """ChunkPlan.read on uncompressed data while the file is cut and rewritten: no SIGBUS."""
    path = tmp_path / "scan.h5"
    _, first = write_scan(path, chunked)
    frame_bytes = SHAPE[0] * SHAPE[1] * 2
    cut = first + 30 * frame_bytes + 1000  # inside frame 30
    outcomes, cycles = race(path, "plan", cut)
    check(outcomes, cycles, first_missing=30)


def test_frame_stats_survives_a_truncating_writer(tmp_path):
    """frame_stats (2 threads) on a scan being cut and rewritten: right means or ScanError.

    HDF5 itself refuses to open a file shorter than its superblock says; the superblock
    here claims the cut as the end (all metadata lies before it), so every failure left
    is xlabel's own reading of the chunks.
    """
    path = tmp_path / "scan.h5"
    _, first = write_scan(path, chunked=True)
    cut = first + 30 * SHAPE[0] * SHAPE[1] * 2 + 1000
    claim_end_of_file(path, cut)
    outcomes, cycles = race(path, "frame_stats", cut)
    check(outcomes, cycles, first_missing=30)


def test_npy_source_survives_a_truncating_writer(tmp_path):
    """A .npy stack cut and rewritten while read: right frames or ScanError, no SIGBUS."""
    path = tmp_path / "scan.npy"
    frames = np.random.default_rng(5).poisson(50, (N_FRAMES, *SHAPE)).astype(np.uint16)
    np.save(path, frames)
    np.save(f"{path}.frames.npy", frames)
    header = os.path.getsize(path) - frames.nbytes
    cut = header + 30 * frames[0].nbytes + 1000
    outcomes, cycles = race(path, "npy", cut)
    check(outcomes, cycles, first_missing=30)
