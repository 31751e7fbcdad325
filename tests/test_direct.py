"""Tests of xlabel.io.direct: chunk plans read straight from HDF5 files.

Every test writes real HDF5 files with h5py (and hdf5plugin filters) into tmp_path and
checks what the plan (or ``frame_stats`` on top of it) reads against h5py itself.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pandas as pd
import pytest

import xlabel
from xlabel.errors import ScanError, XLabelError
from xlabel.io import open_scan
from xlabel.io.direct import ChunkPlan, ReadBuffers, plan_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = "/entry/data/data"
MASK = "/entry/instrument/detector/pixel_mask"


# -- helpers ---------------------------------------------------------------------------

def layout(name, frame_shape):
    """create_dataset keyword arguments for one storage layout."""
    s = tuple(frame_shape)
    return {
        "contiguous": {},
        "chunks1": dict(chunks=(1, *s)),
        "chunks3": dict(chunks=(3, *s)),
        "gzip": dict(chunks=(2, *s), compression="gzip"),
        "shuffle_gzip": dict(chunks=(2, *s), compression="gzip", shuffle=True),
        "bslz4": dict(chunks=(2, *s), **hdf5plugin.Bitshuffle(cname="lz4")),
        "bszstd": dict(chunks=(2, *s), **hdf5plugin.Bitshuffle(cname="zstd")),
    }[name]


LAYOUTS = ["contiguous", "chunks1", "chunks3", "gzip", "shuffle_gzip", "bslz4", "bszstd"]


def sample_frames(n, shape, dtype, seed=0):
    """Frames with repeated values (so filters compress) and each dtype's extremes."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        out = (rng.normal(100, 30, (n, *shape))).astype(dtype)
        out[rng.random(out.shape) < 0.03] = np.nan
        out.flat[5] = np.inf
        out.flat[7] = -np.inf
        return out
    info = np.iinfo(dtype)
    out = rng.poisson(20, (n, *shape)).clip(0, info.max).astype(dtype)
    special = rng.random(out.shape)
    out[special < 0.02] = info.max
    out[(special >= 0.02) & (special < 0.04)] = info.min
    out[special > 0.99] = rng.integers(info.min, int(info.max) + 1, int((special > 0.99).sum()),
                                       dtype=dtype)
    return out


def write_scan(path, frames, create, pixel_mask=None, dataset=DATA):
    """One HDF5 file holding ``frames`` at ``dataset`` (plus a NeXus pixel mask)."""
    with h5py.File(path, "w") as f:
        f.create_dataset(dataset, data=frames, **create)
        if pixel_mask is not None:
            f.create_dataset(MASK, data=pixel_mask.astype(np.uint32))
    return path


def same_bytes(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def read_and_plan(path):
    """(frames as h5py reads them, the direct-read plan) of the scan's dataset."""
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        return ds[...], plan_dataset(ds)


def assert_plan_reads(plan: ChunkPlan, expected):
    """Every range ``[k0, k1)`` of chunks read through ``plan`` equals ``expected``."""
    n = len(expected)
    flat = expected.reshape(n, -1)
    buffers = ReadBuffers()  # reused on purpose: later reads must not be spoiled by earlier ones
    for k0 in range(plan.n_chunks):
        for k1 in range(k0 + 1, plan.n_chunks + 1):
            first, got = plan.read(k0, k1, buffers)
            assert first == plan.starts[k0]
            stop = min(n, int(plan.starts[k1 - 1]) + plan.chunk_frames)
            assert same_bytes(got, flat[first:stop]), (k0, k1)


def assert_ranges_cover(plan, start, stop, target):
    """chunk_ranges(start, stop) are ordered, adjacent, and cover frames start:stop."""
    ranges = plan.chunk_ranges(start, stop, target)
    assert ranges, (start, stop)
    assert all(k0 < k1 for k0, k1 in ranges)
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:]))
    assert plan.starts[ranges[0][0]] <= start
    k_last = ranges[-1][1] - 1
    assert plan.starts[k_last] + plan.frames_in(k_last) >= stop
    assert plan.starts[k_last] < stop
    return ranges


