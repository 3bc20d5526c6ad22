from datetime import UTC, datetime, timedelta

import pytest

from slo import maths

DAY = timedelta(days=1)


def test_it_computes_burn_rate_from_the_error_ratio():
    # 30 bad of 10,000 is 0.3%; a 99.9% objective allows 0.1%.
    assert maths.burn_rate(9_970, 10_000, 0.999) == pytest.approx(3.0, rel=1e-12)
    assert maths.burn_rate(980, 1_000, 0.999) == pytest.approx(20.0, rel=1e-12)
    assert maths.burn_rate(0, 0, 0.999) == 0.0


def test_it_computes_budget_and_remaining_by_hand():
    budget = maths.error_budget(100_000, 0.999)
    assert budget == pytest.approx(100.0, rel=1e-12)
    assert maths.budget_remaining_pct(40, budget) == pytest.approx(60.0, rel=1e-12)
    assert maths.budget_remaining_pct(150, budget) == pytest.approx(-50.0, rel=1e-12)
    assert maths.budget_remaining_pct(0, 0) == 100.0


def test_it_projects_time_to_exhaustion():
    # 60% left of a 30-day budget, burning 3×: 0.6 × 30 d ÷ 3 = 6 days.
    assert maths.time_to_exhaustion(60.0, 3.0, 30 * DAY) == 6 * DAY
    assert maths.time_to_exhaustion(60.0, 0.0, 30 * DAY) is None
    assert maths.time_to_exhaustion(-5.0, 2.0, 30 * DAY) == timedelta(0)


def test_it_gives_the_budget_a_burn_consumes():
    assert maths.budget_consumed_by_burn(14.4, timedelta(hours=1), 30 * DAY) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (
            30,
            [
                ("page", "1h/5m", 14.4),
                ("page", "6h/30m", 6.0),
                ("ticket", "1d/2h", 3.0),
                ("ticket", "3d/6h", 1.0),
            ],
        ),
        (
            28,
            [
                ("page", "1h/5m", 13.44),
                ("page", "6h/30m", 5.6),
                ("ticket", "1d/2h", 2.8),
                ("ticket", "3d/6h", 0.9333333333333333),
            ],
        ),
    ],
)
def test_it_matches_the_workbook_burn_rate_table(days, expected):
    tiers = maths.alert_windows(timedelta(days=days))

    assert [(t.severity, t.name) for t in tiers] == [(s, n) for s, n, _ in expected]
    for tier, (_, _, rate) in zip(tiers, expected, strict=True):
        assert tier.burn_rate == pytest.approx(rate, rel=1e-12)
        assert tier.short == tier.long / 12


def test_it_keeps_the_budget_shares_for_other_windows():
    for days in (7, 14, 90):
        tiers = maths.alert_windows(timedelta(days=days))
        shares = [
            maths.budget_consumed_by_burn(t.burn_rate, t.long, timedelta(days=days)) for t in tiers
        ]
        assert shares == pytest.approx([0.02, 0.05, 0.10, 0.10])


def test_it_shrinks_the_windows_of_short_slos():
    tiers = maths.alert_windows(timedelta(days=7))

    assert [t.long for t in tiers] == [
        timedelta(minutes=15),
        timedelta(minutes=90),
        timedelta(hours=6),
        timedelta(hours=18),
    ]
    assert tiers[0].burn_rate == pytest.approx(13.44)


def test_it_bounds_a_madrid_month_across_the_spring_dst_change():
    start, end = maths.calendar_period(
        "month", "Europe/Madrid", datetime(2026, 3, 29, 12, tzinfo=UTC)
    )

    assert start == datetime(2026, 2, 28, 23, tzinfo=UTC)  # 1 March, 00:00 CET
    assert end == datetime(2026, 3, 31, 22, tzinfo=UTC)  # 1 April, 00:00 CEST
    assert end - start == 31 * DAY - timedelta(hours=1)


def test_it_bounds_a_madrid_month_across_the_autumn_dst_change():
    start, end = maths.calendar_period("month", "Europe/Madrid", datetime(2026, 10, 1, tzinfo=UTC))

    assert start == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert end - start == 31 * DAY + timedelta(hours=1)


def test_it_puts_a_local_midnight_in_the_new_month():
    # 31 March 22:30 UTC is 1 April 00:30 in Madrid.
    start, _ = maths.calendar_period(
        "month", "Europe/Madrid", datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    )

    assert start == datetime(2026, 3, 31, 22, tzinfo=UTC)


def test_it_starts_weeks_on_a_local_monday():
    start, end = maths.calendar_period(
        "week", "Europe/Madrid", datetime(2026, 3, 29, 12, tzinfo=UTC)
    )

    assert start == datetime(2026, 3, 22, 23, tzinfo=UTC)  # Monday 23 March 00:00 CET
    assert end == datetime(2026, 3, 29, 22, tzinfo=UTC)  # Monday 30 March 00:00 CEST
    assert end - start == 7 * DAY - timedelta(hours=1)


def test_it_parses_windows():
    assert maths.parse_window("28d").rolling == 28 * DAY
    assert maths.parse_window("12h").rolling == timedelta(hours=12)
    assert maths.parse_window("month", "Europe/Madrid").calendar == "month"
    for bad in ("30", "0d", "1w", "month "):
        with pytest.raises(ValueError, match="window"):
            maths.parse_window(bad)
    with pytest.raises(ValueError, match="time zone"):
        maths.parse_window("month", "Mars/Olympus")


def test_it_formats_and_parses_durations():
    for text, duration in [("5m", timedelta(minutes=5)), ("1d6h", timedelta(hours=30))]:
        assert maths.format_duration(duration) == text
        assert maths.parse_duration(text) == duration
