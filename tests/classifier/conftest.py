import io
import tempfile

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def temp_dir(settings, tmp_path, monkeypatch):
    """An empty temporary directory that every temporary file would land in."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    return tmp_path


def noise_png(megabytes: float) -> bytes:
    """A valid PNG of about ``megabytes`` MB: random pixels, stored uncompressed."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def upload(data: bytes, name: str = "lesion.jpg"):
    file = io.BytesIO(data)
    file.name = name
    return file