def truncate_keeping_superblock(path, cut):
    """Cut ``path`` at byte ``cut`` and store that size as the file's end in the superblock.

    That is what a file looks like whose writer died after HDF5 flushed its metadata but
    before the last chunks reached the disk: HDF5 opens it, reading the missing chunks fails.
    """
    with open(path, "r+b") as fh:
        head = fh.read(48)
        assert head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] == 0  # superblock version 0
        assert struct.unpack("<Q", head[40:48])[0] == os.path.getsize(path)  # end-of-file address
        fh.truncate(cut)
        fh.seek(40)
        fh.write(struct.pack("<Q", cut))


# -- 1. every layout, dtype and frame shape reads exactly like h5py ----------------------

@pytest.mark.parametrize("frame_shape", [(37, 41), (64, 64)], ids=["37x41", "64x64"])
@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int32", "float32"])
@pytest.mark.parametrize("name", LAYOUTS)
def test_plan_reads_every_chunk_range_like_h5py(tmp_path, name, dtype, frame_shape):
    """All chunk ranges decode to exactly what h5py reads (7 frames: partial last chunks)."""
    frames = sample_frames(7, frame_shape, dtype)
    path = write_scan(tmp_path / "scan.h5", frames, layout(name, frame_shape))
    expected, plan = read_and_plan(path)
    assert same_bytes(expected, frames)
    assert plan is not None
    assert (plan.n_frames, plan.frame_shape, plan.dtype) == (7, frame_shape, np.dtype(dtype))
    assert_plan_reads(plan, expected)
    for start, stop in [(0, 7), (1, 6), (4, 5), (6, 7)]:
        for target in (1, 10**9):
            assert_ranges_cover(plan, start, stop, target)


def test_contiguous_dataset_split_into_several_pieces(tmp_path):
    """A contiguous stack bigger than one 8 MB piece reads right across piece boundaries."""
    frames = np.random.default_rng(1).integers(0, 65535, (2100, 64, 64), dtype=np.uint16)
    path = write_scan(tmp_path / "big.h5", frames, {})
    with h5py.File(path, "r") as f:
        plan = plan_dataset(f[DATA])
    assert plan is not None and plan.n_chunks >= 3
    assert plan.starts[-1] + plan.frames_in(plan.n_chunks - 1) == 2100
    buffers = ReadBuffers()
    pieces = []
    for k0, k1 in plan.chunk_ranges(0, 2100, 1 << 20):
        first, block = plan.read(k0, k1, buffers)
        pieces.append((first, block.copy()))  # the block lives in buffers until their next use
    assert [first for first, _ in pieces] == sorted(first for first, _ in pieces)
    got = np.concatenate([block for _, block in pieces])
    assert same_bytes(got, frames.reshape(2100, -1))
    first, two = plan.read(0, 2, buffers)
    assert first == 0 and same_bytes(two, frames[:2 * plan.chunk_frames].reshape(-1, 64 * 64))


@pytest.mark.parametrize("name", ["contiguous", "chunks1", "chunks3", "gzip", "bslz4"])
def test_read_pieces_cover_the_range_in_order(tmp_path, name):
    """read_pieces gives the frames read() gives, in pieces of whole frames (uncompressed:
    about piece_bytes each; compressed: one piece), for every chunk range."""
    frames = sample_frames(11, (37, 41), "uint16")
    expected, plan = read_and_plan(write_scan(tmp_path / "s.h5", frames, layout(name, (37, 41))))
    flat = expected.reshape(len(expected), -1)
    piece_bytes = 3 * plan.frame_nbytes + 7  # three frames a piece
    for k0 in range(plan.n_chunks):
        for k1 in range(k0 + 1, plan.n_chunks + 1):
            pieces = [(first, block.copy()) for first, block in
                      plan.read_pieces(k0, k1, ReadBuffers(), piece_bytes)]
            first, whole = plan.read(k0, k1, ReadBuffers())
            assert pieces[0][0] == first
            assert all(a[0] + len(a[1]) == b[0] for a, b in zip(pieces[:-1], pieces[1:]))
            assert same_bytes(np.concatenate([b for _, b in pieces]), whole)
            assert same_bytes(whole, flat[first:first + len(whole)])
            if plan.filters:
                assert len(pieces) == 1
            else:
                assert max(len(b) for _, b in pieces) <= 3


