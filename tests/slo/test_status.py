from datetime import UTC, datetime, timedelta

import pytest

from slo import minutes, status
from slo.models import SLOMinute
from telemetry import rollups
from tests.slo.factories import CLIENT, add_minutes, counted_since, make_slo, store_spans

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


def _counts(slo):
    return {m.minute: (m.good, m.total) for m in SLOMinute.objects.filter(slo=slo)}


def test_it_computes_sli_budget_and_burn_rates_by_hand(now):
    slo = make_slo(objective="99.9", window="30d")
    counted_since(slo, now - timedelta(days=31))  # outside the window
    # 100,000 events in the window, 40 bad: 30 of them in the last hour, 20 in the last 5 m.
    add_minutes(slo, datetime(2026, 3, 5, tzinfo=UTC), 1, good=89_990, total=90_000)
    add_minutes(slo, datetime(2026, 3, 10, 11, 30, tzinfo=UTC), 1, good=8_990, total=9_000)
    add_minutes(slo, datetime(2026, 3, 10, 11, 58, tzinfo=UTC), 1, good=980, total=1_000)

    found = status.status(slo, now=now)

    assert (found.good, found.total) == (99_960, 100_000)
    assert found.sli == pytest.approx(0.9996, rel=1e-12)
    assert found.budget_total == pytest.approx(100, rel=1e-12)
    assert found.budget_consumed == 40
    assert found.budget_remaining_pct == pytest.approx(60, rel=1e-12)
    assert found.burn_rates["5m"] == pytest.approx(20, rel=1e-12)
    assert found.burn_rates["1h"] == pytest.approx(3, rel=1e-12)
    assert found.burn_rates["6h"] == pytest.approx(3, rel=1e-12)
    assert found.burn_rates["3d"] == pytest.approx(3, rel=1e-12)
    # 60% of a 30-day budget at 3× lasts 0.6 × 30 d ÷ 3 = 6 days.
    assert found.time_to_exhaustion.total_seconds() == pytest.approx(6 * 86_400, rel=1e-9)


def test_burn_rates_read_complete_minutes_while_the_budget_counts_every_event(now):
    slo = make_slo(objective="99.9", window="30d")
    counted_since(slo, now - timedelta(days=31))
    add_minutes(slo, datetime(2026, 3, 10, 11, 58, tzinfo=UTC), 1, good=980, total=1_000)
    add_minutes(slo, datetime(2026, 3, 10, 12, 0, tzinfo=UTC), 1, good=0, total=10)  # under way

    found = status.status(slo, now=now)

    # At 12:00:30 the 5m window is 11:55-11:59: 20 bad of 1,000 is 2%, 20× a 0.1% allowance.
    assert found.burn_rates["5m"] == pytest.approx(20, rel=1e-12)
    assert found.budget_consumed == 20 + 10
    assert found.total == 1_000 + 10  # the event 31 days ago is outside the window


def test_it_ignores_minutes_outside_the_window(now):
    slo = make_slo(window="7d")
    add_minutes(slo, now - timedelta(days=8), 1, good=0, total=500)
    add_minutes(slo, now - timedelta(days=1), 1, good=999, total=1_000)

    found = status.status(slo, now=now)

    assert (found.good, found.total, found.budget_consumed) == (999, 1_000, 1)


def test_budget_history_burns_down_to_the_remaining_budget(now):
    slo = make_slo(window="1d")
    counted_since(slo, now - timedelta(days=2))
    add_minutes(slo, now - timedelta(hours=20), 1, good=990, total=1_000)
    add_minutes(slo, now - timedelta(hours=2), 1, good=1_000, total=1_000)

    found = status.status(slo, now=now)
    history = found.budget_history

    assert history[0]["remaining_pct"] == 100.0
    assert history[-1]["remaining_pct"] == pytest.approx(found.budget_remaining_pct)
    assert found.budget_remaining_pct == pytest.approx(-400)  # 10 bad of a 2-event budget
    assert [p["remaining_pct"] for p in history] == sorted(
        (p["remaining_pct"] for p in history), reverse=True
    )
    assert history[-1]["complete"] is False and history[1]["complete"] is True
    # The SLI series has the burndown's 5-minute steps from the window's start
    # (12:01 yesterday), and adds up to the window's SLI.
    series = found.sli_history
    assert [p["at"] for p in series] == [datetime(2026, 3, 9, 15, 56, tzinfo=UTC),
                                         datetime(2026, 3, 10, 9, 56, tzinfo=UTC)]  # fmt: skip
    assert history[1]["at"] - history[0]["at"] == timedelta(minutes=5)
    assert (sum(p["good"] for p in series), sum(p["total"] for p in series)) == (1_990, 2_000)


