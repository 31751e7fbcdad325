"""Pixel models that hold on held-out scans of other exposure (issue 10): the exposure-
invariant input, the training recipe, PixelCNN and the supervised autoencoder, trained
for real on small synthetic tasks and judged on whole scans they never saw.

The test sets are small (2-3 scans), so thresholds are looser than the benchmark's
targets (bench/bench_frame_models.py holds those).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlabel.errors import ModelError  # noqa: E402
from xlabel.io.base import ArraySource  # noqa: E402
from xlabel.models.frame_fit import (minority_oversample, predict_source, resolve_device,  # noqa: E402
                                     validation_split)
from xlabel.models.frame_input import (FLUX_GAIN, add_spots, as_tensors, input_norm,  # noqa: E402
                                       network_input, prepare_counts, reference_flux, thin)
from xlabel.models.gradcam import cam, pointing_score  # noqa: E402
from xlabel.models.pixelnet import PixelCNN, SupervisedAEClassifier  # noqa: E402
from xlabel.synth import defect_boxes, make_defect_task, make_flux_task  # noqa: E402

SMALL = dict(size=32, channels=(8, 16, 16), hidden=32, epochs=12, patience=4, threads=1, progress=False)


def labels_of(scans):
    return np.concatenate([s.truth["label"].to_numpy() for s in scans])


def recall_precision(model, scans):
    """Pooled bad-frame recall/precision and the worst scan's, predicting scan by scan."""
    hits = misses = false = 0
    worst = 1.0
    for scan in scans:
        predicted = model.predict(scan.source()) == "bad"
        truth = scan.is_bad
        tp, fn, fp = (predicted & truth).sum(), (~predicted & truth).sum(), (predicted & ~truth).sum()
        hits, misses, false = hits + tp, misses + fn, false + fp
        worst = min(worst, tp / max(tp + fn, 1), tp / max(tp + fp, 1))
    return hits / max(hits + misses, 1), hits / max(hits + false, 1), worst


@pytest.fixture(scope="module")
def flux_task():
    return make_flux_task(n_train=4, n_test=2, n_frames=160, frame_shape=(32, 32), seed=3)


@pytest.fixture(scope="module")
def defect_task():
    return make_defect_task(n_train=5, n_test=2, n_frames=160, frame_shape=(32, 32), seed=4)


@pytest.fixture(scope="module")
def flux_cnn(flux_task):
    return PixelCNN(**SMALL).fit([s.source() for s in flux_task.train], labels_of(flux_task.train))


@pytest.fixture(scope="module")
def defect_cnn(defect_task):
    # Four conv layers (as the default), so the last layer's receptive field spans a streak.
    return PixelCNN(**{**SMALL, "channels": (8, 16, 32, 32), "hidden": 32, "epochs": 60, "patience": 12}).fit(
        [s.source() for s in defect_task.train], labels_of(defect_task.train))


# ---------------------------------------------------------------- the input

def test_input_is_the_same_at_any_count_level():
    rng = np.random.default_rng(0)
    pattern = rng.uniform(0.2, 3, (16, 16))
    low = rng.poisson(np.broadcast_to(pattern * 1e4, (3, 16, 16))).astype(np.float64)
    data_a = prepare_counts(low, reference=[1e4 * pattern.mean()] * 3)
    data_b = prepare_counts(low * 100, reference=[1e6 * pattern.mean()] * 3)
    x_a = network_input(*as_tensors(data_a), mode="frame", norm=(0.0, 1.0))
    x_b = network_input(*as_tensors(data_b), mode="frame", norm=(0.0, 1.0))
    np.testing.assert_allclose(x_a.numpy(), x_b.numpy(), atol=1e-5)
    assert x_a.shape == (3, 2, 16, 16)


def test_relative_flux_channel_sees_a_dim_frame():
    frames = np.full((60, 8, 8), 100, np.uint16)
    frames[30] = 50   # half the flux of its neighbours
    data = prepare_counts(frames)
    x = network_input(*as_tensors(data), mode="frame", norm=(0.0, 1.0))
    flux = x[:, 1, 0, 0].numpy()
    assert flux[30] == pytest.approx(FLUX_GAIN * -0.5)
    assert np.allclose(np.delete(flux, 30), 0)
    np.testing.assert_allclose(x[30, 0].numpy(), x[0, 0].numpy())  # same pattern


