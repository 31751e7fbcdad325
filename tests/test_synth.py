"""xlabel.synth (synthetic scans + NeXus/Eiger writer) and xlabel.samples (bundled data)."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pandas as pd
import pytest

import xlabel
from xlabel import samples, synth
from xlabel.errors import ScanError, XLabelError
from xlabel.synth import BEAM_GAP, BEAM_THRESHOLD, SATURATION_GAP, SATURATION_THRESHOLD, make_scan, write_scan

SEEDS = range(8)


@pytest.fixture(scope="module")
def scans():
    """A few default scans (different seeds), shared by the physics tests."""
    return [make_scan(n_frames=400, seed=seed) for seed in SEEDS]


def valid_mean(scan):
    return scan.frames[:, ~scan.pixel_mask].astype(float).mean(axis=1)


def flux_rel(scan):
    """Mean flux over the scan's running median (window 51), as xlabel.features defines it."""
    mean = valid_mean(scan)
    return mean / pd.Series(mean).rolling(51, center=True, min_periods=1).median().to_numpy()


# -- make_scan ------------------------------------------------------------------------
def test_same_seed_same_scan_other_seed_other_scan():
    a, b = make_scan(200, seed=7), make_scan(200, seed=7)
    np.testing.assert_array_equal(a.frames, b.frames)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    np.testing.assert_array_equal(a.pixel_mask, b.pixel_mask)
    c = make_scan(200, seed=8)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.truth["beam"], c.truth["beam"])


def test_truth_table_shape_and_vocabulary(scans):
    for scan in scans:
        truth = scan.truth
        assert list(truth["frame"]) == list(range(len(scan.frames)))
        assert set(truth["label"]) <= {"good", "bad"}
        assert set(truth["reason"]) <= set(synth.REASONS)
        assert ((truth["reason"] == "") == (truth["label"] == "good")).all()
        assert scan.frames.dtype == np.uint16 and scan.frames.shape == (400, 64, 64)


def test_label_follows_documented_thresholds(scans):
    for scan in scans:
        t = scan.truth
        expected = (t["beam"] < BEAM_THRESHOLD) | (t["frac_saturated"] >= SATURATION_THRESHOLD)
        assert (scan.is_bad == expected.to_numpy()).all()


def test_no_frame_inside_the_ambiguity_gaps(scans):
    beam = np.concatenate([s.truth["beam"] for s in scans])
    frac = np.concatenate([s.truth["frac_saturated"] for s in scans])
    assert not ((beam > BEAM_GAP[0]) & (beam < BEAM_GAP[1])).any()
    assert not ((frac > SATURATION_GAP[0]) & (frac < SATURATION_GAP[1])).any()


def test_every_scan_starts_with_a_shutter_ramp_and_has_a_sane_imbalance(scans):
    for scan in scans:
        reason = scan.truth["reason"]
        assert reason.iloc[0] == "shutter"
        assert (reason == "beam_loss").any()
        assert 0.02 <= scan.is_bad.mean() <= 0.2


def test_seeds_give_different_histories_and_levels(scans):
    ramps = {int((s.truth["reason"] == "shutter").sum()) for s in scans}
    first_loss = {int(np.flatnonzero(s.truth["reason"] == "beam_loss")[0]) for s in scans}
    levels = [valid_mean(s)[~s.is_bad].mean() for s in scans]
    assert len(ramps) >= 3 and len(first_loss) == len(scans)
    assert max(levels) / min(levels) > 2


def test_low_beam_frames_have_visibly_lower_flux_than_their_neighbours(scans):
    for scan in scans:
        rel = flux_rel(scan)
        low_beam = scan.truth["reason"].isin(["shutter", "beam_loss"]).to_numpy()
        good = ~scan.is_bad
        assert rel[low_beam].max() < 0.87 < 0.90 < rel[good].min()


def test_raw_flux_of_good_frames_varies_so_it_alone_is_not_the_label(scans):
    spreads = []
    for scan in scans:
        good_mean = valid_mean(scan)[~scan.is_bad]
        spreads.append(good_mean.max() / good_mean.min())
    assert min(spreads) > 1.12  # beam decay + transmission + content: >= +-6 % around the middle


def test_good_frames_content_changes_frame_to_frame(scans):
    scan = scans[0]
    good = np.flatnonzero(~scan.is_bad)
    a, b = scan.truth.loc[good[0]], scan.truth.loc[good[-1]]
    assert a["ring_radius"] != b["ring_radius"]
    assert scan.truth["n_spots"].nunique() > 1


