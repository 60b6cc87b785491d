"""SimpleBNConv, the original demo's small CNN (142,791 parameters), and the architectures a checkpoint may hold."""

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ml.efficientnet import EfficientNetConfig, EfficientNetLite0


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
    on real images it took a large share of this model's forward pass (docs/benchmarks.md).
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


class FoldedBlock(nn.Module):
    """One trained block for inference: Conv3x3 → ReLU → BatchNorm → MaxPool, computed as
    Conv3x3 with the BatchNorm scale folded in → MaxPool → ReLU → + the BatchNorm shift.

    With every BatchNorm scale positive the two are the same function (scaling by s > 0 commutes
    with ReLU; max-pooling commutes with ReLU and with adding a constant), up to float rounding.
    BatchNorm disappears, and ReLU and the shift run on a quarter of the values.
    """

    def __init__(self, conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, padding=1)
        self.conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        self.conv.bias.copy_(conv.bias * scale)
        self.register_buffer("shift", shift.view(-1, 1, 1).clone())
        self.pool = MaxPool2x2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x)).clamp_min_(0).add_(self.shift)


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the output of every block, for a :class:`SimpleBNConv` or its folded form, or of
    every stage for an :class:`EfficientNetLite0`.

    Both SimpleBNConv forms compute the same block outputs, so a gate fitted on one serves the other.
    """
    if isinstance(model, EfficientNetLite0):
        return model.forward_with_features(x)
    if isinstance(model, SimpleBNConv):
        layers = list(model.features)
        blocks, head = [nn.Sequential(*layers[i : i + 4]) for i in range(0, len(layers), 4)], model.classifier
    else:
        blocks, head = list(model)[:-1], model[-1]
    outputs = []
    for block in blocks:
        x = block(x)
        outputs.append(x)
    return head(x), outputs


@torch.no_grad()
def fold_for_inference(model: nn.Module) -> nn.Module:
    """A faster module with the logits of ``model`` in eval mode, to float rounding (tests check it).

    Returns ``model`` itself when a BatchNorm scale is not positive, where folding is not exact.
    Training, Grad-CAM and anything else that needs the original layers use ``model``.
    Other architectures (the teacher) are returned as they are.
    """
    if not isinstance(model, SimpleBNConv):
        return model
    layers = list(model.features)
    blocks = []
    for conv, norm in zip(layers[0::4], layers[2::4]):
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        if not (scale > 0).all():
            return model
        blocks.append(FoldedBlock(conv, scale, norm.bias - norm.running_mean * scale))
    folded = nn.Sequential(*blocks, copy.deepcopy(model.classifier))
    return folded.to(device=layers[0].weight.device, memory_format=torch.channels_last).eval()


# Checkpoint "arch" name → (model class, its config class).
ARCHITECTURES = {
    "SimpleBNConv": (SimpleBNConv, ModelConfig),
    "EfficientNetLite0": (EfficientNetLite0, EfficientNetConfig),
}
