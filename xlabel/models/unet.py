"""A small U-Net that selects spot pixels before DBSCAN (optional PyTorch).

Input: the significance map of :func:`xlabel.spots.significance` (counts above
the local background over the noise), compressed with ``arcsinh``; output: the
probability that a pixel belongs to a spot. Two pooling levels see about 20
pixels around each pixel: enough to tell a compact spot from a ring's arc, a
lone hot pixel or noise. Trained with the sigmoid focal loss (Lin et al. 2017;
written here because torchvision, which has it, is not a dependency) with
``alpha`` weighting the rare spot pixels toward recall. Nothing is pretrained
or downloaded: train it on frames with known spots (:func:`xlabel.synth.make_spot_scan`)
in seconds to a minute on a CPU.

>>> from xlabel.spots import find_spots
>>> from xlabel.synth import make_spot_scan
>>> scan = make_spot_scan(n_frames=8, frame_shape=(64, 64), seed=0)
>>> selector = train_spot_unet(scan.frames, scan.spot_pixels(), pixel_mask=scan.pixel_mask,
...                            steps=10, batch_size=4, patch=32, progress=False)  # a quick demo
>>> selector
<SpotSelector U-Net channels=(4, 8, 16) threshold=0.5>
>>> other_scan = make_spot_scan(n_frames=2, frame_shape=(64, 64), seed=1)
>>> spots = find_spots(other_scan.frames, method="unet", model=selector, progress=False)
>>> list(spots.columns)
['frame', 'y', 'x', 'intensity', 'pixels']
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ModelArgumentError
from ._deps import require_torch
from .cnn import _torch_settings  # seeded, thread-limited, restores the caller's torch state

torch = require_torch()
nn = torch.nn

__all__ = ["SpotUNet", "SpotSelector", "train_spot_unet", "focal_loss", "prepare"]


def _block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class SpotUNet(nn.Module):
    """U-Net with ``len(channels) - 1`` pooling levels and a 1x1 head (one logit per pixel).

    Any frame size works (odd sizes are padded internally).

    >>> SpotUNet(channels=(4, 8))(torch.zeros(2, 1, 30, 17)).shape
    torch.Size([2, 1, 30, 17])
    """

    def __init__(self, channels=(8, 16, 32)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ModelArgumentError(f"SpotUNet needs at least 2 channel widths, got {channels}")
        self.channels = channels
        self.down = nn.ModuleList([_block(1, channels[0])] + [
            _block(a, b) for a, b in zip(channels[:-1], channels[1:])])
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2)
                                 for a, b in zip(channels[:-1], channels[1:])])
        self.merge = nn.ModuleList([_block(2 * a, a) for a in channels[:-1]])
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        multiple = 2 ** (len(self.channels) - 1)
        x = nn.functional.pad(x, (0, -w % multiple, 0, -h % multiple))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(reversed(self.up), reversed(self.merge), reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :h, :w]


def focal_loss(logits, target, alpha: float = 0.75, gamma: float = 2.0):
    """Mean sigmoid focal loss; ``alpha`` weights the positive (spot) pixels, ``1 - alpha``
    the others (same formula as ``torchvision.ops.sigmoid_focal_loss``).

    >>> x = torch.tensor([4.0, -4.0]); t = torch.tensor([1.0, 0.0])
    >>> bool(focal_loss(x, t) < focal_loss(-x, t))
    True
    """
    p = torch.sigmoid(logits)
    ce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).mean()


def prepare(z) -> np.ndarray:
    """Network input from a significance map: ``arcsinh(z)`` as float32 (compresses bright spots)."""
    return np.arcsinh(np.asarray(z, np.float32))


class SpotSelector:
    """A trained :class:`SpotUNet` plus its decision ``threshold``: what ``find_spots``
    (``method="unet"``) calls to select candidate pixels.

    ``probability(z)`` -> float32 ``(n, H, W)``; ``select(z)`` -> bool, ``probability >= threshold``.
    ``info``: training facts (steps, final loss, alpha, gamma, seconds). ``device``: where the
    network runs (``"cpu"``, ``"cuda"``...); ``to(device)`` moves it.
    """

    def __init__(self, network: SpotUNet, threshold: float = 0.5, info=None, batch_size: int = 16,
                 device="cpu"):
        self.network = network.eval()
        self.threshold = float(threshold)
        self.info = dict(info or {})
        self.batch_size = int(batch_size)
        self.to(device)

    def to(self, device):
        """Run the network on ``device`` from now on; returns self."""
        self.device = torch.device(device)
        # channels_last: the 4-16 channel convs ran in 0.6x the time on a CPU (BENCHMARKS.md)
        self.network.to(self.device, memory_format=torch.channels_last)
        return self

    def probability(self, z) -> np.ndarray:
        z = np.asarray(z)
        single = z.ndim == 2
        x = torch.from_numpy(prepare(z[None] if single else z)).unsqueeze(1)
        out = []
        with torch.inference_mode():
            for batch in x.split(self.batch_size):
                batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
                out.append(torch.sigmoid(self.network(batch))[:, 0].cpu().numpy())
        prob = np.concatenate(out) if out else np.zeros(z.shape, np.float32)
        return prob[0] if single else prob

    def select(self, z) -> np.ndarray:
        return self.probability(z) >= self.threshold

    def __repr__(self) -> str:
        return (f"<SpotSelector U-Net channels={self.network.channels} "
                f"threshold={self.threshold:g}>")


def train_spot_unet(frames, spot_pixels, *, pixel_mask=None, channels=(4, 8, 16),
                    alpha: float = 0.95, gamma: float = 2.0, steps: int = 800,
                    batch_size: int = 16, patch: int = 64, lr: float = 1e-2, tile: int = 8,
                    threshold: float = 0.5, seed: int = 0, threads=None,
                    device="cpu", progress: bool = True) -> SpotSelector:
    """Train a :class:`SpotUNet` on frames with known spot pixels; returns a :class:`SpotSelector`.

    ``frames``: ``(n, H, W)`` counts (or a list of such arrays of any frame sizes,
    with ``pixel_mask`` then a list too); ``spot_pixels``: boolean truth of the same
    shape(s) (e.g. :meth:`xlabel.synth.SpotScan.spot_pixels`); ``pixel_mask``: ``(H, W)``
    True = invalid (value conventions of :func:`xlabel.io.invalid_pixels` apply too).
    Training: ``steps`` Adam steps (cosine learning-rate decay from ``lr``) on random
    ``patch`` x ``patch`` crops with random flips and transposes, focal loss (``alpha``,
    ``gamma``; ``alpha = 0.95`` favours recall), seeded (the caller's torch RNG state is
    left as it was). ``threads``: torch threads during training; ``device``: where to train
    (and run) the network. The defaults (4-8-16
    channels, batch norm) were chosen on synthetic scans: wider or deeper nets trained
    more slowly on 2 CPU cores without finding more spots (BENCHMARKS.md, spots).
    ``threshold``: the probability a pixel needs to be a candidate; tune it on
    validation scans with :func:`xlabel.spots.tune_threshold`.
    """
    from ..io.base import invalid_pixels
    from ..spots import significance

    stacks, targets, masks = _as_lists(frames, spot_pixels, pixel_mask)
    inputs = []
    for stack, target, mask in zip(stacks, targets, masks):
        if target.shape != stack.shape:
            raise ModelArgumentError(
                f"spot_pixels has shape {target.shape}, frames have {stack.shape}")
        invalid = invalid_pixels(stack)
        if mask is not None:
            invalid = mask if invalid is None else invalid | mask
        inputs.append(prepare(significance(stack, invalid, tile=tile)[0]))
    patch = min([int(patch), *(min(s.shape[1:]) for s in stacks)])
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with _torch_settings(seed, threads):
        network = SpotUNet(channels).to(device)
        losses = _fit(network, inputs, [t.astype(np.float32) for t in targets], rng,
                      steps=steps, batch_size=batch_size, patch=patch, lr=lr, alpha=alpha,
                      gamma=gamma, progress=progress, device=torch.device(device))
    info = {"steps": steps, "final_loss": float(np.mean(losses[-20:])), "alpha": alpha,
            "gamma": gamma, "seconds": time.perf_counter() - start, "patch": patch,
            "frames": int(sum(len(s) for s in stacks))}
    return SpotSelector(network, threshold, info, device=device)


def _as_lists(frames, spot_pixels, pixel_mask):
    if isinstance(frames, (list, tuple)):
        masks = pixel_mask if isinstance(pixel_mask, (list, tuple)) else [pixel_mask] * len(frames)
        if not len(frames) == len(spot_pixels) == len(masks):
            raise ModelArgumentError("frames, spot_pixels and pixel_mask lists differ in length")
    else:
        frames, spot_pixels, masks = [frames], [spot_pixels], [pixel_mask]
    stacks = [np.asarray(f) for f in frames]
    if any(s.ndim != 3 or len(s) == 0 for s in stacks):
        raise ModelArgumentError("frames must be non-empty arrays (n, H, W)")
    return (stacks, [np.asarray(t, bool) for t in spot_pixels],
            [None if m is None else np.asarray(m, bool) for m in masks])


def _random_batch(inputs, targets, rng, batch_size, patch):
    xs, ys = [], []
    for _ in range(batch_size):
        s = int(rng.integers(len(inputs)))
        i = int(rng.integers(len(inputs[s])))
        h, w = inputs[s].shape[1:]
        y0, x0 = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        x, y = inputs[s][i, y0:y0 + patch, x0:x0 + patch], targets[s][i, y0:y0 + patch, x0:x0 + patch]
        if rng.random() < 0.5:
            x, y = x[::-1], y[::-1]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        if rng.random() < 0.5:
            x, y = x.T, y.T
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]


def _fit(network, inputs, targets, rng, *, steps, batch_size, patch, lr, alpha, gamma, progress,
         device):
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc="train spot U-Net", unit="step")
    losses = []
    network.train()
    for _ in bar:
        x, y = (t.to(device) for t in _random_batch(inputs, targets, rng, batch_size, patch))
        optimizer.zero_grad()
        loss = focal_loss(network(x), y, alpha, gamma)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    network.eval()
    return losses
