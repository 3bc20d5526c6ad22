"""One rate rule on every page: the overview's and the service page's figures agree.

The data is laid out by hand around a `now` three and a half minutes past a
five-minute boundary (A), so a range of whole minutes and one of whole
five-minute buckets would differ, and the expected figures are worked out
below from the traffic, not from the code.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import figures, pages
from tests.dashboard.factories import store, traffic

MIN = timedelta(minutes=1)


@pytest.fixture
def boundary(db):
    """A, a five-minute boundary between five and ten minutes ago."""
    return figures.floor(timezone.now(), 5 * MIN) - 5 * MIN


def _shop(boundary):
    # 0.9.0 served and stopped: long before the hour shown.
    store(traffic(boundary - 200 * MIN, 50, per_minute=2, service="shop", version="0.9.0"))
    # 1.0.0 from A-40: 10 a minute until A-8, then 40 a minute until A+3,
    # every tenth request failing, in 10 ms to 49 ms.
    store(traffic(boundary - 40 * MIN, 32, per_minute=10, errors_every=10, service="shop"))
    store(traffic(boundary - 8 * MIN, 11, per_minute=40, errors_every=10, service="shop"))


def _both_pages(now, window: str) -> tuple[dict, dict]:
    """shop's overview row and its service page, over the same named range."""
    rows = pages.overview(now=now, window=window)["services"]
    overview = next(row for row in rows if row["service"] == "shop")
    return overview, pages.service_page("shop", figures.RANGES[window], now=now)


def test_the_overview_and_the_service_page_show_the_same_figures(boundary):
    _shop(boundary)
    now = boundary + timedelta(minutes=3, seconds=30)
    overview, service = _both_pages(now, "1h")
    # Complete minutes end two minutes before now, at A+1: [A-59, A+1).
    # 1.0.0's 32 minutes at 10 and 9 minutes [A-8, A+1) at 40: 320 + 360 = 680,
    # served from its first span at A-40 to A+1: 41 minutes, 2,460 s.
    # 0.9.0's old run never counts, and neither does the hour before A-40.
    assert overview["requests"] == service["summary"]["requests"] == 680
    assert overview["rate"] == service["summary"]["rate"] == round(680 / 2460, 4)
    assert overview["error_pct"] == service["summary"]["error_pct"] == 10.0
    assert overview["p95_ms"] == service["summary"]["p95_ms"]
    assert overview["p95_ms"] is not None
    # The sparkline and the rate chart draw the same minutes with the same rates.
    points = service["series"]["points"]
    assert overview["spark"][-len(points) :] == [point["rate"] for point in points]
    assert points[-1]["rate"] == round(40 / 60, 4)


def test_the_15_minute_window_agrees_too(boundary):
    _shop(boundary)
    now = boundary + timedelta(minutes=3, seconds=30)
    overview, service = _both_pages(now, "15m")
    # [A-14, A+1): six minutes at 10 and nine at 40, over the whole 15 minutes.
    assert overview["requests"] == service["summary"]["requests"] == 60 + 360
    assert overview["rate"] == service["summary"]["rate"] == round(420 / 900, 4)


def test_a_service_back_after_a_pause_is_rated_over_its_new_run_only(boundary):
    _shop(boundary)
    now = boundary + timedelta(hours=3, minutes=23, seconds=30)
    # Three hours later 1.1.0 starts, for the last 13 minutes at 6 a minute;
    # 1.0.0 stopped at A+3 long ago.
    store(traffic(boundary + timedelta(hours=3, minutes=10), 13, per_minute=6,
                  service="shop", version="1.1.0"))  # fmt: skip
    overview, service = _both_pages(now, "1h")
    # [A+2h21, A+3h21): 1.1.0's minutes [A+3h10, A+3h21), 11 at 6 a minute,
    # served over those 660 s: the service's first span is long before,
    # but the hour before its return is not time it served.
    assert overview["requests"] == service["summary"]["requests"] == 66
    assert overview["rate"] == service["summary"]["rate"] == round(66 / 660, 4)


def test_totals_of_any_minute_range_count_each_minute_once(boundary):
    from telemetry import coarse_rollups

    _shop(boundary)
    # Ranges that start and end on and off five-minute boundaries, short and long.
    for start_offset, end_offset in ((-40, 3), (-37, -8), (-12, -9), (-10, 0), (-3, 2)):
        start, end = boundary + start_offset * MIN, boundary + end_offset * MIN
        # 10 a minute over, 40 a minute over [A-8, A+3).
        expected = sum(
            10 if minute < -8 else 40 for minute in range(start_offset, end_offset)
            if -40 <= minute < 3
        )  # fmt: skip
        found = coarse_rollups.per_service(start=start, end=end)["shop"]
        assert found.requests == expected, (start_offset, end_offset)
        assert found.errors == expected // 10
        assert sum(found.buckets) == expected
