"""Multi-label tag models (xlabel.models.multilabel) and the polar view (xlabel.coefficients)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xlabel.coefficients import azimuthal_contrast, polar_matrix, polar_view, radial_profile
from xlabel.errors import ModelError
from xlabel.labels import LabelStore
from xlabel.models import load_model, registry, save_model
from xlabel.models.multilabel import (RadialRidges, TagCNN, TagJointCNN, TagPolarCNN,
                                      evaluate_tags, prepare_tag_frames, resolve_tags)
from xlabel.synth import make_tagged_batches

PARAMS = dict(size=32, channels=(8, 16, 32), n_radial=12, n_azimuth=16, epochs=6,
              progress=False, threads=1)


@pytest.fixture(scope="module")
def batches():
    return make_tagged_batches(4, 50, (64, 64), seed=3)


@pytest.fixture(scope="module")
def trained(batches):
    train = batches[:3]
    tags = pd.concat([b.tags for b in train], ignore_index=True)
    return {cls: cls(**PARAMS).fit([b.source() for b in train], tags)
            for cls in (TagCNN, TagPolarCNN, TagJointCNN)}


# ------------------------------------------------------------------ polar view

def test_polar_cells_cover_the_frame_and_average_it():
    matrix = polar_matrix((40, 30), 10, 16)
    assert matrix.shape == (160, 1200)
    assert np.allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0)  # means, no empty cell
    flat = np.full((40, 30), 3.0)
    assert np.allclose(polar_view(flat, 10, 16), 3.0)


def test_valid_weights_keep_gaps_out_of_the_cell_means():
    frame = np.full((32, 32), 3.0)
    frame[:, 15:17] = 0.0                       # a module gap through the centre, zeroed
    valid = np.ones((32, 32))
    valid[:, 15:17] = 0.0
    plain, masked = polar_view(frame, 8, 16), polar_view(frame, 8, 16, valid=valid)
    assert plain.min() < 2.0 and np.allclose(masked[masked > 0], 3.0)


def test_ring_and_spot_show_in_the_profiles():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.5, xx - 31.5)
    ring = np.exp(-0.5 * ((r - 21) / 1.0) ** 2)   # centre of ring bin 10: [20, 22)
    spot = np.zeros((64, 64))
    spot[31, 52] = 50.0
    profile = radial_profile(ring, n_radial=16)[0]
    assert profile.argmax() == 10
    assert azimuthal_contrast(spot, 16, 32)[0].max() > 10 * azimuthal_contrast(ring, 16, 32)[0].max()


def test_radial_ridges_tell_a_streak_from_a_ring_arc():
    """Same thin bright line shape, different direction relative to the centre."""
    import torch

    yy, xx = np.mgrid[:64, :64]
    dy, dx = yy - 31.5, xx - 31.5
    r, phi = np.hypot(dy, dx), np.arctan2(dy, dx)
    streak = np.exp(-0.5 * (r * np.sin(phi - 0.7) / 0.8) ** 2) * ((r > 8) & (r < 28) & (np.cos(phi - 0.7) > 0))
    ring = np.exp(-0.5 * ((r - 20) / 0.8) ** 2)
    out = RadialRidges((64, 64))(torch.from_numpy(np.stack([streak, ring])[:, None]).float()).numpy()
    on_streak = streak > 0.5
    on_ring = (ring > 0.5) & (r > 8)
    across, along = out[0, 0][on_streak].mean(), out[0, 1][on_streak].mean()
    assert across > 0.2 and across > 5 * abs(along)
    across, along = out[1, 0][on_ring].mean(), out[1, 1][on_ring].mean()
    assert along > 0.2 and along > 5 * abs(across)
    flat = RadialRidges((16, 16))(torch.full((1, 1, 16, 16), 7.0)).numpy()
    assert np.abs(flat[..., 4:-4, 4:-4]).max() < 1e-5      # no response to a level


def test_tag_input_keeps_the_level_of_bins_cut_by_a_gap():
    stack = np.full((2, 8, 8), 50, np.uint32)
    stack[:, :, 3] = np.iinfo(np.uint32).max                 # a gap column (value convention)
    out = prepare_tag_frames(stack, 4)
    assert out.shape == (2, 2, 4, 4)
    assert np.allclose(np.expm1(out[:, 0]), 50)              # mean of the valid pixels only
    assert np.allclose(out[0, 1, :, 1], 0.5) and np.allclose(out[0, 1, :, 0], 1.0)


def test_network_input_fills_whole_gap_bins_from_their_neighbours():
    from xlabel.models.multilabel import _centred

    ramp = np.tile(np.exp(np.linspace(1, 4, 16)), (16, 1))[None]   # log rises left to right
    stack = np.round(ramp * 100).astype(np.uint32)
    stack[:, :, 8:12] = np.iinfo(np.uint32).max                  # one whole bin column lost
    out = prepare_tag_frames(stack, 4)
    assert np.allclose(out[0, 1, :, 2], 0.0)
    centred = _centred(out)[0]
    # the filled column lies between its neighbours: no dark (or flat) line through the frame
    assert (centred[:, 1] < centred[:, 2]).all() and (centred[:, 2] < centred[:, 3]).all()


# ------------------------------------------------------------------ labels

def test_resolve_tags_from_tables_arrays_and_stores():
    values, names = resolve_tags(pd.DataFrame({"a": [1, 0, np.nan], "b": [True, False, True]}))
    assert names == ("a", "b") and np.isnan(values[2, 0]) and values[0, 1] == 1
    store = LabelStore(3)
    store.add_tag([0, 2], "rings")
    assert resolve_tags(store)[0][:, 0].tolist() == [1, 0, 1]
    with pytest.raises(ModelError, match="tag_names"):
        resolve_tags(np.zeros((3, 2)))
    with pytest.raises(ModelError, match="'b' must be 0 or 1.*frame 1|frame 1.*'b' must be 0 or 1"):
        resolve_tags(pd.DataFrame({"a": [1, 0], "b": [0, 3]}))


def test_too_few_frames_per_tag_is_refused(batches):
    tags = batches[0].tags.copy()
    tags["streak"] = False
    with pytest.raises(ModelError, match="'streak': 0 with"):
        TagCNN(**PARAMS).fit(batches[0].source(), tags)


def test_registered_kinds():
    for kind, cls in (("tags-cnn", TagCNN), ("tags-polar", TagPolarCNN),
                      ("tags-joint", TagJointCNN)):
        assert kind in registry.names() and registry.get(kind) is cls


# ------------------------------------------------------------------ trained models

def test_outputs_thresholds_and_validation_on_other_batches(trained, batches):
    test = batches[3]
    for model in trained.values():
        proba = model.predict_proba(test.source())
        assert proba.shape == (50, 5) and 0 <= proba.min() and proba.max() <= 1
        predicted = model.predict(test.source())
        assert predicted.dtype == bool and np.array_equal(predicted, proba >= model.thresholds_)
        assert model.thresholds_.shape == (5,) and ((model.thresholds_ > 0) & (model.thresholds_ <= 1)).all()
        assert set(model.info["validation_scans"]) < {"tags_b0", "tags_b1", "tags_b2"}
        table = model.predict_tags(test.source())
        assert list(table.columns[:2]) == ["p_rings", "p_spots"] and table["rings"].dtype == bool


def test_even_a_small_run_learns_the_beamstop(trained, batches):
    # 150 training frames at 32x32, 6 epochs: only the easiest tag is asserted, well above
    # chance (AP of a random ranking = the tag's share of frames, 0.58 here)
    test = batches[3]
    chance = test.tags["beamstop"].mean()
    for model in trained.values():
        scores = evaluate_tags(test.tags, model.predict_proba(test.source()))
        assert scores.per_tag.loc["beamstop", "ap"] > chance + 0.15, type(model).__name__


def test_save_load_round_trip(trained, batches, tmp_path):
    frames = batches[3].frames[:7]
    for model in trained.values():
        folder = save_model(model, tmp_path / f"{model.kind}.xlmodel")
        back = load_model(folder)
        assert type(back) is type(model) and back.classes == model.classes
        assert np.allclose(back.predict_proba(frames), model.predict_proba(frames), atol=1e-6)
        assert np.array_equal(back.thresholds_, model.thresholds_)
    meta = json.loads((folder / "meta.json").read_text())
    older = json.loads(json.dumps(meta))
    del older["state"]["input"]                  # a model of the one-plane input (before v2)
    (folder / "meta.json").write_text(json.dumps(older))
    with pytest.raises(ModelError, match="older xlabel.*train it again"):
        load_model(folder)
    meta["state"]["thresholds"] = [0.5]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="state does not fit"):
        load_model(folder)


def test_frames_of_another_shape_are_refused(trained):
    with pytest.raises(ModelError, match="shape"):
        trained[TagCNN].predict_proba(np.zeros((2, 48, 48), np.uint32))


def test_gradcam_per_tag(trained, batches):
    test = batches[3]
    frames = test.frames[:6]
    for cls in (TagCNN, TagJointCNN):
        maps = {tag: trained[cls].explain(frames, tag) for tag in ("beamstop", "rings")}
        for values in maps.values():
            assert values.shape == (6, 64, 64) and 0 <= values.min() and values.max() <= 1
        assert not np.allclose(maps["beamstop"], maps["rings"])
    with pytest.raises(ModelError, match="polar"):
        trained[TagPolarCNN].explain(frames, "rings")


def test_evaluate_tags_leaves_out_unlabeled_rows():
    truth = pd.DataFrame({"a": [1, 0, 1, np.nan], "b": [0, 1, 1, 1]})
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.9], [0.0, 0.0]])
    scores = evaluate_tags(truth, proba)
    assert scores.mean_ap == 1.0 and scores.per_tag["support"].tolist() == [2, 2]
    with pytest.raises(ModelError, match="shape"):
        evaluate_tags(truth, proba[:, :1])
