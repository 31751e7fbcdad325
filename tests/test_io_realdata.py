"""xlabel.io on real beamline files from ../shared/realdata (see its README).

These tests use the `realdata` fixture: where that folder is absent they are skipped, with
the reason, on a developer's machine, and fail under CI.
"""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from xlabel.errors import ScanError
from xlabel.io import invalid_pixels, open_scan

K11 = "dls_k11_diad_tomo/k11-18014.nxs"
TOOTH = "aps_2bm_tooth_dxchange/tooth.h5"


def frame_means(src):
    means = np.empty(len(src))
    for start, stack in src.iter_chunks():
        valid = invalid_pixels(stack, src)
        data = np.ma.masked_array(stack, valid) if valid is not None else stack
        means[start:start + len(stack)] = data.reshape(len(stack), -1).mean(axis=1)
    return means


def test_k11_master_finds_imaging_data_through_external_link(realdata):
    # entry@default points at EtherCAT, whose signal is a dangling link; the one
    # readable NXdata signal is /entry/imaging/data (external link into k11-18014/).
    src = open_scan(realdata / K11)
    assert src.dataset == "/entry/imaging/data"
    assert src.shape == (3201, 22, 26) and src.dtype == np.uint16
    assert src.chunk_frames == 1
    assert src.pixel_mask is None  # this camera has no detector mask
    with h5py.File(realdata / K11, "r") as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    means = frame_means(src)
    assert 98 < means[key == 2].min() and means[key == 2].max() < 100.5      # dark
    assert 44_900 < means[key == 1].min() and means[key == 1].max() < 45_800  # flat
    assert 27_000 < means[key == 0].min() and means[key == 0].max() < 40_000  # projections
    assert np.flatnonzero(key == 2).tolist() == list(range(50, 100)) + list(range(3151, 3201))


def test_k11_pickled_source_reads_same_frames(realdata):
    src = open_scan(realdata / K11)
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy[48:53], src[48:53])


def test_k11_dangling_dataset_named_when_asked_for(realdata):
    with pytest.raises(ScanError, match=r"broken external link /entry/EtherCAT/data -> "
                                        r"k11-18014/k11-18014-EtherCAT.h5"):
        open_scan(realdata / K11, dataset="/entry/EtherCAT/data")


def test_tooth_data_exchange_picks_exchange_data(realdata):
    src = open_scan(realdata / TOOTH)
    assert src.dataset == "/exchange/data" and src.shape == (181, 2, 640)
    explicit = open_scan(realdata / TOOTH, dataset="/exchange/data")
    means = frame_means(explicit)
    assert 20_000 < means.min() and means.max() < 21_000
    dark = open_scan(realdata / TOOTH, dataset="/exchange/data_dark")
    assert len(dark) == 10 and 95 < frame_means(dark).mean() < 115


def test_savu_tiff_series_glob(realdata):
    src = open_scan(str(realdata / "savu_tomo_tiff_series" / "raw_*.tiff"))
    assert src.shape == (91, 135, 160) and src.dtype == np.uint16
    means = frame_means(src)
    assert 21_000 < means.min() and means.max() < 23_500
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(src))[90], src[90])


def test_savu_folder_with_dark_flat_mixed_in_is_a_clear_error(realdata):
    src = open_scan(realdata / "savu_tomo_tiff_series")  # dark/flat sort first: float32
    with pytest.raises(ScanError, match="select matching files with a glob"):
        src.read_all()
