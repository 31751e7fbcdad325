"""The CLI a scientist can trust (issue 11): strict labels CSVs, missing files, help texts,
warnings when the features do not separate the classes, ``--workers`` and ``--scheduler``.

Scans are real HDF5 files written by ``xlabel.synth.write_scan`` or h5py; ``xlabel`` runs
as a subprocess (the real command) or through ``xlabel.cli.main`` in this process where a
Dask cluster in the same process is needed.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.test_cli import assert_clean_error, xlabel
from xlabel import cli
from xlabel.synth import make_scan, write_scan


def write_stack(path, frames):
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, *frames.shape[1:]))
    return path


@pytest.fixture(scope="module")
def scan500(tmp_path_factory):
    """A 500-frame HDF5 scan (values do not matter: the CSV is refused before training)."""
    folder = tmp_path_factory.mktemp("csv")
    frames = np.random.default_rng(0).poisson(50, (500, 4, 4)).astype(np.uint16)
    return write_stack(folder / "scan500.h5", frames)


def labels_csv(path, frames, labels="good"):
    pd.DataFrame({"frame": frames, "label": labels}).to_csv(path, index=False)
    return path


def csv_text(path, text):
    path.write_text(text)
    return path


def all_rows(n=500):
    return "frame,label\n" + "".join(f"{i},{'bad' if i % 50 == 0 else 'good'}\n"
                                     for i in range(n))


CASES = {
    # name: (CSV text, words the one-line error must contain)
    "400 of 500 frames": ("frame,label\n" + "".join(f"{i},good\n" for i in range(400)),
                          ["400 of the scan's 500 frames", "--allow-partial"]),
    "truncated": (all_rows()[:-6], ["row 501", "1 field"]),
    "duplicate frame": (all_rows().replace("9,good\n", "9,good\n9,bad\n", 1),
                        ["row 12", "frame 9 is listed twice", "row 11"]),
    "frame 7.5": (all_rows().replace("\n7,good\n", "\n7.5,good\n"),
                  ["row 9", "'7.5'", "whole number"]),
    "unknown label": (all_rows().replace("\n3,good\n", "\n3,wobbly\n"),
                      ["row 5", "'wobbly'", "['good', 'bad']"]),
    "out of range": (all_rows() + "500,good\n", ["row 502", "out of range 0..499"]),
    "no label column": ("frame,class\n0,good\n", ["row 1", "frame,label"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_doubtful_labels_csv_is_a_one_line_error_naming_the_csv_and_row(scan500, tmp_path,
                                                                        case):
    text, words = CASES[case]
    csv = csv_text(tmp_path / "labels.csv", text)
    result = xlabel("train", scan500, "--labels", csv, "--out", tmp_path / "m")
    assert_clean_error(result, csv.name, *words)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_labels_for_20_of_200_frames_need_allow_partial(tmp_path):
    scan = make_scan(200, (24, 24), seed=4, ramp_frames=10, losses=[(120, 12)])
    master = write_scan(scan, tmp_path / "scan")
    frames = np.r_[0:10, 120:130]                   # labels where the interesting frames are
    csv = labels_csv(tmp_path / "few.csv", frames, scan.truth["label"].to_numpy()[frames])
    refused = xlabel("train", master, "--labels", csv, "--out", tmp_path / "m")
    assert_clean_error(refused, "few.csv", "20 of the scan's 200 frames", "--allow-partial")
    allowed = xlabel("train", master, "--labels", csv, "--allow-partial", "--preset",
                     "256-128-64", "--out", tmp_path / "m")
    # trained on what is labeled, or a clean error (too few labeled frames): no traceback
    assert "Traceback" not in allowed.stderr
    if allowed.returncode:
        assert_clean_error(allowed)
    else:
        assert (tmp_path / "m").is_dir()


def test_missing_files_are_named_with_absolute_path_and_working_directory(scan500, tmp_path):
    csv = labels_csv(tmp_path / "ok.csv", np.arange(500))
    for args, missing in [
        (("stats", "no_such_scan.h5", "--out", tmp_path / "s.csv"), "no_such_scan.h5"),
        (("train", scan500, "--labels", "no_such.csv", "--out", tmp_path / "m"), "no_such.csv"),
        (("filter", scan500, "--model", "no_such_model", "--out", tmp_path), "no_such_model"),
    ]:
        result = xlabel(*args)
        assert_clean_error(result, os.path.join(os.getcwd(), missing),
                           f"working directory {os.getcwd()}")
    assert csv.exists()


def test_help_is_plain_text_with_examples_and_every_option_explained():
    for command in ([], ["stats"], ["train"], ["filter"]):
        result = xlabel(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "``" not in result.stdout and ":class:" not in result.stdout
        assert "example" in result.stdout
    filter_help = xlabel("filter", "--help").stdout
    for word in ("_filter.csv", "_summary.json", "_filtered.h5", "reason", "virtual dataset"):
        assert word in filter_help
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"xlabel {name} {action.option_strings or action.dest}"


def dark_block_scan(folder, n=300, dark=(120, 180)):
    """A scan at beam with a block of 60 dark frames (longer than half the 51-frame window)."""
    rng = np.random.default_rng(1)
    means = np.full(n, 20_000.0)
    means[dark[0]:dark[1]] = 100.0
    frames = rng.poisson(means[:, None, None], (n, 8, 8)).astype(np.uint16)
    master = write_stack(folder / "darkblock.h5", frames)
    labels = np.where(np.isin(np.arange(n), np.arange(*dark)), "bad", "good")
    return master, labels_csv(folder / "darkblock.csv", np.arange(n), labels)


def test_train_warns_when_the_features_do_not_separate_the_classes(tmp_path):
    master, csv = dark_block_scan(tmp_path)
    blind = xlabel("train", master, "--labels", csv, "--columns", "flux_rel", "--preset",
                   "256-128-64", "--test-size", "0.1", "--out", tmp_path / "blind")
    assert blind.returncode == 0, blind.stderr
    warning = [line for line in blind.stderr.splitlines() if "xlabel: warning:" in line]
    # a class (the darks, or the good frames the model mistakes for them) is named
    assert any("do not separate" in line and "flux_rel" in line
               and ("'bad'" in line or "'good'" in line) for line in warning), blind.stderr
    seeing = xlabel("train", master, "--labels", csv, "--columns", "flux_local", "--preset",
                    "256-128-64", "--test-size", "0.1", "--out", tmp_path / "seeing")
    assert seeing.returncode == 0, seeing.stderr
    assert "do not separate" not in seeing.stderr


def small_model(folder, seed=5):
    """A scan with a ramp and a beam loss, and a small feature MLP (default columns)."""
    from xlabel.features import frame_stats
    from xlabel.models import save_model, train_mlp
    scan = make_scan(160, (16, 16), seed=seed, ramp_frames=6, losses=[(80, 10)])
    master = write_scan(scan, folder / "scan")
    model = train_mlp(frame_stats(master, progress=False), scan.truth["label"], preset=(16,))
    return master, save_model(model, folder / "model")


def test_filter_on_a_dask_cluster_and_with_threads_writes_the_same_table(tmp_path, capsys):
    from distributed import LocalCluster
    master, model = small_model(tmp_path)
    base = ["filter", str(master), "--model", str(model), "--no-progress"]
    assert cli.main([*base, "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        assert cli.main([*base, "--out", str(tmp_path / "dask"),
                         "--scheduler", cluster.scheduler_address]) == 0
    tables = [pd.read_csv(next((tmp_path / name).glob("*_filter.csv")))
              for name in ("one", "two", "dask")]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    assert (~tables[0]["keep"]).sum() >= 10
    capsys.readouterr()
    assert cli.main([*base, "--out", str(tmp_path / "x"), "--scheduler",
                     "tcp://127.0.0.1:9"]) == 2
    assert "cannot connect to the Dask scheduler 'tcp://127.0.0.1:9'" in capsys.readouterr().err


def test_train_shows_the_mlp_epochs_as_a_progress_bar(tmp_path):
    master, _ = small_model(tmp_path)
    scan = make_scan(160, (16, 16), seed=5, ramp_frames=6, losses=[(80, 10)])
    csv = labels_csv(tmp_path / "labels.csv", np.arange(160), scan.truth["label"].to_numpy())
    shown = xlabel("train", master, "--labels", csv, "--preset", "256-128-64",
                   "--out", tmp_path / "m1")
    assert shown.returncode == 0, shown.stderr
    assert "training MLP" in shown.stderr and "epoch" in shown.stderr and "loss" in shown.stderr
    quiet = xlabel("train", master, "--labels", csv, "--preset", "256-128-64",
                   "--no-progress", "--out", tmp_path / "m2")
    assert quiet.returncode == 0, quiet.stderr
    assert "%|" not in quiet.stderr and "Iteration" not in quiet.stdout
