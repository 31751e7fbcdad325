"""LayerCAM, Grad-CAM, Grad-CAM++ and XGradCAM against an independent hook-based reference,
and pointing at the defect on held-out scans with a trained frame CNN.

The reference below follows the papers (and the formulas of pytorch-grad-cam): it takes
the layer activations A with a forward hook and dScore/dA with torch.autograd.grad, and
uses none of xlabel's code.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xlabel.errors import ModelError, XLabelError  # noqa: E402
from xlabel.models import cam, train_cnn  # noqa: E402

METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")


# ---------------------------------------------------------------- reference

def reference_weights(acts, grads, method):
    """Channel weights (n, k) of each method, straight from the papers."""
    if method == "gradcam":  # Selvaraju et al. 2017: global-average-pooled gradients
        return grads.mean(dim=(2, 3))
    sum_a = acts.sum(dim=(2, 3), keepdim=True)
    if method == "xgradcam":  # Fu et al. 2020: sum(g * A) / sum(A)
        return (grads * acts).sum(dim=(2, 3)) / (sum_a[:, :, 0, 0] + 1e-7)
    # Grad-CAM++ (Chattopadhay et al. 2018), exponential-score closed form of alpha.
    g2, g3 = grads ** 2, grads ** 3
    denominator = 2 * g2 + sum_a * g3
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator,
                                                           torch.ones_like(denominator)),
                        torch.zeros_like(g2))
    return (alpha * torch.relu(grads)).sum(dim=(2, 3))


def reference_map(weights, acts, shape, location_weights=None):
    """ReLU(sum_k w_k A_k), bilinear to ``shape``, min-max scaled per map (zeros if constant).
    ``location_weights``: w_k per location (n, k, h, w) instead of one per channel."""
    if location_weights is None:
        location_weights = weights[:, :, None, None]
    maps = torch.relu((location_weights * acts).sum(1, keepdim=True))
    maps = torch.nn.functional.interpolate(maps, size=shape, mode="bilinear",
                                           align_corners=False)[:, 0].numpy()
    out = np.zeros_like(maps)
    for i, m in enumerate(maps):
        if m.max() > m.min():
            out[i] = (m - m.min()) / (m.max() - m.min())
    return out


def scaled(maps):
    """Each map min-max scaled to [0, 1] (zeros where constant)."""
    out = np.zeros_like(maps)
    for i, m in enumerate(maps):
        if m.max() > m.min():
            out[i] = (m - m.min()) / (m.max() - m.min())
    return out


def reference_cam(net, x, layer_name, target, method):
    """(n, H, W) maps for the float input ``x`` (n, 1, H, W)."""
    layer = dict(net.named_modules())[layer_name]
    stored = []
    handle = layer.register_forward_hook(lambda _m, _i, out: stored.append(out))
    net.eval()
    try:
        logits = net(x)
    finally:
        handle.remove()
    classes = logits.argmax(1) if target is None else torch.full((len(x),), target)
    score = logits[torch.arange(len(x)), classes].sum()
    acts = stored[0]
    (grads,) = torch.autograd.grad(score, acts)
    acts, grads = acts.detach().double(), grads.double()
    if method == "layercam":  # Jiang et al. 2021: every location weighted by its own ReLU(gradient)
        return reference_map(None, acts, x.shape[2:], location_weights=torch.relu(grads))
    weights = reference_weights(acts, grads, method)
    return reference_map(weights, acts, x.shape[2:])


# ---------------------------------------------------------------- models

class UserNet(torch.nn.Module):
    """A user's own classifier with named layers (not xlabel's)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.middle = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.last = torch.nn.Conv2d(8, 5, 3, padding=1)
        self.classify = torch.nn.Linear(5, 3)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = torch.relu(self.middle(x))
        x = torch.relu(self.last(x))
        return self.classify(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def user_net():
    torch.manual_seed(3)
    return UserNet()


@pytest.fixture(scope="module")
def frames():
    """Non-square, one-channel frames (log-scaled counts: what a network gets)."""
    rng = np.random.default_rng(0)
    return np.log1p(rng.poisson(50, (5, 20, 14))).astype(np.float32)


@pytest.fixture(scope="module")
def trained_cnn():
    """xlabel's CNN trained briefly on tiny uint16 frames, half of them with no beam."""
    rng = np.random.default_rng(1)
    level = np.where(np.arange(40) % 2 == 0, 200.0, 5.0)
    stack = rng.poisson(level[:, None, None], (40, 18, 12)).astype(np.uint16)
    labels = np.where(level > 50, "good", "bad")
    model = train_cnn(stack, labels, size=32, channels=(4, 6), epochs=2, progress=False)
    return model, stack


# ---------------------------------------------------------------- agreement

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layer", [None, "middle", "stem"])
@pytest.mark.parametrize("target", [None, 2])
def test_user_module_matches_reference(user_net, frames, method, layer, target):
    maps = cam(user_net, frames, target=target, layer=layer, method=method)
    x = torch.from_numpy(frames)[:, None]
    if layer is None and method == "layercam":  # LayerCAM's default: every conv layer fused
        expected = scaled(np.mean([reference_cam(user_net, x, name, target, method)
                                   for name in ("stem", "middle", "last")], axis=0))
    else:  # the other methods' default: the last conv layer
        expected = reference_cam(user_net, x, layer or "last", target, method)
    assert maps.shape == (5, 20, 14)
    np.testing.assert_allclose(maps, expected, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_frame_cnn_matches_reference_on_raw_counts(trained_cnn, method):
    model, stack = trained_cnn
    maps = cam(model, stack[:6], method=method, layer="features.conv2")
    x = (np.log1p(stack[:6].astype(np.float32)) - model.mean_) / model.std_
    expected = reference_cam(model.network, torch.from_numpy(x.astype(np.float32))[:, None],
                             "features.conv2", None, method)
    assert maps.shape == (6, 18, 12)
    np.testing.assert_allclose(maps, expected, atol=1e-4)


def test_explicit_target_changes_the_map(user_net, frames):
    maps = [cam(user_net, frames, target=t) for t in range(3)]
    assert not np.allclose(maps[0], maps[1]) or not np.allclose(maps[1], maps[2])


def test_target_by_class_name_on_trained_model(trained_cnn):
    model, stack = trained_cnn
    by_name = cam(model, stack[:4], target="bad", method="xgradcam")
    by_index = cam(model, stack[:4], target=model.classes.index("bad"), method="xgradcam")
    np.testing.assert_array_equal(by_name, by_index)


# ---------------------------------------------------------------- contract

@pytest.mark.parametrize("method", METHODS)
def test_maps_are_scaled_to_unit_range(user_net, frames, method):
    maps = cam(user_net, frames, method=method)
    assert maps.dtype.kind == "f"
    assert maps.min() >= 0 and maps.max() <= 1
    for m in maps:  # each map either spans [0, 1] or is all zero (no evidence)
        assert (m.min() == 0 and np.isclose(m.max(), 1)) or not m.any()


@pytest.mark.parametrize("dtype, peak", [(np.uint16, 60000), (np.uint32, 4_000_000_000)])
def test_high_dynamic_range_integer_frames(trained_cnn, user_net, dtype, peak):
    model, _ = trained_cnn
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 30, (3, 18, 12)).astype(dtype)
    raw[:, 4:8, 3:6] = peak  # a few very bright pixels next to low counts
    for maps in (cam(model, raw, method="gradcam++"), cam(user_net, raw)):
        assert maps.shape == (3, 18, 12)
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_single_frame_gives_one_map(user_net, frames):
    assert cam(user_net, frames[0]).shape == (1, 20, 14)


def test_unknown_layer_names_the_conv_layers(user_net, frames):
    with pytest.raises(ModelError) as err:
        cam(user_net, frames, layer="conv9")
    message = str(err.value)
    assert "conv9" in message
    for name in ("stem", "middle", "last"):
        assert name in message
    assert isinstance(err.value, XLabelError)


def test_unknown_method_and_target_out_of_range(user_net, frames):
    with pytest.raises(ModelError, match="gradcam"):
        cam(user_net, frames, method="scorecam")
    with pytest.raises(ModelError, match="out of range"):
        cam(user_net, frames, target=7)


def test_model_state_is_left_as_found(user_net, frames):
    user_net.train()
    cam(user_net, frames)
    assert user_net.training
    user_net.eval()
    assert all(p.grad is None for p in user_net.parameters())


# ---------------------------------------------------------------- SmoothGrad-CAM++, layers, pointing

def reference_smooth(net, x, layer_name, target, n_samples, noise, seed):
    """SmoothGrad-CAM++ written out independently: gradient moments over noisy inputs."""
    layer = dict(net.named_modules())[layer_name]
    net.eval()

    def acts_grads(inputs):
        stored = []
        handle = layer.register_forward_hook(lambda _m, _i, out: stored.append(out))
        try:
            logits = net(inputs)
        finally:
            handle.remove()
        score = logits[torch.arange(len(inputs)), torch.full((len(inputs),), target)].sum()
        (g,) = torch.autograd.grad(score, stored[0])
        return stored[0].detach().double(), g.double()

    acts, _ = acts_grads(x)
    gen = torch.Generator().manual_seed(seed)
    span = (x.reshape(len(x), -1).max(1).values - x.reshape(len(x), -1).min(1).values)
    g1 = g2 = g3 = 0
    for _ in range(n_samples):
        noisy = x + torch.randn(x.shape, generator=gen) * noise * span[:, None, None, None]
        _, g = acts_grads(noisy)
        g1, g2, g3 = g1 + g, g2 + g ** 2, g3 + g ** 3
    g1, g2, g3 = g1 / n_samples, g2 / n_samples, g3 / n_samples
    den = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(den != 0, g2 / torch.where(den != 0, den, torch.ones_like(den)),
                        torch.zeros_like(g2))
    weights = (alpha * torch.relu(g1)).sum(dim=(2, 3))
    return reference_map(weights, acts, x.shape[2:])


def test_smoothgrad_cam_plus_plus_matches_reference(user_net, frames):
    maps = cam(user_net, frames, target=1, method="smoothgrad++", n_samples=5, noise=0.2, seed=4)
    expected = reference_smooth(user_net, torch.from_numpy(frames)[:, None], "last", 1, 5, 0.2, 4)
    np.testing.assert_allclose(maps, expected, atol=1e-4)
    again = cam(user_net, frames, target=1, method="smoothgrad++", n_samples=5, noise=0.2, seed=4)
    np.testing.assert_array_equal(maps, again)  # seeded
    plain = cam(user_net, frames, target=1, method="gradcam++")
    assert not np.allclose(maps, plain)  # the noise does change the weights


@pytest.mark.parametrize("method", METHODS)
def test_all_layers_is_the_scaled_mean_of_each_layer(user_net, frames, method):
    each = [cam(user_net, frames, target=0, layer=name, method=method)
            for name in ("stem", "middle", "last")]
    combined = cam(user_net, frames, target=0, layer="all", method=method)
    mean = np.mean(each, axis=0)
    expected = np.zeros_like(mean)
    for i, m in enumerate(mean):
        if m.max() > m.min():
            expected[i] = (m - m.min()) / (m.max() - m.min())
    np.testing.assert_allclose(combined, expected, atol=1e-5)
    listed = cam(user_net, frames, target=0, layer=["stem", "middle", "last"], method=method)
    np.testing.assert_allclose(listed, combined, atol=1e-6)


def test_invalid_pixels_are_nan_and_scaling_ignores_them(trained_cnn):
    model, stack = trained_cnn
    raw = stack[:3].copy()
    raw[:, 2:5, 3] = np.iinfo(raw.dtype).max  # Eiger convention: dtype max = invalid pixel
    maps = cam(model, raw, method="gradcam")
    assert np.isnan(maps[:, 2:5, 3]).all()
    assert np.nanmax(maps) <= 1 and np.nanmin(maps) >= 0
    assert np.isfinite(np.delete(maps, 3, axis=2)).all()  # only the flagged pixels are NaN
    for m in maps:
        finite = m[np.isfinite(m)]
        assert (finite.min() == 0 and np.isclose(finite.max(), 1)) or not finite.any()
    kept = cam(model, raw, method="gradcam", invalid="keep")
    assert np.isfinite(kept).all()


def test_pointing_score_boxes_masks_margin_and_no_evidence():
    from xlabel.models.gradcam import map_peaks, pointing_score
    maps = np.zeros((4, 10, 10), np.float32)
    maps[0, 2, 2] = 1          # inside box 0
    maps[1, 8, 8] = 1          # outside its box, 1 pixel from it
    maps[2, 5, 5] = np.nan     # nothing but a NaN: no maximum
    maps[3, 0, 9] = 1
    boxes = np.array([[1, 4, 1, 4], [5, 8, 5, 8], [0, 10, 0, 10], [0, 2, 8, 10]])
    score, hits = pointing_score(maps, boxes, return_hits=True)
    assert hits.tolist() == [True, False, False, True] and score == 0.5
    assert pointing_score(maps, boxes, margin=1) == 0.75
    masks = np.zeros((4, 10, 10), bool)
    masks[1, 8, 8] = True
    assert pointing_score(maps, masks, return_hits=True)[1].tolist() == [False, True, False, False]
    assert map_peaks(maps)[2].tolist() == [-1, -1]
    with pytest.raises(ModelError, match="boxes"):
        pointing_score(maps, boxes[:3])


def test_unknown_invalid_option_and_empty_layer_list(user_net, frames):
    with pytest.raises(ModelError, match="invalid"):
        cam(user_net, frames, invalid="hide")
    with pytest.raises(ModelError, match="empty"):
        cam(user_net, frames, layer=[])


# ---------------------------------------------------------------- pointing on a trained CNN

@pytest.fixture(scope="module")
def defect_cnn():
    """xlabel's frame CNN trained briefly on a small local-defect task (32x32 frames)."""
    from xlabel.models.pixelnet import PixelCNN
    from xlabel.synth import make_defect_task
    task = make_defect_task(n_train=4, n_test=2, n_frames=100, frame_shape=(32, 32), seed=3,
                            defect_fraction=0.25)
    labels = np.concatenate([scan.truth["label"] for scan in task.train])
    model = PixelCNN(size=32, epochs=12, patience=12, threads=1, progress=False, seed=0)
    return model.fit([scan.source() for scan in task.train], labels), task


def test_layercam_points_at_the_defect_on_held_out_scans(defect_cnn):
    """The default map's maximum lies in the defect box far above chance on scans of other
    exposure (chance: the box's share of the frame). Streaks on 32x32 frames are the hard
    kind for a small CNN; the benchmark (64x64, BENCHMARKS.md) measures every kind."""
    from xlabel.models.gradcam import pointing_score
    from xlabel.synth import defect_boxes
    model, task = defect_cnn
    hits, chance = [], []
    for scan in task.test:
        bad = np.flatnonzero(scan.is_bad)
        boxes = defect_boxes(scan.truth)[bad]
        maps = cam(model, scan.source(), target="bad", rows=bad)
        assert maps.shape == (len(bad), 32, 32)
        assert np.isnan(maps[:, scan.pixel_mask]).all()  # invalid pixels shown as NaN
        hits.append(pointing_score(maps, boxes, return_hits=True)[1])
        chance.append((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / 32 ** 2)
    score, chance = np.concatenate(hits).mean(), np.concatenate(chance).mean()
    assert len(np.concatenate(hits)) >= 20
    assert score >= 0.65 and score >= 5 * chance, (score, chance)


def test_supervised_autoencoder_maps_leave_its_decoder_out():
    """The SAE's decoder reconstructs the frame; the class logits never pass through it, so
    its convs must not be the default layer nor part of ``layer="all"``."""
    from xlabel.models.gradcam import conv_layers, default_layer
    from xlabel.models.networks import SupervisedAE

    network = SupervisedAE(channels=(4, 8, 8), hidden=8)
    names = conv_layers(network)
    assert names and not any(name.startswith("decoder.") for name in names)
    assert default_layer(network) == names[-1]
    maps = cam(network, np.random.default_rng(0).random((2, 2, 16, 16)).astype(np.float32) + 1,
               layer="all", target=1)
    assert np.isfinite(maps).all() and maps.max() > 0
