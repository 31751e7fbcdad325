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
