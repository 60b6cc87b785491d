"""Out-of-distribution gate: refuse photos unlike the dermatoscopic images the classifier knows.

The classifier answers one of seven diagnoses for anything. A small network (two, optionally) judges
instead whether an image is a dermatoscopic image at all; their standardised scores are added:

- the *evidence* network reads the classifier's own forward pass: the mean, spread and peak of
  the last blocks' activations, the energy of its logits (Liu et al., 2020) and a few colour and
  layout statistics of the input. It is fitted for one classifier and means nothing for another.
- the optional *pixel* network is a small CNN trained on the half-resolution input itself, for the
  binary task alone; it does not depend on the classifier, and costs a second forward pass.

``python -m ml.fit_gate`` fits them, chooses the threshold on validation images (small copies and
simulated uploads) and stores the gate inside the classifier's checkpoint.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GateConfig:
    """The gate's shape: the evidence network's inputs and width, the pixel network's channels."""

    features: int
    hidden: int = 64
    dropout: float = 0.3
    channels: tuple[int, ...] = field(default=(16, 32, 64, 64))  # () for no pixel network


def image_statistics(pixels: torch.Tensor) -> torch.Tensor:
    """N×14 colour and layout statistics of an N×3×H×W batch in 0–255 (before normalisation).

    Channel means and spreads, saturation, the four corners' brightness (sorted) against the
    centre's (dermatoscopes often leave dark round borders). Nothing about sharpness or fine
    texture, which tell how a photo was resized and compressed, not whether it shows a lesion:
    computed at a quarter of the resolution, blind to that detail, and cheaper.
    """
    x = F.avg_pool2d(pixels.float(), 4)
    brightest, darkest = x.max(dim=1).values, x.min(dim=1).values
    saturation = (brightest - darkest) / brightest.clamp_min(1)
    grey = x.mean(dim=1)
    height, width = grey.shape[-2:]
    c = max(1, height // 6)
    corners = torch.stack([grey[:, :c, :c], grey[:, :c, -c:], grey[:, -c:, :c], grey[:, -c:, -c:]], dim=1).mean(
        dim=(2, 3)
    )
    centre = grey[:, height // 3 : 2 * height // 3, width // 3 : 2 * width // 3].mean(dim=(1, 2))
    return torch.cat(
        [
            x.mean(dim=(2, 3)),
            x.std(dim=(2, 3)),
            saturation.mean(dim=(1, 2))[:, None],
            saturation.std(dim=(1, 2))[:, None],
            corners.sort(dim=1).values,
            centre[:, None],
            (corners.mean(dim=1) / centre.clamp_min(1))[:, None],
        ],
        dim=1,
    )


# The blocks whose activations the evidence network reads: the last three. The first two, at 112² and
# 56², cost more to summarise than the classifier's forward pass, and their edges and colours say
# more about the camera than about the picture.
EVIDENCE_BLOCKS = slice(-3, None)


def gate_features(logits: torch.Tensor, blocks: list[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """The evidence network's inputs: per channel mean, spread and peak of the last three blocks,
    the image statistics of ``pixels`` (0–255) and the logits' energy (log-sum-exp)."""
    pooled = [
        torch.cat([b.mean(dim=(2, 3)), b.std(dim=(2, 3)), b.amax(dim=(2, 3))], dim=1) for b in blocks[EVIDENCE_BLOCKS]
    ]
    energy = torch.logsumexp(logits, dim=1, keepdim=True)
    return torch.cat([*pooled, image_statistics(pixels), energy], dim=1)


class EvidenceNet(nn.Module):
    """Standardised gate features → a score; higher means more like the training images."""

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(config.features))
        self.register_buffer("std", torch.ones(config.features))
        self.net = nn.Sequential(
            nn.Linear(config.features, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std).squeeze(1)


class PixelNet(nn.Module):
    """A small CNN on the normalised model input at half resolution → a score."""

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        layers, in_channels = [], 3
        for out_channels in config.channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(F.avg_pool2d(x, 2))
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)).squeeze(1)


class Gate(nn.Module):
    """The evidence network, and the pixel network where the config has channels for one.

    The score is the sum of their scores, each standardised on dermatoscopic validation images.
    """

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        self.config = config
        self.evidence = EvidenceNet(config)
        self.pixels = PixelNet(config) if config.channels else None
        # Mean and standard deviation of each network's scores on dermatoscopic validation images.
        self.register_buffer("scale", torch.tensor([[0.0, 1.0]] * (1 if self.pixels is None else 2)))

    def parts(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """N×k raw scores: from the classifier's evidence, then (with a pixel network) from the input ``x``."""
        scores = [self.evidence(features)]
        if self.pixels is not None:
            scores.append(self.pixels(x))
        return torch.stack(scores, dim=1)

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.parts(features, x))

    def combine(self, parts: torch.Tensor) -> torch.Tensor:
        """N×k raw scores → the gate's score: each standardised, then added."""
        return ((parts - self.scale[:, 0]) / self.scale[:, 1]).sum(dim=1)


@dataclass
class LoadedGate:
    """A fitted gate, in eval mode: refuse an image whose score is below ``threshold``."""

    gate: Gate
    threshold: float
    report: dict[str, Any]

    @torch.inference_mode()
    def scores(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.gate(features.float(), x)