def test_invalid_pixels_are_left_out_of_counts_and_means():
    frames = np.full((2, 4, 4), 7.0)
    frames[0, 0, 0] = np.nan
    frames[1, 1, 1] = -1
    data = prepare_counts(frames, size=2, reference=[7.0, 7.0])
    assert data.valid[:, 0, 0].tolist() == [3, 3] and data.valid[:, 1, 1].tolist() == [4, 4]
    assert data.counts[:, 0, 0].tolist() == [21, 21] and data.counts[:, 1, 1].tolist() == [28, 28]
    x = network_input(*as_tensors(data), mode="scan", norm=(0.0, 1.0))
    assert torch.allclose(x, torch.full_like(x, float(np.log(2))))


def test_scan_with_a_frame_without_valid_pixels_is_named():
    frames = np.ones((5, 6, 6), np.float32)
    frames[3] = np.nan
    with pytest.raises(ModelError, match=r"scanX.*frames 3"):
        prepare_counts(frames, scan="scanX")


def test_thinning_keeps_mean_and_poisson_variance():
    counts = torch.full((4000, 4, 4), 400.0)
    reference = torch.full((4000,), 400.0)
    thinned, ref = thin(counts, reference, low=0.25, fraction=1.0, generator=torch.Generator().manual_seed(1))
    p = (ref / 400).numpy()
    assert 0.25 <= p.min() and p.max() <= 1
    ratio = thinned.numpy() / (400 * p[:, None, None])
    np.testing.assert_allclose(ratio.mean(), 1, atol=0.01)
    expected_var = ((1 - p) / (400 * p)).mean()
    assert ratio.var(axis=(1, 2)).mean() == pytest.approx(expected_var, rel=0.15)


def test_spot_augmentation_adds_round_spots_and_keeps_each_frames_total():
    counts = torch.full((400, 16, 16), 100.0)
    valid = torch.ones(400, 16, 16)
    valid[:, :, :4] = 0          # masked columns: no counts there, spots or not
    counts[:, :, :4] = 0
    spotted = add_spots(counts, valid, generator=torch.Generator().manual_seed(2), fraction=0.5)
    torch.testing.assert_close(spotted.sum(dim=(1, 2)), counts.sum(dim=(1, 2)))
    assert (spotted[:, :, :4] == 0).all()
    peak = (spotted / spotted.mean(dim=(1, 2), keepdim=True)).amax(dim=(1, 2))
    with_spots = (peak > 2).float().mean()   # a spot peaks at >= 1x the level above it
    assert 0.35 <= with_spots <= 0.65, with_spots


def test_reference_is_the_running_median():
    means = np.r_[np.full(40, 10.0), 1.0, np.full(40, 10.0)]
    assert (reference_flux(means) == 10).all()


def test_input_norm_is_from_training_frames_only():
    frames = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 1000.0)])
    data = prepare_counts(frames, reference=[10.0, 1000.0])
    mean0, _ = input_norm(data, "global", index=[0])
    assert mean0 == pytest.approx(np.log1p(10))


# ---------------------------------------------------------------- splits and sampling

def test_validation_holds_out_whole_scans_with_every_class():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"s{i}" for i in range(6)], 50)
    codes = (rng.random(300) < 0.1).astype(int)
    fit, val = validation_split(groups, codes, 0.25, seed=2)
    assert not set(groups[fit]) & set(groups[val])
    assert set(codes[val]) == {0, 1} and set(codes[fit]) == {0, 1}


def test_validation_warns_naming_the_scan_when_a_class_lives_in_one_scan():
    from xlabel.models.evaluate import HeldOutWarning
    groups = np.repeat(["a", "b", "c"], 20)
    codes = np.zeros(60, int)
    codes[5:10] = 1   # "bad" only in scan a
    with pytest.warns(HeldOutWarning, match=r"class 1: 5 frames in a .*label every class in more scans"):
        fit, val = validation_split(groups, codes, 0.34, seed=0)
    assert set(codes[val]) == {0, 1} and set(codes[fit]) == {0, 1}


def test_minority_oversampling_doubles_at_most_up_to_the_majority():
    codes = np.r_[np.zeros(100, int), np.ones(10, int)]
    index = minority_oversample(codes, np.arange(110), 2.0, np.random.default_rng(0))
    assert np.bincount(codes[index]).tolist() == [100, 20]
    index = minority_oversample(codes, np.arange(110), 50.0, np.random.default_rng(0))
    assert np.bincount(codes[index]).tolist() == [100, 100]


# ---------------------------------------------------------------- trained models, held out

def test_flux_cnn_holds_on_scans_of_other_exposure(flux_task, flux_cnn):
    train_levels = [s.params["level"] for s in flux_task.train]
    for scan in flux_task.test:  # the test scans are the dimmest and the brightest
        assert not min(train_levels) <= scan.params["level"] <= max(train_levels)
    recall, precision, worst = recall_precision(flux_cnn, flux_task.test)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert worst >= 0.85


