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
                          "flux_local": flux_rel, "flux_scan": flux_rel,
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


# ---------------------------------------------------------------- estimator contract, registry

def test_models_follow_the_scikit_learn_estimator_contract():
    from sklearn.base import clone

    from xlabel.models import CNNClassifier, FeatureMLP, PixelMLP, registry
    for cls in (FeatureMLP, PixelMLP, CNNClassifier):
        model = cls(seed=3)
        copy = clone(model)
        assert copy.get_params() == model.get_params() and copy is not model
        assert registry.get(cls.kind) is cls
    assert registry.names()[:3] == ("mlp-features", "mlp-pixels", "cnn")
    table, labels = separable_table()
    model = FeatureMLP(preset="256-128-64").set_params(max_iter=20)
    assert model.fit(table, labels) is model
    assert model.classes_.tolist() == ["good", "bad"]
    with pytest.raises(ModelError, match="not trained"):
        FeatureMLP().predict(table)
    with pytest.raises(ModelError, match="unknown model kind 'svm'"):
        registry.get("svm")


def test_a_new_model_class_is_one_registered_class(tmp_path):
    """What a new model needs: a class with @register; save/load and the CLI find it."""
    from xlabel.models import FeatureModel, registry
    from xlabel.models.registry import register

    @register("test-threshold")
    class Threshold(FeatureModel):
        def __init__(self, columns=("flux_rel",), cut=0.8, class_names=("good", "bad"),
                     unsafe_class=None):
            self.columns, self.cut = columns, cut
            self.class_names, self.unsafe_class = class_names, unsafe_class

        def _fit_matrix(self, matrix, codes):
            self.fitted_cut_ = self.cut

        def _proba_matrix(self, matrix):
            bad = (matrix[:, 0] < self.fitted_cut_).astype(float)
            return np.column_stack([1 - bad, bad])

        def _save_state(self, folder):
            return {**super()._save_state(folder), "cut": self.fitted_cut_}

        def _load_state(self, folder, state):
            super()._load_state(folder, state)
            self.fitted_cut_ = state["cut"]

    table, labels = separable_table()
    model = Threshold().fit(table, labels)
    loaded = load_model(save_model(model, tmp_path / "t.xlmodel"))
    assert type(loaded) is Threshold and "test-threshold" in registry.names()
    np.testing.assert_array_equal(loaded.predict(table), model.predict(table))


# ---------------------------------------------------------------- NaN policy (issue 11)

def test_nan_features_never_get_a_confident_class():
    table, labels = separable_table()
    model = train_mlp(table, labels, preset="256-128-64", max_iter=30)
    test_table, _ = separable_table(n=40, seed=1)
    clean = model.predict_proba(test_table)
    test_table.loc[[3, 7], "flux_local"] = [np.nan, np.inf]
    test_table.loc[9, "frac_saturated"] = np.nan
    proba = model.predict_proba(test_table)
    unsafe = [3, 7, 9]
    assert np.isnan(proba[unsafe]).all()
    others = np.setdiff1d(np.arange(40), unsafe)
    np.testing.assert_allclose(proba[others], clean[others], rtol=1e-12)  # rows untouched
    predicted = model.predict(test_table)
    assert (predicted[unsafe] == "bad").all()
    assert np.array_equal(model.classes_from_proba(proba), predicted)
    reasons = model.explain_unsafe(test_table)
    assert reasons[3] == "no usable feature: flux_local=nan"
    assert reasons[7] == "no usable feature: flux_local=inf"
    assert "frac_saturated=nan" in reasons[9] and (reasons[others] == "").all()


def test_unsafe_class_is_configurable_and_must_be_a_class():
    table, labels = separable_table()
    names = np.where(labels == "bad", "broken", "ok")
    with pytest.raises(ModelError, match="unsafe_class 'bad'"):
        train_mlp(table, names, classes=("ok", "broken"), max_iter=5)
    model = train_mlp(table, names, classes=("ok", "broken"), unsafe_class="broken",
                      preset="256-128-64", max_iter=30)
    table.loc[0, "flux_local"] = np.nan
    assert model.predict(table)[0] == "broken"


def test_training_rows_with_nan_features_are_left_out_with_a_warning():
    table, labels = separable_table()
    table.loc[[0, 1], "flux_local"] = np.nan
    with pytest.warns(UserWarning, match="2 labeled row"):
        model = train_mlp(table, labels, preset="256-128-64", max_iter=20)
    # the scaler never saw a NaN: its statistics are those of the finite rows
    scaler = model.pipeline_.named_steps["scale"]
    assert np.isfinite(scaler.mean_).all() and scaler.n_samples_seen_ == len(table) - 2


# ---------------------------------------------------------------- bad input (issue 10)

def write_frames(path, frames):
    import h5py
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames)
    return path


def quick_frame_model(kind, frames, labels):
    if kind == "cnn":
        return train_cnn(frames, labels, size=6, channels=(4,), epochs=1, progress=False)
    return train_pixel_mlp(frames, labels, size=6, max_iter=20)


