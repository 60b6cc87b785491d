"""Playwright driving Debian's Chromium against a live server, at desktop and phone sizes."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page

from ml.triage import risk
from tests.conftest import EXAMPLES, ROOT

CHROMIUM = os.environ.get("DERMAI_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
LESION = EXAMPLES / "images" / "ISIC_0024306.jpg"  # the lesion the tests upload
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "mobile": {"width": 390, "height": 844}}


def submit(page: Page, button: Locator) -> None:
    """Click ``button`` and return once the next document has loaded. A form here answers at its own
    address, so there is no new URL to wait for: the old document is marked, and its successor is
    the loaded document without the mark (Playwright's ``expect_navigation`` is deprecated)."""
    page.evaluate("window.dermaiPreviousPage = true")
    button.click()
    page.wait_for_function("() => !window.dermaiPreviousPage && document.readyState === 'complete'")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: `apt-get install chromium` to run the browser tests"
        if os.environ.get("DERMAI_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test database calls that run
    # beside it are still synchronous (the documented setting for Django with Playwright).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture(params=sorted(VIEWPORTS))
def page(request, browser, live_server):
    # bypass_csp: axe-core is injected as an inline script, which the site's policy forbids
    # (test_no_page_breaks_the_content_security_policy checks the policy itself).
    context = browser.new_context(viewport=VIEWPORTS[request.param], base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.viewport_name = request.param
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """Save a full-page screenshot under test-artifacts/ (kept by CI, ignored by git)."""

    def take(name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}-{page.viewport_name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture(scope="module")
def lesion_risk() -> float:
    """The example lesion's grouped risk, read from the model the live server serves."""
    from classifier.selectors import predictor_get

    predictor, _info = predictor_get()
    pixels = predictor.read(LESION.read_bytes())
    return float(risk(predictor.probabilities(pixels.unsqueeze(0)))[0])


@pytest.fixture
def axe(page):
    """Run axe-core on the current page; returns its violations (WCAG 2.2 A and AA rules, tap targets included)."""
    from axe_playwright_python.sync_playwright import Axe  # bundles axe-core: no Node.js needed

    def run() -> list[dict]:
        tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
        result = Axe().run(page, options={"runOnly": {"type": "tag", "values": tags}, "resultTypes": ["violations"]})
        return [
            {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:3]}
            for v in result.response["violations"]
        ]

    return run