def test_latency_sli_counts_the_exact_threshold_from_spans(now):
    slo = make_slo(name="checkout-latency", sli="latency", threshold_ms="300", objective="99")
    minute = now.replace(second=0, microsecond=0) - 10 * MINUTE
    store_spans(minute, 3, duration_us=300_000)  # exactly 300 ms: good
    store_spans(minute, 2, duration_us=300_001)  # 1 µs over: bad, though in the same bucket
    store_spans(minute, 4, duration_us=1_000, errors=4)  # fast errors: good unless required

    rollups.rollup_pending()

    assert _counts(slo) == {minute: (7, 9)}


def test_latency_sli_can_require_success(now):
    slo = make_slo(
        name="fast-and-ok", sli="latency", threshold_ms="300", latency_requires_success=True
    )
    minute = now.replace(second=0, microsecond=0)
    store_spans(minute, 5, duration_us=1_000, errors=2)

    rollups.rollup_pending()

    assert _counts(slo) == {minute: (3, 5)}


def test_it_selects_routes_by_exact_name_or_prefix(now):
    exact = make_slo(name="orders", route="/api/orders")
    prefix = make_slo(name="api", route="/api/*")
    clients = make_slo(name="outgoing", span_kind="client")
    minute = now.replace(second=0, microsecond=0)
    store_spans(minute, 3, route="/api/orders")
    store_spans(minute, 2, route="/api/orders/{id}", errors=1)
    store_spans(minute, 4, route="/health")
    store_spans(minute, 6, route="/api/orders", kind=CLIENT, errors=6)

    rollups.rollup_pending()

    assert _counts(exact) == {minute: (3, 3)}
    assert _counts(prefix) == {minute: (4, 5)}
    assert _counts(clients) == {minute: (0, 6)}


def test_it_backfills_a_new_slo_from_the_kept_spans(now):
    minute = now.replace(second=0, microsecond=0) - timedelta(days=2)
    store_spans(minute, 10, errors=1)
    rollups.rollup_pending()
    slo = make_slo()

    minutes.backfill(slo, now=now)

    assert _counts(slo) == {minute: (9, 10)}
    assert slo.backfilled_key == slo.selection_key


def test_timeslices_spend_the_budget_when_the_sli_misses_the_objective(now):
    slo = make_slo(
        name="slices", window="1h", objective="90", budgeting="timeslices", timeslice_target="95"
    )
    counted_since(slo, now - 2 * timedelta(hours=1))
    start = now.replace(second=0, microsecond=0) - 20 * MINUTE
    add_minutes(slo, start, 7, good=100, total=100)
    add_minutes(slo, start + 7 * MINUTE, 1, good=95, total=100)  # exactly on target: good
    add_minutes(slo, start + 8 * MINUTE, 2, good=94, total=100)  # two bad minutes
    # The other 50 minutes of the hour had no traffic: neither good nor bad.

    found = status.status(slo, now=now)

    assert found.unit == "minutes"
    assert (found.good, found.total) == (8, 10)
    assert found.sli == pytest.approx(0.8)  # below the 90% objective...
    assert found.budget_total == pytest.approx(1)  # 10% of the 10 minutes with traffic
    assert found.budget_consumed == 2
    assert found.budget_remaining_pct == pytest.approx(-100)  # ...so the budget is spent
    assert found.burn_rates["1h"] == pytest.approx(2.0)  # 20% bad minutes ÷ 10%
    assert found.time_to_exhaustion == timedelta(0)


