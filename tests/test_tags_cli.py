"""``xlabel train`` with tag CSVs trains a multi-label model; ``xlabel filter`` writes p_<tag>."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from xlabel.labels import LabelStore
from xlabel.models import load_model
from xlabel.synth import TAGS, make_tagged_batches


def xlabel(*args):
    return subprocess.run([sys.executable, "-m", "xlabel.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def assert_clean_error(result, *names):
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("xlabel: error:")
    for name in names:
        assert str(name) in last, last


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Four tagged scans as real HDF5 files, each with its tags CSV."""
    folder = tmp_path_factory.mktemp("tagscans")
    out = []
    for batch in make_tagged_batches(4, 40, (64, 64), seed=5):
        h5 = folder / f"{batch.name}.h5"
        with h5py.File(h5, "w") as handle:
            handle["entry/data/data"] = batch.frames
        store = LabelStore(len(batch))
        for tag in TAGS:
            store.add_tag(batch.tags[tag].to_numpy(), tag)
        csv = folder / f"{batch.name}_tags.csv"
        store.to_csv(csv)
        out.append((h5, csv, batch))
    return out


@pytest.fixture(scope="module")
def trained(scans, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "tags.xlmodel"
    result = xlabel("train", *[s[0] for s in scans], "--labels", *[s[1] for s in scans],
                    "--size", 32, "--epochs", 3, "--out", model)
    assert result.returncode == 0, result.stderr[-2000:]
    return model, result


def test_train_picks_a_multilabel_model_and_reports_held_out_map(trained):
    model_path, result = trained
    assert "macro mAP" in result.stdout and "held-out evaluation" in result.stdout
    model = load_model(model_path)
    assert model.kind == "tags-joint" and model.classes == TAGS
    assert len(model.info["held_out"]) == 1 and 0 <= model.info["mean_ap"] <= 1


def test_filter_writes_one_probability_and_one_tag_column_per_tag(trained, scans, tmp_path):
    model_path, _ = trained
    h5, _, batch = scans[-1]
    result = xlabel("filter", h5, "--model", model_path, "--out", tmp_path, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / f"{h5.stem}_filter.csv", keep_default_na=False)
    assert list(table.columns) == (["frame"] + [f"p_{t}" for t in TAGS] + list(TAGS) + ["tags"])
    model = load_model(model_path)
    proba = model.predict_proba(batch.frames)
    assert np.allclose(table[[f"p_{t}" for t in TAGS]].to_numpy(), proba, atol=1e-5)
    # the 0/1 columns are the written probabilities against the per-tag thresholds (a
    # probability within float32 rounding of its threshold may go either way)
    written = table[[f"p_{t}" for t in TAGS]].to_numpy()
    clear = np.abs(written - model.thresholds_) > 1e-5
    assert np.array_equal((table[list(TAGS)].to_numpy() == 1)[clear],
                          (written >= model.thresholds_)[clear])
    first = [t for t in TAGS if table.loc[0, t] == 1]
    assert table.loc[0, "tags"] == ";".join(first)
    summary = json.loads((tmp_path / f"{h5.stem}_summary.json").read_text())
    assert summary["counts"] == {t: int(table[t].sum()) for t in TAGS}


def test_tags_only_csv_and_chosen_tags(scans, tmp_path):
    paths = []
    for h5, _, batch in scans:
        csv = tmp_path / f"{h5.stem}.csv"
        batch.tags.astype(int).assign(frame=np.arange(len(batch)))[["frame", "rings", "beamstop"]] \
            .to_csv(csv, index=False)
        paths.append(csv)
    result = xlabel("train", *[s[0] for s in scans], "--labels", *paths, "--kind", "tags-cnn",
                    "--tags", "beamstop", "--size", 32, "--epochs", 2, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_model(tmp_path / "m").classes == ("beamstop",)


def test_bad_tag_values_and_options_give_clean_errors(scans, tmp_path, trained):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"frame": [0, 1, 2], "rings": [0, 1, 2]}).to_csv(bad, index=False)
    result = xlabel("train", scans[0][0], "--labels", bad, "--kind", "tags-cnn", "--tags",
                    "rings", "--out", tmp_path / "m")
    assert_clean_error(result, "bad.csv", "frame 2", "0 or 1")
    result = xlabel("filter", scans[0][0], "--model", trained[0], "--keep", "rings")
    assert_clean_error(result, "--keep")
    result = xlabel("train", scans[0][0], "--labels", scans[0][1], "--kind", "tags-cnn",
                    "--preset", "256-128-64", "--out", tmp_path / "m")
    assert_clean_error(result, "--preset")
