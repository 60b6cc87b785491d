"""Out-of-scope guard: refuse images that are clearly not photos of a skin lesion.

The model answers one of seven diagnoses for anything it is given. Documents, screenshots, flat
colours, gradients and tiny images are refused instead, with five cheap statistics measured at the
training resolution. Thresholds were set on HAM10000 and on generated non-lesion images; measure
them with ``python -m ml.guard_report --data DIR``.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ml.preprocessing import ImageError, ImageErrorCode, Refusal, reduce_to_source


@dataclass(frozen=True)
class GuardConfig:
    """The cheap guard's limits, set on HAM10000 and generated graphics (see ``python -m ml.guard_report``)."""

    min_side: int = 64  # pixels of the uploaded image
    max_dominant_colour: float = 0.35  # share of the most common colour (documents, screenshots, flat fills)
    min_colours: int = 40  # distinct colours at 5 bits per channel (checkerboards, clip art)
    min_texture: float = 0.75  # median |Laplacian|: skin has fine texture, graphics and gradients do not
    max_smooth_share: float = 0.8  # share of pixels with |Laplacian| ≤ 2 (smooth gradients)
    min_colourfulness: float = 4.0  # Hasler–Süsstrunk colourfulness (greyscale scans and text)


def image_statistics(pixels: torch.Tensor) -> dict[str, float]:
    """The statistics the guard decides on (3×H×W uint8 pixels), at the 150-px resolution of
    HAM10000 that its thresholds were set at."""
    # The channel planes as they lie in memory (3×H×W), each under glibc's default mmap threshold.
    planes = reduce_to_source(pixels).numpy()
    r, g, b = planes.astype(np.int32)
    red, green, blue = planes.astype(np.float32)
    grey = red * np.float32(0.299) + green * np.float32(0.587) + blue * np.float32(0.114)
    laplacian = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    counts = np.bincount(((r >> 2) << 12 | (g >> 2) << 6 | (b >> 2)).ravel())  # 6 bits per channel
    colours = np.count_nonzero(np.bincount(((r >> 3) << 10 | (g >> 3) << 5 | (b >> 3)).ravel()))  # 5 bits
    rg = red - green
    yb = 0.5 * (red + green) - blue
    size, low, high = laplacian.size, (laplacian.size - 1) // 2, laplacian.size // 2
    # The median as np.median takes it (the mean of the one or two middle values), by partition, not sort.
    texture = float(np.partition(laplacian, [low, high], axis=None)[low : high + 1].mean()) if size else 0.0
    return {
        "dominant_colour": float(counts.max() / r.size),
        "colours": float(colours),
        "texture": texture,
        "smooth_share": float(np.count_nonzero(laplacian <= 2) / size) if size else 1.0,
        "colourfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
    }


# Why an image is refused, in words (the web has its own, translated, for each Refusal).
REASONS = {
    Refusal.TOO_SMALL: "the image is too small to judge",
    Refusal.FLAT_COLOUR: "one flat colour covers much of the image, as in documents, screenshots or fills",
    Refusal.FEW_COLOURS: "the image has too few colours for a photograph",
    Refusal.GREYSCALE: "the image is greyscale, like a scan or text",
    Refusal.NO_TEXTURE: "the image has no skin texture; it looks like a graphic or a gradient",
    Refusal.NOT_DERMATOSCOPIC: "the out-of-distribution gate finds it unlike the dermatoscopic images the model knows",
}


def out_of_scope_reason(pixels: torch.Tensor, *, config: GuardConfig = GuardConfig()) -> Refusal | None:
    """Why 3×H×W uint8 ``pixels`` are clearly not a dermatoscopic lesion photo, or None when they may be."""
    height, width = pixels.shape[-2:]
    if min(height, width) < config.min_side:
        return Refusal.TOO_SMALL
    stats = image_statistics(pixels)
    if stats["dominant_colour"] > config.max_dominant_colour:
        return Refusal.FLAT_COLOUR
    if stats["colours"] < config.min_colours:
        return Refusal.FEW_COLOURS
    if stats["colourfulness"] < config.min_colourfulness:
        return Refusal.GREYSCALE
    if stats["texture"] < config.min_texture or stats["smooth_share"] > config.max_smooth_share:
        return Refusal.NO_TEXTURE
    return None


def check_in_scope(pixels: torch.Tensor, *, config: GuardConfig = GuardConfig()) -> None:
    """Raise :class:`ImageError` with the code ``out_of_scope`` (and the reason) for a clearly non-lesion image."""
    reason = out_of_scope_reason(pixels, config=config)
    if reason is not None:
        raise out_of_scope_error(reason)


def out_of_scope_error(reason: Refusal) -> ImageError:
    """The error for an image refused for ``reason``."""
    message = f"this does not look like a dermatoscopic photo of a skin lesion: {REASONS[reason]}"
    return ImageError(ImageErrorCode.OUT_OF_SCOPE, message, reason=reason)
