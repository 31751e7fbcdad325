"""Odd but real HDF5 layouts: link loops, virtual datasets, frame-axis masks, corrupt files.

Every test writes real files with h5py into tmp_path and opens them with xlabel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import xlabel
from xlabel.errors import ScanError
from xlabel.io import open_scan

ROOT = Path(__file__).resolve().parents[1]


def run_child(code, *args, timeout=60):
    """Run ``code`` in a fresh Python (this worktree's xlabel); its CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


# -- link loops ----------------------------------------------------------------------------

def write_looped(path, link):
    """Frames at a non-standard place, next to a link from a group back to its parent."""
    data = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    with h5py.File(path, "w") as f:
        f.create_dataset("/scan/frames", data=data)
        f.create_dataset("/scan/sub/deeper/angles", data=np.arange(5.0))
        if link == "soft":
            f["/scan/sub/up"] = h5py.SoftLink("/scan")
        else:
            f["/scan/sub/up"] = f["/scan"]  # a hard link: the group is its own grandchild
    return data


@pytest.mark.parametrize("link", ["soft", "hard"])
def test_link_back_to_a_parent_group_does_not_hang(tmp_path, link):
    """The search for the frame stack visits each group once however many paths reach it.

    Opened in a child process with a time limit, so a hang fails the test.
    """
    data = write_looped(tmp_path / "loop.h5", link)
    proc = run_child("""
        import sys, numpy as np, xlabel
        src = xlabel.open_scan(sys.argv[1])
        print(src.dataset, len(src), int(src.read_all().sum()))
    """, tmp_path / "loop.h5", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["/scan/frames", "5", str(int(data.sum()))]


# -- corrupt metadata: HDF5's own reason is kept ------------------------------------------

def cut_keeping_superblock(path, cut):
    """Cut ``path`` at ``cut`` and store that as the file's end in the superblock (v0)."""
    with open(path, "r+b") as fh:
        head = fh.read(48)
        assert head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] == 0
        fh.truncate(cut)
        fh.seek(40)
        fh.write(int(cut).to_bytes(8, "little"))


@pytest.mark.parametrize("where", ["/entry/data/data", "/scan/frames"])
def test_corrupt_frame_stack_keeps_hdf5s_reason(tmp_path, where):
    """A frame stack whose metadata HDF5 rejects ("likely file corruption") is named with
    HDF5's reason; a smaller readable stack next to it is never taken instead."""
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:  # metadata first, then the data behind it
        darks = f.create_dataset("/scan/darks", shape=(2, 8, 8), dtype=np.uint16)
        frames = f.create_dataset(where, shape=(10, 8, 8), dtype=np.uint16)
        darks[...], frames[...] = 1, 2
    with h5py.File(path, "r") as f:
        cut = f[where].id.get_offset() + 3 * 8 * 8 * 2
    cut_keeping_superblock(path, cut)
    with pytest.raises(ScanError) as err:
        open_scan(path)
    message = str(err.value)
    assert "likely file corruption" in message and where in message, message
    assert "no frame stack found" not in message
    with pytest.raises(ScanError, match="likely file corruption"):
        open_scan(path, dataset=where)
    assert len(open_scan(path, dataset="/scan/darks")) == 2  # still readable when asked for


# -- virtual datasets (Diamond VDS masters) ---------------------------------------------

def write_vds(tmp_path, n_sources=3, per=4, shape=(6, 5)):
    """A VDS master (frames from ``src_i.h5``) in its own folder; (master, all frames)."""
    frames = (np.arange(n_sources * per, dtype=np.uint16)[:, None, None] + 1
              + np.zeros((1, *shape), np.uint16))
    layout = h5py.VirtualLayout((n_sources * per, *shape), np.uint16)
    for i in range(n_sources):
        with h5py.File(tmp_path / f"src_{i}.h5", "w") as f:
            f.create_dataset("/entry/detector/data", data=frames[i * per:(i + 1) * per])
        layout[i * per:(i + 1) * per] = h5py.VirtualSource(
            f"src_{i}.h5", "/entry/detector/data", shape=(per, *shape))
    master = tmp_path / "master.nxs"
    with h5py.File(master, "w") as f:
        f.create_virtual_dataset("/entry/data/data", layout, fillvalue=0)
    return master, frames


def test_vds_with_every_source_reads_its_frames(tmp_path):
    master, frames = write_vds(tmp_path)
    src = open_scan(master)
    assert np.array_equal(src.read_all(), frames)
    table = xlabel.frame_stats(src, progress=False)
    assert table["mean"].tolist() == frames.reshape(len(frames), -1).mean(axis=1).tolist()


@pytest.mark.parametrize("missing", [[1], [0, 1, 2]])
def test_vds_missing_source_files_are_named(tmp_path, missing):
    """A source file not copied with the master: ScanError naming it and its frames,
    never frames of the fill value (zeros) going into the feature table."""
    master, _ = write_vds(tmp_path)
    for i in missing:
        os.remove(tmp_path / f"src_{i}.h5")
    with pytest.raises(ScanError) as err:
        xlabel.frame_stats(str(master), progress=False)
    message = str(err.value)
    for i in range(3):
        named = f"src_{i}.h5:/entry/detector/data is missing (frames {4 * i}-{4 * i + 3})"
        assert (named in message) == (i in missing), message
    assert f"{len(missing)} of 3 source(s)" in message
    with pytest.raises(ScanError, match="is missing"):
        open_scan(master, dataset="/entry/data/data")


def test_vds_source_without_its_dataset_is_named(tmp_path):
    master, _ = write_vds(tmp_path, n_sources=2)
    with h5py.File(tmp_path / "src_1.h5", "w") as f:  # rewritten: the dataset is gone
        f.create_dataset("/entry/other", data=np.zeros(3))
    with pytest.raises(ScanError, match=r"src_1.h5:/entry/detector/data has no dataset "
                                        r"/entry/detector/data \(frames 4-7\)"):
        open_scan(master)


# -- frames without pixels ---------------------------------------------------------------

def test_frames_of_zero_pixels_are_an_error_for_every_reader(tmp_path):
    """(n, 0, W) stacks: a ScanError naming the file, not a table of NaN 'no valid pixels'."""
    empty = np.zeros((3, 0, 5), np.uint16)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("/entry/data/data", data=empty)
    np.save(tmp_path / "empty.npy", empty)
    for scan, where in ((empty, None), (tmp_path / "empty.h5", "empty.h5"),
                        (tmp_path / "empty.npy", "empty.npy")):
        with pytest.raises(ScanError, match=r"frames of shape \(0, 5\) hold no pixels") as err:
            xlabel.frame_stats(scan if where is None else str(scan), progress=False)
        assert where is None or str(err.value).startswith(str(tmp_path / where))
    with pytest.raises(ScanError, match="hold no pixels"):
        open_scan(np.zeros((2, 4, 0), np.float32))


def test_custom_source_with_zero_pixel_frames_is_a_feature_error():
    """A FrameSource written by a user that yields (n, 0, 0) frames: FeatureError."""

    class Empty(xlabel.io.FrameSource):
        name = "empty"

        def __len__(self):
            return 2

        @property
        def frame_shape(self):
            return (0, 0)

        @property
        def dtype(self):
            return np.dtype(np.uint16)

        def _read(self, start, stop):
            return np.zeros((stop - start, 0, 0), np.uint16)

    with pytest.raises(xlabel.errors.FeatureError, match=r"frames of shape \(0, 0\) hold no"):
        xlabel.frame_stats(Empty(), progress=False)


# -- NXdetector pixel masks with a frame axis (PETRA-III Lambda) -----------------------

def write_lambda(path, mask, *, applied=0, n=10, shape=(12, 10), chunks=None, fill=None):
    """NXdetector ``data`` with hot masked pixels, ``pixel_mask`` as given (1 = bad)."""
    rng = np.random.default_rng(8)
    data = rng.poisson(0.2, (n, *shape)).astype(np.uint32)  # weak flux: ~0.2 counts/pixel
    bad = np.broadcast_to(np.asarray(mask, bool), data.shape)
    data[bad] = 50_000 if fill is None else fill              # flagged pixels dominate the raw mean
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=data, chunks=chunks)
        det.create_dataset("pixel_mask", data=np.asarray(mask, np.uint32))
        det.create_dataset("pixel_mask_applied", data=applied)
    return data, bad


