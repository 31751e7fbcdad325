"""GradCAMOverlay with real (small) PyTorch CNNs: rendering, controls, browsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_widgets_gallery import decode_png
from xlabel.errors import XLabelError
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore
from xlabel.widgets import ConfusionMatrixViewer, GradCAMOverlay
from xlabel.widgets.imaging import COLORMAPS


class TinyCNN(torch.nn.Module):
    """Two conv layers, global pooling, linear head: enough structure for Grad-CAM."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def spot_frames(n=8, shape=(20, 28), seed=0):
    """Frames with one bright spot each, at a different place per frame."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(20, size=(n, *shape)).astype(np.float32)
    for i in range(n):
        r, c = 3 + (i * 5) % (shape[0] - 6), 3 + (i * 7) % (shape[1] - 6)
        frames[i, r - 2:r + 3, c - 2:c + 3] += 500
    return frames


@pytest.fixture
def overlay():
    frames = spot_frames()
    store = LabelStore(len(frames), classes=("good", "bad"))
    store.seed_from(np.arange(len(frames)) % 2)
    return GradCAMOverlay(TinyCNN(), ArraySource(frames), store=store, opacity=0.6)


def test_renders_rgba_png_of_frame_size(overlay):
    image = decode_png(overlay.png)
    assert image.shape == (20, 28, 4)
    assert overlay.layer == "all" and overlay._layer.options == ("conv1", "conv2", "all")
    heat = overlay.cam_map
    assert heat.shape == (20, 28) and 0 <= heat.min() and heat.max() <= 1
    assert "frame 0 · label good · explaining predicted class at all (layercam)" == overlay.status


def test_controls_change_the_image(overlay):
    images = {"start": overlay.png}
    overlay._opacity.value = 0.1                     # slider moved in the UI
    images["opacity"] = overlay.png
    overlay.target_class = "bad"
    images["class"] = overlay.png
    overlay.layer = "conv1"
    images["layer"] = overlay.png
    overlay.layer = "conv2"
    images["last layer"] = overlay.png
    overlay.cmap = "jet"
    images["cmap"] = overlay.png
    overlay.method = "gradcam++"
    images["method"] = overlay.png
    assert len(set(images.values())) == len(images)
    # opacity 0 shows the plain log-scaled frame; the colormap tints the hottest pixel
    overlay.opacity = 0.0
    plain = decode_png(overlay.png).astype(int)
    overlay.opacity = 1.0
    overlay.cmap = "viridis"
    tinted = decode_png(overlay.png).astype(int)
    hot = np.unravel_index(np.argmax(overlay.cam_map), overlay.cam_map.shape)
    assert (plain[..., 0] == plain[..., 1]).all()     # gray
    np.testing.assert_allclose(tinted[hot][:3], COLORMAPS["viridis"][255], atol=2)


def test_maps_are_cached_per_frame_class_layer_method(overlay, monkeypatch):
    calls = []
    real = overlay._cam
    monkeypatch.setattr(overlay, "_cam", lambda *a, **k: calls.append(k) or real(*a, **k))
    overlay.opacity = 0.3
    overlay.cmap = "gray"
    assert calls == []                                # restyling reuses the cached map
    overlay.target_class = "bad"
    overlay.target_class = None
    assert len(calls) == 1 and calls[0]["target"] == 1


def test_browsing_and_misclassified_list(overlay):
    assert overlay.index == 0 and overlay._prev.disabled
    overlay._next.click()
    assert overlay.index == 1 and overlay.position == 1
    assert overlay.go_to(100) == 7 and overlay._next.disabled
    frames = spot_frames()
    preds = np.where(np.arange(8) < 4, 0, 1)
    viewer = ConfusionMatrixViewer(overlay._store, preds, source=ArraySource(frames))
    wrong = viewer.misclassified
    assert wrong.tolist() == [1, 3, 4, 6]
    overlay.show(wrong)
    seen = [overlay.index]
    while overlay.position < len(wrong) - 1:
        overlay.next()
        seen.append(overlay.index)
    assert seen == [1, 3, 4, 6] and "(4 of 4)" in overlay._where.value
    # maps differ between frames: the bright spot moves
    assert not np.allclose(overlay._map(1), overlay._map(3))
    overlay._store.assign([6], "good")
    assert "label good" in overlay.status
    overlay.show([])
    assert overlay.index is None and "empty selection" in overlay.status


def test_trained_cnn_model_and_bad_input():
    from xlabel.models import train_cnn
    frames = spot_frames(16, (16, 16))
    frames[::2] *= 0.05
    labels = np.where(np.arange(16) % 2, "good", "bad")
    model = train_cnn(frames, labels, classes=("good", "bad"), size=16, channels=(4, 8),
                      epochs=2, progress=False)
    view = GradCAMOverlay(model, frames, indices=[2, 5])
    assert view._layer.options == ("features.conv1", "features.conv2", "all")
    assert view.layer == "all" and view.method == "layercam"
    assert GradCAMOverlay(model, frames, method="gradcam").layer == "features.conv2"
    assert decode_png(view.png).shape == (16, 16, 4)
    view.target_class = "good"
    assert view.target_class == "good"
    with pytest.raises(XLabelError, match="unknown class 'ugly'"):
        view.target_class = "ugly"
    with pytest.raises(XLabelError, match="unknown layer"):
        view.layer = "head"
    with pytest.raises(XLabelError, match="not found in the model"):
        GradCAMOverlay(model, frames, layers=["nope"])
    with pytest.raises(XLabelError, match="out of range"):
        view.show([99])
    with pytest.raises(XLabelError, match="store has 3"):
        GradCAMOverlay(model, frames, store=LabelStore(3))


def test_missing_torch_raises_missing_dependency(monkeypatch):
    import builtins

    from xlabel.errors import MissingDependencyError
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(MissingDependencyError, match="xlabel\\[deep\\]"):
        GradCAMOverlay(object(), np.zeros((2, 4, 4)))