def test_defect_cnn_finds_local_defects_and_points_at_them(defect_task, defect_cnn):
    recall, precision, worst = recall_precision(defect_cnn, defect_task.test)
    assert recall >= 0.85 and precision >= 0.85, (recall, precision)
    scan = defect_task.test[0]
    bad = np.flatnonzero(scan.is_bad)
    maps = cam(defect_cnn, scan.source(), target="bad", layer="all")[bad]
    assert maps.shape == (len(bad), 32, 32)
    assert np.isnan(maps[:, scan.pixel_mask]).all()
    # A box covers ~6-20 % of the frame, so chance is ~0.1. On 32x32 frames the last of 4
    # strided conv layers is a 4x4 map, too coarse to point (0.33 measured); the maps of all
    # conv layers combined point into the box for 0.75 of this tiny model's 12 defect frames.
    # The full-size figures (64x64, last layer and combined) are in BENCHMARKS.md.
    assert pointing_score(maps, defect_boxes(scan.truth)[bad], margin=1) >= 0.4
    combined = cam(defect_cnn, scan.source(), target="bad", layer="all", method="smoothgrad++", n_samples=2)
    assert combined.shape == (len(scan), 32, 32) and np.nanmax(combined) <= 1


def test_supervised_autoencoder_trains_and_reconstructs(flux_task):
    model = SupervisedAEClassifier(**SMALL).fit([s.source() for s in flux_task.train],
                                                labels_of(flux_task.train))
    recall, precision, _ = recall_precision(model, flux_task.test)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    history = model.info_["history"]
    assert len(history) == model.info_["epochs_run"] and np.isfinite(history).all()
    x = torch.zeros(2, 2, 32, 32)
    logits, recon = model.network_.forward_with_reconstruction(x)
    assert recon.shape == (2, 1, 32, 32)


def test_prediction_streams_chunks_and_matches_whole_scan(flux_task, flux_cnn, capsys):
    scan = flux_task.test[0]
    whole = flux_cnn.predict_proba(scan.frames)
    chunked = ArraySource(scan.frames, name="chunked", pixel_mask=scan.pixel_mask)
    chunked.chunk_frames = 7
    streamed = flux_cnn.predict_proba(chunked, progress=True)
    np.testing.assert_allclose(streamed, flux_cnn.predict_proba(scan.source()), atol=1e-6)
    assert whole.shape == streamed.shape == (len(scan), 2)
    assert "chunked" in capsys.readouterr().err   # the tqdm bar names the scan


def test_training_is_seeded(flux_task):
    kwargs = {**SMALL, "epochs": 2}
    scans = [s.source() for s in flux_task.train[:2]]
    labels = labels_of(flux_task.train[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = PixelCNN(**kwargs).fit(scans, labels)
        b = PixelCNN(**kwargs).fit(scans, labels)
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters()):
        torch.testing.assert_close(pa, pb)


# ---------------------------------------------------------------- bad input

def test_frames_of_another_shape_or_dtype_are_refused(flux_cnn):
    with pytest.raises(ModelError, match="shape"):
        flux_cnn.predict(np.zeros((3, 16, 16), np.uint16))
    with pytest.raises(ModelError, match="float"):
        flux_cnn.predict(np.zeros((3, 32, 32), np.float32))


def test_nan_frames_name_the_scan(flux_task, flux_cnn):
    frames = flux_task.test[0].frames.astype(np.float32)
    frames[4] = np.nan
    model = PixelCNN(**SMALL)
    model.__dict__.update(flux_cnn.__dict__)
    model.dtype_kind_ = "float"
    with pytest.raises(ModelError, match=r"nanscan.*frames 4"):
        model.predict(ArraySource(frames, name="nanscan"))


def test_one_class_or_too_few_frames_per_class_is_refused(flux_task):
    scan = flux_task.train[0]
    with pytest.raises(ModelError, match="too few labeled frames"):
        PixelCNN(**SMALL).fit(scan.source(), np.full(len(scan), "good"))
    labels = np.full(len(scan), "good", dtype=object)
    labels[:3] = "bad"
    with pytest.raises(ModelError, match=r"'bad': 3"):
        PixelCNN(**SMALL).fit(scan.source(), labels)


def test_cuda_when_absent_is_a_clear_error():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device(None).type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_untrained_model_says_so():
    with pytest.raises(ModelError, match="not trained"):
        PixelCNN().predict(np.zeros((2, 8, 8)))


def test_predict_source_checks_reference_length(flux_cnn, flux_task):
    scan = flux_task.test[0]
    with pytest.raises(ModelError, match="reference"):
        predict_source(flux_cnn.network_, scan.source(), 32, "frame", flux_cnn.norm_,
                       torch.device("cpu"), reference=np.ones(3))


# ---------------------------------------------------------------- persistence and the command line

@pytest.mark.parametrize("cls", [PixelCNN, SupervisedAEClassifier])
def test_save_and_load_give_the_same_predictions(flux_task, tmp_path, cls):
    from xlabel.models import load_model, save_model
    scans = flux_task.train[:2]
    model = cls(**{**SMALL, "epochs": 1}).fit([s.source() for s in scans], labels_of(scans))
    folder = save_model(model, tmp_path / "m.xlmodel")
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "weights.pt"]
    loaded = load_model(folder)
    assert type(loaded) is cls and loaded.get_params() == model.get_params()
    scan = flux_task.test[0].source()
    np.testing.assert_allclose(loaded.predict_proba(scan), model.predict_proba(scan), atol=1e-6)


