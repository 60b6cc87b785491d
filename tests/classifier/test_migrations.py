import importlib
import os
import secrets
import shutil
import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from classifier.models import LesionClass, LesionClassTranslation
from ml import CLASS_CODES
from tests.conftest import ROOT


@pytest.mark.django_db
def test_data_migration_seeds_the_seven_classes():
    rows = list(LesionClass.objects.all())
    assert sorted(r.code for r in rows) == sorted(CLASS_CODES)
    categories = {r.code: r.category for r in rows}
    assert categories["MEL"] == categories["BCC"] == "malignant"
    assert categories["AKIEC"] == "precancerous_or_malignant"  # it holds squamous cell carcinomas (migration 0009)
    assert {categories[c] for c in ("NV", "BKL", "DF", "VASC")} == {"benign"}
    assert all(len(r.description) > 80 and r.reference_url.startswith("https://") for r in rows)


@pytest.mark.django_db
def test_data_migration_seeds_spanish_for_every_class():
    spanish = LesionClassTranslation.objects.filter(language="es")
    assert sorted(t.lesion_class.code for t in spanish) == sorted(CLASS_CODES)
    assert all(len(t.description) > 80 for t in spanish)


def _migrated_to(target: tuple[str, str] | None = None):
    """Migrate the test database to ``target`` (the latest migrations if None); the apps as they were then."""
    executor = MigrationExecutor(connection)
    targets = [target] if target else executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def migrations_undone_and_redone():
    """For tests that migrate back: the database ends at the latest migrations whatever happens."""
    yield _migrated_to
    _migrated_to()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_akiec_text_names_squamous_cell_carcinoma_unless_an_admin_edited_it(migrations_undone_and_redone):
    after = "0007_akiec_includes_squamous_cell_carcinoma"
    old_apps = migrations_undone_and_redone(("classifier", "0006_drop_display_order"))
    seeded = importlib.import_module(f"classifier.migrations.{after}").OLD  # the texts 0002 and 0004 seeded
    akiec, _ = old_apps.get_model("classifier", "LesionClass").objects.update_or_create(
        code="AKIEC", defaults={"name": seeded["en"][0], "description": seeded["en"][1], "category": "precancerous"}
    )
    old_apps.get_model("classifier", "LesionClassTranslation").objects.update_or_create(
        lesion_class_id=akiec.pk,
        language="es",
        defaults={"name": seeded["es"][0], "description": "Editado en el admin."},
    )
    migrations_undone_and_redone(("classifier", after))
    akiec = LesionClass.objects.get(code="AKIEC")
    assert akiec.name == "Actinic keratosis / squamous cell carcinoma"
    assert "squamous cell carcinoma" in akiec.description
    spanish = akiec.translations.get(language="es")
    assert spanish.name == "Queratosis actínica / carcinoma intraepitelial"  # the edited row is left alone
    assert spanish.description == "Editado en el admin."


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_akiec_becomes_precancerous_or_malignant_and_back(migrations_undone_and_redone):
    before = ("classifier", "0008_reference_url_http_or_https")
    old_apps = migrations_undone_and_redone(before)
    # Whatever rows earlier tests left: the row as 0008 knew it.
    old_apps.get_model("classifier", "LesionClass").objects.update_or_create(
        code="AKIEC", defaults={"name": "Actinic keratosis", "description": "Seeded.", "category": "precancerous"}
    )
    migrations_undone_and_redone(("classifier", "0009_akiec_precancerous_or_malignant"))
    assert LesionClass.objects.get(code="AKIEC").category == "precancerous_or_malignant"
    old_apps = migrations_undone_and_redone(before)
    assert old_apps.get_model("classifier", "LesionClass").objects.get(code="AKIEC").category == "precancerous"


@pytest.mark.slow  # migrates a copy of the project in a subprocess
def test_migrate_works_on_a_fresh_checkout_with_a_secret_key_and_the_default_sqlite(tmp_path):
    # A checkout without var/: the settings and manage.py copied (BASE_DIR is where settings.py
    # lies), everything else linked.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copytree(ROOT / "dermai_site", checkout / "dermai_site", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", checkout)
    for name in ("classifier", "ml", "templates", "locale", "static", "examples", "docs"):
        (checkout / name).symlink_to(ROOT / name)
    unset = ("DATABASE_URL", "CACHE_URL", "DJANGO_SECURE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)  # so no key is generated into var/
    environment["DJANGO_SETTINGS_MODULE"] = "dermai_site.settings"
    command = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    result = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (checkout / "var" / "db.sqlite3").stat().st_size > 0
    assert not (checkout / "var" / "secret_key").exists()
