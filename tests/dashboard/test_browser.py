"""The dashboard in a real Chromium: pages load cleanly, charts draw, clicks navigate.

Screenshots land in test-artifacts/screenshots/, which git ignores.
"""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from tests.dashboard.factories import XSS, build_world

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a-long-browser-password"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _require_chromium() -> None:
    reason = f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


@pytest.fixture
def browser_world(transactional_db, live_server, monkeypatch):
    _require_chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM work
    # below happens before any page is driven.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    world = build_world(timezone.now())
    User.objects.create_user("oncall", password=PASSWORD)
    return world


class Session:
    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error on {self.page.url}: {message.text}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path, wait_until="networkidle")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def session(browser_world, live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        session = Session(page, live_server.url)
        session.open("/login/")
        page.fill("input[name=username]", "oncall")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        yield session
        browser.close()


def _pages(world) -> dict[str, tuple[str, bool]]:
    """Screenshot name: (path, whether plotly draws on it)."""
    return {
        "overview": (reverse("dashboard:overview"), True),
        "service": (reverse("dashboard:service", args=["checkout"]) + "?range=6h", True),
        "service-30d": (reverse("dashboard:service", args=["checkout"]) + "?range=30d", True),
        "budgets": (reverse("dashboard:budgets"), False),
        "slo": (reverse("dashboard:slo", args=[world.slo.pk]), True),
        "deploys": (reverse("dashboard:deploys"), True),
        "deploy": (reverse("dashboard:deploy", args=[world.failed_deploy.pk]), True),
        "traces": (reverse("dashboard:traces"), False),
        "trace": (reverse("dashboard:trace", args=[world.trace_id]), False),
    }


def test_every_page_loads_without_console_errors_and_draws_its_charts(session, browser_world):
    for name, (path, has_charts) in _pages(browser_world).items():
        session.open(path)
        if has_charts:
            session.page.wait_for_selector(".main-svg", state="attached")
        assert session.page.locator("main h1").count() == 1, name
        session.shot(name)
    assert session.problems == []


def test_pages_fit_a_phone(session, browser_world):
    session.page.set_viewport_size({"width": 390, "height": 844})
    for name in ("overview", "service", "deploy", "trace"):
        session.open(_pages(browser_world)[name][0])
        width = session.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} scrolls sideways on a phone ({width}px)"
        session.shot(f"phone-{name}")
    assert session.problems == []


def test_clicking_a_deploys_table_row_opens_the_deploy_page(session, browser_world):
    session.open(reverse("dashboard:deploys"))
    session.page.locator("#deploys tbody tr", has_text="checkout").locator("td").first.click()
    session.page.wait_for_url(f"**/deploys/{browser_world.failed_deploy.pk}/")
    assert "Verdict: Fail" in session.page.locator("#verdict").inner_text()
    assert session.problems == []


def test_clicking_a_deploy_marker_opens_the_deploy_page(session, browser_world):
    session.open(reverse("dashboard:service", args=["checkout"]) + "?range=6h")
    marker = session.page.locator("#chart-rate .scatterlayer .trace").last.locator(".point")
    box = marker.first.bounding_box()
    session.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.wait_for_url(f"**/deploys/{browser_world.failed_deploy.pk}/")
    assert session.problems == []


def test_a_hostile_span_name_shows_as_text(session, browser_world):
    session.open(reverse("dashboard:trace", args=[browser_world.trace_id]))
    assert session.page.locator(".span-label .op").first.inner_text() == XSS
    session.page.locator("details.span summary").first.click()
    assert "<img src=x onerror=alert(2)>" in session.page.locator(".span-detail").first.inner_text()
    session.open(reverse("dashboard:traces") + "?min_ms=45")
    assert XSS in session.page.locator("#results").inner_text()
    session.open(reverse("dashboard:deploy", args=[browser_world.failed_deploy.pk]))
    assert XSS in session.page.locator("#verdict").inner_text()
    assert session.dialogs == []
    assert session.problems == []
