import io

import numpy as np
import pytest
import torch
from PIL import Image

from ml import preprocessing
from ml.preprocessing import (
    ImageError,
    PreprocessConfig,
    decode,
    decoding_cost,
    normalize,
    open_image,
    prepare,
    reduce_to_source,
    resize,
    shades_of_gray,
    to_pixels,
)
from tests.conftest import EXAMPLES, image_bytes, photo_jpeg
from tests.support.hostile import jpeg_claiming, jpeg_with, png_in_chunks


def preprocess(data: bytes) -> torch.Tensor:
    """Image bytes → the model's 1×3×224×224 input, the steps training and the web app both run."""
    return normalize(prepare(decode(data))).unsqueeze(0)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "JPEG"),
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("RGB", "PNG"),
        ("L", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("I;16", "PNG"),
        ("RGB", "WEBP"),
        ("RGBA", "WEBP"),
    ],
)
def test_every_mode_becomes_a_normalized_rgb_tensor(mode, fmt):
    x = preprocess(image_bytes(mode=mode, fmt=fmt))
    assert x.shape == (1, 3, 224, 224)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_sixteen_bit_greyscale_keeps_its_contrast():
    values = np.full((30, 40), 10000, dtype=np.uint16)
    values[:, :20] = 60000
    image = Image.fromarray(values)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    rgb = open_image(buffer.getvalue())
    assert rgb.getpixel((5, 5))[0] > 200
    assert rgb.getpixel((35, 5))[0] < 60


def test_exif_orientation_is_honoured():
    # Stored landscape with "rotate 90°" in EXIF: a viewer shows it in portrait, and so must we.
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    upright = open_image(buffer.getvalue())
    assert upright.size == (100, 200)
    top, bottom = upright.getpixel((50, 20)), upright.getpixel((50, 180))
    assert top[0] > 200 and top[2] < 60  # red now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_large_jpeg_is_decoded_at_reduced_scale():
    image = open_image(image_bytes(size=(4032, 3024)))
    assert min(image.size) < 3024 / 4  # libjpeg scaled the decode down (draft mode)
    assert prepare(to_pixels(image)).shape == (3, 224, 224)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "invalid_image"),
        (b"not an image at all, just text", "unsupported_format"),
        (image_bytes(fmt="GIF"), "unsupported_format"),
        (image_bytes(fmt="BMP"), "unsupported_format"),
        (image_bytes(fmt="JPEG")[:400], "invalid_image"),
        (image_bytes(fmt="PNG")[:-30], "invalid_image"),
    ],
    ids=["empty", "text", "gif", "bmp", "truncated-jpeg", "truncated-png"],
)
def test_bad_input_raises_a_typed_error(data, code):
    with pytest.raises(ImageError) as error:
        preprocess(data)
    assert error.value.code == code
    assert error.value.message


@pytest.mark.parametrize(
    ("fmt", "limit"), [("PNG", "MAX_LOSSLESS_PIXELS"), ("WEBP", "MAX_LOSSLESS_PIXELS"), ("JPEG", "MAX_PIXELS")]
)
def test_too_many_pixels_is_refused_before_decoding(monkeypatch, fmt, limit):
    monkeypatch.setattr(preprocessing, limit, 100 * 100)
    with pytest.raises(ImageError) as error:
        preprocess(image_bytes(size=(200, 150), fmt=fmt))
    assert error.value.code == "too_many_pixels"
    assert "200×150" in error.value.message


def _flat(size: tuple[int, int], fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 100)).save(buffer, format=fmt, **save)
    return buffer.getvalue()