def test_model_saved_before_the_strided_encoder_loads_its_own_layout(flux_task, flux_cnn, tmp_path):
    """Both encoder layouts have the same weight shapes: the saved state, not the current
    default, decides which network the weights go into (else: silently wrong predictions)."""
    import json

    from xlabel.models import load_model, save_model
    folder = save_model(flux_cnn, tmp_path / "m.xlmodel")
    assert load_model(folder).network_.downsample == "stride"
    meta = json.loads((folder / "meta.json").read_text())
    del meta["state"]["downsample"]          # as written before the strided encoder
    (folder / "meta.json").write_text(json.dumps(meta))
    old = load_model(folder)
    assert old.network_.downsample == "pool" and "pool1" in dict(old.network_.named_modules())["features"]._modules
    scan = flux_task.test[0].source()
    assert not np.allclose(old.predict_proba(scan), flux_cnn.predict_proba(scan))


def test_logit_offsets_chosen_on_validation_are_applied_and_saved(flux_task, flux_cnn, tmp_path):
    from xlabel.models import load_model, save_model
    assert flux_cnn.logit_bias_.shape == (2,) and np.isfinite(flux_cnn.logit_bias_).all()
    scan = flux_task.test[0].source()
    model = load_model(save_model(flux_cnn, tmp_path / "m.xlmodel"))
    np.testing.assert_allclose(model.logit_bias_, flux_cnn.logit_bias_)
    model.logit_bias_ = np.array([0.0, -50.0])     # "bad" 50 logits less likely: never chosen
    assert (model.predict(scan) == "good").all()
    model = load_model(save_model(model, tmp_path / "m2.xlmodel"))
    assert (model.predict(scan) == "good").all()


def test_cli_train_cnn_then_filter_held_out_scans_of_other_exposure(flux_task, tmp_path):
    """`xlabel train --kind cnn` on HDF5 scans, `xlabel filter` on scans it never saw."""
    import pandas as pd

    from xlabel.cli import main
    written = flux_task.write(tmp_path / "data")
    masters = [str(m) for m, _ in written["train"]]
    csvs = [str(c) for _, c in written["train"]]
    model = tmp_path / "cnn.xlmodel"
    assert main(["train", *masters, "--labels", *csvs, "--kind", "cnn", "--size", "32",
                 "--epochs", "12", "--out", str(model)]) == 0
    out = tmp_path / "filtered"
    assert main(["filter", *[str(m) for m, _ in written["test"]], "--model", str(model),
                 "--out", str(out), "--no-progress"]) == 0
    truth = np.concatenate([s.is_bad for s in flux_task.test])
    predicted = np.concatenate([
        pd.read_csv(out / f"{s.name}_filter.csv")["prediction"].to_numpy() == "bad"
        for s in flux_task.test])
    recall = (predicted & truth).sum() / truth.sum()
    precision = (predicted & truth).sum() / max(predicted.sum(), 1)
    # 2 test scans, 47 bad frames, a model trained on 3 small scans (the CLI holds one out):
    # looser than the benchmark's targets (measured here: 0.979 / 0.852)
    assert recall >= 0.95 and precision >= 0.8, (recall, precision)


def test_cam_of_some_rows_uses_the_whole_scan_context(flux_task, flux_cnn):
    """A widget explaining one frame gets the map the whole-scan explanation gives."""
    scan = flux_task.test[1].source()
    rows = [0, 5, 77]
    whole = cam(flux_cnn, scan, target="bad")[rows]
    some = cam(flux_cnn, scan, target="bad", rows=rows)
    np.testing.assert_allclose(some, whole, atol=1e-5)
    alone = cam(flux_cnn, scan[[77]], target="bad")   # one frame without its scan: other input
    assert some.shape == (3, 32, 32) and alone.shape == (1, 32, 32)
