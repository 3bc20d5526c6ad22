"""A long range's breakdown is reused while its rows are unchanged, and never shows stale counts."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard import figures, pages
from tests.dashboard.factories import span_row, store

pytestmark = pytest.mark.django_db


def _merges(queries) -> int:
    """How many queries merged histograms (coarse_rollups.breakdown's GROUPING SETS)."""
    return sum("GROUPING SETS" in query["sql"] for query in queries)


@pytest.mark.parametrize("name", ["24h", "7d"])
def test_a_late_span_in_a_long_range_shows_on_the_next_poll(world, name):
    cache.clear()
    time_range = figures.RANGES[name]
    first = pages.service_page("checkout", time_range, now=world.now)
    with CaptureQueriesContext(connection) as unchanged:
        again = pages.service_page("checkout", time_range, now=world.now)
    assert _merges(unchanged.captured_queries) == 0
    assert again["summary"] == first["summary"] and again["series"] == first["series"]

    # One late failing request, 80 minutes ago: inside both ranges' complete buckets.
    late = world.now.replace(second=0, microsecond=0) - timedelta(minutes=80)
    store([span_row(late + timedelta(seconds=7), error=True)])
    with CaptureQueriesContext(connection) as changed:
        after = pages.service_page("checkout", time_range, now=world.now)

    assert _merges(changed.captured_queries) == 1
    assert after["summary"]["requests"] == first["summary"]["requests"] + 1
    routes = {row["route"]: row["requests"] for row in after["routes"]}
    assert routes["/api/orders"] == {r["route"]: r["requests"] for r in first["routes"]}[
        "/api/orders"
    ] + 1


def test_minute_ranges_are_read_afresh(world):
    cache.clear()
    pages.service_page("checkout", figures.RANGES["1h"], now=world.now)
    with CaptureQueriesContext(connection) as queries:
        pages.service_page("checkout", figures.RANGES["1h"], now=world.now)
    assert _merges(queries.captured_queries) == 1


@pytest.mark.parametrize("name", ["24h", "7d"])
def test_a_range_that_moves_on_a_bucket_merges_only_the_buckets_it_gained_and_lost(
    world, name, monkeypatch
):
    from telemetry import coarse_rollups

    cache.clear()
    time_range = figures.RANGES[name]
    pages.service_page("checkout", time_range, now=world.now)
    # One step later, with a late failing request in a bucket both ranges hold.
    later = world.now + time_range.step
    late = world.now.replace(second=0, microsecond=0) - timedelta(minutes=80)
    merged = []
    real = coarse_rollups.breakdown

    def recording(service, *, start, end, step):
        merged.append(end - start)
        return real(service, start=start, end=end, step=step)

    monkeypatch.setattr(coarse_rollups, "breakdown", recording)
    moved = pages.service_page("checkout", time_range, now=later)
    # Only the buckets the range lost and gained were merged: one step each.
    assert merged == [time_range.step, time_range.step]
    # And the moved figures are exactly a fresh merge's.
    cache.clear()
    fresh = pages.service_page("checkout", time_range, now=later)
    for part in ("summary", "series", "routes", "versions"):
        assert moved[part] == fresh[part], part

    # A late span in the buckets the range keeps: the next move merges afresh, so its
    # figures are a fresh merge's, late span included. (Not fresh + 1: the bucket the
    # range gains may hold world's last minutes, depending on where the clock stands.)
    store([span_row(late + timedelta(seconds=7), error=True)])
    merged.clear()
    after = pages.service_page("checkout", time_range, now=later + time_range.step)
    assert time_range.span in merged
    cache.clear()
    again = pages.service_page("checkout", time_range, now=later + time_range.step)
    assert after["summary"] == again["summary"] and after["routes"] == again["routes"]
