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


def photo_jpeg(size: tuple[int, int] = (4032, 3024), **save) -> bytes:
    """A photo-like JPEG (smooth random colour) of ``size``, 12 megapixels by default, as a phone writes it."""
    import numpy as np

    width, height = size
    coarse = np.random.default_rng(0).integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> str:
    """pytest-django's test database, and what the migrations wrote into the classifier's tables (the class
    texts) as JSON, read before any test can change them."""
    from django.apps import apps
    from django.core import serializers

    from classifier.models import LesionClass

    with django_db_blocker.unblock():
        rows = [row for model in apps.get_app_config("classifier").get_models() for row in model._base_manager.all()]
    if not any(isinstance(row, LesionClass) for row in rows):
        pytest.fail(
            "the migrated test database has no class texts: a data migration seeded none, or --reuse-db "
            "kept a database that a transactional test had flushed (run without --reuse-db)"
        )
    return serializers.serialize("json", rows)


@pytest.fixture(autouse=True)
def migrated_class_texts(request):
    """Every database test starts with the class texts as `migrate` writes them.

    A transactional test (a live server, the browser tests) leaves the database flushed. pytest-django
    runs those after the others, but a pytest-xdist worker (`make test` runs two) may be handed another
    file after one: the texts are put back, inside the test's transaction where it has one.
    """
    if request.node.get_closest_marker("django_db") is None and "_django_db_helper" not in request.fixturenames:
        return
    content = request.getfixturevalue("django_db_setup")
    request.getfixturevalue("_django_db_helper")  # the database as the test asked for it
    from django.core import serializers
    from django.db import transaction

    from classifier.models import LesionClass

    if not LesionClass._base_manager.exists():
        with transaction.atomic():
            for row in serializers.deserialize("json", content):
                row.save()


@pytest.fixture(autouse=True)
def fresh_cache():
    # The throttle's counts, the cached class texts and example results: every test starts without them.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def database_cache(settings, db):
    """The site's shared cache, a database table, instead of the tests' per-process one
    (dermai_site/test_settings.py): for tests of what only it does, such as its atomic counter."""
    from django.core.cache import cache
    from django.core.management import call_command

    settings.CACHES = settings.SHARED_CACHES
    call_command("createcachetable", verbosity=0)  # the migration made none for the tests' cache
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


def write_isic2019(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """An ISIC 2019 Task 1 folder as users download it, from (image id, diagnosis, lesion id) rows.

    Each image is a copy of a committed example; ``diagnosis`` is one of the eight ISIC 2019 columns
    or UNK; an empty lesion id is left empty, as for the older archive images.
    """
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    images = folder / "ISIC_2019_Training_Input"
    images.mkdir(parents=True)
    sources = sorted((EXAMPLES / "images").iterdir())
    for i, (image_id, _, _) in enumerate(rows):
        (images / f"{image_id}.jpg").write_bytes(sources[i % len(sources)].read_bytes())
    with open(folder / "ISIC_2019_Training_GroundTruth.csv", "w") as f:
        f.write("image," + ",".join(columns) + "\n")
        for image_id, diagnosis, _ in rows:
            f.write(image_id + "," + ",".join("1.0" if c == diagnosis else "0.0" for c in columns) + "\n")
    with open(folder / "ISIC_2019_Training_Metadata.csv", "w") as f:
        f.write("image,age_approx,anatom_site_general,lesion_id,sex\n")
        f.writelines(f"{image_id},50,back,{lesion},female\n" for image_id, _, lesion in rows)
    return folder


@pytest.fixture
def isic2019_dir(tmp_path) -> Path:
    """A small ISIC 2019 folder: BCN lesions with several images, MSK, archive images without lesion id."""
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    rows = []
    for i in range(40):  # 40 BCN lesions of two images each, every diagnosis
        rows += [(f"ISIC_99{i:03d}{k}", codes[i % len(codes)], f"BCN_{i:07d}") for k in range(2)]
    rows += [(f"ISIC_98{i:04d}", ["MEL", "NV", "BKL"][i % 3], f"MSK4_{i:03d}") for i in range(6)]
    rows += [(f"ISIC_97{i:04d}_downsampled", "NV", "") for i in range(4)]
    rows += [("ISIC_9600000", "UNK", "")]
    return write_isic2019(tmp_path / "isic2019", rows)