@pytest.mark.parametrize("create", [
    dict(chunks=(1, 20, 16), maxshape=(None, 20, 16), compression="gzip"),  # extensible array
    dict(chunks=(3, 20, 16), **hdf5plugin.Bitshuffle(cname="lz4")),      # fixed array
    dict(chunks=(11, 20, 16), compression="gzip", shuffle=True),            # single chunk
    dict(chunks=(2, 20, 16), maxshape=(None, 20, 16)),                      # uncompressed, EA
], ids=["extensible-gzip", "fixed-bslz4", "single-chunk", "extensible-raw"])
def test_plan_reads_newer_chunk_indexes(tmp_path, create):
    """Files written with libver='latest' (other chunk index types) read like h5py."""
    frames = sample_frames(11, (20, 16), "uint16", seed=2)
    path = tmp_path / "latest.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(DATA, data=frames, **create)
    with h5py.File(path, "r") as f:
        plan = plan_dataset(f[DATA])
    assert plan is not None
    assert_plan_reads(plan, frames)


def test_many_chunks_with_index_nodes_between_them(tmp_path):
    """300 gzip chunks (B-tree nodes land between chunks): every planned range reads right."""
    frames = sample_frames(300, (8, 8), "uint16", seed=6)
    path = write_scan(tmp_path / "many.h5", frames, dict(chunks=(1, 8, 8), compression="gzip"))
    with h5py.File(path, "r") as f:
        plan = plan_dataset(f[DATA])
    buffers = ReadBuffers()
    for target in (1, 1000, 10**9):
        ranges = assert_ranges_cover(plan, 0, 300, target)
        got = np.concatenate([plan.read(k0, k1, buffers)[1].copy() for k0, k1 in ranges])
        assert same_bytes(got, frames.reshape(300, -1))
    for start, stop in [(5, 6), (63, 130), (299, 300)]:
        ranges = assert_ranges_cover(plan, start, stop, 10**9)
        first, got = plan.read(ranges[0][0], ranges[0][1], buffers)
        assert same_bytes(got, frames[first:first + len(got)].reshape(len(got), -1))


# -- 2. frame_stats: direct path == h5py path --------------------------------------------

