"""Shared fixtures: the committed example images and images generated on the fly."""

import io
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def image_bytes(*, mode: str = "RGB", size: tuple[int, int] = (200, 150), fmt: str = "JPEG", **save) -> bytes:
    """A synthetic lesion-like image (a dark disc on skin tone) encoded in ``fmt``."""
    image = Image.new("RGB", size, (205, 150, 130))
    disc = Image.new("L", size, 0)
    from PIL import ImageDraw

    ImageDraw.Draw(disc).ellipse((size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4), fill=255)
    image.paste((90, 50, 40), mask=disc)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def fresh_cache():
    # The throttle's counts and the cached class texts: every test starts without them.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    # The manifest storage needs `collectstatic`; tests serve static files as they are.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture
def example_image() -> bytes:
    return (EXAMPLES / "images" / "ISIC_0024306.jpg").read_bytes()
