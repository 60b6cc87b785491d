import pytest

from classifier.models import LesionClass, LesionClassTranslation
from ml import CLASS_CODES


@pytest.mark.django_db
def test_data_migration_seeds_the_seven_classes():
    rows = list(LesionClass.objects.all())
    assert sorted(r.code for r in rows) == sorted(CLASS_CODES)
    categories = {r.code: r.category for r in rows}
    assert categories["MEL"] == categories["BCC"] == "malignant"
    assert categories["AKIEC"] == "precancerous"
    assert {categories[c] for c in ("NV", "BKL", "DF", "VASC")} == {"benign"}
    assert all(len(r.description) > 80 and r.reference_url.startswith("https://") for r in rows)


@pytest.mark.django_db
def test_data_migration_seeds_spanish_for_every_class():
    spanish = LesionClassTranslation.objects.filter(language="es")
    assert sorted(t.lesion_class.code for t in spanish) == sorted(CLASS_CODES)
    assert all(len(t.description) > 80 for t in spanish)
