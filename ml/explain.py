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


def jet(values: torch.Tensor) -> torch.Tensor:
    """The classic blue → cyan → yellow → red colour map: H×W in [0, 1] → 3×H×W in [0, 1].

    Written out rather than imported so that serving does not load matplotlib.
    """
    centres = torch.tensor([3.0, 2.0, 1.0]).view(3, 1, 1)  # red, green, blue peak at 3/4, 1/2, 1/4
    return (1.5 - (4 * values.unsqueeze(0) - centres).abs()).clamp(0, 1)


def overlay(pixels: torch.Tensor, cam: torch.Tensor, *, alpha: float = 0.45) -> torch.Tensor:
    """Blend a heatmap (H×W in [0, 1]) over a 3×H×W uint8 image; returns 3×H×W uint8."""
    colours = jet(cam) * 255
    return ((1 - alpha) * pixels.float() + alpha * colours).round().clamp(0, 255).to(torch.uint8)
