import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.files import temp as django_temp
from PIL import Image

from classifier.models import LesionClass


@pytest.fixture
def temp_dir(settings, tmp_path, monkeypatch):
    """An empty temporary directory that every temporary file would land in.

    A temporary file deletes itself when closed, which Django does before a test can look, so each
    one created also leaves a marker file behind: the directory stays empty only if none was made.
    """
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    for name in ("NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, _leaving_a_marker(getattr(tempfile, name), tmp_path))
    # Django's upload files take NamedTemporaryFile from its own module, bound at import.
    monkeypatch.setattr(django_temp, "NamedTemporaryFile", _leaving_a_marker(django_temp.NamedTemporaryFile, tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """An untrained SimpleBNConv without a gate: a model that loads whatever the shipped one's state."""
    from ml.checkpoint import save_checkpoint
    from ml.model import SimpleBNConv
    from ml.preprocessing import PreprocessConfig

    path = tmp_path_factory.mktemp("model") / "untrained.pt"
    torch.manual_seed(0)
    save_checkpoint(path, model=SimpleBNConv(), preprocess=PreprocessConfig())
    return path


@pytest.fixture
def untrained_model(settings, untrained_checkpoint) -> None:
    """Serve the untrained model: for what the site does before the model answers (refusals, budgets, throttles)."""
    settings.DERMAI_CHECKPOINT = untrained_checkpoint


def _leaving_a_marker(create, directory):
    def wrapper(*args, **kwargs):
        (directory / f"created-by-{create.__name__}-{len(list(directory.iterdir()))}").touch()
        return create(*args, **kwargs)

    return wrapper


def noise_png(megabytes: float) -> bytes:
    """A valid PNG of about ``megabytes`` MB: random pixels, stored uncompressed."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def lesion_png(megabytes: float) -> bytes:
    """A valid PNG of about ``megabytes`` MB: the example lesion enlarged, stored uncompressed."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    image = Image.open(Path(__file__).resolve().parents[2] / "examples" / "images" / "ISIC_0024306.jpg")
    buffer = io.BytesIO()
    image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def upload(data: bytes, name: str = "lesion.jpg"):
    file = io.BytesIO(data)
    file.name = name
    return file


def change_form_data(obj: LesionClass, **changes: str) -> dict[str, str]:
    """What the admin's change form posts for ``obj``, its translations inline, with ``changes``."""
    data = {
        "code": obj.code,
        "name": obj.name,
        "category": obj.category,
        "description": obj.description,
        "reference_url": obj.reference_url,
    }
    translations = list(obj.translations.order_by("pk"))
    data |= {"translations-TOTAL_FORMS": str(len(translations)), "translations-INITIAL_FORMS": str(len(translations))}
    for index, translation_row in enumerate(translations):
        prefix = f"translations-{index}-"
        data |= {
            prefix + "id": str(translation_row.pk),
            prefix + "lesion_class": str(obj.pk),
            prefix + "language": translation_row.language,
            prefix + "name": translation_row.name,
            prefix + "description": translation_row.description,
        }
    return data | changes