def flagged_scan(n=23, shape=(37, 41), seed=3):
    """uint16 frames with Eiger-flagged (65535), saturated, zero pixels; plus a pixel mask."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(150, (n, *shape)).astype(np.uint16)
    frames[rng.random(frames.shape) < 0.03] = 0
    frames[:, 2, 5] = 65535
    frames[rng.random(frames.shape) < 0.01] = 65535
    frames[4, 10, :7] = 65534
    mask = np.zeros(shape, bool)
    mask[0, :] = True
    mask[:, 17] = True
    mask[20:23, 30:33] = True
    frames[:, 0, 3] = 40000  # masked: must not count
    return frames, mask


@pytest.mark.parametrize("stats", ["default", "full"])
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", LAYOUTS)
def test_frame_stats_direct_equals_h5py_path(tmp_path, name, workers, stats):
    """Direct chunk reading gives the very same table as reading through h5py."""
    frames, mask = flagged_scan()
    path = write_scan(tmp_path / "scan.h5", frames, layout(name, frames.shape[1:]), mask)
    with h5py.File(path, "r") as f:
        assert plan_dataset(f[DATA]) is not None  # the direct path is really taken
    direct = xlabel.frame_stats(str(path), workers=workers, stats=stats, progress=False)
    through_h5py = xlabel.frame_stats(str(path), workers=workers, stats=stats, chunk_frames=1,
                                      progress=False)
    pd.testing.assert_frame_equal(direct, through_h5py)
    invalid = mask | (frames == 65535)
    np.testing.assert_array_equal(direct["n_valid"], (~invalid).sum(axis=(1, 2)))
    sums = np.where(invalid, 0, frames.astype(np.int64)).sum(axis=(1, 2))
    np.testing.assert_array_equal(direct["sum"], sums)


def test_frame_stats_direct_on_a_frame_range_subset(tmp_path):
    """Several tasks over a multi-chunk file still give every frame once, in order."""
    frames, mask = flagged_scan(n=61)
    path = write_scan(tmp_path / "scan.h5", frames, layout("bslz4", frames.shape[1:]), mask)
    direct = xlabel.frame_stats(str(path), workers=2, progress=False)
    through_h5py = xlabel.frame_stats(str(path), workers=2, chunk_frames=7, progress=False)
    pd.testing.assert_frame_equal(direct, through_h5py)
    assert direct["frame"].tolist() == list(range(61))


# -- 3. unallocated chunks read as the fill value -----------------------------------------

@pytest.mark.parametrize("dtype,fill", [("uint16", 7), ("float32", 7.5)])
@pytest.mark.parametrize("name", ["chunks1", "gzip", "shuffle_gzip", "bslz4"])
def test_unallocated_chunks_read_as_fill_value(tmp_path, name, dtype, fill):
    """Chunks never written hold the dataset's fill value, as h5py reads them."""
    shape = (16, 12)
    frames = sample_frames(9, shape, dtype, seed=5)
    create = dict(layout(name, shape), chunks=(2, *shape))
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATA, shape=frames.shape, dtype=dtype, fillvalue=fill, **create)
        ds[0:2] = frames[0:2]   # chunk 0
        ds[6:8] = frames[6:8]   # chunk 3
        ds[8] = frames[8]       # partial chunk 4; chunks 1 and 2 never written
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        expected = ds[...]
        plan = plan_dataset(ds)
    assert (expected[2:6] == fill).all()
    assert plan is not None
    assert plan.offsets[1] < 0 and plan.offsets[2] < 0 and (plan.offsets[[0, 3, 4]] > 0).all()
    assert_plan_reads(plan, expected)
    for target in (1, 10**9):
        assert_ranges_cover(plan, 0, 9, target)
    direct = xlabel.frame_stats(str(path), workers=2, progress=False)
    pd.testing.assert_frame_equal(
        direct, xlabel.frame_stats(str(path), workers=2, chunk_frames=1, progress=False))
    assert (direct.loc[2:5, "median"] == fill).all()


# -- 4. chunks for which HDF5 skipped a filter -------------------------------------------

def shuffled(raw, itemsize):
    """Bytes as HDF5's shuffle filter stores them."""
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


@pytest.mark.parametrize("name,mask,encode", [
    ("gzip", 0b1, lambda raw, size: raw),                                   # deflate skipped
    ("shuffle_gzip", 0b10, lambda raw, size: shuffled(raw, size)),          # only shuffled
    ("shuffle_gzip", 0b01, lambda raw, size: zlib.compress(raw)),           # only deflated
    ("shuffle_gzip", 0b11, lambda raw, size: raw),                          # both skipped
    ("bslz4", 0b1, lambda raw, size: raw),                                  # bitshuffle skipped
], ids=["gzip-raw", "shuffle-only", "deflate-only", "both-skipped", "bslz4-raw"])
def test_chunk_with_skipped_filters_decodes(tmp_path, name, mask, encode):
    """A chunk whose filter_mask marks skipped filters decodes like h5py decodes it."""
    shape = (37, 41)
    frames = sample_frames(7, shape, "uint16", seed=9)
    path = tmp_path / "masked.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATA, data=frames, **layout(name, shape))
        whole = np.zeros((2, *shape), np.uint16)
        for k in (1, 3):  # a middle chunk and the partial last chunk
            part = frames[2 * k:2 * k + 2]
            whole[:] = 0
            whole[:len(part)] = part
            ds.id.write_direct_chunk((2 * k, 0, 0), encode(whole.tobytes(), 2), filter_mask=mask)
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        expected = ds[...]
        plan = plan_dataset(ds)
        assert ds.id.get_chunk_info(1).filter_mask == mask
    assert same_bytes(expected, frames)  # the chunks were written right
    assert plan is not None and plan.masks[1] == mask and plan.masks[3] == mask
    assert_plan_reads(plan, expected)


