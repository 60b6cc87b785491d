"""The batch page's summary and CSV downloads, and the admin's translations, in Chromium on both screens."""

import codecs
import csv
import io

import pytest
from django.contrib.auth import get_user_model
from PIL import Image
from playwright.sync_api import Page, expect

from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
LESION = EXAMPLES / "images" / "ISIC_0024306.jpg"
TEXTS = {
    "en": {
        "analyse": "Analyse image",
        "failed": "1 not analysed",
        "download": "Download CSV",
        "semicolon": "CSV with semicolons and decimal commas",
        "admin": "DermAI administration",
        "search": "Search",
        "complete": "Complete",
    },
    "es": {
        "analyse": "Analizar imagen",
        "failed": "1 no analizada",
        "download": "Descargar CSV",
        "semicolon": "CSV separado por punto y coma, con coma decimal",
        "admin": "Administración de DermAI",
        "search": "Buscar",
        "complete": "Completas",
    },
}


def in_language(page: Page, live_server, language: str) -> dict[str, str]:
    page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    return TEXTS[language]


def download(page: Page, link_name: str) -> tuple[bytes, str]:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name, exact=True).click()
    return info.value.path().read_bytes(), info.value.suggested_filename


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_batch_counts_its_cards_and_both_csvs_open_with_a_bom_and_unique_names(
    page: Page, live_server, tmp_path, screenshot, language
):
    texts = in_language(page, live_server, language)
    (tmp_path / "a.jpg").write_bytes(LESION.read_bytes())
    Image.open(LESION).save(tmp_path / "a.png")
    (tmp_path / "María.txt").write_text("not a photo")
    page.goto("/")
    page.locator("input[type=file]").set_input_files([tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "María.txt"])
    page.get_by_role("button", name=texts["analyse"]).click()
    summary = page.locator(".batch-summary")
    expect(summary).to_contain_text(texts["failed"])
    assert summary.bounding_box()["y"] < page.locator(".batch-cards").bounding_box()["y"]  # above the cards
    screenshot(f"batch-summary-{language}")

    data, name = download(page, texts["download"])
    assert name == "dermai-predictions.csv"
    assert data.startswith(codecs.BOM_UTF8)  # Excel then reads "María" as written
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [row["image"] for row in rows] == ["a.jpg", "a.png", "María"]  # one name per file

    data, name = download(page, texts["semicolon"])
    assert name == "dermai-predictions-semicolon.csv" and data.startswith(codecs.BOM_UTF8)
    local = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert [row["image"] for row in local] == ["a.jpg", "a.png", "María"]
    assert local[0]["MEL"].replace(",", ".") == rows[0]["MEL"] and "," in local[0]["risk"]


@pytest.fixture
def admin_login(page: Page, live_server):
    """Log in through the admin's own form, as a person would."""
    get_user_model().objects.create_superuser("curator", "curator@example.com", "a long test password")

    def login() -> None:
        page.goto("/admin/login/?next=/admin/classifier/lesionclass/")
        page.locator("#id_username").fill("curator")
        page.locator("#id_password").fill("a long test password")
        page.locator("input[type=submit]").click()

    return login


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_admin_finds_a_class_by_its_spanish_text_and_keeps_its_code(
    page: Page, live_server, admin_login, screenshot, language
):
    texts = in_language(page, live_server, language)
    admin_login()
    expect(page.locator("#site-name")).to_have_text(texts["admin"])
    assert page.title().endswith(texts["admin"])
    expect(page.locator("td.field-translation_status")).to_have_count(7)
    expect(page.locator("td.field-translation_status").first).to_have_text(texts["complete"])
    page.locator("#searchbar").fill("lunar")  # only the nevus's Spanish description says it
    page.get_by_role("button", name=texts["search"]).click()
    nevus = page.get_by_role("link", name="NV", exact=True)
    expect(nevus).to_be_visible()
    screenshot(f"admin-search-{language}")
    nevus.click()
    expect(page.locator(".field-code .readonly")).to_have_text("NV")
    expect(page.locator(".field-category .readonly")).to_be_visible()
    assert page.locator("[name=code], [name=category]").count() == 0  # shown, not editable
    assert page.locator("a.deletelink").count() == 0  # and the class cannot be deleted
    expect(page.locator(".field-name .help").first).to_be_visible()
