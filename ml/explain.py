"""Grad-CAM: which part of the image drove the prediction (Selvaraju et al., ICCV 2017)."""

import torch
import torch.nn.functional as F

from ml.model import SimpleBNConv


def grad_cam(model: SimpleBNConv, x: torch.Tensor, *, target: int) -> torch.Tensor:
    """A H×W map in [0, 1] of where the last convolutional block supports class ``target``.

    ``x`` is one normalized 1×3×H×W input. The map is taken from the last block before its
    final pooling (14×14 for a 224 input) and upsampled to the input size.
    """
    model.eval()
    with torch.enable_grad():
        activations = model.features[:-1](x).detach().requires_grad_(True)
        logits = model.classifier(model.features[-1](activations))
        (gradients,) = torch.autograd.grad(logits[0, target], activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


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
    pixels: torch.Tensor, cam: torch.Tensor, *, threshold: float = 0.25, max_alpha: float = 0.65
) -> torch.Tensor:
    """Blend a heatmap (H×W in [0, 1]) over a 3×H×W uint8 image; returns 3×H×W uint8.

    Below ``threshold`` the image shows through untouched, so that the coloured areas are the ones
    that mattered; above it the colour grows more opaque with the heat, up to ``max_alpha``.
    """
    alpha = ((cam - threshold) / (1 - threshold)).clamp(0, 1) * max_alpha
    alpha = torch.where(cam >= threshold, alpha.clamp_min(0.25), alpha).unsqueeze(0)
    colours = viridis(cam) * 255
    return ((1 - alpha) * pixels.float() + alpha * colours).round().clamp(0, 255).to(torch.uint8)
