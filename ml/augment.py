"""Batch augmentation on tensors (CPU or GPU): geometry and colour suited to dermoscopy; simulated uploads."""

import io
import math
import random

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


def random_affine(
    images: torch.Tensor, *, scale: tuple[float, float] = (0.8, 1.25), shift: float = 0.1
) -> torch.Tensor:
    """Rotate by any angle, flip, zoom and shift every image of an N×C×H×W float batch.

    A lesion has no "up", so every rotation and mirror image is as real as the original.
    One ``grid_sample`` call does the whole batch; borders are filled by reflection.
    """
    n = images.shape[0]
    device = images.device
    angle = torch.rand(n, device=device) * 2 * math.pi
    zoom = torch.empty(n, device=device).uniform_(math.log(scale[0]), math.log(scale[1])).exp()
    flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, torch.empty(n, device=device).uniform_(-shift, shift)], dim=1),
            torch.stack([sin * flip, cos, torch.empty(n, device=device).uniform_(-shift, shift)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(
    images: torch.Tensor, *, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2
) -> torch.Tensor:
    """Random brightness, contrast and saturation per image of an N×3×H×W batch in 0–255."""
    n = images.shape[0]

    def factor(strength: float) -> torch.Tensor:
        return torch.empty(n, 1, 1, 1, device=images.device).uniform_(1 - strength, 1 + strength)

    images = images * factor(brightness)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor(contrast) + mean
    grey = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    images = (images - grey) * factor(saturation) + grey
    return images.clamp(0, 255)


def random_resolution(
    images: torch.Tensor, short_sides: torch.Tensor, *, low: int, probability: float = 0.5
) -> torch.Tensor:
    """Blur sharper images of an N×C×H×W float batch down to a random lower level of detail.

    An image whose source had ``short_sides[i]`` pixels is, with ``probability``, shrunk as if its
    source had a random short side between ``low`` and that, then enlarged back. Mixed with
    low-resolution data from another site, this keeps "blurry" from meaning "that site".
    """
    height, width = images.shape[-2:]
    chosen = (short_sides > low) & (torch.rand(len(images), device=images.device) < probability)
    out = images.clone()
    for i in chosen.nonzero().flatten().tolist():
        side = torch.empty(()).uniform_(low, float(short_sides[i])).item()
        scale = side / float(short_sides[i])
        small = F.interpolate(
            images[i : i + 1],
            size=(max(1, round(height * scale)), max(1, round(width * scale))),
            mode="bilinear",
            antialias=True,
        )
        out[i] = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0]
    return out


def augment(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 batch → augmented float batch in 0–255, ready for :func:`ml.preprocessing.normalize`."""
    return colour_jitter(random_affine(pixels.float()))


DIHEDRAL_VIEWS = 8  # the flips and quarter turns of a square: a lesion has no "up"


def dihedral(images: torch.Tensor, views: int = DIHEDRAL_VIEWS) -> list[torch.Tensor]:
    """The first ``views`` of the eight flips and quarter turns of a batch, for test-time augmentation.

    In this order: the batch, its mirror, both turned half-way, then the quarter and three-quarter
    turns and their mirrors; any prefix holds each view with its mirror, up to an odd count.
    """
    if not 1 <= views <= DIHEDRAL_VIEWS:
        raise ValueError(f"views must be between 1 and {DIHEDRAL_VIEWS}, not {views}")
    out: list[torch.Tensor] = []
    for quarter_turns in (0, 2, 1, 3):
        if len(out) >= views:
            break
        turned = torch.rot90(images, quarter_turns, dims=(-2, -1)) if quarter_turns else images
        out += [turned, turned.flip(-1)] if views - len(out) > 1 else [turned]
    return out


def simulated_upload(image: Image.Image, rng: random.Random) -> bytes:
    """``image`` as a person might upload it: rescaled, sharpened or blurred, turned, saved as a JPEG.

    The lesion images for development are small copies, each made one way; uploads are larger
    exports from other cameras and software, with their own sharpening and compression. Seen
    through the site's path (which reduces every upload to the training scale), these views keep
    sharpness and JPEG traces from telling "lesion" from "not a lesion".
    """
    scale = min(math.exp(rng.uniform(math.log(0.75), math.log(4.0))), 1600 / max(image.size))  # a phone export at most
    size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
    resample = rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS])
    image = image.convert("RGB").resize(size, resample)
    effect = rng.random()
    if effect < 0.35:  # radius in pixels of the training scale, whatever the size of this copy
        image = image.filter(
            ImageFilter.UnsharpMask(radius=rng.uniform(0.5, 2.0) * scale, percent=rng.randint(50, 200))
        )
    elif effect < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * scale))
    turn = rng.choice([None, *Image.Transpose])  # quarter turns and mirrors: no filled corners
    image = image if turn is None else image.transpose(turn)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(60, 98))
    return buffer.getvalue()
