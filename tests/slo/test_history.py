"""An SLO's history over a chosen range, with every point worked out by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from slo import status
from tests.slo.factories import add_minutes, counted_since, make_slo

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def _young_slo(now):
    """A 30-day SLO at 99% whose counts began at 11:50: ten minutes of 100 events,
    minute i (0-9) with i bad."""
    slo = make_slo(objective="99", window="30d")
    first = datetime(2026, 3, 10, 11, 50, tzinfo=UTC)
    for index in range(10):
        add_minutes(slo, first + index * MINUTE, 1, good=100 - index, total=100)
    return slo, first


def test_a_young_slo_has_a_point_for_each_of_its_minutes(now):
    slo, first = _young_slo(now)
    state = status.status(slo, now=now, history=False)
    # 1,000 events over the 10.5 minutes since 11:50 project to 1,000 × 43,200 / 10.5
    # in 30 days; 1% of those may be bad.
    allowed = 0.01 * 1_000 * 43_200 / 10.5
    assert state.budget_total == pytest.approx(allowed, rel=1e-12)

    found = status.history(
        slo, state, start=state.window_start, end=datetime(2026, 3, 10, 11, 58, tzinfo=UTC),
        step=MINUTE,
    )  # fmt: skip

    # Starts at the first counted minute, not thirty days back.
    assert found.start == first and found.remaining_at_start == 100.0
    assert [point.start for point in found.steps] == [first + i * MINUTE for i in range(8)]
    assert [point.end for point in found.steps] == [first + i * MINUTE for i in range(1, 9)]
    assert [point.sli for point in found.steps] == [
        pytest.approx((100 - i) / 100, rel=1e-12) for i in range(8)
    ]
    # Bad so far after minute i: 0 + 1 + … + i.
    assert [point.remaining_pct for point in found.steps] == [
        pytest.approx(100 * (1 - (i * (i + 1) / 2) / allowed), rel=1e-12) for i in range(8)
    ]


def test_a_later_start_carries_the_budget_spent_before_it(now):
    slo, first = _young_slo(now)
    state = status.status(slo, now=now, history=False)
    allowed = 0.01 * 1_000 * 43_200 / 10.5

    found = status.history(
        slo, state, start=first + 4 * MINUTE, end=first + 10 * MINUTE, step=2 * MINUTE
    )

    # Minutes 0-3 spent 0+1+2+3 = 6 before the range; steps of two minutes follow.
    assert found.remaining_at_start == pytest.approx(100 * (1 - 6 / allowed), rel=1e-12)
    assert [(p.bad, p.units) for p in found.steps] == [(4 + 5, 200), (6 + 7, 200), (8 + 9, 200)]
    assert found.steps[-1].remaining_pct == pytest.approx(state.budget_remaining_pct, rel=1e-12)


def test_hourly_steps_add_whole_hours_and_the_minutes_at_the_ends(now):
    slo = make_slo(objective="99.9", window="30d")
    counted_since(slo, now - timedelta(days=31))  # older than the window: no projection
    state = status.status(slo, now=now, history=False)
    # The window starts at 12:01 on 8 February; two-hour steps start on even hours.
    assert state.window_start == datetime(2026, 2, 8, 12, 1, tzinfo=UTC)
    add_minutes(slo, datetime(2026, 2, 8, 12, 0, tzinfo=UTC), 1, good=0, total=7)  # before
    add_minutes(slo, datetime(2026, 2, 8, 12, 30, tzinfo=UTC), 1, good=90, total=100)
    add_minutes(slo, datetime(2026, 2, 8, 13, 10, tzinfo=UTC), 1, good=195, total=200)
    add_minutes(slo, datetime(2026, 3, 1, 5, 59, tzinfo=UTC), 1, good=49, total=50)
    add_minutes(slo, datetime(2026, 3, 1, 6, 0, tzinfo=UTC), 1, good=1_000, total=1_000)
    state = status.status(slo, now=now, history=False)
    assert (state.total, state.budget_consumed) == (1_350, 16)

    found = status.history(
        slo, state, start=state.window_start, end=datetime(2026, 3, 10, 10, tzinfo=UTC),
        step=2 * HOUR,
    )  # fmt: skip

    steps = {point.start: (point.bad, point.units) for point in found.steps if point.units}
    assert steps == {
        # Cut at the window's start: 12:30 from the minutes, 13:00-14:00 from slo_slohour.
        datetime(2026, 2, 8, 12, 1, tzinfo=UTC): (10 + 5, 300),
        datetime(2026, 3, 1, 4, tzinfo=UTC): (1, 50),
        datetime(2026, 3, 1, 6, tzinfo=UTC): (0, 1_000),
    }
    assert found.steps[0].end == datetime(2026, 2, 8, 14, tzinfo=UTC)
    assert len(found.steps) == 1 + (found.end - datetime(2026, 2, 8, 14, tzinfo=UTC)) // (2 * HOUR)
    # 16 bad of the 1.35 allowed by 1,350 events at 99.9%.
    assert found.steps[-1].remaining_pct == pytest.approx(100 * (1 - 16 / 1.35), rel=1e-9)


def test_timeslice_steps_count_bad_minutes_not_events(now):
    slo = make_slo(objective="99", window="7d", budgeting="timeslices", timeslice_target="95")
    counted_since(slo, now - timedelta(days=8))
    add_minutes(slo, datetime(2026, 3, 10, 9, 10, tzinfo=UTC), 1, good=90, total=100)  # bad
    add_minutes(slo, datetime(2026, 3, 10, 9, 11, tzinfo=UTC), 1, good=99, total=100)  # good
    add_minutes(slo, datetime(2026, 3, 10, 10, 0, tzinfo=UTC), 1, good=95, total=100)  # good
    state = status.status(slo, now=now, history=False)

    found = status.history(
        slo, state, start=datetime(2026, 3, 10, 9, tzinfo=UTC),
        end=datetime(2026, 3, 10, 11, tzinfo=UTC), step=HOUR,
    )  # fmt: skip

    assert [(p.bad, p.units, p.events) for p in found.steps] == [(1, 2, 200), (0, 1, 100)]


def test_bad_units_in_each_interval(now):
    slo, first = _young_slo(now)
    assert status.bad_units_in(
        slo, [(first, first + 3 * MINUTE), (first + 3 * MINUTE, first + 10 * MINUTE)]
    ) == [0 + 1 + 2, 3 + 4 + 5 + 6 + 7 + 8 + 9]
    assert status.bad_units_in(slo, []) == []


def test_bad_units_in_reads_whole_hours_and_the_minutes_around_them(now):
    slo = make_slo(objective="99", window="30d")
    counted_since(slo, now - timedelta(days=31))
    add_minutes(slo, datetime(2026, 3, 9, 13, 30, tzinfo=UTC), 1, good=95, total=100)
    add_minutes(slo, datetime(2026, 3, 9, 14, 0, tzinfo=UTC), 1, good=90, total=100)
    add_minutes(slo, datetime(2026, 3, 9, 14, 59, tzinfo=UTC), 1, good=80, total=100)
    add_minutes(slo, datetime(2026, 3, 9, 16, 5, tzinfo=UTC), 1, good=70, total=100)
    deployed = datetime(2026, 3, 9, 13, 30, 31, tzinfo=UTC)  # mid-minute, as deploys are
    next_deploy = datetime(2026, 3, 9, 16, 5, 10, tzinfo=UTC)

    # 13:30 to 16:05: 5 + 10 + 20 bad (the 14:00 hour whole); 16:05 onwards: 30.
    assert status.bad_units_in(slo, [(deployed, next_deploy), (next_deploy, now)]) == [35, 30]