def masked_means(data, bad):
    return [float(frame[~m].mean()) for frame, m in zip(data, bad)]


@pytest.mark.parametrize("chunk_frames", [None, 1], ids=["direct", "h5py"])
@pytest.mark.parametrize("chunks", [None, (1, 12, 10)], ids=["contiguous", "chunked"])
def test_lambda_pixel_mask_with_leading_frame_axis(tmp_path, chunks, chunk_frames):
    """``pixel_mask`` of shape (1, H, W): the flagged pixels are excluded from every frame."""
    mask = np.zeros((1, 12, 10), bool)
    mask[0, 3, :] = True
    mask[0, :, 7] = True
    data, bad = write_lambda(tmp_path / "lambda.nxs", mask, chunks=chunks)
    src = open_scan(tmp_path / "lambda.nxs")
    assert src.pixel_mask is not None and np.array_equal(src.pixel_mask, mask[0])
    assert src.frame_masks is None and src.pixel_mask_applied is False
    table = xlabel.frame_stats(src, progress=False, chunk_frames=chunk_frames)
    assert np.allclose(table["mean"], masked_means(data, bad))
    assert table["mean"].max() < 1  # the raw mean would be in the thousands
    assert (table["n_invalid"] == mask.sum()).all()


def test_mask_applied_flag_is_read_and_zeroed_pixels_still_excluded(tmp_path):
    """``pixel_mask_applied = 1``: the detector zeroed the masked pixels; they are still no
    measurement, so they count neither in the mean nor as zero pixels."""
    mask = np.zeros((1, 12, 10), bool)
    mask[0, :4, :] = True
    data, bad = write_lambda(tmp_path / "lambda.nxs", mask, applied=1, fill=0)
    src = open_scan(tmp_path / "lambda.nxs")
    assert src.pixel_mask_applied is True
    table = xlabel.frame_stats(src, progress=False)
    assert np.allclose(table["mean"], masked_means(data, bad))
    zero = [float((frame[~m] == 0).mean()) for frame, m in zip(data, bad)]
    assert np.allclose(table["frac_zero"], zero)


