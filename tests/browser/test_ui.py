"""The site as a person uses it, in Chromium, on a laptop and on a phone."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.django_db(transaction=True)
LESION = EXAMPLES / "images" / "ISIC_0024306.jpg"


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
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_upload_an_image_and_read_the_result(page: Page, screenshot):
    page.goto("/")
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    screenshot("home")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(LESION)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.locator("h1")).to_contain_text("Most likely:")
    rows = page.locator("table.bars tbody tr")
    expect(rows).to_have_count(7)
    values = rows.locator(".value").all_inner_texts()
    assert all(re.fullmatch(r"\d+\.\d %", v) for v in values)  # the chart reads as text
    expect(page.locator("dl.descriptions")).to_contain_text("A common mole")
    expect(page.get_by_alt_text(re.compile("Grad-CAM heatmap"))).to_be_visible()
    expect(page.locator(".disclaimer")).to_contain_text("not a medical device")
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    screenshot("result")


def test_a_non_image_shows_an_error(page: Page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo")
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(notes)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_role("alert")).to_contain_text("Unsupported file type")
    expect(page.get_by_label("Dermatoscopic image(s)")).to_be_visible()


def test_an_example_in_one_click(page: Page):
    page.goto("/")
    page.get_by_role("link", name=re.compile("diagnosed VASC")).click()
    expect(page.locator(".ground-truth")).to_contain_text("diagnosed as VASC")
    expect(page.locator("table.bars tbody tr")).to_have_count(7)
    assert_no_horizontal_overflow(page)


def test_batch_upload_shows_a_table(page: Page, screenshot):
    images = sorted((EXAMPLES / "images").iterdir())[:4]
    page.goto("/")
    page.get_by_label("Dermatoscopic image(s)").set_input_files(images)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.locator("h1")).to_contain_text("Results for 4 images")
    expect(page.locator("table.batch tbody tr")).to_have_count(4)
    expect(page.get_by_role("link", name="Download CSV")).to_have_attribute("download", "dermai-predictions.csv")
    assert_accessible_basics(page)
    assert_no_horizontal_overflow(page)
    screenshot("batch")


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
