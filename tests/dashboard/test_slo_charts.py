"""The SLO page's charts: a chosen range, from the first counted minute, complete steps only.

Every point is worked out by hand from per-minute counts laid down directly.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from dashboard import figures, pages
from slo import maths
from tests.slo.factories import add_minutes, counted_since, make_slo

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)
NOW = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
FIRST = datetime(2026, 3, 10, 11, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def young_slo():
    """A 30-day SLO at 99% counted since 11:40: twenty minutes of 100 events, minute i
    with i % 3 bad (0, 1, 2, 0, 1, 2, …)."""
    slo = make_slo(objective="99", window="30d")
    for index in range(20):
        add_minutes(slo, FIRST + index * MINUTE, 1, good=100 - index % 3, total=100)
    return slo


def test_a_young_slo_opens_on_minute_steps_from_its_first_minute(young_slo):
    data = pages.slo_page(young_slo, now=NOW)

    # 20.5 minutes of counts fit in 1h, the shortest range that holds them.
    assert data["chart_ranges"] == ["15m", "1h", "6h", "24h", "7d", "30d"]
    assert data["chart_range"] == "1h"
    assert data["chart_step_s"] == 60
    # Complete minutes only: the last ends two minutes before 12:00:30, at 11:58.
    assert data["chart_start"] == FIRST.isoformat()
    assert data["chart_end"] == datetime(2026, 3, 10, 11, 58, tzinfo=UTC).isoformat()
    assert [p["t"] for p in data["sli_series"]] == [
        (FIRST + (i + 1) * MINUTE).isoformat() for i in range(18)
    ]
    assert [p["sli_pct"] for p in data["sli_series"]] == [100 - i % 3 for i in range(18)]
    # 2,000 events over 20.5 minutes project to 2,000 × 43,200 / 20.5 in 30 days.
    allowed = 0.01 * 2_000 * 43_200 / 20.5
    spent = [sum(j % 3 for j in range(i + 1)) for i in range(18)]
    assert data["history"][0] == {"at": FIRST.isoformat(), "remaining_pct": 100.0}
    assert [p["remaining_pct"] for p in data["history"][1:]] == [
        pytest.approx(round(100 * (1 - bad / allowed), 3), abs=1e-9) for bad in spent
    ]


def test_a_shorter_range_starts_later_and_carries_what_was_spent(young_slo):
    data = pages.slo_page(young_slo, now=NOW, chart_range="15m")

    # 11:43 to 11:58: minutes 0-2 (0+1+2 = 3 bad) were spent before the chart starts.
    assert data["chart_start"] == datetime(2026, 3, 10, 11, 43, tzinfo=UTC).isoformat()
    assert len(data["sli_series"]) == 15
    allowed = 0.01 * 2_000 * 43_200 / 20.5
    assert data["history"][0]["remaining_pct"] == pytest.approx(100 * (1 - 3 / allowed), abs=1e-3)


def test_an_unknown_range_falls_back_to_the_fitting_one(viewer_client):
    slo = make_slo(objective="99", window="30d")
    first = timezone.now().replace(second=0, microsecond=0) - 30 * MINUTE
    add_minutes(slo, first, 30, good=100, total=100)
    url = reverse("dashboard:slo-json", args=[slo.pk])
    assert viewer_client.get(url + "?range=90d").json()["chart_range"] == "1h"
    assert viewer_client.get(url + "?range=6h").json()["chart_range"] == "6h"
    page = viewer_client.get(reverse("dashboard:slo", args=[slo.pk]) + "?range=6h")
    assert b'href="?range=6h" data-range="6h" aria-current="true"' in page.content


def test_an_old_slo_opens_on_its_window_in_steps_that_fit_it():
    slo = make_slo(objective="99.9", window="30d")
    counted_since(slo, NOW - timedelta(days=40))
    data = pages.slo_page(slo, now=NOW)
    assert data["chart_range"] == "30d"
    # 30 days in at most 400 points: two-hour steps, the last one complete.
    assert data["chart_step_s"] == 7200
    end = datetime.fromisoformat(data["chart_end"])
    assert end == datetime(2026, 3, 10, 10, tzinfo=UTC)
    assert end <= NOW - figures.SETTLE


def test_the_chart_bounds_rule():
    window_start = datetime(2026, 2, 8, 12, 1, tzinfo=UTC)
    bounds = figures.slo_chart_bounds(
        timedelta(days=7), window_start=window_start, counted_since=NOW - timedelta(hours=3),
        now=NOW, step_for=maths.history_step,
    )  # fmt: skip
    # Three hours of counts shown in a 7-day range: minute steps, not half-hours.
    assert bounds == (
        datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
        datetime(2026, 3, 10, 11, 58, tzinfo=UTC),
        MINUTE,
    )
    # Nothing counted yet that is complete: an empty chart, not a negative one.
    start, end, _ = figures.slo_chart_bounds(
        timedelta(hours=1), window_start=window_start, counted_since=NOW.replace(second=0),
        now=NOW, step_for=maths.history_step,
    )  # fmt: skip
    assert start == end == datetime(2026, 3, 10, 11, 58, tzinfo=UTC)
