"""The result card as a worried person reads it: Chromium on a laptop (1366×900) and a phone (390×844),
in English and in Spanish."""

import re

import pytest
from playwright.sync_api import Page, expect

import ml.explain
from classifier import services
from ml.negatives import non_lesion_images
from ml.triage import TriagePolicy
from tests.browser.conftest import ARTIFACTS, LESION, submit
from tests.browser.test_ui import assert_no_horizontal_overflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
BENIGN_GREEN = "rgb(6, 118, 71)"  # --benign in static/css/site.css
PERCENT = re.compile(r"(<1|>99|\d{1,2})\u00a0%")  # whole percents, a non-breaking space before "%"

TEXT = {
    "en": {
        "refer": "DermAI suggests showing this spot to a dermatologist.",
        "near": "DermAI found some warning signs, just below its line. This does not rule out cancer.",
        "few": "DermAI found few warning signs. This does not rule out cancer.",
        "cannot tell": "DermAI cannot tell which kind of spot this is.",
        "not you": "not your chance of having cancer",
        "refused": "DermAI could not analyse this photo",
        "AKIEC": "Precancerous or malignant",
        "read more": "Read more about",
        "off centre": "Most of the heat lies away from the middle of the photo",
    },
    "es": {
        "refer": "DermAI sugiere que un dermatólogo vea esta mancha.",
        "near": "DermAI ha encontrado algunas señales de alarma, justo por debajo de su límite. "
        "Esto no descarta un cáncer.",
        "few": "DermAI ha encontrado pocas señales de alarma. Esto no descarta un cáncer.",
        "cannot tell": "DermAI no puede decir qué tipo de mancha es.",
        "not you": "no es su probabilidad de tener cáncer",
        "refused": "DermAI no ha podido analizar esta foto",
        "AKIEC": "Precancerosa o maligna",
        "read more": "Más información sobre",
        "off centre": "La mayor parte del calor queda lejos del centro de la foto",
    },
}


@pytest.fixture(params=[(v, lang) for v in VIEWPORTS for lang in TEXT], ids=lambda p: f"{p[0]}-{p[1]}")
def page(request, browser, live_server):
    """A page at one of the issue's two sizes, in one language (the browser's Accept-Language)."""
    viewport, language = request.param
    context = browser.new_context(
        viewport=VIEWPORTS[viewport], base_url=live_server.url, bypass_csp=True, locale=language
    )
    page = context.new_page()
    page.viewport_name, page.language = viewport, language
    yield page
    context.close()


def upload(page: Page, path=LESION) -> None:
    """Send ``path`` from the home page and return once the answer has loaded (callers read it at once)."""
    page.goto("/")
    page.locator("input[type=file]").set_input_files(path)
    submit(page, page.locator("form.upload button[type=submit]"))


