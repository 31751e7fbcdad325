"""GISAXS-like synthetic series (xlabel.synth.make_gisaxs) and the autoencoder embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from xlabel.cluster import dbscan, kmeans
from xlabel.errors import ModelError
from xlabel.synth import GISAXS_STRUCTURES, SynthError, make_gisaxs

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from xlabel.embed import fit_embedding, load_embedding, prepare_input  # noqa: E402

SHAPE = (64, 64)


# --------------------------------------------------------------------------- synth

def test_gisaxs_is_seeded_and_has_every_structure():
    a = make_gisaxs(n_series=8, frames_per_series=3, frame_shape=SHAPE, seed=5)
    b = make_gisaxs(n_series=8, frames_per_series=3, frame_shape=SHAPE, seed=5)
    c = make_gisaxs(n_series=8, frames_per_series=3, frame_shape=SHAPE, seed=6)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    assert set(a.truth["structure"]) == set(GISAXS_STRUCTURES)
    assert a.truth.groupby("scan")["structure"].nunique().eq(1).all()
    assert len(a.truth) == len(a.frames) == 24
    assert set(a.truth["scan"]).isdisjoint(c.truth["scan"])


def test_gisaxs_noise_the_simulations_lack():
    data = make_gisaxs(n_series=4, frames_per_series=12, frame_shape=SHAPE, seed=2)
    truth = data.truth
    assert truth["exposure"].max() / truth["exposure"].min() > 10      # wide exposure range
    assert (data.frames[:, data.pixel_mask] == 0).all()                # gaps and beamstop
    assert data.pixel_mask.any()
    drift = truth.groupby("scan")[["beam_x", "beam_y"]].agg(np.ptp).to_numpy()
    assert (drift > 0).all() and (drift <= 4.01).all()                 # slight beam drift
    # hot pixels (outside the mask) far above the frame's level
    levels = data.frames.reshape(len(data), -1).mean(1)
    assert (data.frames.reshape(len(data), -1).max(1) > 15 * levels).all()
    # detector background: the shadow below the horizon still counts
    assert data.frames[:, -3:, :5].mean() > 0.1


def test_gisaxs_structure_shapes_differ():
    """Rods are vertical (columns vary), sheets horizontal (rows vary)."""
    data = make_gisaxs(n_series=4, frames_per_series=1, frame_shape=(128, 128), seed=0,
                       exposure=(500, 500))
    top = {s: f[10:60].astype(float) for s, f in zip(data.truth["structure"], data.frames)}
    for kind, axis in (("cylinders", 0), ("lamellae", 1)):
        profile = top[kind].mean(axis=axis)
        across = top[kind].mean(axis=1 - axis)
        assert profile.std() / profile.mean() > 2 * across.std() / across.mean(), kind


def test_gisaxs_bad_arguments():
    with pytest.raises(SynthError, match="structures"):
        make_gisaxs(n_series=2, structures=("cubes",))
    with pytest.raises(SynthError, match="frame_shape"):
        make_gisaxs(frame_shape=(4, 4))


# --------------------------------------------------------------------------- input

def test_prepare_input_ignores_exposure_and_invalid_pixels():
    """Same scattering at 1x and 50x exposure gives the same input; invalid pixels (here
    a whole block, and one pixel of another) do not pull their block towards 0."""
    rng = np.random.default_rng(0)
    pattern = rng.uniform(1, 5, (8, 8)).astype(np.float32)
    frames = np.stack([pattern, 50 * pattern, pattern])
    frames[2, :2, :2] = np.nan           # block (0, 0) has no valid pixel
    frames[2, 2, 2] = np.nan             # block (1, 1) keeps 3 of its 4 pixels
    x = prepare_input(frames, size=4)
    assert np.allclose(x[0], x[1], atol=1e-5)
    assert x[2, 0, 0] == 0
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    assert np.allclose(x[2][valid].mean(), 0, atol=1e-5) and np.allclose(x[2][valid].std(), 1, atol=1e-4)
    # block (1, 1) is the mean of its 3 valid pixels, not dragged down by a zero
    means = pattern.reshape(4, 2, 4, 2).mean((1, 3))
    means[1, 1] = np.mean([pattern[2, 3], pattern[3, 2], pattern[3, 3]])
    logs = np.log(means / means[valid].mean() + 0.2)
    expected = (logs - logs[valid].mean()) / logs[valid].std()
    assert np.allclose(x[2][valid], expected[valid], atol=1e-4)


# --------------------------------------------------------------------------- embedding

@pytest.fixture(scope="module")
def fitted():
    """The benchmark's training set and settings (bench/bench_embed.py, training seed 0)."""
    train = make_gisaxs(n_series=24, frames_per_series=12, frame_shape=SHAPE, seed=0)
    emb = fit_embedding(train.source(), size=32, epochs=20, seed=0, progress=False)
    held_out = make_gisaxs(n_series=8, frames_per_series=8, frame_shape=SHAPE, seed=1)
    return emb, held_out, emb.transform(held_out.source(), table=held_out.truth)


