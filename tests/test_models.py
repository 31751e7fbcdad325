"""xlabel.models: presets, leak-free splits, evaluate() vs sklearn, training, safe persistence."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from xlabel.errors import MissingDependencyError, ModelError
from xlabel.models import (PRESETS, evaluate, load_model, save_model, split, train_cnn,
                           train_mlp, train_pixel_mlp)
from xlabel.models.mlp import build_pipeline


def separable_frames(n=120, shape=(12, 12), seed=0, bad_fraction=0.2):
    """Poisson frames: bad ones with ~20x less flux and a dark square, good ones bright."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < bad_fraction, "bad", "good")
    level = np.where(labels == "bad", 5.0, 100.0)[:, None, None] * np.ones((n, *shape))
    level[labels == "bad", : shape[0] // 2, : shape[1] // 2] = 0.5
    return rng.poisson(level).astype(np.uint16), labels


def separable_table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.1, "bad", "good")
    flux_rel = np.where(labels == "bad", rng.uniform(0.05, 0.7, n), rng.uniform(0.93, 1.07, n))
    table = pd.DataFrame({"scan": "s", "frame": np.arange(n), "flux_rel": flux_rel,
                          "frac_saturated": 0.0, "mean": flux_rel * 30})
    return table, labels


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_the_named_architectures(preset):
    pipeline = build_pipeline(preset)
    mlp = pipeline[-1]
    assert mlp.hidden_layer_sizes == tuple(int(h) for h in preset.split("-"))
    assert (mlp.activation, mlp.solver, mlp.early_stopping) == ("relu", "adam", True)
    # no imputer: NaN features are never filled in with a typical value (issue 11)
    assert [name for name, _ in pipeline.steps] == ["scale", "mlp"]


def test_unknown_preset_is_a_model_error():
    with pytest.raises(ModelError, match="unknown preset"):
        build_pipeline("1-2-3")


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
       test_size=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_split_never_mixes_frames_of_one_scan(sizes, test_size, seed):
    groups = np.repeat([f"scan{i}" for i in range(len(sizes))], sizes)
    if len(groups) < 2:
        return
    train, test = split(groups, test_size=test_size, seed=seed)
    assert len(train) and len(test)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
    if len(sizes) > 1:
        assert not set(groups[train]) & set(groups[test])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 500), n_blocks=st.integers(2, 12), seed=st.integers(0, 100))
def test_single_scan_falls_back_to_contiguous_blocks(n, n_blocks, seed):
    train, test = split(["only"] * n, test_size=0.3, n_blocks=n_blocks, seed=seed)
    assert len(train) and len(test)
    edges = np.linspace(0, n, min(n_blocks, n) + 1).round().astype(int)
    block_of = np.searchsorted(edges, np.arange(n), side="right") - 1
    # every block is entirely train or entirely test: no random frames mixed
    assert not set(block_of[train]) & set(block_of[test])


def test_evaluate_matches_sklearn_on_imbalanced_data():
    rng = np.random.default_rng(3)
    classes = ("good", "bad", "odd")
    y_true = rng.choice(3, size=500, p=[0.9, 0.08, 0.02])
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.choice(3, size=500))
    ev = evaluate(y_true, np.asarray(classes, dtype=object)[y_pred], classes)
    assert np.array_equal(ev.confusion.to_numpy(), metrics.confusion_matrix(y_true, y_pred))
    p, r, f, s = metrics.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    np.testing.assert_allclose(ev.per_class[["precision", "recall", "f1"]].to_numpy(),
                               np.column_stack([p, r, f]))
    assert ev.per_class["support"].tolist() == s.tolist()
    assert ev.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(y_true, y_pred))
    assert ev.misclassified.tolist() == np.flatnonzero(y_true != y_pred).tolist()


def test_feature_mlp_learns_separable_data():
    table, labels = separable_table()
    test_table, test_labels = separable_table(seed=1)
    model = train_mlp(table, labels, preset="256-128-64")
    ev = evaluate(test_labels, model.predict(test_table), model.classes)
    assert ev.per_class.loc["bad", "recall"] > 0.9
    assert ev.per_class.loc["bad", "precision"] > 0.9


