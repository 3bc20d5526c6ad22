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


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # The Workbook's shares (2%, 5%, 10%, 10%) over windows shrunk by days ÷ 28 keep
        # its 28-day burn rates: 7 d ÷ 15 m = 672 and 0.02 × 672 = 13.44, and so on.
        (7, [("15m", 13.44), ("1h30m", 5.6), ("6h", 2.8), ("18h", 2.8 / 3)]),
        (14, [("30m", 13.44), ("3h", 5.6), ("12h", 2.8), ("1d12h", 2.8 / 3)]),
        # Longer than 28 days: the Workbook's own windows, faster thresholds.
        (90, [("1h", 43.2), ("6h", 18.0), ("1d", 9.0), ("3d", 3.0)]),
    ],
)
def test_it_keeps_the_workbook_budget_shares_for_other_periods(days, expected):
    tiers = maths.alert_windows(timedelta(days=days))

    assert [(maths.format_duration(t.long), t.burn_rate) for t in tiers] == [
        (name, pytest.approx(rate, rel=1e-12)) for name, rate in expected
    ]


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        # 1h ÷ 28d = 1/672: the long windows shrink to 5 s, 32 s, 2.1 min and 6.4 min, so
        # whole minutes give 1m, 1m, 2m, 6m; a repeated long window takes the next minute.
        # A short window is at most its long one, so the first three are single windows.
        (
            timedelta(hours=1),
            [("page", "1m/1m", 0.02 * 60 / 1), ("page", "2m/2m", 0.05 * 60 / 2),
             ("ticket", "3m/3m", 0.10 * 60 / 3), ("ticket", "6m/5m", 0.10 * 60 / 6)],
        ),
        # 2h ÷ 28d = 1/336: 11 s, 64 s, 4.3 min and 12.9 min give 1m, 1m→2m, 4m, 13m.
        (
            timedelta(hours=2),
            [("page", "1m/1m", 0.02 * 120 / 1), ("page", "2m/2m", 0.05 * 120 / 2),
             ("ticket", "4m/4m", 0.10 * 120 / 4), ("ticket", "13m/5m", 0.10 * 120 / 13)],
        ),
    ],
)  # fmt: skip
def test_hour_long_slos_get_one_tier_per_long_window(period, expected):
    tiers = maths.alert_windows(period)

    assert [(t.severity, t.name, t.burn_rate) for t in tiers] == [
        (severity, name, pytest.approx(rate, rel=1e-12)) for severity, name, rate in expected
    ]
    longs = [t.long for t in tiers]
    assert longs == sorted(set(longs))


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # days ÷ 28 of the Workbook's long windows; short windows are 1/12 of those,
        # rounded up to whole minutes, never under the Workbook's shortest, 5m.
        # 7 d: 15m ÷ 12 = 1.25 → 2 → 5m; 90m ÷ 12 = 7.5 → 8m; 6h ÷ 12 = 30m; 18h ÷ 12 = 90m.
        (7, ["15m/5m", "1h30m/8m", "6h/30m", "18h/1h30m"]),
        # 14 d: 30m ÷ 12 = 2.5 → 3 → 5m; 3h ÷ 12 = 15m; 12h ÷ 12 = 1h; 36h ÷ 12 = 3h.
        (14, ["30m/5m", "3h/15m", "12h/1h", "1d12h/3h"]),
        # 1 d: 1h ÷ 28 = 2.1 min → 2m, which is shorter than 5m: a single 2-minute window.
        (1, ["2m/2m", "13m/5m", "51m/5m", "2h34m/13m"]),
        # 28 d and more keep the Workbook's own windows.
        (28, ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]),
        (90, ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]),
    ],
)
def test_short_windows_are_a_twelfth_of_the_long_ones_and_at_least_five_minutes(days, expected):
    tiers = maths.alert_windows(timedelta(days=days))

    assert [t.name for t in tiers] == expected
    for tier in tiers:
        assert tier.short >= min(tier.long, timedelta(minutes=5))


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


def test_a_full_budget_lasts_the_period_divided_by_the_burn_rate():
    # The Workbook: time to exhaust a full budget = period ÷ burn rate; 30 d ÷ 14.4 = 50 h.
    assert maths.time_to_exhaustion(100.0, 14.4, 30 * DAY) == timedelta(hours=50)


def test_a_calendar_month_budget_is_projected_from_the_traffic_so_far():
    # Issue 10, item 8: day 3 of a 31-day month at 1,000 events a minute, 2,160 bad so far
    # (half of a budget of 0.1% of the 4.32 million events seen), now burning 2×.
    budget = maths.period_budget(
        bad=2_160, units=4_320_000, objective=0.999, covered=3 * DAY, span=31 * DAY
    )

    # By hand: the month's 44.64 million events allow 44,640 bad; 2,160 are spent.
    assert budget.allowed == pytest.approx(44_640, rel=1e-12)
    assert budget.remaining_pct == pytest.approx(100 * (1 - 2_160 / 44_640), rel=1e-12)
    assert budget.consumed_pct + budget.remaining_pct == pytest.approx(100)
    assert budget.projected
    # 42,480 bad left, at 2 bad a minute (2 × 0.1% of 1,000): 21,240 minutes = 14.75 days.
    left = maths.time_to_exhaustion(budget.remaining_pct, 2.0, budget.span, resets_in=28 * DAY)
    assert left.total_seconds() == pytest.approx(14.75 * 86_400, rel=1e-9)


def test_a_budget_that_resets_first_never_runs_out():
    # 95% left of a 31-day budget at 1×: 29.45 days, but the month ends in 28.
    assert maths.time_to_exhaustion(95.0, 1.0, 31 * DAY, resets_in=28 * DAY) is None
    assert maths.time_to_exhaustion(95.0, 1.0, 31 * DAY) == 31 * DAY * 0.95


def test_a_budget_counted_over_its_whole_span_is_not_projected():
    budget = maths.period_budget(
        bad=150, units=100_000, objective=0.999, covered=30 * DAY, span=30 * DAY
    )

    # The SLI is 99.85%, below 99.9%: the budget of 100 is overspent by half.
    assert (budget.allowed, budget.projected) == (pytest.approx(100), False)
    assert budget.remaining_pct == pytest.approx(-50)


def test_a_young_slo_projects_its_window_from_its_first_hour():
    # 6,000 events in the first hour of a 30-day SLO: 4.32 million over the window.
    assert maths.projected_units(6_000, covered=timedelta(hours=1), span=30 * DAY) == 4_320_000
    assert maths.projected_units(6_000, covered=timedelta(0), span=30 * DAY) == 6_000


@pytest.mark.parametrize(
    ("age", "events", "period", "learning"),
    [
        (timedelta(hours=2), 10_000, 30 * DAY, True),  # younger than a day
        (2 * DAY, 499, 30 * DAY, True),  # too few events to judge
        (2 * DAY, 500, 30 * DAY, False),
        (timedelta(hours=2), 500, timedelta(hours=1), False),  # older than its own window
    ],
)
def test_it_says_when_an_slo_is_still_learning(age, events, period, learning):
    found = maths.is_learning(
        data_age=age, events=events, period=period, min_age=DAY, min_events=500
    )

    assert found is learning