def test_one_mask_per_frame_all_equal_is_a_static_mask(tmp_path):
    mask = np.zeros((10, 12, 10), bool)
    mask[:, 5, 5] = True
    write_lambda(tmp_path / "lambda.nxs", mask)
    src = open_scan(tmp_path / "lambda.nxs")
    assert src.frame_masks is None and np.array_equal(src.pixel_mask, mask[0])


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("chunk_frames", [None, 3], ids=["direct", "blocks"])
def test_masks_that_change_per_frame_are_applied_frame_by_frame(tmp_path, workers,
                                                                chunk_frames):
    """``pixel_mask`` (n_frames, H, W) that changes along the scan: each frame's own mask."""
    mask = np.zeros((10, 12, 10), bool)
    mask[:, 0, 0] = True          # always bad
    mask[4:, 6, :] = True         # a row goes bad from frame 4 on
    mask[7, :, 2] = True          # one frame with a bad column
    data, bad = write_lambda(tmp_path / "lambda.nxs", mask, chunks=(1, 12, 10))
    src = open_scan(tmp_path / "lambda.nxs", mask=np.eye(12, 10, dtype=bool))
    bad = bad | np.eye(12, 10, dtype=bool)
    assert src.frame_masks is not None
    table = xlabel.frame_stats(src, progress=False, workers=workers, chunk_frames=chunk_frames)
    assert np.allclose(table["mean"], masked_means(data, bad))
    assert table["n_invalid"].tolist() == bad.reshape(10, -1).sum(axis=1).tolist()
    stack = src[2:8]
    flagged = xlabel.io.invalid_pixels(stack, src, start=2)
    assert np.array_equal(flagged, bad[2:8])
    union = xlabel.io.invalid_pixels(stack, src)  # without frame numbers: any frame's mask
    assert np.array_equal(union, np.broadcast_to(bad.any(axis=0), stack.shape))
    import pickle
    again = pickle.loads(pickle.dumps(src))
    assert np.allclose(xlabel.frame_stats(again, progress=False)["mean"], table["mean"])
