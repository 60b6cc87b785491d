"""Generated images that are not dermatoscopic photos: negatives for the gate, and for tests."""

import io
import random
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZES = [(200, 150), (320, 240), (640, 480), (800, 600), (1024, 768), (1200, 900)]
WORDS = "the quick brown fox jumps over lazy dog invoice total amount patient report lorem ipsum dolor".split()


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def document(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    image = Image.new("RGB", (w, h), rng.choice([(255, 255, 255), (250, 250, 245), (240, 240, 240)]))
    draw = ImageDraw.Draw(image)
    size = rng.choice([10, 12, 14, 18, 24])
    font = ImageFont.load_default(size=size)
    for y in range(10, h - size, int(size * 1.5)):
        draw.text((10, y), " ".join(rng.choice(WORDS) for _ in range(12)), fill=(0, 0, 0), font=font)
    return image


def flat(rng: random.Random) -> Image.Image:
    return Image.new("RGB", rng.choice(SIZES), _colour(rng))


def gradient(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    start, end = np.array(_colour(rng), float), np.array(_colour(rng), float)
    x, y = np.linspace(0, 1, w)[None, :], np.linspace(0, 1, h)[:, None]
    t = rng.choice([x + 0 * y, y + 0 * x, (x + y) / 2, np.clip(np.hypot(x - 0.5, y - 0.5) * 1.4, 0, 1)])
    return Image.fromarray((start * (1 - t[..., None]) + end * t[..., None]).astype(np.uint8))


def checkerboard(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    cell = rng.choice([4, 8, 16, 32, 64])
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx // cell + yy // cell) % 2)[..., None].astype(bool)
    return Image.fromarray(np.where(mask, np.array(_colour(rng)), np.array(_colour(rng))).astype(np.uint8))


def screenshot(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES[1:])
    image = Image.new("RGB", (w, h), rng.choice([(255, 255, 255), (30, 30, 30), (245, 247, 250)]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w, 40), fill=_colour(rng))
    font = ImageFont.load_default(size=14)
    for _ in range(8):
        x0, y0 = rng.randrange(w - 60), rng.randrange(50, h - 30)
        draw.rectangle((x0, y0, x0 + rng.randrange(40, 200), y0 + rng.randrange(15, 60)), fill=_colour(rng))
        words = " ".join(rng.choice(WORDS) for _ in range(4))
        draw.text((rng.randrange(w - 100), rng.randrange(50, h - 20)), words, fill=(0, 0, 0), font=font)
    return image


def uniform_noise(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    return Image.fromarray(np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (h, w, 3), dtype=np.uint8))


def gaussian_noise(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(np.array(_colour(rng)), rng.uniform(10, 80), (h, w, 3))
    return Image.fromarray(noise.clip(0, 255).astype(np.uint8))


def blotches(rng: random.Random) -> Image.Image:
    """Smooth random colour fields: noise enlarged from a few pixels, neither texture nor graphic."""
    w, h = rng.choice(SIZES)
    cells = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (rng.randint(2, 12), rng.randint(2, 12), 3))
    return Image.fromarray(cells.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)


# Graphics the cheap guard refuses by their statistics; noise only the gate refuses.
GRAPHICS = ("document", "flat", "gradient", "checkerboard", "screenshot")
NOISE = ("uniform_noise", "gaussian_noise", "blotches")
KINDS = {
    "document": document,
    "flat": flat,
    "gradient": gradient,
    "checkerboard": checkerboard,
    "screenshot": screenshot,
    "uniform_noise": uniform_noise,
    "gaussian_noise": gaussian_noise,
    "blotches": blotches,
}


def non_lesion_images(
    per_kind: int, *, seed: int = 0, kinds: tuple[str, ...] = tuple(KINDS)
) -> Iterator[tuple[str, bytes]]:
    """(kind, encoded bytes) pairs, each image saved as PNG or as JPEG at a random quality."""
    rng = random.Random(seed)
    for kind in kinds:
        make = KINDS[kind]
        for _ in range(per_kind):
            buffer = io.BytesIO()
            if rng.random() < 0.5:
                make(rng).save(buffer, format="PNG")
            else:
                make(rng).save(buffer, format="JPEG", quality=rng.choice([75, 90, 95]))
            yield kind, buffer.getvalue()
