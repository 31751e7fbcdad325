"""Class activation maps for one-channel detector frames: Grad-CAM, Grad-CAM++, XGradCAM.

Works on xlabel's frame models with a network (e.g. :class:`~xlabel.models.CNNClassifier`:
frames are preprocessed as in training and maps come back at raw frame resolution) and on any
user ``torch.nn.Module`` taking ``(n, 1, H, W)`` (frames are fed as float, unchanged).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
...                           torch.nn.Linear(4, 2))
>>> maps = cam(net, np.random.default_rng(0).random((3, 16, 12)), target=1)
>>> maps.shape, float(maps.min()) >= 0, float(maps.max()) <= 1
((3, 16, 12), True, True)
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelArgumentError
from ._deps import require_torch
from .evaluate import encode_labels
from .base import FrameModel

torch = require_torch()

__all__ = ["cam", "METHODS", "default_layer"]

METHODS = ("gradcam", "gradcam++", "xgradcam")
_EPS = 1e-7


def cam(model, frames, target=None, layer=None, method="gradcam", batch_size=16) -> np.ndarray:
    """Class activation maps ``(n, H, W)`` at frame resolution, each scaled to [0, 1].

    ``model``: an xlabel frame model with a ``network`` (CNNClassifier) or a
    ``torch.nn.Module`` classifier. ``frames``: ``(n, H, W)`` or one ``(H, W)`` frame (a
    FrameSource also works for an xlabel model). ``target``: class explained: ``None``
    (the predicted class of each frame), a class index or name, or one per frame.
    ``layer``: module name as in ``model.named_modules()`` (default: the last ``Conv2d``).
    ``method``: "gradcam", "gradcam++" or "xgradcam".

    Each map is ReLU(sum_k w_k A_k), upsampled bilinearly to the frame size, then
    min-max scaled per frame; a map that is constant (e.g. all zero: no evidence
    for the target) is returned as zeros.
    """
    if method not in METHODS:
        raise ModelArgumentError(f"unknown CAM method {method!r}; choose one of {METHODS}")
    network, inputs, out_shape, classes = _inputs(model, frames)
    module = _find_layer(network, layer)
    targets = _targets(target, len(inputs), classes)
    was_training = network.training
    network.eval()
    try:
        maps = [_cam_batch(network, module, inputs[i:i + batch_size],
                           None if targets is None else targets[i:i + batch_size],
                           method, out_shape)
                for i in range(0, len(inputs), batch_size)]
    finally:
        network.train(was_training)
    return np.concatenate(maps) if maps else np.zeros((0, *out_shape), np.float32)


def default_layer(network) -> str:
    """Name of the last ``Conv2d`` module of ``network`` (the default CAM layer)."""
    names = [name for name, module in network.named_modules()
             if isinstance(module, torch.nn.Conv2d)]
    if not names:
        raise ModelArgumentError("the model has no Conv2d layer; pass layer= with a module name")
    return names[-1]


def _inputs(model, frames):
    """(network, float input tensor (n, 1, h, w), output map shape, class names or None)."""
    if isinstance(model, FrameModel):
        if not hasattr(model, "network_input"):
            raise ModelArgumentError(
                f"a {model.kind!r} model has no neural network layers for Grad-CAM")
        prepared = model.prepared(frames)
        return (model.network, model.network_input(prepared), model.frame_shape_,
                model.classes)
    if not isinstance(model, torch.nn.Module):
        raise ModelArgumentError(f"cam() needs a torch.nn.Module or an xlabel CNN model, "
                                 f"got {type(model).__name__}")
    array = np.asarray(frames, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ModelArgumentError(
            f"frames must be (n, H, W) or (n, C, H, W), got shape {array.shape}")
    return model, torch.from_numpy(array), tuple(array.shape[2:]), None


def _find_layer(network, layer):
    name = default_layer(network) if layer is None else layer
    modules = dict(network.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
        raise ModelArgumentError(f"no layer named {name!r} in the model; conv layers: {convs}")
    return modules[name]


def _targets(target, n, classes):
    if target is None:
        return None
    values = np.atleast_1d(np.asarray(target, dtype=object))
    if classes is not None:
        indices = encode_labels(values, classes)
    else:
        if any(isinstance(v, str) for v in values):
            raise ModelArgumentError(
                "class names as target need an xlabel model; pass class indices")
        indices = values.astype(np.int64)
    if len(indices) == 1:
        indices = np.repeat(indices, n)
    if len(indices) != n:
        raise ModelArgumentError(f"{len(indices)} targets for {n} frames")
    return torch.from_numpy(indices)


def _cam_batch(network, module, inputs, targets, method, out_shape):
    captured = {}

    def keep_output(_module, _inputs, output):
        captured["activations"] = output

    handle = module.register_forward_hook(keep_output)
    try:
        with torch.enable_grad():
            inputs = inputs.clone().requires_grad_(True)
            logits = network(inputs)
            if targets is None:
                targets = logits.argmax(dim=1)
            if targets.max() >= logits.shape[1] or targets.min() < 0:
                raise ModelArgumentError(f"target class out of range for {logits.shape[1]} outputs")
            score = logits.gather(1, targets[:, None].to(logits.device)).sum()
            activations = captured["activations"]
            (grads,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    with torch.no_grad():
        weights = _weights(activations.detach(), grads, method)
        raw = torch.relu((weights[:, :, None, None] * activations).sum(dim=1, keepdim=True))
        up = torch.nn.functional.interpolate(raw, size=out_shape, mode="bilinear",
                                             align_corners=False)[:, 0]
        return _minmax(up).cpu().numpy()


def _weights(activations, grads, method):
    if method == "gradcam":
        return grads.mean(dim=(2, 3))
    if method == "xgradcam":
        return (grads * activations).sum(dim=(2, 3)) / (activations.sum(dim=(2, 3)) + _EPS)
    # Grad-CAM++ (Chattopadhay et al. 2018), with the exponential-score closed form of alpha.
    # alpha is 0 only where its denominator is exactly 0: an additive eps would push alpha
    # towards 0 for small gradients (alpha -> 1/2 as g -> 0), making maps depend on the
    # scale of the score.
    grads2, grads3 = grads ** 2, grads ** 3
    sum_act = activations.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * grads2 + sum_act * grads3
    nonzero = denominator != 0
    alpha = torch.where(nonzero, grads2 / torch.where(nonzero, denominator, 1.0),
                        torch.zeros_like(grads2))
    return (alpha * torch.relu(grads)).sum(dim=(2, 3))


def _minmax(maps):
    flat = maps.reshape(len(maps), -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-30), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)