def on_first_screen(page: Page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"]


def snap(page: Page, name: str) -> None:
    """The first screen, as a visitor sees it on arrival (kept under test-artifacts/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"card-{name}-{page.viewport_name}-{page.language}.png")


@pytest.mark.parametrize(
    ("state", "refer_at", "inconclusive_below"),
    [
        ("refer", 0.0, 0.0),
        ("few", 1.01, 0.0),
        ("near", None, 0.0),  # the line at 1.5 times the lesion's risk: under it, but within a factor of two
        ("few+inconclusive", 1.01, 1.01),
        ("refer+inconclusive", 0.0, 1.01),
    ],
)
def test_the_verdict_says_what_to_do_in_words_a_lay_reader_understands(
    page: Page, monkeypatch, axe, lesion_risk, state, refer_at, inconclusive_below
):
    policy = TriagePolicy(
        refer_at=lesion_risk * 1.5 if refer_at is None else refer_at, inconclusive_below=inconclusive_below
    )
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": policy, "measured": {}})
    upload(page)
    text = TEXT[page.language]
    verdict = page.get_by_role("heading", level=1)
    expect(verdict).to_have_text(text[state.split("+")[0]])
    assert page.evaluate("document.activeElement.id") == "verdict"  # focus moved to the result
    card = page.locator(".triage-card")
    if "inconclusive" in state:  # folded into the verdict, not a heading of its own
        expect(card.locator(".verdict-more")).to_have_text(text["cannot tell"])
        expect(card.locator(".category")).to_have_count(0)
    else:
        expect(card.locator(".verdict-more")).to_have_count(0)
    expect(card).to_contain_text(text["not you"])
    colours = card.locator(".category").evaluate_all("els => els.map(el => getComputedStyle(el).color)")
    if state != "few":  # no reassuring green beside a referral, an inconclusive or a near-threshold result
        assert BENIGN_GREEN not in colours
    numbers = [*card.locator(".value").all_inner_texts(), card.locator(".score strong").inner_text()]
    assert all(PERCENT.fullmatch(n) for n in numbers), numbers
    snap(page, state)
    # The phone's first screen: the verdict, the photo beside it, what to do and the disclaimer.
    for selector in ("#verdict", ".verdict-photo", ".action", ".card-disclaimer", ".result-actions a"):
        assert on_first_screen(page, selector), selector
    assert_no_horizontal_overflow(page)
    assert axe() == []


def test_a_refused_photo_reads_as_a_refusal_not_a_verdict(page: Page, tmp_path, axe):
    photo = tmp_path / "letter.png"
    photo.write_bytes(next(d for k, d in non_lesion_images(per_kind=1) if k == "document"))
    upload(page, photo)
    expect(page.get_by_role("heading", level=1)).to_have_text(TEXT[page.language]["refused"])
    assert page.evaluate("document.activeElement.id") == "refusal-heading"
    expect(page.locator(".triage-card")).to_have_count(0)
    assert on_first_screen(page, ".refusal-thumb")
    assert axe() == []
    snap(page, "refused")


def test_keyboard_and_touch_users_can_reach_everything(page: Page, axe):
    page.goto("/about/")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    assert on_first_screen(page, ".skip-link")  # visible once focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    upload(page)
    small = page.evaluate(
        """() => [...document.querySelectorAll('a, button, summary, select, input')]
              .filter(el => el.offsetParent !== null)
              .map(el => [el.textContent.trim() || el.name, el.getBoundingClientRect()])
              .filter(([, box]) => box.height < 24 || box.width < 24)
              .map(([name, box]) => `${name}: ${Math.round(box.width)}×${Math.round(box.height)}`)"""
    )
    assert small == []
    more = page.locator("dl.descriptions a").all_inner_texts()
    assert len(more) == 7 and len(set(more)) == 7  # one distinct name per link
    assert all(name.startswith(TEXT[page.language]["read more"]) for name in more)
    expect(page.locator("dl.descriptions")).to_contain_text(TEXT[page.language]["AKIEC"])
    page.goto("/")
    alts = page.locator(".examples img").evaluate_all("els => els.map(el => el.alt)")
    names = page.locator(".examples a > span").all_inner_texts()
    assert all(name.split("(")[0].strip() in alt for name, alt in zip(names, alts, strict=True))  # names, not codes
    assert axe() == []


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_referral_mark_stands_out_from_the_bar_at_three_to_one(page: Page, monkeypatch):
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": TriagePolicy(0.01, 0.0), "measured": {}})
    upload(page)
    fill = {
        name: page.locator(f".risk-{name}").evaluate("el => getComputedStyle(el).fill")
        for name in ("mark", "halo", "fill", "track")
    }
    assert _contrast(fill["mark"], fill["halo"]) >= 3
    assert _contrast(fill["halo"], fill["fill"]) >= 3  # the orange of a referral
    assert _contrast(fill["mark"], fill["track"]) >= 3


@pytest.mark.parametrize("off_centre_below", [0.0, 1.01], ids=["centred", "off-centre"])
def test_the_heatmap_is_large_side_by_side_and_warns_when_its_heat_is_off_centre(
    page: Page, monkeypatch, off_centre_below
):
    monkeypatch.setattr(ml.explain, "OFF_CENTRE_BELOW", off_centre_below)
    upload(page)
    photo, heatmap = (page.locator(".figures img").nth(i).bounding_box() for i in (0, 1))
    assert photo["y"] == heatmap["y"]  # side by side, on the phone too
    if page.viewport_name == "laptop":
        assert heatmap["width"] >= 320
    warning = page.locator(".heat-warning")
    if off_centre_below > 1:
        expect(warning).to_contain_text(TEXT[page.language]["off centre"])
    else:
        expect(warning).to_have_count(0)
    alt = page.locator(".figures img").nth(1).get_attribute("alt")
    assert page.locator(".top3 .top3-name").first.inner_text().split(" (")[0] in alt  # the class it explains
