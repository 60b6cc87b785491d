"""The site as a person uses it, in Chromium, on a laptop and on a phone."""

import re

import pytest
from playwright.sync_api import Page, expect

from classifier import services
from ml.negatives import non_lesion_images
from ml.triage import TriagePolicy
from tests.browser.conftest import LESION, submit
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def assert_accessible_basics(page: Page) -> None:
    assert page.locator("html").get_attribute("lang")
    assert page.locator("h1").count() == 1
    assert page.locator("img:not([alt])").count() == 0
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
              .map(el => el.name)"""
    )
    assert unlabelled == []


def assert_no_horizontal_overflow(page: Page) -> None:
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
              .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
              .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))"""
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), wide


def test_upload_an_image_and_read_the_triage_card(page: Page, screenshot, axe):
    page.goto("/")
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    assert axe() == []
    screenshot("home")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(LESION)
    page.get_by_role("button", name="Analyse image").click()
    card = page.locator(".triage-card")
    expect(page.locator("h1")).to_contain_text(re.compile("DermAI (suggests|found)"))
    expect(card.locator(".top3-heading")).to_contain_text(re.compile("Most likely:|none stands out"))
    expect(card.locator(".top3 li")).to_have_count(3)
    expect(card.locator(".card-disclaimer")).to_contain_text("Not a medical device")
    assert card.bounding_box()["y"] < page.viewport_size["height"]  # the card is on the first screen
    rows = page.locator("table.bars tbody tr")
    expect(rows).to_have_count(7)
    values = rows.locator(".value").all_inner_texts()
    assert all(re.fullmatch(r"(<1|>99|\d+)\u00a0%", v) for v in values)  # the chart reads as text, in whole percents
    names = rows.locator(".name").all_inner_texts()
    assert all(name.strip() for name in names)  # full names on every screen, not only codes
    expect(page.locator("dl.descriptions")).to_contain_text("A common mole")
    expect(page.get_by_alt_text(re.compile("Grad-CAM heatmap"))).to_be_visible()
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    assert axe() == []
    screenshot("result")


def test_an_inconclusive_result_names_no_verdict(page: Page, monkeypatch, screenshot, axe):
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": TriagePolicy(0.0, 1.01), "measured": {}})
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(LESION)
    page.get_by_role("button", name="Analyse image").click()
    card = page.locator(".triage-card")
    expect(card.locator(".verdict-more")).to_have_text("DermAI cannot tell which kind of spot this is.")
    expect(card.locator("h1")).to_have_text("DermAI suggests showing this spot to a dermatologist.")
    expect(card.locator(".category")).to_have_count(0)  # no red or green label
    assert axe() == []
    screenshot("inconclusive")


def test_a_photo_that_is_not_dermatoscopic_is_refused_with_a_guide(page: Page, tmp_path, screenshot, axe):
    photo = tmp_path / "letter.png"
    photo.write_bytes(next(d for k, d in non_lesion_images(per_kind=1) if k == "document"))
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(photo)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("DermAI could not analyse this photo")
    expect(page.locator(".refusal")).to_contain_text("one flat colour")
    expect(page.locator(".refusal")).to_contain_text("a refusal says nothing about the lesion")
    expect(page.get_by_alt_text("The photo you sent")).to_be_visible()
    expect(page.locator("#guide")).to_contain_text("What is a dermatoscopic image?")
    assert_no_horizontal_overflow(page)
    assert axe() == []
    screenshot("refused")


def test_a_non_image_shows_an_error(page: Page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo")
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(notes)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_role("alert")).to_contain_text("Unsupported file type")
    expect(page.get_by_label("Dermatoscopic image(s)")).to_be_visible()


def test_an_example_in_one_click(page: Page, axe):
    page.goto("/")
    page.get_by_role("link", name=re.compile("Example dermatoscopic image: Vascular lesion")).click()
    expect(page.locator(".ground-truth")).to_contain_text("diagnosed as VASC")
    expect(page.locator("table.bars tbody tr")).to_have_count(7)
    assert_no_horizontal_overflow(page)
    assert axe() == []


def test_batch_upload_shows_one_card_per_image_by_risk(page: Page, screenshot, axe, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    images = [*sorted((EXAMPLES / "images").iterdir())[:4], notes]
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(images)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.locator("h1")).to_contain_text("Results for 5 images")
    cards = page.locator(".batch-card")
    expect(cards).to_have_count(5)
    expect(cards.last).to_contain_text("Unsupported file type")
    cards.first.locator("summary").click()
    expect(cards.first.locator("details li")).to_have_count(7)  # each item's detail is reachable
    expect(page.get_by_role("link", name="Download CSV")).to_have_attribute("download", "dermai-predictions.csv")
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    assert axe() == []
    screenshot("batch")


@pytest.mark.parametrize(
    "path", ["/about/", "/model-card/", "/model-card/experiments/"]
)  # the API docs page is Swagger UI's own
def test_other_pages_are_accessible(page: Page, axe, path):
    page.goto(path)
    assert_no_horizontal_overflow(page)
    assert axe() == []


def test_spanish_pages_are_accessible_and_use_whole_percents(page: Page, axe):
    page.goto("/")
    page.get_by_label("Language").select_option("es")
    submit(page, page.get_by_role("button", name="Change"))  # the checks below read the next page at once
    assert axe() == []
    page.get_by_label("Imagen(es) dermatoscópica(s)").set_input_files(LESION)
    submit(page, page.get_by_role("button", name="Analizar imagen"))
    values = page.locator("table.bars .value").all_inner_texts()
    assert len(values) == 7 and all(re.fullmatch(r"(<1|>99|\d+)\u00a0%", v) for v in values)
    assert axe() == []


def test_no_page_breaks_the_content_security_policy(browser, live_server):
    context = browser.new_context(base_url=live_server.url)  # the policy enforced, unlike the page fixture
    page = context.new_page()
    violations = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    for path in (
        "/",
        "/about/",
        "/model-card/",
        "/model-card/experiments/",
        "/api/v1/docs/",
        "/examples/ISIC_0024306/",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(LESION)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.locator(".triage-card")).to_be_visible()
    context.close()
    assert violations == []


def test_switch_to_spanish(page: Page):
    page.goto("/")
    page.get_by_label("Language").select_option("es")
    page.get_by_role("button", name="Change").click()
    expect(page.locator("h1")).to_have_text("Analizar una imagen dermatoscópica")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    assert_no_horizontal_overflow(page)


def test_admin_edits_a_description_that_the_result_page_shows(page: Page, admin_user):
    page.goto("/admin/login/?next=/admin/classifier/lesionclass/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="NV", exact=True).click()
    page.locator("#id_description").fill("Edited in the browser: an ordinary mole.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    page.goto("/examples/ISIC_0024306/")
    expect(page.locator("dl.descriptions")).to_contain_text("Edited in the browser: an ordinary mole.")