# -- 5. corrupt and truncated files ------------------------------------------------------

def corrupt(path, chunk, at, data, dataset=DATA):
    """Overwrite bytes ``at`` bytes into chunk ``chunk`` of ``dataset``."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + at)
        fh.write(data)
    return info


def assert_scan_error(err, path, frame, dataset=DATA):
    assert isinstance(err, XLabelError)
    assert err.frame == frame
    assert err.path == str(path) and err.dataset == dataset
    assert str(err).startswith(f"{path}:{dataset} frame {frame}:"), str(err)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_gzip_chunk_names_its_frame(tmp_path, workers):
    """A corrupt deflate stream in chunk 3 (frames 6-7) raises ScanError for frame 6."""
    frames, _ = flagged_scan(n=10, shape=(64, 64))
    path = write_scan(tmp_path / "scan.h5", frames, layout("gzip", (64, 64)))
    corrupt(path, 3, 0, b"\xff" * 16)
    with pytest.raises(ScanError) as direct:
        xlabel.frame_stats(str(path), workers=workers, progress=False)
    assert_scan_error(direct.value, path, 6)
    assert "gzip" in str(direct.value)
    with pytest.raises(ScanError) as through_h5py:  # the h5py path agrees on the frame
        xlabel.frame_stats(str(path), workers=workers, chunk_frames=1, progress=False)
    assert through_h5py.value.frame == 6


@pytest.mark.parametrize("field", ["block_size", "total_size"])
@pytest.mark.parametrize("cname", ["lz4", "zstd"])
@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_bitshuffle_header_names_its_frame(tmp_path, cname, field, workers):
    """A bitshuffle chunk with an impossible block/total size raises ScanError, never crashes."""
    frames, _ = flagged_scan(n=10, shape=(64, 64))  # 2 frames = 8192 elements: several blocks
    path = write_scan(tmp_path / "scan.h5", frames, layout(f"bs{cname}", (64, 64)))
    if field == "block_size":  # huge, but a multiple of 8 elements: only the walk can reject it
        corrupt(path, 3, 8, struct.pack(">I", 2**31 - 16))
    else:
        corrupt(path, 3, 0, struct.pack(">Q", 2**62))
    with pytest.raises(ScanError) as err:
        xlabel.frame_stats(str(path), workers=workers, progress=False)
    assert_scan_error(err.value, path, 6)
    assert "bitshuffle" in str(err.value)
    with h5py.File(path, "r") as f:  # a single-chunk read reports the same chunk
        plan = plan_dataset(f[DATA])
    with pytest.raises(ScanError) as single:
        plan.read(3, 4, ReadBuffers())
    assert single.value.frame == 6
    assert plan.read(2, 3, ReadBuffers())[1].shape == (2, 64 * 64)  # neighbours still fine


def test_truncated_file_raises_scan_error(tmp_path):
    """A file cut inside its data (HDF5 sees the short end) gives ScanError saying 'truncated'."""
    frames, _ = flagged_scan(n=10, shape=(64, 64))
    path = write_scan(tmp_path / "scan.h5", frames, layout("gzip", (64, 64)))
    with h5py.File(path, "r") as f:
        cut = f[DATA].id.get_chunk_info(3).byte_offset + 5
    os.truncate(path, cut)
    with pytest.raises(ScanError, match="truncated") as err:
        xlabel.frame_stats(str(path), progress=False)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", ["chunks1", "gzip", "bslz4"])
def test_truncated_data_region_names_first_missing_frame(tmp_path, name, workers):
    """Chunks past the end of a truncated file: ScanError for the first missing frame (6).

    The superblock is patched so HDF5 opens the file (as when the writer died after
    flushing metadata); the h5py path reports frame 6, the direct path must too.
    """
    frames, _ = flagged_scan(n=10, shape=(64, 64))
    create = layout(name, (64, 64))
    create["chunks"] = (2, 64, 64)
    path = write_scan(tmp_path / "scan.h5", frames, create)
    with h5py.File(path, "r") as f:
        cut = f[DATA].id.get_chunk_info(3).byte_offset + 5
    truncate_keeping_superblock(path, cut)
    with pytest.raises(ScanError) as through_h5py:
        xlabel.frame_stats(str(path), workers=workers, chunk_frames=1, progress=False)
    assert through_h5py.value.frame == 6
    with pytest.raises(ScanError, match="truncated") as direct:
        xlabel.frame_stats(str(path), workers=workers, progress=False)
    assert_scan_error(direct.value, path, 6)


def test_truncated_contiguous_dataset_names_first_missing_frame(tmp_path):
    """A contiguous stack cut after frame 5's bytes: reading it names frame 6, 'truncated'."""
    frames, _ = flagged_scan(n=10, shape=(64, 64))
    path = write_scan(tmp_path / "scan.h5", frames, {})
    with h5py.File(path, "r") as f:
        plan = plan_dataset(f[DATA])
    cut = int(plan.offsets[0]) + 6 * plan.frame_nbytes + 100
    os.truncate(path, cut)
    with pytest.raises(ScanError, match="truncated") as err:
        plan.read(0, plan.n_chunks, ReadBuffers())
    assert err.value.frame == 6