PROGRESSIVE = image_bytes(progressive=True)  # 200×150, 10 scans
# Files inside every size limit that cost a worker seconds or hundreds of MB to decode,
# each refused from its headers: (bytes, what the message names).
COSTLY = {
    "jpeg-2-mb-of-padding": (jpeg_with(image_bytes(), b"\xff" * 2_000_000), "padding"),
    "jpeg-padding-between-scans": (jpeg_with(PROGRESSIVE, b"\xff" * 2_000_000, before_scan=3), "padding"),
    "jpeg-junk-between-segments": (jpeg_with(image_bytes(), b"\0" * 100_000), "junk"),
    "jpeg-5000-comments": (jpeg_with(image_bytes(), b"\xff\xfe\x00\x02" * 5000), "32 metadata"),
    "jpeg-300-tables": (jpeg_with(image_bytes(), b"\xff\xc4\x00\x02" * 300), "256 marker segments"),
    "jpeg-4000x4000-of-20-scans": (jpeg_claiming(PROGRESSIVE, (4000, 4000), extra_scans=10), "256,000,000"),
    "progressive-jpeg-5100x5000": (jpeg_claiming(PROGRESSIVE, (5100, 5000)), "5100×5000"),
    "png-of-5000-chunks": (png_in_chunks(5000), "4,096 chunks"),
}


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_what_would_cost_too_much_to_decode_is_refused_from_the_headers(name):
    data, named = COSTLY[name]
    with pytest.raises(ImageError) as error:
        decoding_cost(data)
    assert error.value.code == "too_complex"
    assert named in error.value.message


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_lossless_images_are_capped_at_2048_squared(fmt):
    # The model sees 224×224: a bigger PNG or WebP costs time and memory for detail it never uses.
    assert open_image(_flat((2048, 2048), fmt, lossless=True)).size == (2048, 2048)
    with pytest.raises(ImageError) as error:
        decoding_cost(_flat((2049, 2048), fmt, lossless=True))
    assert error.value.code == "too_many_pixels"
    assert "2049×2048" in error.value.message and "4,194,304" in error.value.message


@pytest.mark.parametrize(
    ("data", "cost"),
    [
        (photo_jpeg(), 4032 * 3024),  # a baseline phone photo: one scan
        (photo_jpeg(progressive=True), 4032 * 3024 * 10),
        (_flat((1000, 800), "PNG"), 1000 * 800 * preprocessing.LOSSLESS_PIXEL_SCANS),
    ],
    ids=["baseline-jpeg", "progressive-jpeg", "png"],
)
def test_ordinary_photos_are_read_and_their_cost_counted(data, cost):
    assert decoding_cost(data) == cost
    assert min(open_image(data).size) >= 150


def test_the_committed_examples_and_tolerable_oddities_are_read():
    for path in sorted((EXAMPLES / "images").iterdir()):
        assert open_image(path.read_bytes()).size == (200, 150)
    # A few fill bytes before a marker, and a few comments: the standard allows both.
    assert open_image(jpeg_with(image_bytes(), b"\xff" * 60 + b"\xff\xfe\x00\x02" * 30)).size == (200, 150)
    assert open_image(png_in_chunks(4000)).size == (100, 100)


def test_shades_of_gray_removes_a_colour_cast():
    tinted = torch.zeros(3, 8, 8, dtype=torch.uint8)
    tinted[0], tinted[1], tinted[2] = 200, 150, 100
    corrected = shades_of_gray(tinted).float()
    assert corrected[0].mean() == pytest.approx(corrected[1].mean(), abs=2)
    assert corrected[1].mean() == pytest.approx(corrected[2].mean(), abs=2)


def test_black_image_does_not_divide_by_zero():
    assert torch.isfinite(preprocess(_black_png())).all()


def _black_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_colour_constancy_can_be_switched_off():
    data = image_bytes()
    plain = prepare(decode(data), preprocess=PreprocessConfig(colour_constancy="none"))
    corrected = prepare(decode(data))
    assert not torch.equal(plain, corrected)


@pytest.mark.parametrize(
    ("source", "target"), [((600, 450), (200, 150)), ((504, 378), (200, 150)), ((200, 150), (224, 224))]
)
def test_resize_matches_pillows_bilinear_filter(source, target):
    image = open_image(image_bytes(size=source))
    ours = resize(to_pixels(image), (target[1], target[0]))
    pillow = to_pixels(image.resize(target, Image.Resampling.BILINEAR))
    difference = (ours.int() - pillow.int()).abs()
    assert difference.max() <= 1
    assert (difference > 0).float().mean() < 0.001


def test_pixels_are_channels_last_and_keep_their_aspect_when_reduced():
    pixels = decode(image_bytes(size=(600, 450), fmt="PNG"))
    assert pixels.shape == (3, 450, 600)
    assert pixels.unsqueeze(0).is_contiguous(memory_format=torch.channels_last)
    assert reduce_to_source(pixels).shape == (3, 150, 200)
    assert reduce_to_source(decode(image_bytes(size=(90, 60)))).shape == (3, 60, 90)


def test_tiny_images_still_become_a_model_input():
    assert preprocess(image_bytes(size=(1, 1), fmt="PNG")).shape == (1, 3, 224, 224)
