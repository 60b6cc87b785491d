"""Out-of-distribution gate: refuse photos unlike the dermatoscopic images the classifier knows.

The classifier answers one of seven diagnoses for anything. The gate reads the classifier's own
evidence for one image — the mean and spread of every block's activations and the energy of the
logits, all from the same forward pass — and a small network scores how much it resembles the
dermatoscopic images the model was made for. ``python -m ml.fit_gate`` fits it for one checkpoint
and stores it inside that checkpoint, since its scores mean something for that model's features only.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class GateConfig:
    """The gate network's shape: ``features`` inputs → ``hidden`` ReLU units → one in-scope score."""

    features: int
    hidden: int = 64
    dropout: float = 0.3


def gate_features(logits: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """N×F gate inputs: per channel mean and standard deviation of every block, and the logits' energy.

    The energy (log-sum-exp of the logits, Liu et al. 2020) is high where the classifier has seen
    many images like this one; the block statistics describe texture and colour at five scales.
    """
    pooled = [torch.cat([b.mean(dim=(2, 3)), b.std(dim=(2, 3))], dim=1) for b in blocks]
    return torch.cat([*pooled, torch.logsumexp(logits, dim=1, keepdim=True)], dim=1)


class Gate(nn.Module):
    """Standardised gate features → a score; higher means more like the training images."""

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        self.config = config
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


@dataclass
class LoadedGate:
    """A fitted gate, in eval mode: refuse an image whose score is below ``threshold``."""

    gate: Gate
    threshold: float
    report: dict[str, Any]

    @torch.inference_mode()
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.gate(features.float())
