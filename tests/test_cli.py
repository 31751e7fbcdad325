"""End-to-end tests of the ``xlabel`` command, run as a subprocess on real HDF5 scans."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xlabel.features import COLUMNS
from xlabel.synth import make_scan, write_scan


def command(*args):
    return [sys.executable, "-m", "xlabel.cli", *map(str, args)]


def xlabel(*args):
    """Run ``python -m xlabel.cli ARGS``; the CompletedProcess (text output)."""
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=240)


def xlabel_together(*commands):
    """Run several ``xlabel`` commands at once (loading a model costs seconds of imports)."""
    running = [subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for args in commands]
    results = []
    for process, args in zip(running, commands):
        stdout, stderr = process.communicate(timeout=240)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


def assert_clean_error(result, *names):
    """Non-zero exit, a last ``xlabel: error:`` line naming ``names``, no traceback
    (progress bars may come before it)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("xlabel: error:"), result.stderr
    for name in names:
        assert str(name) in last


def scan_with_labels(folder, seed, frame_shape=(32, 32), n_frames=200, losses=2):
    """Write a synthetic scan and its ``frame,label`` CSV; (master path, csv path, truth)."""
    scan = make_scan(n_frames, frame_shape, seed=seed, name=f"scan{seed}", losses=losses,
                     ramp_frames=10)
    master = write_scan(scan, folder / f"scan{seed}")
    csv = folder / f"scan{seed}_labels.csv"
    scan.truth[["frame", "label"]].to_csv(csv, index=False)
    return master, csv, scan.truth


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    return folder, [scan_with_labels(folder, seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def trained(scans):
    """A features model trained by ``xlabel train`` on scans 1 and 2."""
    folder, made = scans
    (a, a_csv, _), (b, b_csv, _) = made[:2]
    out = folder / "model"
    result = xlabel("train", a, b, "--labels", a_csv, b_csv, "--preset", "256-128-64",
                    "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def small_cnn(folder, made):
    """A tiny CNN model folder trained on scan 1 (torch only: no scikit-learn imports)."""
    from xlabel.models import save_model, train_cnn
    master, csv, _ = made[0]
    labels = pd.read_csv(csv)["label"].to_numpy()
    model = train_cnn(master, labels, size=8, channels=(4,), epochs=1, progress=False)
    return save_model(model, folder / "cnn")


@pytest.fixture(scope="module")
def filtered(scans, trained):
    """The features model applied to scan 3 (with a progress bar) and a CNN model
    applied to a scan of another frame shape, at the same time."""
    folder, made = scans
    out = folder / "filtered"
    other, _, _ = scan_with_labels(folder, seed=9, frame_shape=(24, 32), n_frames=20, losses=0)
    good, wrong_shape = xlabel_together(
        ("filter", made[2][0], "--model", trained[0], "--out", out),
        ("filter", other, "--model", small_cnn(folder, made), "--out", folder / "other"))
    assert good.returncode == 0, good.stderr
    return out, good, made[2][2], wrong_shape, other


def test_train_saves_a_model_and_prints_the_held_out_evaluation(trained):
    out, result = trained
    assert out.is_dir() and any(out.iterdir())
    assert "held-out evaluation" in result.stdout
    assert "bad" in result.stdout and "good" in result.stdout
    assert str(out) in result.stdout


def test_filter_writes_per_frame_csv_matching_the_truth(filtered):
    out, _, truth, *_ = filtered
    (csv,) = out.glob("*_filter.csv")
    table = pd.read_csv(csv)
    assert {"frame", "prediction", "probability", "p_good", "p_bad", "keep"} <= set(table.columns)
    assert table["frame"].tolist() == list(range(len(truth)))
    assert set(table["prediction"]) <= {"good", "bad"}
    assert table["probability"].between(0.5 - 1e-9, 1).all()
    np.testing.assert_allclose(table["p_good"] + table["p_bad"], 1, atol=1e-6)
    bad = truth["label"].to_numpy() == "bad"
    predicted_bad = table["prediction"].to_numpy() == "bad"
    assert bad.sum() >= 10
    # recall of bad frames: the misses are edge frames of a ramp or beam loss (beam 60-80 %)
    assert (predicted_bad & bad).sum() / bad.sum() >= 0.8
    assert (predicted_bad == bad).mean() >= 0.95


def test_filter_summary_counts_agree_with_the_csv(filtered):
    out, result, truth, *_ = filtered
    (summary_file,) = out.glob("*_summary.json")
    summary = json.loads(summary_file.read_text())
    table = pd.read_csv(out / summary_file.name.replace("_summary.json", "_filter.csv"))
    assert summary["frames"] == len(truth) == summary["kept"] + summary["dropped"]
    assert summary["kept"] == int(table["keep"].sum()) == int((table["prediction"] == "good").sum())
    assert f"kept {summary['kept']}, dropped {summary['dropped']}" in result.stdout


def test_filter_shows_a_progress_bar(filtered):
    result = filtered[1]
    assert "%|" in result.stderr and "Traceback" not in result.stderr


def test_stats_writes_the_frame_stats_columns(scans, tmp_path):
    _, made = scans
    out = tmp_path / "stats.csv"
    result = xlabel("stats", made[0][0], made[1][0], "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    assert len(table) == len(made[0][2]) + len(made[1][2])


@pytest.mark.parametrize("kind", ["random", "pickle", "missing"])
def test_a_file_that_is_not_a_model_is_refused(scans, tmp_path, kind):
    _, made = scans
    path = tmp_path / "model.bin"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(256))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"kind": "mlp-features"}))
    result = xlabel("filter", made[2][0], "--model", path, "--out", tmp_path)
    assert_clean_error(result, path)


def test_a_scan_that_is_not_hdf5(tmp_path):
    fake = tmp_path / "fake_master.h5"
    fake.write_text("not an HDF5 file\n")
    result = xlabel("stats", fake, "--out", tmp_path / "stats.csv")
    assert_clean_error(result, fake.name)


def test_labels_with_an_unknown_class(scans, tmp_path):
    _, made = scans
    master, csv, _ = made[0]
    table = pd.read_csv(csv)
    table.loc[5, "label"] = "wobbly"
    wrong = tmp_path / "labels.csv"
    table.to_csv(wrong, index=False)
    result = xlabel("train", master, "--labels", wrong, "--out", tmp_path / "m")
    assert_clean_error(result, "wobbly")
    assert not (tmp_path / "m").exists()


def test_labels_for_more_frames_than_the_scan(scans, tmp_path):
    _, made = scans
    master, _, truth = made[0]
    wrong = tmp_path / "labels.csv"
    pd.DataFrame({"frame": np.arange(len(truth) + 20), "label": "good"}).to_csv(wrong,
                                                                              index=False)
    result = xlabel("train", master, "--labels", wrong, "--out", tmp_path / "m")
    assert_clean_error(result, wrong.name, len(truth) - 1)


def test_unknown_feature_columns(scans, tmp_path):
    _, made = scans
    master, csv, _ = made[0]
    result = xlabel("train", master, "--labels", csv, "--columns", "mean,flux_capacitor",
                    "--out", tmp_path / "m")
    assert_clean_error(result, "flux_capacitor")


def test_cnn_model_refuses_a_scan_of_another_shape(filtered):
    *_, result, other = filtered
    assert_clean_error(result, "(24, 32)", "(32, 32)", other.name)