FUZZ_SCRIPT = textwrap.dedent("""
    import json, sys
    import h5py, hdf5plugin, numpy as np
    import xlabel
    from xlabel.errors import ScanError
    from xlabel.io.direct import ReadBuffers, plan_dataset

    path, n_cases = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(2024)
    frames = rng.poisson(300, (4, 64, 64)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("/entry/data/data", data=frames, chunks=(1, 64, 64),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        info = ds.id.get_chunk_info(1)
        plan = plan_dataset(ds)
    original = open(path, "rb").read()
    outcomes = []
    for case in range(n_cases):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 5))):
            at = 0 if case == 0 else int(rng.integers(0, info.size))
            data[info.byte_offset + at] = int(rng.integers(0, 256))
        with open(path, "wb") as fh:
            fh.write(data)
        for how in ("span", "single", "frame_stats"):
            try:
                if how == "span":
                    plan.read(0, 4, ReadBuffers())
                elif how == "single":
                    plan.read(1, 2, ReadBuffers())
                else:
                    xlabel.frame_stats(path, workers=2, progress=False)
                outcomes.append([how, "ok", None])
            except ScanError as err:
                outcomes.append([how, "ScanError", err.frame])
    print(json.dumps(outcomes))
""")


def test_fuzzed_bitshuffle_chunk_never_crashes(tmp_path):
    """50 random byte corruptions of a bitshuffle-LZ4 chunk: decodes or ScanError, no crash.

    Runs in a child process so that a crash of the C decoder fails this test instead of
    killing the test session.
    """
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "fuzz.h5"), "50"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 150
    for how, result, frame in outcomes:
        assert result == "ok" or (result == "ScanError" and frame == 1), (how, result, frame)
    assert any(result == "ScanError" for _, result, _ in outcomes)  # case 0 breaks the header


