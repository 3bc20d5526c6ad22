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


# Burn windows at 12:17:40 end at 12:17, the last complete minute: each one has a
# partial hour at its start (from :17), whole hours, and 12:00-12:16 at its end.
MID_MINUTE = datetime(2026, 3, 10, 12, 17, 40, tzinfo=UTC)


def _burn_counts(slo, now):
    """Each burn window's (good, units, events): the counts the rates and tiers are made of."""
    read = status._read([slo], now)[slo.pk]  # the one read behind statuses() and tier_states()
    return {d: (c.good, c.units, c.events) for d, c in read.rolling.items()}


def _blocks(slo) -> None:
    """Minutes of distinct counts, from before the 3d window to the minute under way."""
    add_minutes(slo, datetime(2026, 3, 7, 12, 16, tzinfo=UTC), 1, good=0, total=7)  # outside
    add_minutes(slo, datetime(2026, 3, 7, 12, 17, tzinfo=UTC), 43, good=9, total=10)  # to 12:59
    add_minutes(slo, datetime(2026, 3, 7, 13, tzinfo=UTC), 4157, good=10, total=10)  # to 10:16
    add_minutes(slo, datetime(2026, 3, 10, 10, 17, tzinfo=UTC), 43, good=9, total=10)  # to 10:59
    add_minutes(slo, datetime(2026, 3, 10, 11, tzinfo=UTC), 60, good=10, total=10)  # to 11:59
    add_minutes(slo, datetime(2026, 3, 10, 12, tzinfo=UTC), 17, good=8, total=10)  # to 12:16
    add_minutes(slo, datetime(2026, 3, 10, 12, 17, tzinfo=UTC), 1, good=0, total=50)  # under way


def _window(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def test_burn_windows_of_occurrences_add_up_whole_hours_and_edge_minutes_by_hand():
    slo = make_slo(window="30d")
    _blocks(slo)

    assert _burn_counts(slo, MID_MINUTE) == {
        _window(5): (5 * 8, 50, 50),  # 12:12-12:16
        _window(30): (13 * 10 + 17 * 8, 300, 300),  # 11:47-12:16
        _window(60): (43 * 10 + 17 * 8, 600, 600),  # 11:17-12:16
        _window(120): (43 * 9 + 600 + 17 * 8, 1200, 1200),  # 10:17-12:16
        _window(360): (240 * 10 + 1123, 3600, 3600),  # 06:17-10:16 then as 2h
        _window(1440): (1320 * 10 + 1123, 14_400, 14_400),
        _window(4320): (43 * 9 + 4157 * 10 + 1123, 43_200, 43_200),
    }


def test_burn_windows_of_timeslices_count_each_minute_by_hand():
    # At a 95% target, 9/10 and 8/10 minutes are bad and 10/10 ones good.
    slo = make_slo(window="30d", objective="90", budgeting="timeslices", timeslice_target="95")
    _blocks(slo)

    assert _burn_counts(slo, MID_MINUTE) == {
        _window(5): (0, 5, 50),
        _window(30): (13, 30, 300),
        _window(60): (43, 60, 600),
        _window(120): (60, 120, 1200),
        _window(360): (300, 360, 3600),
        _window(1440): (1380, 1440, 14_400),
        _window(4320): (4320 - 43 - 43 - 17, 4320, 43_200),
    }


def _pattern(index: int) -> tuple[int, int]:
    """(good, total) of the index-th minute: varied, a few without traffic, some bad slices."""
    if index % 17 == 0:
        return 0, 0
    total = 20 + index % 13
    return total - (index * 7) % 5, total


def _summed(minutes: dict, start: datetime, end: datetime, target: float | None):
    """(good, units, events) over the minutes of [start, end), one minute at a time."""
    inside = [counts for minute, counts in minutes.items() if start <= minute < end]
    events = sum(total for _, total in inside)
    if target is None:
        return sum(good for good, _ in inside), events, events
    sliced = [good >= target * total for good, total in inside if total > 0]
    return sum(sliced), len(sliced), events


@pytest.mark.parametrize(
    "now",
    [MID_MINUTE, datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC),
     datetime(2026, 3, 10, 12, 59, 59, tzinfo=UTC)],
    ids=["mid-hour", "just-past-the-hour", "end-of-hour"],
)  # fmt: skip
def test_every_burn_window_equals_the_sum_of_its_minutes(now):
    # A 1d and a 7d SLO add their own tiers' windows (2m, 8m, 13m, 51m, 90m, 154m, 18h)
    # to the status windows: edges at many minutes of the hour, all read together.
    occurrences = make_slo(name="events", window="1d")
    timeslices = make_slo(
        name="slices", window="7d", objective="90", budgeting="timeslices", timeslice_target="95"
    )
    first = now.replace(second=0) - timedelta(days=3, minutes=3)
    minutes = {first + i * MINUTE: _pattern(i) for i in range(3 * 1440 + 5)}  # to one past now
    SLOMinute.objects.bulk_create(
        SLOMinute(slo=slo, minute=minute, good=good, total=total)
        for slo in (occurrences, timeslices)
        for minute, (good, total) in minutes.items()
    )

    reads = status._read([occurrences, timeslices], now)

    end = now.replace(second=0)
    assert len(reads[occurrences.pk].rolling) == 15
    for slo, target in (occurrences, None), (timeslices, 0.95):
        for duration, counts in reads[slo.pk].rolling.items():
            expected = _summed(minutes, end - duration, end, target)
            assert (counts.good, counts.units, counts.events) == expected, (slo.name, duration)
