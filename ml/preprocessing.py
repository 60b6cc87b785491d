"""One preprocessing path from image bytes to a normalized model input, shared by every caller."""

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# A 48-megapixel phone photo is 8064×6048; anything beyond this is refused before decoding.
MAX_PIXELS = 50_000_000
# JPEG decodes at 1/8 scale when asked (Image.draft), so a large JPEG costs little; PNG and WebP
# always decode every pixel: their cap bounds a request's memory and time (a 4096×4096 RGB image
# is 50 MB). Anything bigger is refused before decoding.
MAX_LOSSLESS_PIXELS = 4096 * 4096
# A progressive JPEG is decoded once per scan: cameras write about 10; thousands keep a worker
# busy for seconds per kilobyte. Counting SOS markers is an upper bound (a thumbnail adds its own).
MAX_JPEG_SCANS = 64
SOS_MARKER = b"\xff\xda"
# What the file starts with when it claims to be one of the accepted formats.
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
# Our own check runs first with a clear message; Pillow's guard stays on as a second line.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """An image that cannot be used, with a stable machine-readable ``code`` and a human message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a model input; stored in every checkpoint and read back from it."""

    size: int = 224
    # HAM10000 as shipped here is 200×150. Larger photos are first reduced to this short side so
    # that the model always sees the level of detail it was trained on, whatever the camera.
    source_short_side: int = 150
    colour_constancy: str = "shades_of_gray"
    shades_of_gray_power: int = 6
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def open_image(data: bytes, *, preprocess: PreprocessConfig = PreprocessConfig()) -> Image.Image:
    """Decode JPEG, PNG or WebP bytes into an upright RGB image, or raise :class:`ImageError`."""
    if not data:
        raise ImageError("invalid_image", "the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        if data.startswith(SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise ImageError("invalid_image", "the image data is truncated or corrupt") from None
        raise ImageError(
            "unsupported_format", "unsupported or unrecognised image format; expected JPEG, PNG or WebP"
        ) from None
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError("invalid_image", f"the image data is corrupt ({error})") from None
    if image.width * image.height > (MAX_PIXELS if image.format == "JPEG" else MAX_LOSSLESS_PIXELS):
        raise _too_many_pixels(image.size, MAX_PIXELS if image.format == "JPEG" else MAX_LOSSLESS_PIXELS)
    scans = data.count(SOS_MARKER) if image.format == "JPEG" else 0
    if scans > MAX_JPEG_SCANS:
        raise ImageError("too_complex", f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded")
    if getattr(image, "n_frames", 1) > 1:
        raise ImageError("unsupported_format", "animated images are not supported; send a single photo")
    if image.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 12-megapixel photo costs a fraction.
        image.draft("RGB", (preprocess.source_short_side, preprocess.source_short_side))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError("invalid_image", f"the image data is corrupt or truncated ({error})") from None
    return _to_rgb(image)


def _too_many_pixels(size: tuple[int, int] | None = None, limit: int = MAX_PIXELS) -> ImageError:
    shown = f"{size[0]}×{size[1]} " if size else ""
    return ImageError("too_many_pixels", f"the image {shown}has more than {limit:,} pixels")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit greyscale: scale to 8 bits rather than clip everything above 255 to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def to_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as a 3×H×W uint8 tensor, stored channels-last (the model's memory layout)."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def decode(data: bytes, *, preprocess: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """Image bytes → upright 3×H×W uint8 RGB pixels, or :class:`ImageError`."""
    return to_pixels(open_image(data, preprocess=preprocess))


def resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of 3×H×W uint8 pixels to ``size`` (height, width), antialiased when shrinking.

    The same filter as Pillow's ``Image.resize(..., BILINEAR)`` (equal values, at most an
    occasional ±1), through PyTorch's vectorised uint8 kernel: several times faster.
    """
    return F.interpolate(pixels.unsqueeze(0), size=size, mode="bilinear", antialias=True)[0]


def reduce_to_source(pixels: torch.Tensor, *, preprocess: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """Shrink pixels whose short side exceeds the training data's, keeping the aspect ratio."""
    height, width = pixels.shape[-2:]
    if min(height, width) <= preprocess.source_short_side:
        return pixels
    scale = preprocess.source_short_side / min(height, width)
    return resize(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))


def prepare(pixels: torch.Tensor, *, preprocess: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """Resize 3×H×W uint8 pixels and correct their colour cast; returns 3×size×size uint8."""
    pixels = resize(reduce_to_source(pixels, preprocess=preprocess), (preprocess.size, preprocess.size))
    if preprocess.colour_constancy == "shades_of_gray":
        pixels = shades_of_gray(pixels, power=preprocess.shades_of_gray_power)
    elif preprocess.colour_constancy != "none":
        raise ValueError(
            f"unknown colour constancy {preprocess.colour_constancy!r}; expected 'shades_of_gray' or 'none'"
        )
    return pixels


def shades_of_gray(pixels: torch.Tensor, *, power: int = 6) -> torch.Tensor:
    """Shades-of-gray colour constancy (Finlayson & Trezzi, 2004) on a …×3×H×W uint8 tensor.

    Dermatoscopes and cameras tint images differently; dividing out the illuminant estimated by
    the Minkowski p-norm of each channel removes most of that tint.
    """
    x = pixels.float()
    powered = x
    for _ in range(power - 1):  # repeated products: several times faster than a float pow
        powered = powered * x
    illuminant = powered.mean(dim=(-2, -1), keepdim=True).pow(1 / power).clamp_min(1.0)
    illuminant = illuminant / illuminant.norm(dim=-3, keepdim=True)
    return (x / (illuminant * math.sqrt(3))).clamp_(0, 255).round_().to(torch.uint8)


def normalize(pixels: torch.Tensor, *, preprocess: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """Turn a …×3×H×W uint8 (or 0–255 float) tensor into the float input the model expects."""
    std = torch.tensor(preprocess.std, device=pixels.device).view(3, 1, 1) * 255
    mean = torch.tensor(preprocess.mean, device=pixels.device).view(3, 1, 1) * 255
    return torch.addcmul(-mean / std, pixels.float(), 1 / std)  # (x - mean) / std in one pass
