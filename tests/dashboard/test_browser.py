"""The dashboard in a real Chromium: pages load cleanly, charts draw, clicks navigate.

Screenshots land in test-artifacts/screenshots/, which git ignores.
"""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from slo.models import SLO, Alert
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
from tests.dashboard.factories import XSS, build_world, span_row, store
from tests.slo.factories import add_minutes

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def browser_world(transactional_db, live_server, monkeypatch):
    require_chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM work
    # below happens before any page is driven.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    world = build_world(timezone.now())
    # The new version's latencies spread from 1 ms to 8 s: some forty histogram
    # buckets, so the distribution chart has labels that could collide.
    deployed = world.failed_deploy.deployed_at
    store([
        span_row(deployed + timedelta(seconds=index), version="2.0.0",
                 duration_us=int(1_000 * 1.2**index))
        for index in range(50)
    ])  # fmt: skip
    User.objects.create_user("oncall", password=PASSWORD)
    return world


@pytest.fixture
def session(browser_world, live_server):
    with logged_in(live_server.url) as session:
        yield session


def _pages(world) -> dict[str, tuple[str, bool]]:
    """Screenshot name: (path, whether plotly draws on it)."""
    return {
        "overview": (reverse("dashboard:overview"), True),
        "overview-15m": (reverse("dashboard:overview") + "?window=15m", True),
        "service": (reverse("dashboard:service", args=["checkout"]), True),
        "service-15m": (reverse("dashboard:service", args=["checkout"]) + "?range=15m", True),
        "service-30d": (reverse("dashboard:service", args=["checkout"]) + "?range=30d", True),
        "budgets": (reverse("dashboard:budgets"), False),
        "slo": (reverse("dashboard:slo", args=[world.slo.pk]), True),
        "deploys": (reverse("dashboard:deploys"), True),
        "deploy": (reverse("dashboard:deploy", args=[world.failed_deploy.pk]), True),
        "traces": (reverse("dashboard:traces"), False),
        "trace": (reverse("dashboard:trace", args=[world.trace_id]), False),
    }


def test_every_page_loads_cleanly_on_desktop_and_phone_with_screenshots(session, browser_world):
    load_every_page(session, _pages(browser_world))
    assert session.problems == []


# Each rate chart, its step, and where its points come from in the page's data.
RATE_CHARTS = {
    "service": (["chart-rate", "chart-errors", "chart-latency"], "series.points", "t", 300),
    "service-15m": (["chart-rate", "chart-errors", "chart-latency"], "series.points", "t", 60),
    "deploy": (["chart-errors"], "charts.error_rate.0.points", "t", 60),
}


def _initial(session) -> dict:
    return session.page.evaluate("Monoenv.initialData()")


def _dig(data, path: str):
    for part in path.split("."):
        data = data[int(part)] if part.isdigit() else data[part]
    return data


def test_no_chart_ends_on_an_unfinished_bucket(session, browser_world):
    pages = _pages(browser_world)
    for name, (chart_ids, points_path, key, step) in RATE_CHARTS.items():
        session.open(pages[name][0])
        session.page.wait_for_selector(".main-svg", state="attached")
        data = _initial(session)
        generated = datetime.fromisoformat(data["generated_at"])
        last = datetime.fromisoformat(_dig(data, points_path)[-1][key])
        # The bucket behind the last point ended at least two minutes before the page.
        assert last + timedelta(seconds=step) <= generated - timedelta(minutes=2), name
        for chart_id in chart_ids:
            drawn, expected = session.page.evaluate(
                "([id, iso]) => [document.getElementById(id).data[0].x.at(-1), "
                "Monoenv.plotTime(iso)]",
                [chart_id, _dig(data, points_path)[-1][key]],
            )
            assert drawn == expected, (name, chart_id)
    # The SLO charts too end on a complete step, drawn where the data says.
    session.open(pages["slo"][0])
    session.page.wait_for_selector(".main-svg", state="attached")
    data = _initial(session)
    generated = datetime.fromisoformat(data["generated_at"])
    for chart_id, series, key in (("chart-sli", data["sli_series"], "t"),
                                  ("chart-burndown", data["history"], "at")):  # fmt: skip
        assert datetime.fromisoformat(series[-1][key]) <= generated - timedelta(minutes=2)
        drawn, expected = session.page.evaluate(
            "([id, iso]) => [document.getElementById(id).data[0].x.at(-1), Monoenv.plotTime(iso)]",
            [chart_id, series[-1][key]],
        )
        assert drawn == expected, chart_id
    assert session.problems == []


