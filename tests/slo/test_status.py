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
