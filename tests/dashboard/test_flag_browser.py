"""The flag pages in a real Chromium, as test_browser.py drives the others.

Screenshots land in test-artifacts/screenshots/ (flag-*.png), which git ignores.
"""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from tests.dashboard.browser import (
    PASSWORD,
    PHONE,
    assert_no_label_overlaps,
    chart_trace_names,
    click_marker,
    key_cells_out_of_view,
    load_every_page,
    logged_in,
    require_chromium,
)
from tests.dashboard.factories import XSS, build_world
from tests.dashboard.flag_factories import FLAG, build_flag_world

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
def flag_browser_world(transactional_db, live_server, monkeypatch):
    require_chromium()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    world = build_world(timezone.now())
    flag_world = build_flag_world(world)
    User.objects.create_user("oncall", password=PASSWORD)
    return world, flag_world


@pytest.fixture
def session(flag_browser_world, live_server):
    with logged_in(live_server.url) as session:
        yield session


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
    load_every_page(session, _pages(*flag_browser_world), prefix="flag-")
    assert session.problems == []


def test_on_a_phone_every_flag_tables_key_columns_stay_in_view(session, flag_browser_world):
    world, flag_world = flag_browser_world
    session.page.set_viewport_size(PHONE)
    for name, (path, _) in _pages(world, flag_world).items():
        session.open(path)
        hidden = key_cells_out_of_view(session)
        assert hidden == [], f"{name}: key columns out of view on a phone: {hidden}"
        assert session.page.locator("table td.key").count(), f"{name}: no key columns"
    assert session.problems == []


def test_no_flag_chart_label_overlaps_another(session, flag_browser_world):
    assert_no_label_overlaps(session, _pages(*flag_browser_world))
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
    # Drawn in order: the rate, the flag changes, the deploys.
    assert chart_trace_names(session, "chart-rate")[-2:] == ["flag changes", "deploys"]
    click_marker(session, "chart-rate", "flag changes")
    session.page.wait_for_url(f"**/flags/{FLAG}/?change={flag_world.change.pk}")
    assert session.problems == []


def test_the_slo_charts_mark_flag_changes_too_and_a_click_opens_the_change(
    session, flag_browser_world
):
    world, flag_world = flag_browser_world
    session.open(reverse("dashboard:slo", args=[world.slo.pk]))
    session.page.wait_for_selector("#chart-burndown .main-svg", state="attached")
    for chart_id in ("chart-sli", "chart-burndown"):
        assert chart_trace_names(session, chart_id)[-2:] == ["flag changes", "deploys"]
    click_marker(session, "chart-burndown", "flag changes")
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