def test_timeslices_keep_budget_while_the_sli_meets_the_objective(now):
    slo = make_slo(
        name="slices", window="1h", objective="90", budgeting="timeslices", timeslice_target="95"
    )
    counted_since(slo, now - 2 * timedelta(hours=1))
    start = now.replace(second=0, microsecond=0) - 30 * MINUTE
    add_minutes(slo, start, 19, good=100, total=100)
    add_minutes(slo, start + 19 * MINUTE, 1, good=0, total=100)

    found = status.status(slo, now=now)

    assert found.sli == pytest.approx(0.95)
    assert found.budget_total == pytest.approx(2)  # 10% of 20 minutes with traffic
    assert found.budget_remaining_pct == pytest.approx(50)
    assert found.budget_consumed_pct == pytest.approx(50)


def test_a_calendar_month_in_madrid_counts_local_days_across_dst():
    slo = make_slo(window="month", timezone="Europe/Madrid")
    # 1 March 00:30 CET is still 28 February in UTC; 1 April 00:30 CEST is 31 March in UTC.
    add_minutes(slo, datetime(2026, 2, 28, 22, 30, tzinfo=UTC), 1, good=0, total=7)  # February
    add_minutes(slo, datetime(2026, 2, 28, 23, 30, tzinfo=UTC), 1, good=99, total=100)
    add_minutes(slo, datetime(2026, 3, 29, 1, 30, tzinfo=UTC), 1, good=200, total=200)
    add_minutes(slo, datetime(2026, 3, 31, 21, 30, tzinfo=UTC), 1, good=48, total=50)
    add_minutes(slo, datetime(2026, 3, 31, 22, 30, tzinfo=UTC), 1, good=0, total=9)  # April

    march = status.status(slo, now=datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC))
    april = status.status(slo, now=datetime(2026, 3, 31, 23, 0, tzinfo=UTC))

    assert (march.good, march.total) == (347, 350)
    assert march.window_start == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert (april.good, april.total) == (0, 9)
    assert april.window_start == datetime(2026, 3, 31, 22, tzinfo=UTC)


def test_a_calendar_month_budget_is_the_whole_months_projected_from_traffic_so_far():
    # Issue 10, item 8, as the status sees it: 1,000 events a minute since 1 March; 2,160
    # bad so far, the last hour's at 0.2% (2× a 99.9% objective). It is 4 March, 00:00.
    slo = make_slo(window="month")
    counted_since(slo, datetime(2026, 2, 20, tzinfo=UTC))  # served before the month began
    march = datetime(2026, 3, 1, tzinfo=UTC)
    add_minutes(slo, march, 2_040, good=999, total=1_000)
    add_minutes(slo, march + 2_040 * MINUTE, 2_220, good=1_000, total=1_000)
    add_minutes(slo, march + 4_260 * MINUTE, 60, good=998, total=1_000)

    found = status.status(slo, now=datetime(2026, 3, 4, tzinfo=UTC))

    assert (found.total, found.budget_consumed) == (4_320_000, 2_160)
    # 44.64 million events expected in March allow 44,640 bad (not 4,320: 50% left).
    assert found.budget_total == pytest.approx(44_640, rel=1e-12)
    assert found.budget_remaining_pct == pytest.approx(100 * (1 - 2_160 / 44_640), rel=1e-12)
    assert found.budget_projected and not found.learning
    assert found.burn_rates["1h"] == pytest.approx(2.0, rel=1e-12)
    # 42,480 bad left at 2 a minute: 21,240 minutes, 14.75 days (the old rule said 7.75).
    assert found.time_to_exhaustion.total_seconds() == pytest.approx(14.75 * 86_400, rel=1e-9)


def test_a_new_slo_is_learning_and_one_bad_minute_does_not_spend_its_budget(now):
    slo = make_slo(window="30d")
    first = now.replace(second=0, microsecond=0) - 9 * MINUTE  # 9.5 minutes ago
    add_minutes(slo, first, 9, good=100, total=100)
    add_minutes(slo, first + 9 * MINUTE, 1, good=50, total=100)

    found = status.status(slo, now=now)

    assert found.sli == pytest.approx(0.95)
    # 1,000 events in 9.5 minutes project to 1,000 × 43,200 ÷ 9.5 over 30 days.
    assert found.budget_total == pytest.approx(0.001 * 1_000 * 43_200 / 9.5, rel=1e-12)
    assert found.budget_remaining_pct == pytest.approx(100 * (1 - 50 * 9.5 / 43_200))
    assert found.learning and found.budget_projected and not found.spent
    assert status.spent_budgets("checkout", now=now) == []


