"""Which feature columns make a safe default model on real scans (issue 11)?

Run from the repository root: ``python -m bench.bench_safe_defaults`` (``--quick``: the
256-128-64 preset and fewer candidates). Needs ../shared/realdata (see its README).

For each candidate set of columns, an MLP (``train_mlp``, the CLI's defaults) is trained on
(a) the Diamond K11 scan labeled from its ``image_key`` (darks bad) and (b) the four bundled
synthetic samples, then applied to:

- ``k11``: the K11 scan itself (3,201 frames, 100 darks in two blocks of 50);
- ``aps``: the APS 2-BM tooth (another camera, float32): its 10 darks, 10 whites and 181
  projections stacked into one scan in that order (darks bad);
- ``savu``: the Savu TIFF series (a third camera): its averaged dark and flat repeated 10
  times each, then the 91 projections (dark bad);
- ``zero60``: K11's projections opening with 60 all-zero (shutter closed) frames (zeros bad);
- ``half200``: K11 projections 100-1099 with frames 300-499 at 40 % beam (a beam loss
  longer than the 51-frame window; those 200 bad);
- ``dump200``: the same with frames 300-499 replaced by K11 darks (a beam dump; bad);
- ``synth``: three fresh ``xlabel.synth`` scans (ramps, beam losses, saturation; seeds 1000+).

Per target: bad frames caught / bad, good frames dropped / good. Frames whose model columns
are NaN count as flagged (the models' NaN policy: never imputed into a confident class).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from xlabel import samples
from xlabel.features import frame_stats
from xlabel.io import open_scan
from xlabel.synth import make_scan

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CANDIDATES = [
    ("flux_rel", "frac_saturated"),
    ("flux_local", "frac_saturated"),
    ("flux_scan", "frac_saturated"),
    ("flux_local", "flux_scan", "frac_saturated"),
    ("flux_local", "flux_scan", "no_beam", "frac_saturated"),
    ("flux_local", "flux_scan", "mean", "frac_saturated"),
]


def k11():
    master = REALDATA / "dls_k11_diad_tomo" / "k11-18014.nxs"
    with h5py.File(master, "r", locking=False) as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    return frame_stats(open_scan(master), progress=False), key == 2, open_scan(master)


def aps():
    with h5py.File(REALDATA / "aps_2bm_tooth_dxchange" / "tooth.h5", "r") as f:
        parts = [f[f"/exchange/{name}"][()] for name in ("data_dark", "data_white", "data")]
    frames = np.concatenate(parts)
    return frame_stats(frames, progress=False), np.arange(len(frames)) < len(parts[0])


def savu():
    from xlabel.io.images import ImageSeriesSource  # noqa: F401 (tifffile via open_scan)
    folder = REALDATA / "savu_tomo_tiff_series"
    dark = open_scan(folder / "dark_00001.tiff")[0:1].astype(np.float32)
    flat = open_scan(folder / "flat_00001.tiff")[0:1].astype(np.float32)
    raw = open_scan(str(folder / "raw_*.tiff"))[:].astype(np.float32)
    frames = np.concatenate([np.repeat(dark, 10, 0), np.repeat(flat, 10, 0), raw])
    return frame_stats(frames, progress=False), np.arange(len(frames)) < 10


def zero60(k11_source):
    frames = k11_source[100:1100].copy()
    frames[:60] = 0
    return frame_stats(frames, progress=False), np.arange(len(frames)) < 60


def long_losses(k11_source):
    """K11 projections with a 200-frame loss at 40 % beam, and with a 200-frame dump."""
    frames = k11_source[100:1100]
    bad = (np.arange(len(frames)) >= 300) & (np.arange(len(frames)) < 500)
    half = frames.copy()
    half[bad] = (half[bad] * 0.4).astype(half.dtype)
    dump = frames.copy()
    dump[bad] = k11_source[50:100][np.arange(bad.sum()) % 50]
    return (frame_stats(half, progress=False), bad), (frame_stats(dump, progress=False), bad)


def synth(n=3):
    tables, bad = [], []
    for i in range(n):
        scan = make_scan(n_frames=500, frame_shape=(48, 48), seed=1000 + i, name=f"t{i}")
        tables.append(frame_stats(scan.frames, progress=False))
        bad.append(scan.is_bad)
    return pd.concat(tables, ignore_index=True), np.concatenate(bad)


def sample_training():
    tables = [frame_stats(samples.source(name), progress=False) for name in samples.names()]
    labels = np.concatenate([samples.truth(name)["label"].to_numpy() for name in samples.names()])
    return pd.concat(tables, ignore_index=True), labels


def flagged(model, table):
    undefined = table[list(model.columns)].isna().any(axis=1).to_numpy()
    return undefined | (model.predict(table) == "bad")


def cell(pred_bad, bad):
    return (f"{int((pred_bad & bad).sum())}/{int(bad.sum())} bad, "
            f"{int((pred_bad & ~bad).sum())}/{int((~bad).sum())} good dropped")


def main(argv=None):
    from xlabel.models import train_mlp
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None,
                        help="comma-separated indices into CANDIDATES (default: all)")
    args = parser.parse_args(argv)
    preset = "256-128-64" if args.quick else "512-256-128"
    k11_table, k11_bad, k11_source = k11()
    half, dump = long_losses(k11_source)
    targets = {"k11": (k11_table, k11_bad), "aps": aps(), "savu": savu(),
               "zero60": zero60(k11_source), "half200": half, "dump200": dump,
               "synth": synth(1 if args.quick else 3)}
    trainings = {"K11": (k11_table, np.where(k11_bad, "bad", "good")),
                 "samples": sample_training()}
    candidates = CANDIDATES[:4] if args.quick else CANDIDATES
    if args.only:
        candidates = [CANDIDATES[int(i)] for i in args.only.split(",")]
    print(f"| trained on | columns | {' | '.join(targets)} |")
    print("|---|---|" + "---|" * len(targets))
    for train_name, (table, labels) in trainings.items():
        for columns in candidates:
            start = time.perf_counter()
            model = train_mlp(table, labels, preset=preset, columns=columns)
            took = time.perf_counter() - start
            cells = [cell(flagged(model, t), bad) for t, bad in targets.values()]
            print(f"| {train_name} ({took:.0f} s) | {', '.join(columns)} | "
                  f"{' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
