"""Tests of xlabel.features.frame_stats against plain numpy references.

Real HDF5 files are written with h5py into tmp_path; the K11 test reads the real
beamline scan of ../shared/realdata (see its README).
"""

from __future__ import annotations

import sys
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest

import xlabel
from xlabel.errors import FeatureError, MissingDependencyError, XLabelError
from xlabel.features import COLUMNS, FEATURE_COLUMNS, frame_stats
from xlabel.io import open_scan
from xlabel.io.base import ArraySource, FrameSource


def write_h5(path, frames, **kwargs):
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, *frames.shape[1:]),
                         maxshape=(None, *frames.shape[1:]), **kwargs)
    return path


def running_median(values, window):
    half = window // 2
    return np.array([np.nanmedian(values[max(0, i - half):i + half + 1])
                     for i in range(len(values))])


def reference(frames, invalid, saturation, window=51):
    """Every column computed the obvious way, frame by frame, in float64."""
    rows = []
    for frame, bad in zip(frames, invalid):
        v = frame[~bad & np.isfinite(frame)].astype(np.float64)
        rows.append(dict(mean=v.mean(), sum=v.sum(), median=np.median(v), std=v.std(),
                         min=v.min(), max=v.max(), frac_saturated=np.mean(v >= saturation),
                         frac_zero=np.mean(v == 0), n_valid=v.size,
                         n_invalid=frame.size - v.size))
    table = pd.DataFrame(rows)
    table["flux_rel"] = table["mean"] / running_median(table["mean"].to_numpy(), window)
    order = table["mean"].rank().to_numpy()
    table["flux_rank"] = (order - 1) / (len(order) - 1)
    return add_beam_reference(table, window)


def add_beam_reference(table, window=51):
    """flux_scan, flux_local, no_beam the obvious way: frame by frame, in plain numpy."""
    mean = table["mean"].to_numpy(float)
    level = np.nanquantile(mean, 0.9)
    beam = (mean > 0.1 * level) & (table["max"].to_numpy(float) > 0)
    reference = np.median(mean[beam])
    half = window // 2
    local = []
    for i in range(len(mean)):
        near = np.arange(max(0, i - half), min(len(mean), i + half + 1))
        near = near[beam[near]]
        local.append(np.median(mean[near]) if len(near) else reference)
    table["flux_scan"] = mean / reference
    table["flux_local"] = mean / np.array(local)
    table["no_beam"] = (~beam).astype(float)
    return table