def test_saturated_frames_have_many_pixels_at_the_cutoff():
    scan = make_scan(300, seed=3, losses=0, saturation=[(100, 2), (200, 1)])
    valid = ~scan.pixel_mask
    at_cutoff = (scan.frames[:, valid] == scan.count_cutoff).mean(axis=1)
    saturated = (scan.truth["reason"] == "saturated").to_numpy()
    assert np.flatnonzero(saturated).tolist() == [100, 101, 200]
    assert at_cutoff[saturated].min() >= SATURATION_GAP[1]
    assert at_cutoff[~saturated].max() <= SATURATION_GAP[0]
    assert scan.count_cutoff == 2**16 - 2


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_masked_pixels_hold_dtype_max_and_hot_pixels_are_not_masked(dtype):
    scan = make_scan(60, seed=4, dtype=dtype, hot_pixels=3)
    top = np.iinfo(dtype).max
    assert scan.frames.dtype == np.dtype(dtype)
    assert (scan.frames[:, scan.pixel_mask] == top).all()
    assert not (scan.frames[:, ~scan.pixel_mask] == top).any()
    gap_rows = np.flatnonzero(scan.pixel_mask.all(axis=1))
    assert gap_rows.size >= 1  # a module gap crosses the detector
    assert scan.hot_pixels.sum() == 3 and not (scan.hot_pixels & scan.pixel_mask).any()
    hot = scan.frames[:, scan.hot_pixels].astype(float)
    assert hot[:3].mean() > 5 * scan.frames[10:, ~scan.pixel_mask].mean()  # high even while the shutter opens


def test_explicit_knobs_are_obeyed():
    scan = make_scan(300, (48, 40), seed=1, ramp_frames=0, losses=[(120, 10)], saturation=0,
                     gaps=False, level=50.0, name="custom")
    reason = scan.truth["reason"]
    assert scan.name == "custom" and scan.frames.shape == (300, 48, 40)
    assert np.flatnonzero(reason != "").tolist() == list(range(120, 130))
    assert not scan.pixel_mask.all(axis=0).any() and not scan.pixel_mask.all(axis=1).any()
    assert 40 < valid_mean(scan)[~scan.is_bad].mean() < 60


@pytest.mark.parametrize("kwargs", [dict(n_frames=0), dict(frame_shape=(4, 64)), dict(dtype="float32"),
                                    dict(level=1e6), dict(n_frames=100, losses=5)])
def test_bad_arguments_raise_a_clear_xlabel_error(kwargs):
    with pytest.raises(XLabelError):
        make_scan(**{"n_frames": 50, **kwargs})


