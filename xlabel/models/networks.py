"""PyTorch networks for frames: :class:`FrameNet` (CNN) and :class:`SupervisedAE`.

Both take ``(n, C, h, w)`` where channel 0 is the frame's pattern and an optional channel
1 is a constant plane holding the frame's flux relative to its scan
(:mod:`xlabel.models.frame_input`). Conv layers see channel 0 only; the relative flux
joins the pooled conv features in the classifier head, so a frame can be judged dim
without any spatial evidence, and Grad-CAM maps show only the spatial evidence.

Pooling: the head gets the global *average* and the global *max* of the last conv layer:
a defect covering 1/16 of a frame is diluted 16x by an average, not by a max.

Speed (``python -m bench.bench_frame_models --speed``, BENCHMARKS.md): the encoder
downsamples with stride-2 convolutions (``downsample="stride"``) instead of a full-resolution
first conv followed by max-pooling, and runs in ``channels_last`` memory format; both
halve or better the time of a training step on a CPU while the last conv layer keeps the
same resolution (Grad-CAM maps as fine as before).

>>> net = FrameNet(n_classes=2, in_channels=2, channels=(4, 8))
>>> net(torch.zeros(3, 2, 40, 24)).shape
torch.Size([3, 2])
>>> sae = SupervisedAE(n_classes=2, in_channels=1, channels=(4, 8))
>>> [t.shape for t in sae.forward_with_reconstruction(torch.zeros(3, 1, 40, 24))]
[torch.Size([3, 2]), torch.Size([3, 1, 40, 24])]
"""

from __future__ import annotations

from collections import OrderedDict

from ._deps import require_torch

torch = require_torch()
nn = torch.nn
F = nn.functional

__all__ = ["FrameNet", "SupervisedAE", "build", "conv_encoder", "NETWORKS"]


#: Encoder layouts: "pool" (conv1 at full resolution, a 2x2 max-pool before every other
#: conv; the first CNN's and the pixel networks' saved before "stride" came) and "stride"
#: (every conv but the last has stride 2). Both end at 1/2**(n-1) of the input size.
DOWNSAMPLING = ("pool", "stride")


def conv_encoder(channels, downsample: str = "pool") -> nn.Sequential:
    """3x3 conv layers ``conv1``, ``conv2``, ... each followed by ``reluN``.

    ``downsample="pool"``: a 2x2 max-pool ``poolN`` before every conv but the first;
    ``"stride"``: every conv but the last has stride 2 (4x fewer positions for the
    widest layers: the fast layout, see the module docstring).
    """
    if downsample not in DOWNSAMPLING:
        raise ValueError(f"downsample must be one of {DOWNSAMPLING}, got {downsample!r}")
    layers = OrderedDict()
    previous = 1
    for i, width in enumerate(channels, start=1):
        stride = 2 if downsample == "stride" and i < len(channels) else 1
        if i > 1 and downsample == "pool":
            layers[f"pool{i - 1}"] = nn.MaxPool2d(2, ceil_mode=True)
        layers[f"conv{i}"] = nn.Conv2d(previous, width, kernel_size=3, padding=1, stride=stride)
        layers[f"relu{i}"] = nn.ReLU()
        previous = width
    return nn.Sequential(layers)


class _Classifier(nn.Module):
    """Encoder + head on [avg pool, max pool, relative flux]."""

    def __init__(self, n_classes, in_channels, channels, hidden, downsample):
        super().__init__()
        if in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 or 2, got {in_channels}")
        self.in_channels = in_channels
        self.downsample = downsample
        self.features = conv_encoder(channels, downsample)
        extra = in_channels - 1
        self.head = nn.Sequential(nn.Linear(2 * channels[-1] + extra, hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_classes))
        self.to(memory_format=torch.channels_last)

    def classify(self, latent, x):
        pooled = [latent.mean(dim=(2, 3)), latent.amax(dim=(2, 3))]
        if self.in_channels == 2:
            pooled.append(x[:, 1].mean(dim=(1, 2))[:, None])
        return self.head(torch.cat(pooled, dim=1))

    def encode(self, x):
        """The last conv layer's map of channel 0 (computed in channels_last format)."""
        return self.features(x[:, :1].contiguous(memory_format=torch.channels_last))

    def forward(self, x):
        return self.classify(self.encode(x), x)

    def training_loss(self, x, y, cross_entropy):
        return cross_entropy(self(x), y)


class FrameNet(_Classifier):
    """The frame CNN: conv blocks ``features.conv1`` ... (Grad-CAM default: the last),
    a head on average- and max-pooled features plus the relative flux.
    Works for any frame size (global pooling)."""

    def __init__(self, n_classes: int = 2, in_channels: int = 2, channels=(8, 16, 32), hidden: int = 32,
                 downsample: str = "stride"):
        super().__init__(n_classes, in_channels, tuple(channels), hidden, downsample)


class SupervisedAE(_Classifier):
    """Supervised convolutional autoencoder (the industrial OK/not-OK recipe): the encoder
    feeds a decoder that reconstructs channel 0 and a classifier head on the latent map.
    ``training_loss`` = class-weighted cross-entropy + ``reconstruction_weight`` x MSE.
    ``forward`` returns the class logits only (so Grad-CAM and prediction treat it as any
    classifier). The decoder works up to half the input size and is interpolated to it:
    its convolutions at full size cost more than the whole encoder (an epoch took ~4x the
    CNN's), and the classifier only needs the latent to keep the frame's content.
    """

    #: submodules the class logits do not depend on: Grad-CAM leaves them out
    cam_skip = ("decoder",)

    def __init__(self, n_classes: int = 2, in_channels: int = 2, channels=(8, 16, 32), hidden: int = 32,
                 reconstruction_weight: float = 1.0, downsample: str = "stride"):
        super().__init__(n_classes, in_channels, tuple(channels), hidden, downsample)
        self.reconstruction_weight = float(reconstruction_weight)
        layers = OrderedDict()
        widths = list(channels)[::-1]
        for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1):
            if i < len(widths) - 1:  # the last stage stays at half size: 4x cheaper, see below
                layers[f"up{i}"] = nn.Upsample(scale_factor=2, mode="nearest")
            layers[f"deconv{i}"] = nn.Conv2d(a, b, kernel_size=3, padding=1)
            layers[f"derelu{i}"] = nn.ReLU()
        layers["out"] = nn.Conv2d(widths[-1], 1, kernel_size=3, padding=1)
        self.decoder = nn.Sequential(layers).to(memory_format=torch.channels_last)

    def forward_with_reconstruction(self, x):
        latent = self.encode(x)
        recon = F.interpolate(self.decoder(latent), size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.classify(latent, x), recon

    def training_loss(self, x, y, cross_entropy):
        logits, recon = self.forward_with_reconstruction(x)
        return cross_entropy(logits, y) + self.reconstruction_weight * F.mse_loss(recon, x[:, :1])


NETWORKS = {"cnn": FrameNet, "sae": SupervisedAE}


def build(kind: str, n_classes: int, in_channels: int, channels, hidden: int = 32, **extra):
    """The network of ``kind`` ("cnn" | "sae") as described by a model's saved parameters
    (``downsample`` among ``extra``: "stride" unless the saved model says otherwise)."""
    return NETWORKS[kind](n_classes=n_classes, in_channels=in_channels, channels=tuple(channels),
                          hidden=hidden, **extra)
