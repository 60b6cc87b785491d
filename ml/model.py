"""SimpleBNConv: the small five-block CNN of the original DermAI demo (142,791 parameters)."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a SimpleBNConv; stored in every checkpoint."""

    num_classes: int = 7
    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    image_size: int = 224
    dropout: float = 0.5


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` as two element-wise maxima (row pairs, then column pairs): the same output.

    PyTorch's CPU max-pooling kernel also computes the argmax indices and branches on every value;
    on real images it took about 40 % of this model's forward pass. This takes a fraction of that.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor odd sizes, as MaxPool2d does
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class SimpleBNConv(nn.Module):
    """Five blocks of Conv3x3 → ReLU → BatchNorm → MaxPool, then dropout and one linear layer.

    The block order (ReLU before BatchNorm) is the original demo's and is kept so that its
    weights and ours are the same architecture.
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        blocks = []
        in_channels = 3
        for out_channels in config.channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(out_channels),
                MaxPool2x2(),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        side = config.image_size // 2 ** len(config.channels)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(in_channels * side * side, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a normalized N×3×224×224 batch to N×num_classes logits."""
        return self.classifier(self.features(x))


ARCHITECTURES = {"SimpleBNConv": SimpleBNConv}
