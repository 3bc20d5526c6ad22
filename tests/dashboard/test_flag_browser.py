"""The flag pages in a real Chromium, as test_browser.py drives the others.

Screenshots land in test-artifacts/screenshots/ (flag-*.png), which git ignores.
"""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from tests.dashboard.factories import XSS, build_world
from tests.dashboard.flag_factories import FLAG, build_flag_world
from tests.dashboard.test_browser import (
    _LABEL_BOXES,
    CHROMIUM,
    DESKTOP,
    LAUNCH_ARGS,
    PASSWORD,
    PHONE,
    Session,
    _click_marker,
    _overlaps,
    _require_chromium,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
def flag_browser_world(transactional_db, live_server, monkeypatch):
    _require_chromium()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    world = build_world(timezone.now())
    flag_world = build_flag_world(world)
    User.objects.create_user("oncall", password=PASSWORD)
    return world, flag_world


@pytest.fixture
def session(flag_browser_world, live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        session = Session(page, live_server.url)
        session.open("/login/")
        page.fill("input[name=username]", "oncall")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        yield session
        browser.close()


def _pages(world, flag_world) -> dict[str, tuple[str, bool]]:
    """Screenshot name: (path, whether plotly draws on it)."""
    return {
        "deploy-with-flags": (reverse("dashboard:deploy", args=[world.failed_deploy.pk]), True),
        "flags": (reverse("dashboard:flags"), False),
        "flag": (reverse("dashboard:flag", args=[FLAG]) + "?range=1h", True),
        "flag-hostile": (reverse("dashboard:flag", args=[XSS]), True),
        "changes": (reverse("dashboard:deploys") + "?period=1h", True),
        "changes-flags": (reverse("dashboard:deploys") + "?period=1h&kind=flag", True),
        "service-with-flags": (reverse("dashboard:service", args=["checkout"]) + "?range=1h", True),
        "trace-with-flags": (reverse("dashboard:trace", args=[flag_world.trace_id]), False),
    }


def test_the_flag_pages_load_cleanly_on_desktop_and_phone(session, flag_browser_world):
    world, flag_world = flag_browser_world
    for viewport_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        session.page.set_viewport_size(viewport)
        for name, (path, has_charts) in _pages(world, flag_world).items():
            session.open(path)
            if has_charts:
                session.page.wait_for_selector(".main-svg", state="attached")
            assert session.page.locator("main h1").count() == 1, name
            session.shot(f"{viewport_name}-flag-{name}")
            if viewport_name == "phone":
                width = session.page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width}px)"
    assert session.problems == []


def test_on_a_phone_every_flag_tables_key_columns_stay_in_view(session, flag_browser_world):
    world, flag_world = flag_browser_world
    session.page.set_viewport_size(PHONE)
    for name, (path, _) in _pages(world, flag_world).items():
        session.open(path)
        hidden = session.page.evaluate(
            """(width) => [...document.querySelectorAll("table td.key")].filter((cell) => {
                 if (cell.closest("details:not([open])") || cell.closest("[hidden]")) return false;
                 const box = cell.getBoundingClientRect();
                 return box.width === 0 || box.left < 0 || box.right > width;
               }).map((cell) => cell.dataset.label + ": " + cell.textContent.slice(0, 40))""",
            PHONE["width"],
        )
        assert hidden == [], f"{name}: key columns out of view on a phone: {hidden}"
        assert session.page.locator("table td.key").count(), f"{name}: no key columns"
    assert session.problems == []


def test_no_flag_chart_label_overlaps_another(session, flag_browser_world):
    world, flag_world = flag_browser_world
    for viewport in (DESKTOP, PHONE):
        session.page.set_viewport_size(viewport)
        for name, (path, has_charts) in _pages(world, flag_world).items():
            if not has_charts:
                continue
            session.open(path)
            session.page.wait_for_selector(".main-svg", state="attached")
            # Folded charts (the deploy page's, on a phone) are measured unfolded.
            session.page.evaluate(
                "async () => { for (const d of document.querySelectorAll('details')) d.open = true;"
                " await Promise.all([...document.querySelectorAll('.js-plotly-plot')]"
                ".map((plot) => Plotly.Plots.resize(plot))); }"
            )
            for plot_id, boxes in session.page.evaluate(_LABEL_BOXES):
                assert boxes, (name, plot_id)
                assert _overlaps(boxes) == [], (name, viewport["width"], plot_id)
    assert session.problems == []