def _text(session, selector: str) -> str:
    return session.page.locator(selector).first.inner_text().strip()


def test_the_same_budget_reads_the_same_on_every_page(session, browser_world):
    pages = _pages(browser_world)
    session.open(pages["slo"][0])
    left = _text(session, "#tile-budget")  # e.g. "95.9 %"
    used = _text(session, "#tile-used")
    assert float(left.split()[0]) + float(used.split()[0]) == pytest.approx(100, abs=0.1)
    session.open(pages["budgets"][0])
    first_row = session.page.locator("#slos tbody tr").first
    budget_cell = first_row.locator("td[data-label='Budget left']")
    assert budget_cell.inner_text().splitlines()[0].strip() == left
    session.open(pages["overview"][0])
    number = left.replace(" %", "%")
    assert f"{number} of the budget left" in _text(session, "#banners")
    title = session.page.locator("#services tbody tr", has_text="checkout").locator("td[title]")
    assert f"checkout-availability: {number} left" in title.first.get_attribute("title")
    session.open(pages["deploy"][0])
    left_now = session.page.locator("#budget tbody tr").first.locator("td").nth(3)
    assert left_now.inner_text().strip() == left
    # The service page's headline requests are the sum of its routes table.
    session.open(pages["service"][0])
    data = _initial(session)
    assert data["summary"]["requests"] == sum(row["requests"] for row in data["routes"])
    assert session.problems == []


def _minute_of(data: dict) -> str:
    return data["generated_at"][:16]


def test_the_same_rate_reads_the_same_on_the_overview_and_the_service_page(
    session, browser_world
):
    service_1h = reverse("dashboard:service", args=["checkout"]) + "?range=1h"
    # Both pages over the same hour of complete minutes: loaded within one minute
    # (a second try if the clock turned a minute between the two loads).
    for _ in range(3):
        session.open(reverse("dashboard:overview"))
        row = session.page.locator("#services tbody tr", has_text="checkout")
        overview_text = row.locator("td[data-label='Rate']").inner_text().strip()
        overview = next(r for r in _initial(session)["services"] if r["service"] == "checkout")
        overview_minute = _minute_of(_initial(session))
        session.open(service_1h)
        service = _initial(session)
        if _minute_of(service) == overview_minute:
            break
    assert _minute_of(service) == overview_minute
    # The hour of complete minutes [-62, -2): 1.0.0's 320 over [-62, -30), 2.0.0's
    # 280 over [-30, -2), the fixture's 50 spans at the deploy and the trace's root.
    assert overview["rate"] == service["summary"]["rate"] == round(651 / 3600, 4)
    assert overview["requests"] == service["summary"]["requests"]
    assert overview_text == _text(session, "#tile-rate") != "\u2014"
    assert session.problems == []


def test_the_phone_layout_keeps_every_tables_key_columns_in_view(session, browser_world):
    session.page.set_viewport_size(PHONE)
    for name, (path, _) in _pages(browser_world).items():
        session.open(path)
        hidden = key_cells_out_of_view(session)
        assert hidden == [], f"{name}: key columns out of view on a phone: {hidden}"
        keys = session.page.locator("table td.key").count()
        rows = session.page.locator("table tbody tr:not(:has(td.empty))").count()
        assert keys or not rows, f"{name}: its tables mark no key columns"
    assert session.problems == []


# Every visible cell, with the box of the scrolling frame it sits in (or the page's).
_CELLS_OUT_OF_VIEW = """(width) => [...document.querySelectorAll("table th, table td")]
.filter((cell) => {
  if (cell.closest("details:not([open])") || cell.closest("[hidden]")) return false;
  const box = cell.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) return false;
  const frame = cell.closest(".table-wrap");
  const right = frame ? Math.min(frame.getBoundingClientRect().right, width) : width;
  const left = frame ? Math.max(frame.getBoundingClientRect().left, 0) : 0;
  return box.left < left - 0.5 || box.right > right + 0.5;
}).map((cell) => (cell.closest("table").id || "table") + ": " + (cell.dataset.label || "")
  + " " + cell.textContent.trim().slice(0, 30))"""