def test_a_model_trained_on_shuffled_labels_does_not_pass_the_bar():
    table, labels = separable_table()
    test_table, test_labels = separable_table(seed=1)
    shuffled = np.random.default_rng(0).permutation(labels)
    model = train_mlp(table, shuffled, preset="256-128-64")
    ev = evaluate(test_labels, model.predict(test_table), model.classes)
    assert ev.balanced_accuracy < 0.8


def test_wrong_columns_are_a_clear_error():
    table, labels = separable_table()
    model = train_mlp(table, labels, columns=("flux_rel",))
    with pytest.raises(ModelError, match="lacks the model's columns"):
        model.predict(table.drop(columns=["flux_rel"]))


def test_pixel_mlp_and_cnn_learn_separable_frames():
    frames, labels = separable_frames()
    test_frames, test_labels = separable_frames(seed=1)
    pixel = train_pixel_mlp(frames, labels, size=6)
    cnn = train_cnn(frames, labels, size=12, epochs=8, progress=False, channels=(4, 8))
    for model in (pixel, cnn):
        ev = evaluate(test_labels, model.predict(test_frames), model.classes)
        assert ev.per_class.loc["bad", "recall"] > 0.9, model.kind
    with pytest.raises(ModelError, match="shape"):
        cnn.predict(test_frames[:, :10, :10])


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    frames, labels = separable_frames(n=60)
    table, table_labels = separable_table()
    models = [train_mlp(table, table_labels, preset="256-128-64"),
              train_pixel_mlp(frames, labels, size=6),
              train_cnn(frames, labels, size=12, epochs=2, progress=False, channels=(4, 8))]
    for model in models:
        data = table if model.kind == "mlp-features" else frames
        loaded = load_model(save_model(model, tmp_path / f"{model.kind}.xlmodel"))
        assert (loaded.kind, loaded.classes) == (model.kind, model.classes)
        assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))


class _Marker:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["mlp-features", "cnn"])
def test_a_pickle_payload_is_refused(tmp_path, kind):
    frames, labels = separable_frames(n=40)
    table, table_labels = separable_table(n=60)
    model = (train_mlp(table, table_labels, preset="256-128-64", max_iter=5) if kind != "cnn"
             else train_cnn(frames, labels, size=12, epochs=1, progress=False, channels=(4,)))
    folder = save_model(model, tmp_path / "m.xlmodel")
    marker = tmp_path / "code_ran"
    target = folder / ("weights.pt" if kind == "cnn" else "model.skops")
    target.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(ModelError, match="refusing|not a valid skops"):
        load_model(folder)
    assert not marker.exists()


def test_a_skops_file_with_untrusted_types_is_refused(tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression
    table, labels = separable_table(n=60)
    folder = save_model(train_mlp(table, labels, max_iter=5), tmp_path / "m.xlmodel")
    foreign = {"estimator": LogisticRegression(), "callable": os.getcwd}
    skops.io.dump(foreign, folder / "model.skops")
    with pytest.raises(ModelError, match="allow-list"):
        load_model(folder)


def test_not_a_model_folder_is_refused(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x80\x04junk")
    with pytest.raises(ModelError, match="not an xlabel model"):
        load_model(bogus)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent")


def test_missing_torch_gives_a_clear_message():
    # torch made unimportable by an import hook (a None entry in sys.modules would break
    # scipy's array-API checks, which look torch up there: not what a missing torch does)
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('No module named ' + repr(name))\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from xlabel.errors import MissingDependencyError\n"
            "import numpy as np, xlabel.models as m\n"
            "assert m.evaluate([0], [0], ('a', 'b')).balanced_accuracy == 1.0\n"
            "try:\n    m.train_cnn\nexcept MissingDependencyError as e:\n    print('MDE', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MDE" in out.stdout and "pip install" in out.stdout and "torch" in out.stdout
    assert issubclass(MissingDependencyError, ImportError)