def test_the_gate_guard_needs_enough_events_before_a_budget_counts_as_spent(now, settings):
    settings.MONOENV_SLO_LEARNING_MIN_EVENTS = 500
    quiet = make_slo(name="quiet", service="quiet")
    busy = make_slo(name="busy", service="busy")
    for slo in (quiet, busy):
        counted_since(slo, now - timedelta(days=31))
    add_minutes(quiet, now - timedelta(hours=1), 1, good=90, total=100)  # 10 bad of 100
    add_minutes(busy, now - timedelta(hours=1), 1, good=900, total=1_000)

    quiet_status = status.status(quiet, now=now, history=False)

    assert quiet_status.budget_remaining_pct < 0 and quiet_status.learning
    assert not quiet_status.spent
    assert status.spent_budgets("quiet", now=now) == []
    ((spent_slo, spent_status),) = status.spent_budgets("busy", now=now)
    assert spent_slo == busy
    assert spent_status.budget_remaining_pct == pytest.approx(100 * (1 - 100 / 1.0))


def test_it_reads_the_status_of_many_slos_in_two_queries(now, django_assert_num_queries):
    definitions = [
        {"name": "a", "window": "30d"},
        {"name": "b", "window": "7d", "objective": "99"},
        {"name": "c", "window": "month", "timezone": "Europe/Madrid"},
        {"name": "d", "window": "1h", "budgeting": "timeslices", "timeslice_target": "95"},
        {"name": "e", "window": "2h", "sli": "latency", "threshold_ms": "300"},
    ]
    slos = [make_slo(**definition) for definition in definitions]
    for index, slo in enumerate(slos):
        counted_since(slo, now - timedelta(days=40))
        add_minutes(slo, now - (index + 3) * MINUTE, 3, good=1_000 - 10 * index, total=1_000)

    with django_assert_num_queries(2):
        found = status.statuses(slos, now=now)

    for slo in slos:
        alone = status.status(slo, now=now)
        assert found[slo.pk].budget_remaining_pct == pytest.approx(alone.budget_remaining_pct)
        assert found[slo.pk].burn_rates == pytest.approx(alone.burn_rates)
        assert (found[slo.pk].good, found[slo.pk].total) == (alone.good, alone.total)
    # By hand for "b": 30 bad of 3,000 events against 1% of them, all in the last 5 minutes.
    b = found[slos[1].pk]
    assert (b.budget_total, b.budget_remaining_pct) == (pytest.approx(30), pytest.approx(0))
    assert b.burn_rates["5m"] == pytest.approx(1.0)


def test_a_version_uses_its_share_of_the_same_budget(now):
    slo = make_slo(objective="99")
    counted_since(slo, now - timedelta(days=31))
    since = now.replace(second=0, microsecond=0) - 10 * MINUTE
    store_spans(since - 5 * MINUTE, 100, errors=20, version="1.0.0")  # before the deploy
    store_spans(since + 2 * MINUTE, 100, errors=10, version="1.0.0")
    store_spans(since + 2 * MINUTE, 100, errors=30, version="2.0.0")
    rollups.rollup_pending()

    (use,) = status.version_budget_use("checkout", "2.0.0", since, now=now)

    # 1% of the window's 300 events allows 3 bad; 60 are spent, 40 of them since the
    # deploy, of which 2.0.0 served 30.
    assert use.status.budget_consumed == 60
    assert use.bad == 30
    assert use.consumed_pct == pytest.approx(1_000)
    assert use.status.budget_consumed_pct == pytest.approx(2_000)
    assert use.consumed_pct <= use.status.budget_consumed_pct
    assert use.status.budget_consumed_pct + use.status.budget_remaining_pct == pytest.approx(100)
