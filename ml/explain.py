"""Grad-CAM: which part of the image drove the prediction (Selvaraju et al., ICCV 2017)."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ml.efficientnet import EfficientNetLite0
from ml.model import SimpleBNConv


def grad_cam(model: torch.nn.Module, x: torch.Tensor, *, target: int) -> torch.Tensor:
    """A H×W map in [0, 1] of where the last convolutional feature map supports class ``target``.

    ``x`` is one normalized 1×3×H×W input. For SimpleBNConv the map is the last block's before its
    final pooling (14×14 for a 224 input), for EfficientNet-Lite0 the head's (6×6 at 192 pixels);
    it is upsampled to the input size.
    """
    model.eval()
    body, head = _cam_layers(model)
    with torch.enable_grad():
        activations = body(x).detach().requires_grad_(True)
        (gradients,) = torch.autograd.grad(head(activations)[0, target], activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


def _cam_layers(model: torch.nn.Module) -> tuple[Callable, Callable]:
    """The model up to the feature map Grad-CAM reads, and from that map to the logits."""
    if isinstance(model, EfficientNetLite0):
        return model.features, model.classify
    if isinstance(model, SimpleBNConv):
        return model.features[:-1], lambda a: model.classifier(model.features[-1](a))
    raise TypeError(f"no Grad-CAM for {type(model).__name__}")


# The centre of an image: the ellipse whose half-axes are this share of the image's half-width and
# half-height, which covers half its area (pi/4 * r**2 = 1/2). A dermatoscope centres the lesion.
CENTRE_RADIUS = (2 / math.pi) ** 0.5
# Warn when less than this share of the heat lies in that centre: more of it on the outer half of
# the image (skin, hair, the dermatoscope's rim) than on the inner half (ml/MODEL_CARD.md, Grad-CAM).
OFF_CENTRE_BELOW = 0.5


def centre_share(cam: torch.Tensor) -> float:
    """The share of a heatmap's total (H×W, non-negative) inside the central ellipse of half the image's area.

    An even map gives 0.5; a map with no heat at all gives 0.5 too (nothing is off-centre).
    """
    height, width = cam.shape
    y = torch.linspace(-1, 1, height).view(-1, 1)
    x = torch.linspace(-1, 1, width).view(1, -1)
    inside = (x**2 + y**2) <= CENTRE_RADIUS**2
    total = float(cam.sum())
    return float(cam[inside].sum()) / total if total > 0 else 0.5


@dataclass(frozen=True)
class Explanation:
    """A Grad-CAM overlay (3×H×W uint8) and where its heat lies.

    ``off_centre`` when less than :data:`OFF_CENTRE_BELOW` of the heat is in the image's centre
    (:func:`centre_share`): most of it lies outside where a dermatoscope puts the lesion.
    """

    overlay: torch.Tensor
    centre_share: float
    off_centre: bool


# Viridis (van der Walt & Smith, matplotlib's default): perceptually uniform and readable with
# colour-vision deficiencies. Five anchors, interpolated; written out so that serving needs no matplotlib.
VIRIDIS = (
    torch.tensor([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=torch.float).T / 255
)


def viridis(values: torch.Tensor) -> torch.Tensor:
    """H×W in [0, 1] → 3×H×W colours in [0, 1] on the viridis map (dark purple → yellow)."""
    position = values.clamp(0, 1) * (VIRIDIS.shape[1] - 1)
    low = position.floor().long().clamp(max=VIRIDIS.shape[1] - 2)
    t = (position - low).unsqueeze(0)
    return VIRIDIS[:, low] * (1 - t) + VIRIDIS[:, low + 1] * t


def overlay(
    pixels: torch.Tensor, cam: torch.Tensor, *, threshold: float = 0.25, min_alpha: float = 0.55, max_alpha: float = 0.8
) -> torch.Tensor:
    """Blend a heatmap (H×W in [0, 1]) over a 3×H×W uint8 image; returns 3×H×W uint8.

    Below ``threshold`` the image shows through untouched, so that the coloured areas are the ones
    that mattered. From ``threshold`` to the peak the colour runs over the whole viridis map, so the
    faintest coloured area is the legend's dark purple and the hottest its yellow, and it grows
    more opaque with the heat, from ``min_alpha`` (opaque enough that the purple reads as purple,
    not as a grey wash over the skin) to ``max_alpha``.
    """
    heat = ((cam - threshold) / (1 - threshold)).clamp(0, 1)
    alpha = torch.where(cam >= threshold, min_alpha + (max_alpha - min_alpha) * heat, 0.0).unsqueeze(0)
    colours = viridis(heat) * 255
    return ((1 - alpha) * pixels.float() + alpha * colours).round().clamp(0, 255).to(torch.uint8)


def explain(model: torch.nn.Module, x: torch.Tensor, pixels: torch.Tensor, *, target: int) -> Explanation:
    """Grad-CAM of class ``target`` for one normalized 1×3×H×W input ``x``, over its 3×H×W uint8 ``pixels``."""
    cam = grad_cam(model, x, target=target)
    share = centre_share(cam)
    return Explanation(overlay=overlay(pixels, cam), centre_share=share, off_centre=share < OFF_CENTRE_BELOW)
