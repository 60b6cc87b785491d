"""One preprocessing path from image bytes to a normalized model input, shared by every caller."""

import io
import math
import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# A 48-megapixel phone photo is 8064×6048; anything beyond this is refused before decoding.
MAX_PIXELS = 50_000_000
# PNG and WebP always decode every pixel. The model sees 224×224, made from a photo first reduced
# to a 150-pixel short side (PreprocessConfig), so 2048×2048 already holds 13 times the detail it
# uses; it decodes (12 MB of RGB) and shrinks in about 140 ms here, 4096×4096 in 0.6 s and 200 MB.
MAX_LOSSLESS_PIXELS = 2048 * 2048

# Decoding work is counted in pixel-scans: libjpeg passes over every coefficient of a JPEG once per
# scan, whatever the scale Image.draft asks it to draw at. A 4032×3024 photo is 12 million (baseline,
# one scan: about 25 ms here) or 122 million (progressive, 10 scans: about 90 ms); a 7071×7071
# progressive JPEG of 64 scans, 3.2 billion, took 4.5 s.
MAX_JPEG_PIXEL_SCANS = 256_000_000
# A progressive (or any multi-scan) JPEG also keeps every coefficient of the whole image in memory,
# 2 bytes a sample whatever the scale it is drawn at: 150 MB (4:2:0) to 290 MB (4:4:4) at 50
# megapixels. This bounds it to half that.
MAX_MULTISCAN_JPEG_PIXELS = 25_000_000
# One PNG or WebP pixel costs about as much to decode and shrink as 32 JPEG pixel-scans (30–33 ns
# here, against 0.7 ns for a progressive JPEG's pixel-scan and 2 ns for a baseline one's).
LOSSLESS_PIXEL_SCANS = 32

# A JPEG's marker stream is walked before Pillow reads it (Pillow's own walk goes byte by byte in
# Python: 11 MB of padding took 8–11 s, 2.9 million empty comments 6.4 s). Cameras write 10 to 20
# segments, a progressive JPEG of 64 scans about 140; 256 of any kind cost Pillow about a millisecond.
MAX_JPEG_SEGMENTS = 256
# Metadata (APPn) and comment (COM) segments: EXIF, XMP, ICC, Photoshop's, each at most 64 KB. Pillow
# parses some of them in Python; 32 hold 2 MB of metadata.
MAX_JPEG_METADATA_SEGMENTS = 32
# A progressive JPEG is decoded once per scan: cameras write about 10.
MAX_JPEG_SCANS = 64
# Bytes between segments that are not part of one: fill bytes (0xFF) before a marker, which the
# standard allows and encoders hardly ever write, and junk, which it does not. libjpeg re-reads a run
# of fill bytes from its start each time more data arrives: megabytes of it cost it seconds too.
MAX_JPEG_PADDING_BYTES = 64
# PNG chunks, walked from their headers without decompressing anything (Pillow spends a few µs on
# each: 900,000 tiny ones took 4.2 s). libpng writes image data in 8 KB chunks, so the largest PNG under
# the lossless cap (2048×2048 of 16-bit RGBA, 32 MB) holds about 4,000.
MAX_PNG_CHUNKS = 4096

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What the file starts with when it claims to be one of the accepted formats.
SIGNATURES = (JPEG_SIGNATURE, PNG_SIGNATURE)
# Our own check runs first with a clear message; Pillow's guard stays on as a second line.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageErrorCode(StrEnum):
    """Why an image cannot be used: stable codes, which a caller (the web's error contract) maps one by one."""

    INVALID_IMAGE = "invalid_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_COMPLEX = "too_complex"
    OUT_OF_SCOPE = "out_of_scope"


class Refusal(StrEnum):
    """Why an image is ``out_of_scope``: the cheap guard's reasons (:mod:`ml.guard`) and the learned gate's."""

    TOO_SMALL = "too_small"
    FLAT_COLOUR = "flat_colour"
    FEW_COLOURS = "few_colours"
    GREYSCALE = "greyscale"
    NO_TEXTURE = "no_texture"
    NOT_DERMATOSCOPIC = "not_dermatoscopic"  # the out-of-distribution gate (ml.gate)