def frames_with_flags(n=30, shape=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(200, size=(n, *shape)).astype(np.uint16)
    frames[:4] //= 20                             # shutter not open: low flux
    frames[rng.random(frames.shape) < 0.02] = 0
    frames[:, 3, 4] = 65535                      # Eiger-style flagged pixel (dtype max)
    frames[min(5, n - 1), 1, 1:4] = 65534         # saturated (valid) pixels
    return frames


def assert_matches(table, ref, exact_median=True):
    cols = [c for c in FEATURE_COLUMNS if exact_median or c != "median"]
    np.testing.assert_allclose(table[cols].to_numpy(float), ref[cols].to_numpy(float),
                               rtol=1e-5, atol=1e-9)


def test_every_column_matches_numpy_on_hdf5_file(tmp_path):
    frames = frames_with_flags()
    path = write_h5(tmp_path / "scan.h5", frames)
    table = frame_stats(str(path), stats="full", progress=False)
    assert list(table.columns) == list(COLUMNS)
    assert (table["scan"] == "scan").all() and table["frame"].tolist() == list(range(30))
    assert (table["problem"] == "").all()
    assert_matches(table, reference(frames, frames == 65535, saturation=65534))
    assert table.loc[5, "frac_saturated"] == pytest.approx(3 / 119)


def test_default_median_is_close_and_other_columns_exact():
    frames = np.random.default_rng(1).poisson(1000, (5, 100, 100)).astype(np.uint16)
    table = frame_stats(frames, progress=False)
    ref = reference(frames, np.zeros(frames.shape, bool), saturation=65534)
    assert_matches(table, ref, exact_median=False)
    np.testing.assert_allclose(table["median"], ref["median"], rtol=0.01)


def test_flagged_pixel_would_dominate_raw_mean_but_mean_ignores_it():
    frames = np.full((3, 8, 8), 100, np.uint16)
    frames[:, 0, 0] = 65535
    table = frame_stats(frames, progress=False)
    assert frames[0].mean() > 1100                  # one flagged pixel dominates the raw mean
    assert table["mean"].tolist() == [100.0] * 3
    assert table["n_invalid"].tolist() == [1] * 3
    raw = frame_stats(frames, exclude_invalid=False, progress=False)
    assert raw["mean"].to_numpy() == pytest.approx(frames.reshape(3, -1).mean(axis=1))


def test_negative_values_of_signed_data_are_excluded():
    frames = np.full((4, 6, 6), 50, np.int32)
    frames[:, 2, :] = -1                           # Pilatus gaps
    frames[1, 0, 0] = -2
    table = frame_stats(frames, stats="full", progress=False)
    assert_matches(table, reference(frames, frames < 0, saturation=np.iinfo(np.int32).max))
    assert table["n_invalid"].tolist() == [6, 7, 6, 6]


def test_user_and_pixel_mask_are_honoured():
    frames = frames_with_flags(n=10)
    mask = np.zeros(frames.shape[1:], bool)
    mask[0, :] = True
    frames[:, 0, :] = 9000                          # hot row, masked by the user
    src = ArraySource(frames, name="masked", pixel_mask=mask)
    table = frame_stats(src, stats="full", progress=False)
    invalid = (frames == 65535) | mask
    assert_matches(table, reference(frames, invalid, saturation=65534))
    assert (table["max"] != 9000).all() and table["n_invalid"].tolist() == [11] * 10


def test_results_do_not_depend_on_chunking_or_workers(tmp_path):
    frames = frames_with_flags(n=40)
    path = str(write_h5(tmp_path / "scan.h5", frames))
    tables = [frame_stats(path, chunk_frames=c, workers=1, progress=False) for c in (1, 7)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pooled = frame_stats(path, chunk_frames=7, workers=2, progress=False)
    pd.testing.assert_frame_equal(tables[0], pooled)


def test_threads_split_a_scan_into_many_tasks(tmp_path, monkeypatch):
    import xlabel._frame_kernel as engine

    monkeypatch.setattr(engine, "TASK_BYTES", 1000)   # one chunk per task
    frames = frames_with_flags(n=25)
    path = str(write_h5(tmp_path / "scan.h5", frames, compression="gzip"))
    pooled = frame_stats(path, workers=2, progress=False)
    assert_matches(pooled, reference(frames, frames == 65535, 65534), exact_median=False)
    pd.testing.assert_frame_equal(pooled, frame_stats(path, workers=1, progress=False))


def test_many_scans_one_table_with_unique_scan_names():
    a = frames_with_flags(n=5, shape=(5, 6))
    b = frames_with_flags(n=6, shape=(7, 5), seed=2)   # other frame shape: fine, per scan
    sources = [ArraySource(a, name="run"), ArraySource(b, name="run"), ArraySource(a, name="x")]
    table = frame_stats(sources, progress=False)
    assert table["scan"].tolist() == ["run"] * 5 + ["run-2"] * 6 + ["x"] * 5
    assert table["frame"].tolist() == [*range(5), *range(6), *range(5)]
    single = frame_stats(ArraySource(b, name="run-2"), progress=False)
    pd.testing.assert_frame_equal(table[table["scan"] == "run-2"].reset_index(drop=True), single)


def test_flux_context_compares_frames_with_their_scan():
    means = np.array([100, 100, 100, 10, 100, 100, 300, 100, 100], float)
    frames = np.repeat(means, 4).reshape(-1, 2, 2).astype(np.uint16)
    table = frame_stats(frames, window=3, progress=False)
    expected = means / running_median(means, 3)
    np.testing.assert_allclose(table["flux_rel"], expected)
    assert table.loc[3, "flux_rel"] == pytest.approx(0.1)
    assert table.loc[3, "flux_rank"] == 0.0 and table.loc[6, "flux_rank"] == 1.0


def test_nan_and_inf_pixels_are_reported_and_skipped():
    frames = np.random.default_rng(3).normal(500, 20, (4, 5, 5)).astype(np.float32)
    frames[1, 0, 0] = np.nan
    frames[2, 1, 1] = np.inf
    frames[3] = np.nan
    table = frame_stats(frames, stats="full", progress=False)
    assert table["problem"].tolist() == ["", "nan pixels", "nan pixels", "no valid pixels"]
    ref = reference(frames[:3], np.zeros((3, 5, 5), bool), saturation=np.inf)
    cols = ["mean", "sum", "median", "std", "min", "max", "n_valid", "n_invalid"]
    np.testing.assert_allclose(table.loc[:2, cols].to_numpy(float), ref[cols].to_numpy(float),
                               rtol=1e-5)
    assert table.loc[3, ["mean", "std", "median", "min", "max"]].isna().all()
    assert table.loc[3, "n_valid"] == 0 and table.loc[3, "n_invalid"] == 25


def test_empty_scan_is_an_error_naming_the_file(tmp_path):
    path = write_h5(tmp_path / "empty.h5", np.zeros((0, 4, 4), np.uint16))
    with pytest.raises(XLabelError, match="empty.h5.*(empty scan|zero frames)"):
        frame_stats(str(path), progress=False)
    with pytest.raises(FeatureError, match="empty scan"):
        frame_stats(ArraySource(np.zeros((0, 4, 4), np.uint16)), progress=False)


class WrongShapeSource(FrameSource):
    """Announces 4x4 frames but its second block has 4x5 frames."""

    name, path, dataset = "bad", "bad.h5", "/entry/data/data"

    def __len__(self):
        return 6

    frame_shape = (4, 4)
    dtype = np.dtype(np.uint16)

    def _read(self, start, stop):
        width = 5 if start >= 3 else 4
        return np.ones((stop - start, 4, width), np.uint16)


def test_block_of_unexpected_shape_is_an_error_naming_file_dataset_frame():
    with pytest.raises(FeatureError, match=r"bad.h5:/entry/data/data frame 3: .*unexpected shape"):
        frame_stats(WrongShapeSource(), chunk_frames=3, progress=False)


def test_bad_options_and_unreadable_paths_give_xlabel_errors(tmp_path):
    with pytest.raises(FeatureError, match="stats"):
        frame_stats(np.zeros((2, 2, 2)), stats="everything")
    with pytest.raises(XLabelError, match="missing.h5"):
        frame_stats(str(tmp_path / "missing.h5"), progress=False)


class SyntheticSource(FrameSource):
    """A long scan made up on the fly: nothing is held in memory."""

    name = "long"

    def __init__(self, n, shape=(512, 512)):
        self._n, self._shape = n, shape

    def __len__(self):
        return self._n

    @property
    def frame_shape(self):
        return self._shape

    dtype = np.dtype(np.uint16)

    def _read(self, start, stop):
        return np.full((stop - start, *self._shape), start % 1000, np.uint16)


def traced_peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_while_streaming_a_long_scan():
    short, long = SyntheticSource(200), SyntheticSource(1600)   # 105 MB and 840 MB of frames
    table, peak_short = traced_peak(lambda: frame_stats(short, workers=2, progress=False))
    table, peak_long = traced_peak(lambda: frame_stats(long, workers=2, progress=False))
    assert len(table) == 1600
    assert peak_long < 1.25 * peak_short + 1e6, (peak_short, peak_long)
    assert peak_long < long.nbytes / 20, f"peak {peak_long / 1e6:.0f} MB"


def test_dask_client_gives_the_local_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    frames = frames_with_flags(n=20)
    paths = [str(write_h5(tmp_path / f"s{i}.h5", frames[i::2])) for i in range(2)]
    local = frame_stats(paths, workers=1, progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = frame_stats(paths, client=client, progress=False)
    pd.testing.assert_frame_equal(local, remote)


def test_dask_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=r"xlabel\[dask\]"):
        frame_stats(np.zeros((2, 2, 2), np.uint16), dask=True, progress=False)


def test_lazy_export():
    assert xlabel.frame_stats is frame_stats


def test_real_k11_scan_dark_and_flat_means_match_image_key(realdata):
    # Real data: Diamond K11 (DIAD) scan of ../shared/realdata/dls_k11_diad_tomo.
    master = realdata / "dls_k11_diad_tomo" / "k11-18014.nxs"
    table = frame_stats(open_scan(master), progress=False)
    with h5py.File(master, "r", locking=False) as f:  # io keeps it open unlocked
        key = f["/entry/instrument/imaging/image_key"][()]
    assert len(table) == len(key) == 3201
    dark, flat, proj = (table["mean"][key == k] for k in (2, 1, 0))
    assert dark.between(90, 110).all() and abs(dark.mean() - 99) < 3
    assert flat.between(44_000, 46_500).all()
    assert proj.between(27_000, 40_000).all()
    assert (table["problem"] == "").all()


def test_dask_true_starts_and_closes_its_own_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    frames = frames_with_flags(n=12)
    path = str(write_h5(tmp_path / "scan.h5", frames))
    remote = frame_stats(path, dask=True, workers=1, progress=False)
    pd.testing.assert_frame_equal(remote, frame_stats(path, workers=1, progress=False))


# -- beam reference: dark blocks, closed shutters, frames without beam (issue 11) ---------

def beam_scan(n=300, dark=(100, 160), level=30_000.0, dark_level=100.0, seed=0):
    """Frames at ``level`` drifting by +-10 %, with a block of dark frames at ``dark_level``."""
    rng = np.random.default_rng(seed)
    means = level * (1 + 0.1 * np.sin(np.arange(n) / 40.0))
    means[dark[0]:dark[1]] = dark_level
    frames = rng.poisson(means[:, None, None], size=(n, 6, 5)).astype(np.uint16)
    return frames, np.isin(np.arange(n), np.arange(*dark))


def test_a_long_dark_block_cannot_pull_the_beam_reference_down():
    frames, dark = beam_scan()
    table = frame_stats(frames, progress=False)
    # the old running-median feature is blind inside a block longer than half its window
    assert table.loc[dark, "flux_rel"].between(0.9, 1.1).mean() > 0.4
    assert (table.loc[dark, "flux_scan"] < 0.01).all()
    assert (table.loc[dark, "flux_local"] < 0.01).all()
    assert (table.loc[dark, "no_beam"] == 1).all() and (table.loc[~dark, "no_beam"] == 0).all()
    assert table.loc[~dark, "flux_local"].between(0.95, 1.05).all()
    assert table.loc[~dark, "flux_scan"].between(0.85, 1.15).all()


def test_a_scan_that_opens_with_a_closed_shutter_has_defined_no_beam_features():
    frames, _ = beam_scan(n=400, dark=(0, 0))
    frames[:60] = 0
    table = frame_stats(frames, progress=False)
    assert table.loc[:59, "flux_rel"].isna().all()     # running median 0: undefined
    assert (table.loc[:59, ["flux_scan", "flux_local"]] == 0).all().all()
    assert (table.loc[:59, "no_beam"] == 1).all() and (table.loc[60:, "no_beam"] == 0).all()
    assert table.loc[60:, "flux_local"].between(0.95, 1.05).all()


def test_frames_without_valid_pixels_and_scans_without_beam_have_undefined_features():
    frames, _ = beam_scan(n=40, dark=(0, 0))
    frames = frames.astype(np.float32)
    frames[5] = np.nan
    table = frame_stats(frames, progress=False)
    assert table.loc[5, ["flux_scan", "flux_local", "no_beam"]].isna().all()
    assert table.drop(index=5)[["flux_scan", "flux_local", "no_beam"]].notna().all().all()
    dark = frame_stats(np.zeros((10, 4, 4), np.uint16), progress=False)
    assert dark["flux_scan"].isna().all() and dark["flux_local"].isna().all()
    assert (dark["no_beam"] == 1).all()


def test_real_k11_darks_have_no_beam_and_flats_and_projections_do(realdata):
    # Real data: Diamond K11 (DIAD) scan of ../shared/realdata/dls_k11_diad_tomo.
    master = realdata / "dls_k11_diad_tomo" / "k11-18014.nxs"
    table = frame_stats(open_scan(master), progress=False)
    with h5py.File(master, "r", locking=False) as f:
        dark = f["/entry/instrument/imaging/image_key"][()] == 2
    assert (table.loc[dark, "no_beam"] == 1).all() and (table.loc[~dark, "no_beam"] == 0).all()
    assert (table.loc[dark, "flux_local"] < 0.01).all()
    assert table.loc[~dark, "flux_local"].between(0.95, 1.05).all()
    assert table.loc[~dark, "flux_scan"].between(0.6, 1.3).all()