def test_transform_table(fitted):
    emb, held_out, table = fitted
    assert table.columns.tolist() == ["scan", "frame", *emb.latent_columns, "proj_x", "proj_y"]
    assert len(emb.latent_columns) == 2 * emb.latent_dim
    assert table["scan"].tolist() == held_out.truth["scan"].tolist()
    assert np.isfinite(table[emb.latent_columns + ["proj_x", "proj_y"]].to_numpy()).all()
    # spherical latents: unit rows, after standardising with the training latents
    assert np.allclose(np.linalg.norm(table[emb.latent_columns].to_numpy(), axis=1), 1)
    assert emb.losses[-1] < emb.losses[0]


@pytest.mark.slow
def test_latent_clusters_recover_structures_where_pixels_do_not(fitted):
    """Held-out sets (other seeds: other series, sizes, spacings, exposures, detector mask).

    K-means on the latent reaches the issue's ARI 0.8 on average over three held-out sets
    of 16 series (never below 0.6 on one); the autoencoder's own input pixels, clustered
    the same way, do not. Other training seeds: bench/bench_embed.py.
    """
    emb = fitted[0]
    latent, pixels = [], []
    for seed in (1, 2, 3):
        held_out = make_gisaxs(n_series=16, frames_per_series=6, frame_shape=SHAPE, seed=seed)
        truth = held_out.truth["structure"].to_numpy()
        table = emb.transform(held_out.source(), table=held_out.truth)
        latent.append(adjusted_rand_score(truth, kmeans(table, k=4, columns=emb.latent_columns)))
        matrix = prepare_input(held_out.source(), emb.size).reshape(len(held_out), -1)
        pixels.append(adjusted_rand_score(truth, kmeans(matrix, k=4)))
    assert np.mean(latent) >= 0.8 and min(latent) >= 0.6, (latent, pixels)
    assert np.mean(pixels) < 0.8 and np.mean(latent) >= np.mean(pixels) + 0.1, (latent, pixels)


def test_other_training_options_run(fitted):
    """The Poisson re-count (thinning > 1) and the plain denoising AE (no consistency,
    no geometry) train and give finite latents of the documented width."""
    held_out = fitted[1]
    for options in ({"thinning": 30.0}, {"consistency": 0.0, "zoom": 1.0, "shift": 0.0}):
        emb = fit_embedding(held_out.source(), size=32, latent_dim=4, epochs=2, progress=False,
                            **options)
        latent = emb.encode(held_out.source())
        assert latent.shape == (len(held_out), 8) and np.isfinite(latent).all(), options


def test_save_load_round_trip(fitted, tmp_path):
    emb, held_out, table = fitted
    path = emb.save(tmp_path / "gisaxs.xlembed")
    again = load_embedding(path).transform(held_out.source(), table=held_out.truth)
    pd.testing.assert_frame_equal(again, table, check_exact=False, rtol=1e-5, atol=1e-5)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.xlembed"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="x.xlembed|embedding"):
        load_embedding(bad)
    old = tmp_path / "old.xlembed"
    torch.save({"format": "xlabel-embedding-1", "size": 32}, old)
    with pytest.raises(ModelError, match="another xlabel version.*fit the embedding again"):
        load_embedding(old)


def test_bad_input_is_named(fitted):
    emb, held_out, _ = fitted
    frames = held_out.frames[:4].astype(np.float32)
    frames[2] = np.nan
    with pytest.raises(ModelError, match="first: \\[2\\]"):
        emb.transform(frames)
    with pytest.raises(ModelError, match="3 rows for 4 frames"):
        emb.transform(held_out.frames[:4], table=held_out.truth.iloc[:3])
    with pytest.raises(ModelError, match="projection"):
        fit_embedding(held_out.frames[:4], projection="tsne", progress=False)


# --------------------------------------------------------------------------- widgets by composition

def test_lasso_a_group_on_the_projection_and_assign_a_bin(fitted):
    from xlabel.labels import LabelStore
    from xlabel.widgets import ClusterComparison, FluxScatter

    emb, held_out, table = fitted
    store = LabelStore(len(table), classes=GISAXS_STRUCTURES)
    scatter = FluxScatter(store, table, x="proj_x", y="proj_y")
    assert (scatter.x, scatter.y) == ("proj_x", "proj_y")
    group = np.flatnonzero(table["proj_x"].to_numpy() > np.median(table["proj_x"]))
    scatter.select(group)          # what a lasso on the projection does
    scatter.assign("spheres")
    labels = store.labels
    assert (labels[group] == store.class_index("spheres")).all()
    assert (labels[np.setdiff1d(np.arange(len(table)), group)] < 0).all()

    a = kmeans(table, k=4, columns=emb.latent_columns)
    b = dbscan(table, columns=emb.latent_columns)
    comparison = ClusterComparison(table, a, b, store=store, names=("kmeans", "dbscan"),
                                   x="proj_x", y="proj_y")
    assert comparison.comparison.ari == pytest.approx(adjusted_rand_score(a, b))
    comparison.select(np.flatnonzero(a == 0))      # a lasso in the K-means panel
    comparison.assign("lamellae")
    assert (store.labels[a == 0] == store.class_index("lamellae")).all()
    comparison.undo()
    assert (store.labels[a == 0] != store.class_index("lamellae")).all()
