"""slo_slohour always equals the sums of slo_slominute per UTC hour, whoever writes."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from slo import status
from slo.models import SLOMinute
from tests.slo.factories import add_minutes, counted_since, make_slo

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


def _hours() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT slo_id, hour, good, total FROM slo_slohour")
        return {(slo_id, hour): (good, total) for slo_id, hour, good, total in cursor.fetchall()}


def _sums_of_minutes() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT slo_id, date_trunc('hour', minute, 'UTC'), sum(good), sum(total) "
            "FROM slo_slominute GROUP BY 1, 2"
        )
        return {(slo_id, hour): (good, total) for slo_id, hour, good, total in cursor.fetchall()}


def test_hours_follow_inserts_updates_and_deletes(now):
    slo = make_slo()
    start = datetime(2026, 3, 10, 9, 58, tzinfo=UTC)
    add_minutes(slo, start, 5, good=90, total=100)  # 09:58-10:02: two hours

    assert _hours() == {
        (slo.pk, datetime(2026, 3, 10, 9, tzinfo=UTC)): (180, 200),
        (slo.pk, datetime(2026, 3, 10, 10, tzinfo=UTC)): (270, 300),
    }
    SLOMinute.objects.filter(minute=start + MINUTE).update(good=100)
    SLOMinute.objects.filter(minute__gte=start + 2 * MINUTE).delete()
    assert _hours() == {(slo.pk, datetime(2026, 3, 10, 9, tzinfo=UTC)): (190, 200)}
    assert _hours() == _sums_of_minutes()

    SLOMinute.objects.all().delete()
    assert _hours() == {}


def test_hours_are_emptied_with_their_minutes(now):
    slo = make_slo()
    add_minutes(slo, now - timedelta(hours=3), 120, good=1, total=1)
    with connection.cursor() as cursor:
        # Django's deferred foreign-key checks would refuse a TRUNCATE in this transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE slo_slominute")

    assert _hours() == {}
    assert status.status(slo, now=now, history=False).total == 0


def test_a_window_sums_whole_hours_and_the_minutes_at_its_ends(now):
    # A 1-day window at 12:00:30 runs from 12:01 yesterday to 12:01 today: its first 59
    # minutes and its last one lie outside whole hours.
    slo = make_slo(window="1d")
    counted_since(slo, now - timedelta(days=2))
    yesterday = datetime(2026, 3, 9, 12, tzinfo=UTC)
    add_minutes(slo, yesterday, 1, good=0, total=7)  # 12:00 yesterday: outside the window
    add_minutes(slo, yesterday + MINUTE, 59, good=9, total=10)  # 12:01-12:59: inside
    add_minutes(slo, yesterday + 60 * MINUTE, 1380, good=10, total=10)  # 13:00-11:59
    add_minutes(slo, datetime(2026, 3, 10, 12, tzinfo=UTC), 1, good=1, total=3)  # 12:00 now

    found = status.status(slo, now=now, history=False)
    drawn = status.status(slo, now=now, history=True)  # from minute buckets only

    assert (found.good, found.total) == (59 * 9 + 13_800 + 1, 590 + 13_800 + 3)
    assert (drawn.good, drawn.total) == (found.good, found.total)
