"""Default ``xlabel train`` / ``xlabel filter`` on real scans (issue 11, item 1).

Real data (../shared/realdata, see its README): the Diamond K11 (DIAD) tomography scan,
labeled from its ``image_key`` (2 = dark = bad), and the APS 2-BM tooth (another camera,
float32) stacked into one HDF5 scan with h5py: its 10 darks, 10 whites (flat fields),
181 projections. Two more scans are built from K11 frames: one that opens with 60 all-zero
frames (shutter closed) and one float scan with frames that have no finite pixel.
Everything runs through the real command (``python -m xlabel.cli``) with default options.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.test_cli import command
from xlabel.io import open_scan


def xlabel(*args):
    """``python -m xlabel.cli ARGS`` with time for the default 512-256-128 MLP on 3,201
    frames (minutes on a loaded 2-core machine)."""
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=1800)


def write_stack(path, frames):
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, *frames.shape[1:]))
    return path


@pytest.fixture(scope="module")
def real(realdata, tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    k11 = realdata / "dls_k11_diad_tomo" / "k11-18014.nxs"
    with h5py.File(k11, "r", locking=False) as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    csv = folder / "k11_labels.csv"
    pd.DataFrame({"frame": np.arange(len(key)),
                  "label": np.where(key == 2, "bad", "good")}).to_csv(csv, index=False)
    with h5py.File(realdata / "aps_2bm_tooth_dxchange" / "tooth.h5", "r") as f:
        aps = [f[f"/exchange/{name}"][()] for name in ("data_dark", "data_white", "data")]
    projections = open_scan(k11)[100:700]
    zeros = projections.copy()
    zeros[:60] = 0
    nan = projections[:40].astype(np.float32)
    nan[[5, 17]] = np.nan
    scans = {"k11": k11,
             "aps": write_stack(folder / "aps_tooth.h5", np.concatenate(aps)),
             "zero60": write_stack(folder / "zero60.h5", zeros),
             "nan": write_stack(folder / "nanframes.h5", nan)}
    trained = xlabel("train", k11, "--labels", csv, "--out", folder / "model")
    assert trained.returncode == 0, trained.stderr
    out = folder / "filtered"
    filtered = xlabel("filter", *scans.values(), "--model", folder / "model", "--out", out)
    assert filtered.returncode == 0, filtered.stderr
    summaries = {Path(s["path"]).resolve(): s for s in
                 (json.loads(f.read_text()) for f in out.glob("*_summary.json"))}
    summaries = {name: summaries[Path(path).resolve()] for name, path in scans.items()}
    tables = {name: pd.read_csv(summary["csv"], keep_default_na=False, na_values=[""],
                                dtype={"reason": str})
              for name, summary in summaries.items()}
    return dict(key=key, trained=trained, filtered=filtered, tables=tables, out=out,
                summaries=summaries,
                scans=scans, aps_sizes=[len(a) for a in aps])


def test_default_model_trained_on_k11_flags_every_dark_and_keeps_the_rest(real):
    table, key = real["tables"]["k11"], real["key"]
    dark = key == 2
    assert (~table["keep"][dark]).all()                       # all 100 darks flagged
    assert (~table["keep"][~dark]).sum() <= 0.01 * (~dark).sum()
    assert "do not separate" not in real["trained"].stderr
    assert table.loc[dark, "reason"].str.startswith("model says bad").all()
    assert table.loc[dark, "reason"].str.contains("no beam").all()
    assert (table.loc[table["keep"], "reason"].fillna("") == "").all()


def test_k11_model_flags_the_darks_of_another_camera_and_keeps_its_flats(real):
    table = real["tables"]["aps"]
    n_dark, n_white, n_proj = real["aps_sizes"]
    keep = table["keep"].to_numpy()
    assert not keep[:n_dark].any()
    assert keep[n_dark:n_dark + n_white].all()
    assert keep[n_dark + n_white:].mean() >= 0.99


def test_a_scan_opening_with_60_closed_shutter_frames_has_them_flagged(real):
    table = real["tables"]["zero60"]
    assert not table["keep"][:60].any()
    assert table["keep"][60:].mean() >= 0.99
    assert table["reason"][:60].str.contains("no beam").all()


def test_frames_without_a_finite_pixel_are_never_kept(real):
    table = real["tables"]["nan"]
    assert table.loc[[5, 17], "keep"].eq(False).all()
    assert table.loc[[5, 17], "reason"].str.startswith(
        "undefined features: no valid pixels").all()
    assert table.loc[[5, 17], "probability"].isna().all()
    assert table["keep"].drop(index=[5, 17]).all()


def test_filtered_k11_scan_is_a_virtual_dataset_of_the_kept_frames(real):
    table, summary = real["tables"]["k11"], real["summaries"]["k11"]
    keep = table["keep"].to_numpy()
    path = Path(summary["filtered_scan"])
    assert path.parent == real["out"] and path.name.endswith("_filtered.h5")
    assert summary["kept"] == keep.sum() and summary["reasons"]
    original = open_scan(real["scans"]["k11"])
    filtered = open_scan(path)
    assert len(filtered) == keep.sum()
    np.testing.assert_array_equal(filtered[:], original[:][keep])
    with h5py.File(path, "r") as f:
        stack = f[filtered.dataset]
        assert stack.is_virtual
        np.testing.assert_array_equal(f["/entry/instrument/imaging/image_key"][()],
                                      real["key"][keep])
        np.testing.assert_array_equal(f["/xlabel/kept_frames"][()], np.flatnonzero(keep))
        assert f["/entry"].attrs["NX_class"] in (b"NXentry", "NXentry")
    assert path.stat().st_size < original.nbytes / 4       # frames are not copied