def test_the_flag_page_draws_each_cohort_and_polls_its_json(session, flag_browser_world):
    session.open(reverse("dashboard:flag", args=[FLAG]) + "?range=1h")
    session.page.wait_for_selector("#chart-rate .main-svg", state="attached")
    names = session.page.evaluate(
        "() => document.getElementById('chart-errors').data.map((trace) => trace.name)"
    )
    assert names == ["off", "on", "flag changes", "deploys"]
    assert "Fail at 15 minutes" in session.page.locator("#verdict").inner_text()
    assert session.page.locator("#new-errors tbody tr", has_text="FlagBoom").count() == 1
    # A tab coming back into view polls at once; the page then says when it updated.
    session.page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    session.page.wait_for_function(
        "document.getElementById('updated').textContent.startsWith('updated')"
    )
    assert session.page.locator("#budget tbody tr").count() == 2
    assert session.problems == []


def test_clicking_a_flag_change_marker_on_a_service_chart_opens_the_change(
    session, flag_browser_world
):
    _, flag_world = flag_browser_world
    session.open(reverse("dashboard:service", args=["checkout"]) + "?range=1h")
    session.page.wait_for_selector("#chart-rate .main-svg", state="attached")
    traces = session.page.locator("#chart-rate .scatterlayer .trace")
    # Drawn in order: the rate, the flag changes, the deploys.
    marker = traces.nth(traces.count() - 2).locator(".point").first
    box = marker.bounding_box()
    session.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.wait_for_url(f"**/flags/{FLAG}/?change={flag_world.change.pk}")
    assert session.problems == []


def test_the_slo_charts_mark_flag_changes_too_and_a_click_opens_the_change(
    session, flag_browser_world
):
    world, flag_world = flag_browser_world
    session.open(reverse("dashboard:slo", args=[world.slo.pk]))
    session.page.wait_for_selector("#chart-burndown .main-svg", state="attached")
    for chart_id in ("chart-sli", "chart-burndown"):
        names = session.page.evaluate(
            "(id) => document.getElementById(id).data.map((trace) => trace.name)", chart_id
        )
        assert names[-2:] == ["flag changes", "deploys"], chart_id
    _click_marker(session, "chart-burndown", "flag changes")
    session.page.wait_for_url(f"**/flags/{FLAG}/?change={flag_world.change.pk}")
    assert session.problems == []


def test_clicking_a_flags_row_opens_the_flag_page(session, flag_browser_world):
    session.open(reverse("dashboard:flags"))
    session.page.locator("#flags tbody tr", has_text=FLAG).locator("td").nth(2).click()
    session.page.wait_for_url(f"**/flags/{FLAG}/")
    assert session.problems == []


def test_a_hostile_flag_key_and_variant_show_as_text(session, flag_browser_world):
    _, flag_world = flag_browser_world
    session.open(reverse("dashboard:flags"))
    links = session.page.locator("#flags td.name a").all_inner_texts()
    assert XSS in [text.strip() for text in links]
    session.open(reverse("dashboard:flag", args=[XSS]))
    session.page.wait_for_selector("#chart-shares .main-svg", state="attached")
    assert XSS in session.page.locator("main h1").inner_text()
    assert XSS in session.page.locator("#verdict").inner_text()
    legend = session.page.locator("#chart-shares .legendtext").all_text_contents()
    assert XSS in legend
    session.open(reverse("dashboard:trace", args=[flag_world.trace_id]))
    assert XSS in session.page.locator("#flags").inner_text()
    session.open(reverse("dashboard:deploys") + "?period=1h&kind=flag")
    assert XSS in session.page.locator("#deploys").inner_text()
    assert session.dialogs == []
    assert session.problems == []