class ImageError(ValueError):
    """An image that cannot be used, with a stable :class:`ImageErrorCode` and a human message.

    A refused image (``out_of_scope``) also says why, as a :class:`Refusal`.
    """

    def __init__(self, code: ImageErrorCode, message: str, *, reason: Refusal | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


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
    """Decode JPEG, PNG or WebP bytes into an upright RGB image, or raise :class:`ImageError`.

    What would cost too much to decode (pixels, scans, segments, chunks, padding) is refused from
    the headers, before any pixel is decoded.
    """
    image, _cost = _open(data)
    if image.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 12-megapixel photo costs a fraction.
        image.draft("RGB", (preprocess.source_short_side, preprocess.source_short_side))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(ImageErrorCode.INVALID_IMAGE, f"the image data is corrupt or truncated ({error})") from None
    return _to_rgb(image)


def decoding_cost(data: bytes) -> int:
    """What decoding ``data`` would cost, in JPEG pixel-scans (:data:`MAX_JPEG_PIXEL_SCANS`; a PNG or
    WebP pixel counts :data:`LOSSLESS_PIXEL_SCANS`), read from its headers alone.

    Raises :class:`ImageError` for everything :func:`open_image` refuses before decoding.
    """
    return _open(data)[1]


def _open(data: bytes) -> tuple[Image.Image, int]:
    """The image opened from its headers (nothing decoded) and its decoding cost, or :class:`ImageError`."""
    if not data:
        raise ImageError(ImageErrorCode.INVALID_IMAGE, "the file is empty")
    jpeg = data.startswith(JPEG_SIGNATURE)
    # Walked here first: Pillow walks a JPEG's markers and a PNG's chunks in Python.
    scans, progressive = _jpeg_scans(data) if jpeg else (0, False)
    if data.startswith(PNG_SIGNATURE):
        _check_png_chunks(data)
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        if data.startswith(SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise ImageError(ImageErrorCode.INVALID_IMAGE, "the image data is truncated or corrupt") from None
        raise ImageError(
            ImageErrorCode.UNSUPPORTED_FORMAT, "unsupported or unrecognised image format; expected JPEG, PNG or WebP"
        ) from None
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(ImageErrorCode.INVALID_IMAGE, f"the image data is corrupt ({error})") from None
    if getattr(image, "n_frames", 1) > 1:
        raise ImageError(ImageErrorCode.UNSUPPORTED_FORMAT, "animated images are not supported; send a single photo")
    width, height = image.size
    if not jpeg:
        if width * height > MAX_LOSSLESS_PIXELS:
            raise _too_many_pixels(image.size, MAX_LOSSLESS_PIXELS)
        return image, width * height * LOSSLESS_PIXEL_SCANS
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(image.size, MAX_PIXELS)
    if (progressive or scans > 1) and width * height > MAX_MULTISCAN_JPEG_PIXELS:
        raise ImageError(
            ImageErrorCode.TOO_COMPLEX,
            f"the progressive JPEG {width}×{height} has more than {MAX_MULTISCAN_JPEG_PIXELS:,} pixels; "
            "save it as a baseline JPEG",
        )
    if width * height * scans > MAX_JPEG_PIXEL_SCANS:
        raise ImageError(
            ImageErrorCode.TOO_COMPLEX,
            f"the JPEG {width}×{height} of {scans} scans is {width * height * scans:,} pixel-scans to decode; "
            f"at most {MAX_JPEG_PIXEL_SCANS:,}",
        )
    return image, width * height * scans


# Markers without a length: TEM, RST0–7 and SOI; and the start-of-frame markers of progressive JPEGs.
JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])
JPEG_PROGRESSIVE_MARKERS = frozenset([0xC2, 0xC6, 0xCA, 0xCE])
# Where a scan's entropy-coded data ends: a 0xFF that is neither stuffing (0xFF00) nor a restart marker.
JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _jpeg_scans(data: bytes) -> tuple[int, bool]:
    """Walk a JPEG's markers up to EOI without decoding anything: (scans, progressive).

    Raises :class:`ImageError` (``too_complex``) for padding or junk between segments, or too many
    segments, metadata segments or scans. A walk that runs out of data stops: a truncated file is
    Pillow's to refuse.
    """
    scans = segments = metadata = padding = 0
    progressive = False
    position = 2  # after SOI
    while position < len(data):
        marker_at = data.find(b"\xff", position)
        if marker_at < 0:
            break
        # Junk before the 0xFF, fill bytes after it; looked at no further than the allowance.
        window = data[marker_at : marker_at + MAX_JPEG_PADDING_BYTES + 2]
        fill = len(window) - len(window.lstrip(b"\xff")) - 1
        padding += marker_at - position + fill
        code_at = marker_at + fill + 1
        code = data[code_at] if code_at < len(data) else None
        if code == 0x00:  # a stuffed 0xFF outside a scan: junk too
            padding += 2
        if padding > MAX_JPEG_PADDING_BYTES:
            raise ImageError(
                ImageErrorCode.TOO_COMPLEX,
                f"the JPEG has more than {MAX_JPEG_PADDING_BYTES} bytes of padding or junk between its segments",
            )
        if code is None or code == 0xD9:  # the data, or the image (EOI), ends
            break
        position = code_at + 1
        if code == 0x00:
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageError(ImageErrorCode.TOO_COMPLEX, f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")
        if code in JPEG_STANDALONE_MARKERS:
            continue
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            raise ImageError(
                ImageErrorCode.INVALID_IMAGE, f"the JPEG segment at byte {marker_at:,} has length {length}"
            )
        position += length
        if 0xE0 <= code <= 0xEF or code == 0xFE:  # APPn, COM
            metadata += 1
            if metadata > MAX_JPEG_METADATA_SEGMENTS:
                raise ImageError(
                    ImageErrorCode.TOO_COMPLEX,
                    f"the JPEG has more than {MAX_JPEG_METADATA_SEGMENTS} metadata and comment segments",
                )
        elif code in JPEG_PROGRESSIVE_MARKERS:
            progressive = True
        elif code == 0xDA:  # SOS: the scan's header, then its entropy-coded data up to the next marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(ImageErrorCode.TOO_COMPLEX, f"the JPEG has more than {MAX_JPEG_SCANS} scans")
            end = JPEG_SCAN_END.search(data, position)
            if end is None:
                break
            position = end.start()
    return scans, progressive


def _check_png_chunks(data: bytes) -> None:
    """Count a PNG's chunks from their headers, decompressing nothing; ``too_complex`` beyond the limit."""
    chunks, position = 0, len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ImageError(ImageErrorCode.TOO_COMPLEX, f"the PNG has more than {MAX_PNG_CHUNKS:,} chunks")
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + int.from_bytes(data[position : position + 4], "big")


def _too_many_pixels(size: tuple[int, int] | None = None, limit: int = MAX_PIXELS) -> ImageError:
    shown = f"{size[0]}×{size[1]} " if size else ""
    return ImageError(ImageErrorCode.TOO_MANY_PIXELS, f"the image {shown}has more than {limit:,} pixels")


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
