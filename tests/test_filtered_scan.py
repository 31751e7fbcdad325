"""``xlabel.io.filtered.write_filtered_scan``: the kept frames as an HDF5 virtual dataset.

Real HDF5 files: an Eiger-style master with three external data files (xlabel.synth) and a
NeXus file with per-frame metadata written with h5py; read back with h5py and open_scan.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from xlabel.errors import ScanError
from xlabel.io import open_scan
from xlabel.io.filtered import write_filtered_scan
from xlabel.synth import make_scan, write_scan


@pytest.fixture(scope="module")
def eiger(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eiger")
    scan = make_scan(150, (64, 48), seed=7, ramp_frames=5, losses=[(70, 8)])
    master = write_scan(scan, folder / "scan", frames_per_file=50)
    return master, scan


def test_kept_frames_of_an_eiger_master_read_back_through_the_virtual_dataset(eiger,
                                                                           tmp_path):
    master, scan = eiger
    source = open_scan(master)
    assert len(source.segments) == 3
    keep = ~scan.is_bad
    keep[[0, 49, 50, 99, 100, 149]] = [True, False, True, True, False, True]
    (tmp_path / "out").mkdir()
    out = write_filtered_scan(source, keep, tmp_path / "out" / "kept.h5")
    filtered = open_scan(out)
    np.testing.assert_array_equal(filtered[:], source[:][keep])
    np.testing.assert_array_equal(filtered.pixel_mask, source.pixel_mask)
    with h5py.File(out, "r") as f:
        stack = f[filtered.dataset]
        assert stack.is_virtual and stack.shape == (keep.sum(), 64, 48)
        assert len(stack.virtual_sources()) >= 3
        np.testing.assert_array_equal(f["xlabel/kept_frames"][()], np.flatnonzero(keep))
        assert f.attrs["xlabel_source"] == str(master.resolve())
    assert out.stat().st_size < source.nbytes / 2        # no frame copied


def test_virtual_dataset_resolves_from_another_working_directory(eiger, tmp_path,
                                                                 monkeypatch):
    master, scan = eiger
    out = write_filtered_scan(open_scan(master), ~scan.is_bad, tmp_path / "kept.h5")
    monkeypatch.chdir("/")
    with h5py.File(out, "r") as f:
        frames = f["/entry/data/data"][()]
    np.testing.assert_array_equal(frames, open_scan(master)[:][~scan.is_bad])


def nexus_with_metadata(path, n=20):
    frames = np.arange(n * 6, dtype=np.uint16).reshape(n, 2, 3)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        data.create_dataset("data", data=frames, chunks=(1, 2, 3))
        data.create_dataset("rotation_angle", data=np.linspace(0, 180, n))
        data["rotation_angle"].attrs["units"] = "deg"
        entry.create_dataset("title", data="a scan")
        entry["data_alias"] = h5py.SoftLink("/entry/data/data")
        entry["missing"] = h5py.ExternalLink("not_here.h5", "/x")
    return path, frames


def test_metadata_comes_along_and_per_frame_datasets_keep_the_kept_rows(tmp_path):
    path, frames = nexus_with_metadata(tmp_path / "scan.nxs")
    keep = np.ones(20, bool)
    keep[[3, 4, 11]] = False
    out = write_filtered_scan(open_scan(path), keep, tmp_path / "kept.h5")
    with h5py.File(out, "r") as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/data"].attrs["signal"] == "data"
        assert f["entry/title"][()] == b"a scan"
        np.testing.assert_allclose(f["entry/data/rotation_angle"][()],
                                   np.linspace(0, 180, 20)[keep])
        assert f["entry/data/rotation_angle"].attrs["units"] == "deg"
        np.testing.assert_array_equal(f["entry/data_alias"][()], frames[keep])
        assert "/entry/missing" in list(f.attrs["xlabel_skipped_links"])
    np.testing.assert_array_equal(open_scan(out)[:], frames[keep])


def test_no_frame_kept_gives_an_empty_stack_and_non_hdf5_is_refused(tmp_path):
    path, frames = nexus_with_metadata(tmp_path / "scan.nxs")
    out = write_filtered_scan(open_scan(path), np.zeros(20, bool), tmp_path / "none.h5")
    with h5py.File(out, "r") as f:
        assert f["entry/data/data"].shape == (0, 2, 3)
    np.save(tmp_path / "frames.npy", frames)
    with pytest.raises(ScanError, match="HDF5"):
        write_filtered_scan(open_scan(tmp_path / "frames.npy"), np.ones(20, bool),
                            tmp_path / "x.h5")
    with pytest.raises(ScanError, match="3 keep flags"):
        write_filtered_scan(open_scan(path), np.ones(3, bool), tmp_path / "y.h5")
    assert os.path.exists(path)


def test_an_unwritable_output_is_a_clear_error(tmp_path):
    path, _ = nexus_with_metadata(tmp_path / "scan.nxs")
    with pytest.raises(ScanError, match="cannot write the filtered scan"):
        write_filtered_scan(open_scan(path), np.ones(20, bool), tmp_path / "no" / "x.h5")


def test_master_held_open_elsewhere_in_the_process_is_no_error(eiger, tmp_path):
    """A notebook often still holds the master open (default HDF5 file locking): writing the
    filtered scan must open it with matching flags, not fail on 'locking flag values'."""
    master, scan = eiger
    keep = ~scan.truth["label"].eq("bad").to_numpy()
    with h5py.File(master, "r"):
        path = write_filtered_scan(open_scan(master), keep, tmp_path / "held_filtered.h5")
    np.testing.assert_array_equal(open_scan(path)[:], scan.frames[keep])
