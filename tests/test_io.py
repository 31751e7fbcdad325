"""xlabel.io: opening scans from real HDF5/NeXus, TIFF, .npy files written in tmp_path."""

from __future__ import annotations

import pickle

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile

import xlabel
from xlabel.errors import ScanError
from xlabel.io import FrameSource, invalid_pixels, natural_key, open_scan


def frames(n=12, shape=(6, 5), dtype=np.uint16, offset=0):
    """Frames whose pixel values encode the frame index, so order is checkable."""
    idx = np.arange(offset, offset + n, dtype=np.int64)[:, None, None]
    return (idx * 10 + np.zeros((n, *shape), dtype=np.int64)).astype(dtype)


def write_nxdata(path, data, *, default_chain=True, extra=None, **create):
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        group = entry.create_group("results")
        group.attrs["NX_class"] = "NXdata"
        group.attrs["signal"] = "frames"
        group.create_dataset("frames", data=data, **create)
        if default_chain:
            f.attrs["default"] = "entry"
            entry.attrs["default"] = "results"
        for name, value in (extra or {}).items():
            f.create_dataset(name, data=value)
    return path


def write_eiger(tmp_path, stem="scan", per_file=(5, 5, 3), chunk=2, mask=None, **create):
    """Eiger-like master + data files; returns (master path, all frames)."""
    everything = frames(sum(per_file))
    master = tmp_path / f"{stem}_master.h5"
    with h5py.File(master, "w") as f:
        data = f.create_group("entry/data")
        data.attrs["NX_class"] = "NXdata"
        start = 0
        for i, n in enumerate(per_file, 1):
            name = f"{stem}_data_{i:06d}.h5"
            with h5py.File(tmp_path / name, "w") as d:
                d.create_dataset("entry/data/data", data=everything[start:start + n],
                                 chunks=(chunk, *everything.shape[1:]), **create)
            data[f"data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
            start += n
        if mask is not None:
            f.create_dataset("entry/instrument/detector/detectorSpecific/pixel_mask", data=mask)
    return master, everything


# -- finding the frame stack --------------------------------------------------
def test_nxdata_signal_via_default_chain(tmp_path):
    data = frames(7)
    path = write_nxdata(tmp_path / "a.nxs", data, extra={"other": frames(30)})
    src = open_scan(path)
    assert src.dataset == "/entry/results/frames"
    assert (len(src), src.frame_shape, src.dtype) == (7, (6, 5), np.uint16)
    np.testing.assert_array_equal(src[3], data[3])
    np.testing.assert_array_equal(src[2:5], data[2:5])
    np.testing.assert_array_equal(src[[6, 0]], data[[6, 0]])
    np.testing.assert_array_equal(src.read_all(), data)


def test_nxdata_signal_without_default_chain(tmp_path):
    path = write_nxdata(tmp_path / "a.nxs", frames(4), default_chain=False)
    assert open_scan(path).dataset == "/entry/results/frames"


def test_entry_data_data_and_group_as_dataset(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["entry/data/data"] = frames(9)
        f["entry/data/small"] = frames(2)
    src = open_scan(path)
    assert src.dataset == "/entry/data/data" and len(src) == 9
    nx = write_nxdata(tmp_path / "g.nxs", frames(3), default_chain=False,
                      extra={"big": frames(50)})
    assert open_scan(nx, dataset="/entry/results").dataset == "/entry/results/frames"


def test_nxdetector_only(tmp_path):
    path = tmp_path / "det.nxs"
    with h5py.File(path, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = frames(6)
        f["entry/instrument/other"] = frames(6)  # same size: only the NXdetector marks it
    src = open_scan(path)
    assert src.dataset == "/entry/instrument/detector/data"
    np.testing.assert_array_equal(src[5], frames(6)[5])


def test_eiger_master_concatenates_external_files_in_order(tmp_path):
    master, everything = write_eiger(tmp_path, per_file=(5, 5, 3), chunk=2)
    src = open_scan(master)
    assert src.name == "scan"
    assert len(src) == 13 and src.chunk_frames == 2
    assert src.part_starts == (0, 5, 10)
    np.testing.assert_array_equal(src.read_all(), everything)
    np.testing.assert_array_equal(src[3:12], everything[3:12])
    blocks = list(src.iter_chunks(chunk_frames=2))
    starts = [s for s, _ in blocks]
    # aligned to each file's chunks: 0,2,4 | 5,7,9 | 10,12 ; never spans two files
    assert starts == [0, 2, 4, 5, 7, 9, 10, 12]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), everything)
    default_blocks = list(src.iter_chunks(start=1, stop=12))
    assert [s for s, _ in default_blocks] == [1, 5, 10]


def test_signal_naming_first_eiger_part_brings_siblings(tmp_path):
    master, everything = write_eiger(tmp_path, per_file=(4, 4))
    with h5py.File(master, "a") as f:
        f["entry/data"].attrs["signal"] = "data_000001"
        f["entry"].attrs["default"] = "data"
        f.attrs["default"] = "entry"
    np.testing.assert_array_equal(open_scan(master).read_all(), everything)


@pytest.mark.parametrize("create", [
    dict(compression="gzip", compression_opts=4),
    dict(**hdf5plugin.Bitshuffle(cname="lz4")),
], ids=["gzip", "bitshuffle-lz4"])
def test_compressed_detector_data(tmp_path, create):
    master, everything = write_eiger(tmp_path, per_file=(6, 4), chunk=3, **create)
    src = open_scan(master)
    np.testing.assert_array_equal(src.read_all(), everything)
    assert src.chunk_frames == 3


def test_multipart_list_and_glob_in_natural_order(tmp_path):
    parts = []
    for i, n in enumerate([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2]):  # part10 sorts after part9
        path = tmp_path / f"run_part{i}.nxs"
        write_nxdata(path, frames(n, offset=3 * i), chunks=(1, 6, 5))
        parts.append(path)
    expected = frames(32)
    by_glob = open_scan(str(tmp_path / "run_part*.nxs"))
    np.testing.assert_array_equal(by_glob.read_all(), expected)
    assert by_glob.name == "run" and len(by_glob.part_starts) == 11
    np.testing.assert_array_equal(open_scan(parts).read_all(), expected)
    assert sorted(["p10", "p9", "p1"], key=natural_key) == ["p1", "p9", "p10"]


def test_multipart_mismatch_names_the_part(tmp_path):
    write_nxdata(tmp_path / "s_part00000.nxs", frames(3))
    write_nxdata(tmp_path / "s_part00001.nxs", frames(3, shape=(6, 6)))
    with pytest.raises(ScanError, match=r"s_part00001\.nxs.*part 1 has frames \(6, 6\)"):
        open_scan(str(tmp_path / "s_part*.nxs"))
    write_nxdata(tmp_path / "s_part00001.nxs", frames(3, dtype=np.uint32))
    with pytest.raises(ScanError, match="uint32"):
        open_scan(str(tmp_path / "s_part*.nxs"))


# -- other formats --------------------------------------------------------------
def test_tiff_folder_glob_and_multipage(tmp_path):
    data = frames(11)
    folder = tmp_path / "series"
    folder.mkdir()
    for i, frame in enumerate(data):
        tifffile.imwrite(folder / f"img_{i}.tif", frame)  # img_10 must come after img_9
    src = open_scan(folder)
    assert len(src) == 11 and src.dtype == np.uint16
    np.testing.assert_array_equal(src.read_all(), data)
    np.testing.assert_array_equal(open_scan(str(folder / "img_1*.tif")).read_all(),
                                  data[[1, 10]])
    tifffile.imwrite(tmp_path / "stack.tiff", data)
    np.testing.assert_array_equal(open_scan(tmp_path / "stack.tiff")[4:7], data[4:7])


def test_tiff_series_with_odd_file_names_it(tmp_path):
    tifffile.imwrite(tmp_path / "a_0.tif", frames(1)[0])
    tifffile.imwrite(tmp_path / "a_1.tif", frames(1)[0].astype(np.float32))
    src = open_scan(tmp_path)
    with pytest.raises(ScanError, match=r"a_1\.tif.*float32"):
        src.read_all()


def test_npy_and_array(tmp_path):
    data = frames(8, dtype=np.int32)
    np.save(tmp_path / "stack.npy", data)
    src = open_scan(tmp_path / "stack.npy")
    assert src.name == "stack" and src.dtype == np.int32
    np.testing.assert_array_equal(src[2:6], data[2:6])
    arr = open_scan(data)
    np.testing.assert_array_equal(arr[7], data[7])
    assert isinstance(arr, FrameSource) and xlabel.open_scan is open_scan


# -- masks -----------------------------------------------------------------------
def test_eiger_pixel_mask_dtype_max_and_user_mask(tmp_path):
    mask = np.zeros((6, 5), np.uint32)
    mask[0, 0] = 1          # gap
    mask[1, 1] = 8          # any non-zero bit counts
    master, _ = write_eiger(tmp_path, per_file=(4,), mask=mask)
    user = np.zeros((6, 5), bool)
    user[5, 4] = True
    src = open_scan(master, mask=user)
    assert src.pixel_mask.dtype == bool
    assert set(zip(*np.nonzero(src.pixel_mask))) == {(0, 0), (1, 1), (5, 4)}
    stack = src[0:2].copy()
    stack[1, 2, 2] = np.iinfo(np.uint16).max  # Eiger: dtype max marks a bad pixel
    flagged = invalid_pixels(stack, src)
    assert flagged[1, 2, 2] and not flagged[0, 2, 2]
    assert flagged.sum() == 2 * 3 + 1
    unflagged = open_scan(master, invalid_values="none", file_mask=False)
    assert unflagged.pixel_mask is None and invalid_pixels(stack, unflagged) is None


def test_nxdetector_pixel_mask_and_pilatus_negatives(tmp_path):
    path = tmp_path / "pilatus.nxs"
    data = frames(3, dtype=np.int32)
    data[0, 3, 1] = -1
    data[2, 4, 0] = -2
    with h5py.File(path, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = data
        det["pixel_mask"] = np.eye(6, 5, dtype=np.int32)
    src = open_scan(path)
    flagged = invalid_pixels(src.read_all(), src)
    assert flagged[0, 3, 1] and flagged[2, 4, 0] and flagged[1, 2, 2]
    assert flagged.sum() == 3 * 5 + 2


def test_user_mask_shape_checked(tmp_path):
    with pytest.raises(ScanError, match=r"mask of shape \(2, 2\)"):
        open_scan(frames(3), mask=np.zeros((2, 2), bool))


# -- pickling ----------------------------------------------------------------------
def test_pickled_sources_reopen(tmp_path):
    master, everything = write_eiger(tmp_path, per_file=(3, 3))
    np.save(tmp_path / "s.npy", everything)
    for src in (open_scan(master), open_scan(tmp_path / "s.npy")):
        src[0]  # open the files in this process first
        blob = pickle.dumps(src)
        assert len(blob) < 4000  # names, not frames
        copy = pickle.loads(blob)
        np.testing.assert_array_equal(copy[1:5], everything[1:5])
        assert copy.frame_shape == src.frame_shape


# -- bad input ------------------------------------------------------------------------
def test_missing_not_hdf5_and_truncated(tmp_path):
    with pytest.raises(ScanError, match="nope.h5: file not found"):
        open_scan(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello, not HDF5")
    with pytest.raises(ScanError, match="text.h5: not an HDF5 file"):
        open_scan(tmp_path / "text.h5")
    good = write_nxdata(tmp_path / "t.nxs", frames(200, shape=(32, 32)))
    raw = good.read_bytes()
    (tmp_path / "cut.nxs").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ScanError, match="cut.nxs: truncated HDF5 file"):
        open_scan(tmp_path / "cut.nxs")
    (tmp_path / "x.dat").write_text("?")
    with pytest.raises(ScanError, match="unknown file type"):
        open_scan(tmp_path / "x.dat")
    with pytest.raises(ScanError, match="no file matches"):
        open_scan(str(tmp_path / "zzz*.h5"))


def test_no_stack_ambiguous_and_wrong_dims(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["entry/image"] = np.zeros((4, 4))
        f["entry/trace"] = np.zeros(10)
    with pytest.raises(ScanError, match="flat.h5: no frame stack found"):
        open_scan(path)
    with pytest.raises(ScanError, match=r"flat.h5:/entry/image: is a 2-D dataset"):
        open_scan(path, dataset="/entry/image")
    with pytest.raises(ScanError, match=r"/entry/trace: is a 1-D dataset"):
        open_scan(path, dataset="entry/trace")
    with pytest.raises(ScanError, match=r"/entry/missing: no such dataset"):
        open_scan(path, dataset="/entry/missing")
    with h5py.File(path, "a") as f:
        f["entry/data/data"] = np.zeros((4, 4))  # the conventional place, but one frame
    with pytest.raises(ScanError, match=r"no frame stack.*/entry/data/data is a 2-D dataset"):
        open_scan(path)
    with pytest.raises(ScanError, match="invalid_values must be one of"):
        open_scan(frames(2), invalid_values="max")
    amb = tmp_path / "amb.h5"
    with h5py.File(amb, "w") as f:
        f["a/first"] = frames(5)
        f["b/second"] = frames(6)
    with pytest.raises(ScanError, match=r"/a/first \(5, 6, 5\).*/b/second.*dataset="):
        open_scan(amb)
    assert len(open_scan(amb, dataset="/b/second")) == 6
    with h5py.File(amb, "a") as f:
        f["c/big"] = frames(20)  # clearly the largest: chosen
    assert open_scan(amb).dataset == "/c/big"


def test_zero_frames(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", shape=(0, 4, 4), maxshape=(None, 4, 4),
                         dtype=np.uint16, chunks=(1, 4, 4))
    with pytest.raises(ScanError, match="empty.h5:/entry/data/data: the scan has zero frames"):
        open_scan(path)
    with pytest.raises(ScanError, match="zero frames"):
        open_scan(np.zeros((0, 3, 3)))
    with pytest.raises(ScanError, match="3-D frame stack"):
        open_scan(np.zeros((3, 3)))


def test_broken_external_link_names_link_and_target(tmp_path):
    master, _ = write_eiger(tmp_path, per_file=(3, 3, 3))
    (tmp_path / "scan_data_000002.h5").unlink()
    with pytest.raises(ScanError) as info:
        open_scan(master)
    message = str(info.value)
    assert "/entry/data/data_000002" in message and "scan_data_000002.h5" in message
    assert "broken external link" in message and "missing" in message


def test_dangling_side_links_do_not_break_opening(tmp_path):
    path = write_nxdata(tmp_path / "m.nxs", frames(4), default_chain=False)
    with h5py.File(path, "a") as f:
        f["entry/monitor/data"] = h5py.ExternalLink("gone.h5", "/x")
        broken = f.create_group("entry/other")
        broken.attrs["NX_class"] = "NXdata"
        broken.attrs["signal"] = "data"
        broken["data"] = h5py.ExternalLink("gone.h5", "/y")
    assert open_scan(path).dataset == "/entry/results/frames"


def test_corrupt_chunk_reports_the_frame(tmp_path):
    path = tmp_path / "corrupt.h5"
    data = np.random.default_rng(0).integers(0, 1000, (10, 32, 32)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("entry/data/data", data=data, chunks=(2, 32, 32),
                                compression="gzip")
        info = dset.id.get_chunk_info(3)  # frames 6-7
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        fh.write(b"\xff" * min(64, info.size - 4))
    src = open_scan(path)
    np.testing.assert_array_equal(src[0:6], data[0:6])
    with pytest.raises(ScanError) as err:
        src.read_all()
    assert err.value.frame == 6
    assert "corrupt.h5:/entry/data/data frame 6" in str(err.value)
    assert "frames 0-9" in str(err.value)
    with pytest.raises(ScanError, match="frame 6"):
        list(src.iter_chunks())


def test_edf_series_through_fabio(tmp_path):
    fabio = pytest.importorskip("fabio", reason="fabio (xlabel[images]) not installed")
    from fabio.edfimage import EdfImage
    data = frames(3, dtype=np.int32)
    data[1, 0, 0] = -2  # Pilatus-style bad pixel
    for i, frame in enumerate(data):
        EdfImage(data=frame).write(str(tmp_path / f"p_{i:04d}.edf"))
    src = open_scan(str(tmp_path / "p_*.edf"))
    assert fabio.version and len(src) == 3
    np.testing.assert_array_equal(src.read_all(), data)
    assert invalid_pixels(src[1:2], src).sum() == 1


def test_folder_of_hdf5_files_and_existing_source(tmp_path):
    write_eiger(tmp_path, per_file=(2,))
    with pytest.raises(ScanError, match="open the master file or a glob"):
        open_scan(tmp_path)
    src = open_scan(frames(4))
    assert open_scan(src) is src
    user = np.zeros((6, 5), bool)
    user[0, 0] = True
    masked = open_scan(src, mask=user)
    assert masked.pixel_mask[0, 0] and src.pixel_mask is None


def test_user_h5py_handles_with_other_locking_flags_coexist(tmp_path):
    master, everything = write_eiger(tmp_path, per_file=(3, 3))
    with h5py.File(master, "r", locking=False) as mine:  # held by the user first
        src = open_scan(master)
        np.testing.assert_array_equal(src[4], everything[4])
        assert mine["entry/data/data_000001"].shape == (3, 6, 5)
    src.close()
    for _ in src.iter_chunks():
        pass  # a full pass closes its files afterwards
    with h5py.File(master, "r", locking=False) as again:
        assert "entry" in again
    with h5py.File(master, "r") as default:  # default flags while the source holds handles
        src[0]
        assert "entry" in default


# -- error kinds -----------------------------------------------------------------------

def test_errors_are_also_the_builtin_kinds(tmp_path):
    """A missing file is an OSError, a bad argument a ValueError (and both XLabelErrors);
    pickling (results back from Dask workers) keeps the file, dataset and frame."""
    from xlabel.errors import ClusterError, FeatureError, ScanArgumentError, XLabelError

    with pytest.raises(OSError) as missing:
        open_scan(tmp_path / "nope.h5")
    assert isinstance(missing.value, ScanError) and isinstance(missing.value, XLabelError)
    with pytest.raises(ValueError) as bad_mode:
        open_scan(frames(), invalid_values="sometimes")
    assert isinstance(bad_mode.value, ScanArgumentError)
    with pytest.raises(ValueError):
        open_scan(frames(), mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        open_scan(frames())[99]
    with pytest.raises(ValueError) as bad_stats:
        xlabel.frame_stats(frames(), stats="most", progress=False)
    assert isinstance(bad_stats.value, FeatureError)
    with pytest.raises(ValueError) as few:
        xlabel.cluster.kmeans(np.arange(3.0), k=5)
    assert isinstance(few.value, ClusterError)
    err = ScanError("frame 7 is unreadable", path="scan.h5", dataset="/entry/data/data", frame=7)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ScanError and str(again) == str(err)
    assert (again.path, again.dataset, again.frame) == ("scan.h5", "/entry/data/data", 7)
