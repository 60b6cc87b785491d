"""The batch page's cards, summary and CSV downloads, and the admin's translations, in Chromium on both screens."""

import codecs
import csv
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Q
from PIL import Image
from playwright.sync_api import Page, expect

from classifier import services
from classifier.admin import LesionClassAdmin
from classifier.models import LesionClass
from ml.triage import TriagePolicy
from tests.browser.conftest import LESION
from tests.browser.test_result_card import BENIGN_GREEN, PERCENT, TEXT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
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


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("state", ["few+inconclusive", "near"])
def test_each_batch_card_reads_like_the_result_page_without_decimals_or_green(
    page: Page, live_server, monkeypatch, tmp_path, screenshot, axe, lesion_risk, language, state
):
    if state == "near":  # the line at 1.5 times the lesion's risk: under it, but within a factor of two
        policy = TriagePolicy(refer_at=lesion_risk * 1.5, inconclusive_below=0.0)
    else:
        policy = TriagePolicy(refer_at=1.01, inconclusive_below=1.01)
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": policy, "measured": {}})
    texts, text = in_language(page, live_server, language), TEXT[language]
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(LESION.read_bytes())
    page.goto("/")
    page.locator("input[type=file]").set_input_files([tmp_path / "a.jpg", tmp_path / "b.jpg"])
    page.get_by_role("button", name=texts["analyse"]).click()
    cards = page.locator(".batch-card")
    expect(cards).to_have_count(2)
    for card in cards.all():
        expect(card.locator(".verdict-text")).to_have_text(text[state.split("+")[0]])
        if "inconclusive" in state:  # folded into the verdict, and no category beside a diagnosis
            expect(card.locator(".verdict-more")).to_have_text(text["cannot tell"])
            expect(card.locator(".category")).to_have_count(0)
        else:
            expect(card.locator(".verdict-more")).to_have_count(0)
            assert card.locator(".category").count() > 0
        colours = card.locator(".category").evaluate_all("els => els.map(el => getComputedStyle(el).color)")
        assert BENIGN_GREEN not in colours  # no reassuring green near the line
        numbers = [*card.locator(".value").all_text_contents(), card.locator(".score strong").inner_text()]
        assert len(numbers) == 3 + 7 + 1 and all(PERCENT.fullmatch(n) for n in numbers), numbers
        assert not re.search(r"\d[.,]\d", " ".join(card.all_text_contents()))  # no decimals a visitor reads
    screenshot(f"batch-cards-{state}-{language}")
    assert axe() == []


@pytest.fixture
def admin_login(page: Page, live_server):
    """Log in through the admin's own form, as a person would."""
    get_user_model().objects.create_superuser("curator", "curator@example.com", "a long test password")

    def login() -> None:
        page.goto("/admin/login/?next=/admin/classifier/lesionclass/")
        page.locator("#id_username").fill("curator")
        page.locator("#id_password").fill("a long test password")
        page.locator("input[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/admin/classifier/lesionclass/$"))  # in, not back at the form

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
    page.locator("#searchbar").fill("lunar")  # "mole": only Spanish texts say it, the nevus's among them
    page.get_by_role("button", name=texts["search"]).click()
    matches = Q()
    for field in LesionClassAdmin.search_fields:
        matches |= Q(**{f"{field}__icontains": "lunar"})
    found = LesionClass.objects.filter(matches).distinct().count()
    assert 0 < found < 7
    expect(page.locator("td.field-translation_status")).to_have_count(found)  # the search ran
    nevus = page.get_by_role("link", name="NV", exact=True)
    expect(nevus).to_be_visible()
    screenshot(f"admin-search-{language}")
    nevus.click()
    expect(page.locator(".field-code .readonly")).to_have_text("NV")
    expect(page.locator(".field-category .readonly")).to_be_visible()
    assert page.locator("[name=code], [name=category]").count() == 0  # shown, not editable
    assert page.locator("a.deletelink").count() == 0  # and the class cannot be deleted
    expect(page.locator(".field-name .help").first).to_be_visible()