# -- write_scan -----------------------------------------------------------------------
def test_eiger_master_with_external_links_bslz4(tmp_path, monkeypatch):
    scan = make_scan(250, seed=2, name="demo")
    master = write_scan(scan, tmp_path / "out", compression="bslz4", frames_per_file=100)
    assert master == tmp_path / "out" / "demo_master.h5"
    monkeypatch.chdir(tmp_path)  # links must resolve relative to the master, not the cwd
    with h5py.File(master, "r") as f:
        assert f.attrs["default"] == "entry" and f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/data"].attrs["NX_class"] == "NXdata"
        assert f["entry/instrument"].attrs["NX_class"] == "NXinstrument"
        assert f["entry/instrument/detector"].attrs["NX_class"] == "NXdetector"
        names = sorted(f["entry/data"])
        assert names == ["data_000001", "data_000002", "data_000003"]
        link = f["entry/data"].get("data_000003", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert (link.filename, link.path) == ("demo_data_000003.h5", "/entry/data/data")
        parts = [f[f"entry/data/{name}"] for name in names]
        assert [p.shape[0] for p in parts] == [100, 100, 50]
        assert all(p.chunks == (1, 64, 64) for p in parts)
        plist = parts[0].id.get_create_plist()
        assert hdf5plugin.BSHUF_ID in [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert parts[2].attrs["image_nr_low"] == 201 and parts[2].attrs["image_nr_high"] == 250
        np.testing.assert_array_equal(np.concatenate([p[()] for p in parts]), scan.frames)
        for key in ("entry/instrument/detector/pixel_mask",
                    "entry/instrument/detector/detectorSpecific/pixel_mask"):
            mask = f[key][()]
            assert mask.dtype == np.uint32
            np.testing.assert_array_equal(mask != 0, scan.pixel_mask)
        np.testing.assert_allclose(f["entry/control/data"][()], scan.truth["beam"])
        assert f["entry/instrument/detector/count_time"][()] == scan.count_time


def test_nexus_single_file_gzip(tmp_path):
    scan = make_scan(40, seed=5, name="single")
    path = write_scan(scan, tmp_path, layout="nexus", compression="gzip")
    assert path.name == "single.nxs"
    with h5py.File(path, "r") as f:
        entry = f[f.attrs["default"]]
        data = entry[entry.attrs["default"]]
        signal = data[data.attrs["signal"]]
        assert signal.compression == "gzip" and signal.chunks == (1, 64, 64)
        np.testing.assert_array_equal(signal[()], scan.frames)
        assert f["entry/instrument/detector/data"] == signal  # hard link
        np.testing.assert_array_equal(f["entry/instrument/detector/pixel_mask"][()] != 0, scan.pixel_mask)


def test_written_scan_reads_back_with_open_scan(tmp_path):
    scan = make_scan(120, seed=6, dtype="uint32")
    source = xlabel.open_scan(write_scan(scan, tmp_path, compression="bslz4", frames_per_file=50))
    assert len(source) == 120 and source.dtype == np.uint32
    np.testing.assert_array_equal(source[45:105], scan.frames[45:105])
    np.testing.assert_array_equal(source.pixel_mask, scan.pixel_mask)


@pytest.mark.parametrize("kwargs", [dict(layout="cbf"), dict(compression="lzf"), dict(frames_per_file=0)])
def test_write_scan_rejects_bad_options(tmp_path, kwargs):
    with pytest.raises(XLabelError, match=str(tmp_path)):
        write_scan(make_scan(10, seed=0), tmp_path, **kwargs)


def test_cli_writes_one_scan_with_its_truth(tmp_path, capsys):
    assert synth.main([str(tmp_path), "--frames", "30", "--seed", "9", "--name", "cli",
                       "--compression", "gzip"]) == 0
    assert capsys.readouterr().out.strip().endswith("cli_master.h5")
    truth = pd.read_csv(tmp_path / "cli_truth.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(truth[["frame", "label", "reason"]],
                                  make_scan(30, seed=9).truth[["frame", "label", "reason"]])


# -- bundled samples ------------------------------------------------------------------
def test_samples_are_listed_and_have_labels():
    assert samples.names() == sorted(synth.SAMPLES)
    for name in samples.names():
        truth = samples.truth(name)
        assert list(truth.columns) == ["frame", "label", "reason"]
        assert truth["reason"].map(type).eq(str).all()  # empty reasons stay "", not NaN
        assert 0.03 < (truth["label"] == "bad").mean() < 0.15
        with h5py.File(samples.path(name), "r") as f:
            n = sum(f["entry/data"][k].shape[0] for k in f["entry/data"])
        assert n == len(truth)
    reasons = set().union(*(samples.truth(n)["reason"] for n in samples.names()))
    assert reasons == {"", "shutter", "beam_loss", "saturated"}


def test_bundled_sample_matches_the_generator(tmp_path):
    name = "scan_c"
    master = synth.main(["--samples", str(tmp_path), "--only", name, "--quiet"])
    assert master == 0
    fresh, bundled = tmp_path / name, samples.folder() / name
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in bundled.iterdir())
    pd.testing.assert_frame_equal(pd.read_csv(fresh / f"{name}_labels.csv", keep_default_na=False),
                                  samples.truth(name))
    for data_file in sorted(bundled.glob(f"{name}_data_*.h5")):
        with h5py.File(data_file, "r") as old, h5py.File(fresh / data_file.name, "r") as new:
            np.testing.assert_array_equal(old["entry/data/data"][()], new["entry/data/data"][()])


def test_bundled_samples_total_size_is_small():
    total = sum(p.stat().st_size for p in samples.folder().rglob("*") if p.is_file())
    assert total < 8e6


def test_sample_source_opens_the_master():
    source = samples.source("scan_a")
    assert len(source) == len(samples.truth("scan_a"))
    assert source.pixel_mask is not None and source.pixel_mask.any()


def test_unknown_sample_and_missing_folder_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ScanError, match="scan_a"):  # names the known samples
        samples.path("nope")
    monkeypatch.setattr(samples, "__file__", str(tmp_path / "xlabel" / "samples.py"))
    with pytest.raises(ScanError, match="python -m xlabel.synth --samples"):
        samples.names()


def test_regenerating_a_sample_replaces_only_changed_files_atomically(tmp_path):
    master = synth.write_sample("scan_d", tmp_path)
    labels = tmp_path / "scan_d" / "scan_d_labels.csv"
    before = {p.name: p.stat().st_ino for p in master.parent.iterdir()}
    labels.write_text("damaged")
    synth.write_sample("scan_d", tmp_path)
    after = {p.name: p.stat().st_ino for p in master.parent.iterdir()}
    assert after.keys() == before.keys()  # no staging folder left behind
    assert [n for n in after if after[n] != before[n]] == ["scan_d_labels.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(labels, keep_default_na=False), samples.truth("scan_d"))


def test_write_scan_over_an_open_file_gives_a_clear_error(tmp_path):
    scan = make_scan(20, seed=1, name="busy")
    master = write_scan(scan, tmp_path)
    with h5py.File(master, "r"):
        with pytest.raises(XLabelError, match="busy_master.h5: cannot create the file"):
            write_scan(scan, tmp_path)