def _crowded_slo(world) -> None:
    """An SLO with everything that widens a budgets row: a long name, a demo
    badge, a long route, counts in millions, an exhausted budget and an alert."""
    slo = SLO.objects.create(
        name="demo-storefront-recommendations-latency", service="demo-storefront-recommendations",
        display_name="Storefront recommendations: p95 latency under 300 ms",
        route="/api/v2/recommendations/{customer_id}/items/*", sli="latency",
        threshold_ms=300, objective=99.95,
    )  # fmt: skip
    first = world.now.replace(second=0, microsecond=0) - timedelta(days=2)
    add_minutes(slo, first, 2 * 24 * 60, good=99_000, total=100_000)
    Alert.objects.create(
        slo=slo, severity="ticket", long_window=timedelta(days=1),
        short_window=timedelta(hours=2), threshold=3, long_burn_rate=4.0, short_burn_rate=4.0,
        budget_consumed_pct=1.0, fired_at=world.now - timedelta(minutes=10),
        last_evaluated_at=world.now,
    )  # fmt: skip


def test_every_table_column_is_in_view_on_a_laptop_and_key_ones_on_a_phone(
    session, browser_world
):
    _crowded_slo(browser_world)
    # 1366 x 768, the most common laptop screen: no table scrolls sideways.
    session.page.set_viewport_size({"width": 1366, "height": 768})
    for name, (path, _) in _pages(browser_world).items():
        session.open(path)
        hidden = session.page.evaluate(_CELLS_OUT_OF_VIEW, 1366)
        assert hidden == [], f"{name}: cells out of view at 1366 px: {hidden}"
    session.shot("laptop-budgets-crowded")
    session.page.set_viewport_size(PHONE)
    for name in ("budgets", "overview"):
        session.open(_pages(browser_world)[name][0])
        assert key_cells_out_of_view(session) == [], name
    assert session.problems == []


def test_no_chart_label_overlaps_another(session, browser_world):
    # The overview's sparklines have no labels.
    assert_no_label_overlaps(
        session, _pages(browser_world), skip=lambda name: name.startswith("overview")
    )
    assert session.problems == []


def test_clicking_a_deploys_table_row_opens_the_deploy_page(session, browser_world):
    session.open(reverse("dashboard:deploys"))
    session.page.locator("#deploys tbody tr", has_text="checkout").locator("td").nth(1).click()
    session.page.wait_for_url(f"**/deploys/{browser_world.failed_deploy.pk}/")
    assert "Fail at 15 minutes" in session.page.locator("#verdict").inner_text()
    assert session.problems == []


def test_clicking_a_deploy_marker_opens_the_deploy_page(session, browser_world):
    session.open(reverse("dashboard:service", args=["checkout"]) + "?range=6h")
    marker = session.page.locator("#chart-rate .scatterlayer .trace").last.locator(".point")
    box = marker.first.bounding_box()
    session.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.wait_for_url(f"**/deploys/{browser_world.failed_deploy.pk}/")
    assert session.problems == []


def test_the_slo_charts_mark_the_deploys_as_the_service_charts_do(session, browser_world):
    session.open(reverse("dashboard:slo", args=[browser_world.slo.pk]))
    session.page.wait_for_selector("#chart-burndown .main-svg", state="attached")
    for chart_id in ("chart-sli", "chart-burndown"):
        assert chart_trace_names(session, chart_id)[-1] == "deploys", chart_id
        # A line across the chart at the deploy, as on the service charts.
        shapes = session.page.evaluate(
            "(id) => document.getElementById(id).layout.shapes.length", chart_id
        )
        assert shapes == 1, chart_id
    click_marker(session, "chart-sli", "deploys")
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
    session.page.locator("#verdict details summary").click()
    assert XSS in session.page.locator("#verdict").inner_text()
    assert session.dialogs == []
    assert session.problems == []


def test_a_young_slo_draws_a_point_for_each_complete_minute(session, browser_world):
    slo = SLO.objects.create(name="young-availability", service="checkout", objective=99)
    first = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=12)
    add_minutes(slo, first, 12, good=95, total=100)
    session.open(reverse("dashboard:slo", args=[slo.pk]))
    session.page.wait_for_selector("#chart-sli .main-svg", state="attached")
    session.shot("desktop-slo-young")
    xs = session.page.evaluate("document.getElementById('chart-sli').data[0].x")
    ys = session.page.evaluate("document.getElementById('chart-sli').data[0].y")
    # Twelve minutes counted, the last two not yet complete: ten one-minute points
    # (eleven if the clock turned a minute while the page loaded), each at 95 %.
    assert len(xs) in (10, 11) and set(ys) == {95}
    burndown = session.page.evaluate("document.getElementById('chart-burndown').data[0].x")
    assert len(burndown) == len(xs) + 1
    assert session.page.locator("#chart-range a[aria-current]").inner_text() == "15m"
    assert "1 min steps" in session.page.locator("#chart-note").inner_text()
    assert session.problems == []
