"""The incident pages in a real Chromium: clean loads, charts, phones, hostile text as text."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from incidents import delivery, jobs
from incidents.models import Incident
from tests.incidents import factories as f

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PASSWORD = "a-long-browser-password"
XSS = '<img src=x onerror=alert(1)>'
M = timedelta(minutes=1)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def world(transactional_db, live_server, monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    t0 = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 30, bad=20)
    f.slo_minutes(slo, t0 + 30 * M, 60, bad=0)
    bad = f.deploy("checkout", "2.0", t0 - 2 * M, commit_time=t0 - 60 * M)
    f.deploy("checkout", "1.9", t0 + 30 * M, rollback_of=bad, commit_time=t0 - 90 * M)
    f.suspect_of_alert(f.page_alert(slo, t0 + 8 * M, resolved_at=t0 + 40 * M), bad)
    jobs.run_once(now=t0 + 9 * M)
    jobs.run_once(now=t0 + 70 * M)
    incident = Incident.objects.get()
    incident.title = XSS
    incident.save()
    delivery.rebuild_all()
    User.objects.create_user("oncall", password=PASSWORD)
    return incident


@pytest.fixture
def page(world, live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.problems, page.dialogs = [], []
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", "oncall")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        page.base = live_server.url
        yield page
        browser.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_the_pages_load_draw_and_show_hostile_text_as_text(page, world):
    page.goto(page.base + reverse("dashboard:incidents"), wait_until="networkidle")
    assert XSS in page.locator("#incidents tbody").inner_text()
    shot(page, "incidents")
    page.locator("#incidents tbody a").first.click()
    page.wait_for_url(f"**/incidents/{world.pk}/")
    page.wait_for_selector("#chart-budget .main-svg", state="attached")
    assert XSS in page.locator("main h1").inner_text()
    assert "Rollback of checkout" in page.locator("#timeline-list").inner_text()
    assert page.locator("#impact .tile").count() == 8
    assert page.locator("#postmortem-preview h3", has_text="Timeline").count() == 1
    shot(page, "incident")
    page.goto(page.base + reverse("dashboard:delivery"), wait_until="networkidle")
    page.wait_for_selector("#chart-deploys .main-svg", state="attached")
    assert "checkout" in page.locator("#per-service tbody").inner_text()
    shot(page, "delivery")
    page.goto(page.base + "/", wait_until="networkidle")
    page.wait_for_function("document.getElementById('dora-line').textContent.includes('deploys')")
    assert XSS in page.locator("#open-incidents").inner_text()
    assert page.dialogs == [] and page.problems == []


def test_the_overview_banner_refreshes_itself(page, world):
    page.goto(page.base + "/", wait_until="networkidle")
    rows = page.locator("#open-incident-rows")
    assert f"Incident #{world.pk} " in rows.inner_text()
    now = timezone.now()
    declared = Incident.objects.create(
        title="payments <b>down</b>", services=["payments"], started_at=now, detected_at=now,
        last_signal_at=now,
    )
    Incident.objects.filter(pk=world.pk).update(status="resolved", resolved_at=now)
    # Coming back to the tab polls at once, as the 30-second timer does meanwhile.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function(
        "document.getElementById('open-incident-rows').textContent.includes('payments <b>down</b>')"
    )
    assert f"Incident #{world.pk} " not in rows.inner_text()
    assert f"Incident #{declared.pk} payments <b>down</b>" in rows.inner_text()
    assert rows.locator("b").count() == 0 and page.problems == []


def test_confirming_the_proposal_in_the_browser(page, world):
    page.goto(page.base + reverse("dashboard:incident", args=[world.pk]), wait_until="networkidle")
    page.click("#confirm")
    page.wait_for_url(f"**/incidents/{world.pk}/")
    assert page.locator("#status").inner_text() == "resolved"
    assert page.problems == []


def test_the_pages_fit_a_phone(page, world):
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in [("incidents", reverse("dashboard:incidents")),
                       ("incident", reverse("dashboard:incident", args=[world.pk])),
                       ("delivery", reverse("dashboard:delivery"))]:  # fmt: skip
        page.goto(page.base + path, wait_until="networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate("""[...document.querySelectorAll('main *')].filter(
            (e) => e.getBoundingClientRect().right > 392).slice(0, 5).map(
            (e) => e.tagName + '.' + e.className + '#' + e.id)""")
        assert width <= 390, f"{name} scrolls sideways on a phone ({width}px): {wide}"
        shot(page, f"phone-{name}")
    assert page.problems == []