# -- 6. Eiger master with external links to data files -----------------------------------

def write_eiger(tmp_path, per_file=(10, 12), chunk=2):
    """Eiger-like master + two bitshuffle-LZ4 data files; returns (master, frames, mask)."""
    frames, mask = flagged_scan(n=sum(per_file), shape=(32, 24), seed=11)
    master = tmp_path / "scan_master.h5"
    with h5py.File(master, "w") as f:
        start = 0
        for i, n in enumerate(per_file, 1):
            name = f"scan_data_{i:06d}.h5"
            with h5py.File(tmp_path / name, "w") as d:
                d.create_dataset(DATA, data=frames[start:start + n], chunks=(chunk, 32, 24),
                                 **hdf5plugin.Bitshuffle(cname="lz4"))
            f[f"/entry/data/data_{i:06d}"] = h5py.ExternalLink(name, DATA)
            start += n
        f.create_dataset("/entry/instrument/detector/detectorSpecific/pixel_mask",
                         data=mask.astype(np.uint32))
    return master, frames, mask


@pytest.mark.parametrize("workers", [1, 2])
def test_eiger_master_with_external_data_files(tmp_path, workers):
    """Frames in two linked data files: direct table == h5py table, mask applied."""
    master, frames, mask = write_eiger(tmp_path)
    src = open_scan(master)
    assert [seg[1] for seg in src.segments] == ["/entry/data/data_000001",
                                                "/entry/data/data_000002"]
    direct = xlabel.frame_stats(str(master), workers=workers, progress=False)
    through_h5py = xlabel.frame_stats(str(master), workers=workers, chunk_frames=1,
                                      progress=False)
    pd.testing.assert_frame_equal(direct, through_h5py)
    assert len(direct) == 22
    invalid = mask | (frames == 65535)
    np.testing.assert_array_equal(direct["n_valid"], (~invalid).sum(axis=(1, 2)))


@pytest.mark.parametrize("workers", [1, 2])
def test_eiger_error_in_second_file_names_global_frame(tmp_path, workers):
    """A corrupt chunk 3 of the second data file (10 frames before it) is scan frame 16."""
    master, _, _ = write_eiger(tmp_path)
    corrupt(tmp_path / "scan_data_000002.h5", 3, 0, struct.pack(">Q", 2**62))  # total size
    with pytest.raises(ScanError) as err:
        xlabel.frame_stats(str(master), workers=workers, progress=False)
    assert_scan_error(err.value, master, 16, dataset="/entry/data/data_000002")
    assert "scan_data_000002.h5" in str(err.value)  # where the bytes really are
    with pytest.raises(ScanError) as through_h5py:
        xlabel.frame_stats(str(master), workers=workers, chunk_frames=1, progress=False)
    assert through_h5py.value.frame == 16


# -- 7. layouts the plan refuses still work through h5py ----------------------------------