@pytest.mark.parametrize("kind", ["mlp-pixels", "cnn"])
def test_frame_models_refuse_frames_they_were_not_trained_for(tmp_path, kind):
    from xlabel.io import open_scan
    frames, labels = separable_frames(n=60)
    model = quick_frame_model(kind, frames, labels)
    other_shape = write_frames(tmp_path / "other_shape.h5", frames[:, :10, :10])
    with pytest.raises(ModelError, match=r"other_shape.h5.*shape \(10, 10\)"):
        model.predict(open_scan(other_shape))
    floats = write_frames(tmp_path / "floats.h5", frames.astype(np.float32))
    with pytest.raises(ModelError, match=r"floats.h5.*float values"):
        model.predict(open_scan(floats))
    assert len(model.predict(frames.astype(np.int32))) == 60  # counts of another int width


@pytest.mark.parametrize("kind", ["mlp-pixels", "cnn"])
def test_frames_without_a_finite_pixel_are_an_error_naming_the_scan(tmp_path, kind):
    from xlabel.io import open_scan
    frames, labels = separable_frames(n=60)
    frames = frames.astype(np.float32)
    model = quick_frame_model(kind, frames, labels)
    broken = frames.copy()
    broken[[4, 9]] = np.nan
    broken[20, 0, 0] = np.nan  # one NaN pixel is an invalid pixel, not a lost frame
    path = write_frames(tmp_path / "lost_frames.h5", broken)
    with pytest.raises(ModelError, match=r"lost_frames.h5.*frame 4.*2 frame\(s\) .*\[4, 9\]"):
        model.predict_proba(open_scan(path))
    with pytest.raises(ModelError, match=r"lost_frames.h5.*\[4, 9\]"):
        quick_frame_model(kind, open_scan(path), labels)
    assert len(model.predict(np.delete(broken, [4, 9], axis=0))) == 58


@pytest.mark.parametrize("kind", ["mlp-features", "mlp-pixels", "cnn"])
def test_training_needs_every_class_with_enough_frames(tmp_path, kind):
    from xlabel.io import open_scan
    from xlabel.models import MIN_FRAMES_PER_CLASS
    frames, _ = separable_frames(n=40)
    table, _ = separable_table(n=40)
    data = table if kind == "mlp-features" else open_scan(write_frames(tmp_path / "s1.h5",
                                                                       frames))
    train = {"mlp-features": lambda d, y: train_mlp(d, y, max_iter=5),
             "mlp-pixels": lambda d, y: quick_frame_model("mlp-pixels", d, y),
             "cnn": lambda d, y: quick_frame_model("cnn", d, y)}[kind]
    one_class = np.array(["good"] * 40, dtype=object)
    where = r"scan\(s\) s" if kind == "mlp-features" else r"s1\.h5"
    with pytest.raises(ModelError, match=rf"{where}.*'bad': 0.*at least {MIN_FRAMES_PER_CLASS}"):
        train(data, one_class)
    few = one_class.copy()
    few[:MIN_FRAMES_PER_CLASS - 1] = "bad"
    with pytest.raises(ModelError, match=rf"'bad': {MIN_FRAMES_PER_CLASS - 1}"):
        train(data, few)
    few[:MIN_FRAMES_PER_CLASS] = "bad"
    assert train(data, few).classes == ("good", "bad")


# ---------------------------------------------------------------- held-out splits (issues 10, 11)

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5), seed=st.integers(0, 1000),
       test_size=st.floats(0.1, 0.6), rare=st.floats(0.02, 0.5))
def test_split_with_labels_holds_every_class_or_says_which_cannot(sizes, seed, test_size, rare):
    import warnings as w

    from xlabel.models import HeldOutWarning
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"scan{i}" for i in range(len(sizes))], sizes)
    labels = np.where(rng.random(len(groups)) < rare, "bad", "good").astype(object)
    labels[rng.random(len(groups)) < 0.1] = ""
    if len(groups) < 2:
        return
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        try:
            train, test = split(groups, test_size=test_size, seed=seed, labels=labels)
        except ModelError as err:
            assert "cannot hold out" in str(err)
            named = [c for c in ("'bad'", "'good'") if c in str(err)]
            assert named
            return
    present = set(labels[labels != ""])
    assert set(labels[test]) - {""} == present and set(labels[train]) - {""} == present
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
    fell_back = any(issubclass(c.category, HeldOutWarning) for c in caught)
    if len(sizes) > 1 and not fell_back:
        assert not set(groups[train]) & set(groups[test])  # whole scans held out


def test_split_falls_back_to_blocks_loudly_when_a_class_is_in_one_scan():
    from xlabel.models import HeldOutWarning
    groups = np.repeat(["a", "b", "c"], 50)
    labels = np.full(150, "good", dtype=object)
    labels[[55, 56, 57, 90, 91, 92]] = "bad"  # two places of scan b only
    with pytest.warns(HeldOutWarning, match=r"'bad': 6 frames in b \(frames 5-42\)"):
        train, test = split(groups, labels=labels, seed=0)
    assert "bad" in set(labels[test]) and "bad" in set(labels[train])
    labels[90:93] = "good"  # now one contiguous run of 3 frames
    with pytest.raises(ModelError, match=r"'bad': 3 frames in b \(frames 5-7\)"):
        split(groups, labels=labels, seed=0)


