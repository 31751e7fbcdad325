"""Class activation maps for one-channel detector frames: LayerCAM, Grad-CAM, Grad-CAM++,
XGradCAM, SmoothGrad-CAM++, each at one conv layer or combined over all of them.

Works on xlabel's frame models (:class:`~xlabel.models.CNNClassifier`, or any model
with a ``cam_input`` method such as :class:`~xlabel.models.pixelnet.PixelCNN`: frames are
preprocessed as in training, maps come back at raw frame resolution with the scan's
invalid pixels set to NaN) and on any user ``torch.nn.Module`` taking ``(n, C, H, W)``
(frames are fed as float, unchanged). :func:`pointing_score` says how often a map's
maximum falls inside a known region (tests, teaching).

Which method points at the cause: on xlabel's frame CNN (global average *and* max pooling in
the head) Grad-CAM's one weight per channel (the spatial mean of its gradient) is the same
wherever the evidence lies, so channels that answer dim regions (a dead module, a shadow)
dominate every map, also on frames whose defect is a bright streak; LayerCAM weights each
location by its own gradient and keeps the evidence where the network found it; fused over
all conv layers it also keeps the shallow layers' resolution where the last layer is coarse
(a CNN that strides down to 1/8 of the frame). Pointing at the defect on held-out scans of
other exposure (``python -m bench.bench_gradcam``, BENCHMARKS.md): LayerCAM over all layers
0.93-1.00 on two CNN layouts, Grad-CAM at the last layer 0.65-0.66 (0 on streaks). Hence the
default.

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

__all__ = ["cam", "METHODS", "DEFAULT_METHOD", "ALL_LAYERS", "default_layer", "conv_layers",
           "pointing_score", "map_peaks"]

METHODS = ("layercam", "gradcam", "gradcam++", "xgradcam", "smoothgrad++")
#: The method :func:`cam` uses unless told (it points at local defects: see the module doc).
DEFAULT_METHOD = "layercam"
#: ``layer=ALL_LAYERS``: the maps of every conv layer, each scaled to [0, 1], averaged
#: (LayerCAM's default).
ALL_LAYERS = "all"
_EPS = 1e-7


def cam(model, frames, target=None, layer=None, method=DEFAULT_METHOD, batch_size=16, *,
        n_samples=8, noise=0.15, seed=0, invalid="nan", reference=None, rows=None) -> np.ndarray:
    """Class activation maps ``(n, H, W)`` at frame resolution, each scaled to [0, 1].

    ``model``: an xlabel frame model with a network (CNNClassifier, PixelCNN, ...) or a
    ``torch.nn.Module`` classifier. ``frames``: ``(n, H, W)`` or one ``(H, W)`` frame (a
    FrameSource or path also works for an xlabel model). ``target``: class explained:
    ``None`` (the predicted class of each frame), a class index or name, or one per frame.
    ``layer``: module name as in ``model.named_modules()``, a list of names, or ``"all"``
    (every conv layer): several layers give the mean of their scaled maps, scaled again.
    Default: ``"all"`` for LayerCAM, the last ``Conv2d`` for the other methods. ``method``: "layercam" (default; Jiang et al. 2021:
    ReLU(sum_k ReLU(dScore/dA_k) * A_k), every location weighted by its own gradient),
    "gradcam", "gradcam++", "xgradcam" or "smoothgrad++" (SmoothGrad-CAM++: Grad-CAM++ on
    gradients averaged over ``n_samples`` noisy copies of the input, Gaussian noise of
    ``noise`` x the input's range, seeded by ``seed``). ``invalid``: "nan" sets the
    scan's invalid pixels (masked, flagged, non-finite) to NaN in maps of xlabel models; "keep" leaves them. ``reference``: the
    scan's running flux per frame for models that judge flux relative to the scan
    (default: from ``frames``). ``rows``: explain only these frames of the scan ``frames``
    (models that judge a frame against its scan then still see the whole scan's context;
    a widget showing one frame passes its index here).

    Each map is ReLU(sum_k w_k A_k) (LayerCAM: per-location weights), upsampled bilinearly
    to the frame size, then min-max scaled per frame over its valid pixels; a map that is
    constant (e.g. all zero: no evidence for the target) is returned as zeros.
    """
    if method not in METHODS:
        raise ModelArgumentError(f"unknown CAM method {method!r}; choose one of {METHODS}")
    if invalid not in ("nan", "keep"):
        raise ModelArgumentError(f"invalid= must be 'nan' or 'keep', got {invalid!r}")
    network, inputs, out_shape, classes, invalid_mask = _inputs(model, frames, reference, rows)
    modules = [_find_layer(network, name) for name in _layer_names(network, layer, method)]
    targets = _targets(target, len(inputs), classes)
    smooth = {"n_samples": int(n_samples), "noise": float(noise),
              "generator": torch.Generator().manual_seed(int(seed))}
    was_training = network.training
    network.eval()
    try:
        maps = [_combined(network, modules, inputs[i:i + batch_size],
                          None if targets is None else targets[i:i + batch_size],
                          method, out_shape, smooth)
                for i in range(0, len(inputs), batch_size)]
    finally:
        network.train(was_training)
    maps = np.concatenate(maps) if maps else np.zeros((0, *out_shape), np.float32)
    if invalid == "nan" and invalid_mask is not None and invalid_mask.any():
        maps = _rescale_valid(maps, invalid_mask)
    return maps


def conv_layers(network) -> list:
    """Names of every ``Conv2d`` module of ``network`` the class scores depend on, in order
    (``layer="all"`` uses them). A network lists the submodules outside that path (the
    supervised autoencoder's decoder) in ``cam_skip``; their maps would explain nothing."""
    skip = tuple(f"{prefix}." for prefix in getattr(network, "cam_skip", ()))
    return [name for name, module in network.named_modules()
            if isinstance(module, torch.nn.Conv2d) and not name.startswith(skip)]


def _layer_names(network, layer, method=None) -> list:
    if layer is None:
        layer = default_layer(network, method)
    if isinstance(layer, str) and layer == ALL_LAYERS:
        names = conv_layers(network)
        if not names:
            raise ModelArgumentError(
                "the model has no Conv2d layer; pass layer= with a module name")
        return names
    if isinstance(layer, str):
        return [layer]
    names = list(layer)
    if not names:
        raise ModelArgumentError("layer= is an empty list; give at least one module name")
    return names


def _combined(network, modules, inputs, targets, method, out_shape, smooth):
    if targets is None:  # explain the predicted class of the clean input at every layer
        with torch.no_grad():
            targets = network(inputs).argmax(dim=1)
    maps = _cam_batch(network, modules, inputs, targets, method, out_shape, smooth)
    if len(maps) == 1:
        return maps[0]
    return _minmax(torch.from_numpy(np.mean(maps, axis=0))).numpy()


def _rescale_valid(maps, invalid):
    """NaN on invalid pixels, min-max scaling over the valid ones (all-zero where constant)."""
    invalid = np.broadcast_to(invalid, maps.shape)
    out = np.where(invalid, np.nan, maps).astype(np.float32)
    for m in out:
        low, high = np.nanmin(m), np.nanmax(m)
        if np.isfinite(low) and high > low:
            m -= low
            m /= high - low
        else:
            m[np.isfinite(m)] = 0
    return out


def map_peaks(maps) -> np.ndarray:
    """``(n, 2)`` row, column of each map's maximum (NaN ignored); ``-1, -1`` where a map has
    no maximum (all zero: no evidence, or all NaN)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    flat = np.nan_to_num(maps.reshape(len(maps), -1), nan=-np.inf)
    best = flat.argmax(axis=1)
    peaks = np.stack(np.unravel_index(best, maps.shape[1:]), axis=1).astype(np.int64)
    top = flat[np.arange(len(flat)), best]
    lowest = np.where(np.isfinite(flat), flat, np.inf).min(axis=1)
    peaks[~(top > lowest)] = -1
    return peaks


def pointing_score(maps, regions, margin: int = 0, return_hits: bool = False):
    """Fraction of maps whose maximum falls inside the given region.

    ``regions``: boxes ``(n, 4)`` as ``(y0, y1, x0, x1)`` slice bounds (e.g.
    :func:`xlabel.synth.defect_boxes` of the defect frames), one box ``(4,)`` for all, or
    boolean masks ``(n, H, W)`` / ``(H, W)``. ``margin``: pixels added around each box.
    A map without a maximum (no evidence) is a miss. ``return_hits``: also return the
    boolean hit per map.

    >>> maps = np.zeros((2, 8, 8)); maps[0, 1, 1] = 1; maps[1, 6, 6] = 1
    >>> pointing_score(maps, np.array([[0, 3, 0, 3], [0, 3, 0, 3]]))
    0.5
    """
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]
    peaks = map_peaks(maps)
    regions = np.asarray(regions)
    has_peak = peaks[:, 0] >= 0
    rows, cols = np.where(has_peak, peaks[:, 0], 0), np.where(has_peak, peaks[:, 1], 0)
    if regions.dtype == bool:
        masks = np.broadcast_to(regions, maps.shape)
        hits = masks[np.arange(len(maps)), rows, cols] & has_peak
    else:
        if regions.size not in (4, 4 * len(maps)):
            raise ModelArgumentError(f"{regions.size // 4} boxes for {len(maps)} maps")
        boxes = np.broadcast_to(regions.reshape(-1, 4), (len(maps), 4)).astype(np.int64)
        hits = (has_peak & (rows >= boxes[:, 0] - margin) & (rows < boxes[:, 1] + margin)
                & (cols >= boxes[:, 2] - margin) & (cols < boxes[:, 3] + margin))
    score = float(hits.mean()) if len(hits) else float("nan")
    return (score, hits) if return_hits else score


def default_layer(network, method=None) -> str:
    """The default CAM layer of ``network``: :data:`ALL_LAYERS` for LayerCAM (built to fuse
    layers: the shallow ones give fine maps where the last conv layer is coarse), else the
    name of its last ``Conv2d`` module (``method=None``: always the last conv layer)."""
    names = conv_layers(network)
    if not names:
        raise ModelArgumentError("the model has no Conv2d layer; pass layer= with a module name")
    return ALL_LAYERS if method == "layercam" and len(names) > 1 else names[-1]


def _inputs(model, frames, reference=None, rows=None):
    """(network, float input tensor (n, C, h, w), output map shape, class names or None,
    invalid pixels (n, H, W) bool or None)."""
    if hasattr(model, "cam_input"):
        return model.cam_input(frames, reference=reference, rows=rows)
    if rows is not None:
        from .frames import as_source
        frames = as_source(frames)[np.asarray(rows, dtype=np.int64)]
    if isinstance(model, FrameModel):
        if not hasattr(model, "network_input"):
            raise ModelArgumentError(
                f"a {model.kind!r} model has no neural network layers for Grad-CAM")
        source = model.check_frames(frames)
        stack = source.read_all()
        return (model.network, model.network_input(model.prepared(source)), model.frame_shape_,
                model.classes, invalid_mask(stack, source))
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
    return model, torch.from_numpy(array), tuple(array.shape[2:]), None, None


def invalid_mask(stack, source=None) -> np.ndarray:
    """True where a pixel of ``stack`` is invalid: flagged by the scan (mask, value
    conventions: :func:`xlabel.io.invalid_pixels`) or not finite."""
    from ..io.base import invalid_pixels
    stack = np.asarray(stack)
    flagged = invalid_pixels(stack, source)
    flagged = np.zeros(stack.shape, bool) if flagged is None else flagged
    return flagged | ~np.isfinite(stack) if stack.dtype.kind == "f" else flagged


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


def _cam_batch(network, modules, inputs, targets, method, out_shape, smooth):
    """One map batch per module (one forward and backward pass for all of them)."""
    if method == "smoothgrad++":
        return _smooth_cam_batch(network, modules, inputs, targets, out_shape, smooth)
    activations, grads = _activations_and_grads(network, modules, inputs, targets)
    with torch.no_grad():
        if method == "layercam":
            return [_to_frame(torch.relu((torch.relu(g) * a).sum(dim=1, keepdim=True)), out_shape)
                    for a, g in zip(activations, grads)]
        return [_map(_weights(a, g, method), a, out_shape) for a, g in zip(activations, grads)]


def _activations_and_grads(network, modules, inputs, targets):
    """Each module's activations A and dScore/dA for the target classes (lists, in order)."""
    captured = {}

    def keeper(key):
        def keep_output(_module, _inputs, output):
            captured[key] = output
        return keep_output

    handles = [module.register_forward_hook(keeper(i)) for i, module in enumerate(modules)]
    try:
        with torch.enable_grad():
            inputs = inputs.clone().requires_grad_(True)
            logits = network(inputs)
            if targets is None:
                targets = logits.argmax(dim=1)
            if targets.max() >= logits.shape[1] or targets.min() < 0:
                raise ModelArgumentError(f"target class out of range for {logits.shape[1]} outputs")
            score = logits.gather(1, targets[:, None].to(logits.device)).sum()
            missing = [i for i in range(len(modules)) if i not in captured]
            if missing:
                raise ModelArgumentError(f"the CAM layer {modules[missing[0]]!r} is not used by the "
                                         "model's forward pass; choose a conv layer it runs")
            activations = [captured[i] for i in range(len(modules))]
            grads = torch.autograd.grad(score, activations)
    finally:
        for handle in handles:
            handle.remove()
    return [a.detach() for a in activations], list(grads)


def _map(weights, activations, out_shape):
    raw = torch.relu((weights[:, :, None, None] * activations).sum(dim=1, keepdim=True))
    return _to_frame(raw, out_shape)


def _to_frame(raw, out_shape):
    """``(n, 1, h, w)`` maps upsampled bilinearly to the frame and min-max scaled (numpy)."""
    up = torch.nn.functional.interpolate(raw, size=out_shape, mode="bilinear",
                                         align_corners=False)[:, 0]
    return _minmax(up).cpu().numpy()


def _smooth_cam_batch(network, modules, inputs, targets, out_shape, smooth):
    """SmoothGrad-CAM++ (Omeiza et al. 2019): the Grad-CAM++ weights from the gradient
    moments (g, g^2, g^3) averaged over noisy copies of the input, applied to the clean
    input's activations. The noise is drawn per frame with std ``noise`` x its range."""
    activations, _ = _activations_and_grads(network, modules, inputs, targets)
    flat = inputs.reshape(len(inputs), -1)
    scale = (flat.max(dim=1).values - flat.min(dim=1).values).clamp_min(1e-12)
    scale = smooth["noise"] * scale.reshape(-1, *([1] * (inputs.dim() - 1)))
    moments = [[torch.zeros_like(a) for _ in range(3)] for a in activations]
    n_samples = max(1, smooth["n_samples"])
    for _ in range(n_samples):
        noise = torch.randn(inputs.shape, generator=smooth["generator"]).to(inputs.device)
        _, grads = _activations_and_grads(network, modules, inputs + noise * scale, targets)
        for layer_moments, g in zip(moments, grads):
            for k in range(3):
                layer_moments[k] += g ** (k + 1)
    maps = []
    with torch.no_grad():
        for a, layer_moments in zip(activations, moments):
            g1, g2, g3 = (m / n_samples for m in layer_moments)
            sum_act = a.sum(dim=(2, 3), keepdim=True)
            denominator = 2 * g2 + sum_act * g3
            nonzero = denominator != 0
            alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, 1.0), torch.zeros_like(g2))
            maps.append(_map((alpha * torch.relu(g1)).sum(dim=(2, 3)), a, out_shape))
    return maps


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