def refused_layout(kind, tmp_path, frames):
    """Write ``frames`` at DATA in a layout plan_dataset must refuse; returns the path."""
    path = tmp_path / f"{kind}.h5"
    n, h, w = frames.shape
    with h5py.File(path, "w") as f:
        if kind == "tiled":
            f.create_dataset(DATA, data=frames, chunks=(1, h // 2, w))
        elif kind == "virtual":
            vlayout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
            half = n // 2
            for i, (a, b) in enumerate([(0, half), (half, n)]):
                part = tmp_path / f"part{i}.h5"
                with h5py.File(part, "w") as p:
                    p.create_dataset("frames", data=frames[a:b])
                vlayout[a:b] = h5py.VirtualSource(str(part), "frames", shape=(b - a, h, w))
            f.create_virtual_dataset(DATA, vlayout)
        elif kind == "lz4":
            f.create_dataset(DATA, data=frames, chunks=(1, h, w), **hdf5plugin.LZ4())
        elif kind == "lzf":
            f.create_dataset(DATA, data=frames, chunks=(1, h, w), compression="lzf")
        elif kind == "blosc":
            f.create_dataset(DATA, data=frames, chunks=(1, h, w), **hdf5plugin.Blosc())
        elif kind == "fletcher32":
            f.create_dataset(DATA, data=frames, chunks=(1, h, w), fletcher32=True)
        elif kind == "big_endian":
            f.create_dataset(DATA, data=frames.astype(">u2"), chunks=(1, h, w))
        elif kind == "external":
            raw = tmp_path / "frames.raw"
            ds = f.create_dataset(DATA, shape=frames.shape, dtype=frames.dtype,
                                  external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
            ds[...] = frames
        else:
            raise AssertionError(kind)
    return path


@pytest.mark.parametrize("kind", ["tiled", "virtual", "lz4", "lzf", "blosc", "fletcher32",
                                  "big_endian", "external"])
def test_unsupported_layouts_get_no_plan_but_frame_stats_works(tmp_path, kind):
    """plan_dataset returns None; frame_stats reads these through h5py, means are right."""
    frames = np.random.default_rng(4).poisson(500, (9, 32, 24)).astype(np.uint16)
    path = refused_layout(kind, tmp_path, frames)
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        assert same_bytes(ds[...].astype(np.uint16), frames)
        assert plan_dataset(ds) is None
    table = xlabel.frame_stats(str(path), workers=2, progress=False)
    np.testing.assert_allclose(table["mean"], frames.mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_array_equal(table["sum"], frames.sum(axis=(1, 2), dtype=np.int64))
    assert (table["n_valid"] == 32 * 24).all()


# -- 8. chunk ranges split where chunks are not back to back ------------------------------

@pytest.mark.parametrize("filtered", [False, True], ids=["raw", "gzip"])
def test_chunk_ranges_split_at_gaps_between_out_of_order_chunks(tmp_path, filtered):
    """Chunks written out of order: ranges only span back-to-back chunks, all read right."""
    shape = (20, 16)
    frames = sample_frames(12, shape, "uint16", seed=21)
    path = tmp_path / "shuffled_chunks.h5"
    order = [0, 1, 2, 8, 7, 6, 5, 3, 4, 9, 10, 11]  # runs in order, a reversed run, a jump back
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATA, shape=frames.shape, dtype=frames.dtype, chunks=(1, *shape),
                              compression="gzip" if filtered else None)
        for k in order:
            raw = frames[k].tobytes()
            ds.id.write_direct_chunk((k, 0, 0), zlib.compress(raw) if filtered else raw)
    expected, plan = read_and_plan(path)
    assert same_bytes(expected, frames)
    assert plan is not None
    assert not (np.diff(plan.offsets) > 0).all()  # the file order really differs
    ranges = assert_ranges_cover(plan, 0, 12, 10**9)
    assert len(ranges) > 1
    buffers = ReadBuffers()
    for k0, k1 in ranges:
        ends = plan.offsets[k0:k1] + plan.sizes[k0:k1]
        assert (plan.offsets[k0 + 1:k1] == ends[:-1]).all(), (k0, k1)  # back to back
        first, got = plan.read(k0, k1, buffers)
        assert same_bytes(got, expected[first:first + (k1 - k0)].reshape(k1 - k0, -1))
    # chunks 0-2 are written back to back and in order: one range holds them all
    assert (0, 3) in ranges
    reversed_path = tmp_path / "reversed.h5"
    with h5py.File(reversed_path, "w") as f:
        ds = f.create_dataset(DATA, shape=frames.shape, dtype=frames.dtype, chunks=(1, *shape))
        for k in reversed(range(12)):
            ds.id.write_direct_chunk((k, 0, 0), frames[k].tobytes())
        plan = plan_dataset(ds)
    assert plan.chunk_ranges(0, 12, 10**9) == [(k, k + 1) for k in range(12)]
    assert_plan_reads(plan, frames)