def test_k11_held_out_split_holds_the_dark_frames(realdata):
    import h5py
    with h5py.File(realdata / "dls_k11_diad_tomo" / "k11-18014.nxs") as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    labels = np.where(key == 2, "bad", "good")
    for seed in range(5):
        train, test = split(len(labels), labels=labels, seed=seed)
        assert (labels[test] == "bad").sum() >= 50 and (labels[train] == "bad").sum() >= 50


def test_cli_train_on_k11_evaluates_on_dark_frames(realdata, tmp_path, capsys):
    import h5py

    from xlabel.cli import main
    scan = realdata / "dls_k11_diad_tomo" / "k11-18014.nxs"
    with h5py.File(scan) as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"frame": np.arange(len(key)),
                  "label": np.where(key == 2, "bad", "good")}).to_csv(csv, index=False)
    assert main(["train", str(scan), "--labels", str(csv), "--kind", "mlp-pixels",
                 "--size", "4", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    model = load_model(tmp_path / "m")
    support = model.info["per_class"]["bad"]["support"]
    assert support >= 50, out  # before: a held-out set without a single dark frame
    assert "WARNING" not in out and "worst first" in out


def test_cli_refuses_options_the_model_does_not_take(scans_for_cli):
    from xlabel.cli import main
    scan, csv, out = scans_for_cli
    assert main(["train", str(scan), "--labels", str(csv), "--kind", "cnn",
                 "--columns", "mean", "--out", str(out)]) == 2


@pytest.fixture
def scans_for_cli(tmp_path):
    from xlabel.synth import make_scan, write_scan
    scan = make_scan(60, (16, 16), seed=4)
    path = write_scan(scan, tmp_path / "s")
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"frame": np.arange(60), "label": scan.truth["label"]}).to_csv(csv, index=False)
    return path, csv, tmp_path / "m"


# ---------------------------------------------------------------- evaluation

def test_evaluation_reports_missing_classes_and_the_worst_scan():
    from xlabel.models import HeldOutWarning
    true = ["good"] * 6 + ["good", "bad", "bad", "good"]
    pred = ["good"] * 5 + ["bad"] + ["good", "good", "bad", "good"]
    groups = ["x"] * 6 + ["y"] * 4
    ev = evaluate(true, pred, ("good", "bad"), groups=groups)
    assert ev.worst_scan == "y" and ev.per_scan.loc["y", "recall_bad"] == 0.5
    assert np.isnan(ev.per_scan.loc["x", "recall_bad"])
    assert ev.per_scan.loc["x", "misclassified"] == 1
    with pytest.warns(HeldOutWarning, match="no frame of class 'bad'"):
        only_good = evaluate(true[:6], pred[:6], ("good", "bad"))
    assert only_good.missing == ("bad",) and np.isnan(only_good.per_class.loc["bad", "recall"])
    assert "WARNING: no frame of class 'bad'" in only_good.summary()


# ---------------------------------------------------------------- security (issue 12)

@pytest.mark.parametrize("foreign", ["LogisticRegression", "Pipeline+imputer"])
def test_a_skops_file_with_another_sklearn_estimator_is_refused(tmp_path, foreign):
    """skops trusts every scikit-learn type by default; xlabel trusts only what it saves."""
    import skops.io
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    table, labels = separable_table(n=60)
    folder = save_model(train_mlp(table, labels, max_iter=5), tmp_path / "m.xlmodel")
    x, y = np.random.default_rng(0).random((20, 2)), np.arange(20) % 2
    other = (LogisticRegression() if foreign == "LogisticRegression"
             else make_pipeline(SimpleImputer(), LogisticRegression())).fit(x, y)
    skops.io.dump(other, folder / "model.skops")
    with pytest.raises(ModelError, match="allow-list.*LogisticRegression"):
        load_model(folder)


def test_filter_gives_frames_without_usable_features_the_unsafe_class_and_a_reason(tmp_path):
    """A scan opening with 60 shutter-closed frames (issue 11): none of them is kept as good."""
    from xlabel.cli import filter_scan
    from xlabel.io import open_scan
    table, labels = separable_table()
    model = train_mlp(table, labels, preset="256-128-64", max_iter=30)
    frames = np.random.default_rng(5).poisson(200.0, (200, 8, 8)).astype(np.uint16)
    frames[:60] = 0
    path = write_frames(tmp_path / "closed_start.h5", frames)
    summary = filter_scan(model, open_scan(path), tmp_path, "good", progress=False)
    written = pd.read_csv(summary["csv"], keep_default_na=False, na_values=[""])
    written["reason"] = written["reason"].fillna("")
    assert not written["keep"][:60].any() and (written["prediction"][:60] == "bad").all()
    # every dropped frame says why; frames the model could not judge say so
    assert ((written["reason"] != "") == ~written["keep"]).all()
    assert written["reason"][:60].str.contains("no beam").all()
    no_probability = written["p_bad"].isna()
    assert written.loc[no_probability, "reason"].str.startswith("undefined features").all()
