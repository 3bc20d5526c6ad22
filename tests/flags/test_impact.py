"""The budget each variant's cohort spent, worked out by hand from the traffic below.

Traffic of `shop`, 10 requests a minute (one every 6 s), all evaluating
new-checkout. Request j of a minute is on route "GET /cart" when j is even,
"POST /checkout" when odd.
- minutes -70..-66 from `now`'s minute: all `off`, fine (before every 1h window);
- minutes -55..-6: before the change (-30) all `off`, with errors at -50 and -40;
  from the change, minute k = 0..24 after it: request 0 is `on`, erring when k is
  even (13 errors) and taking 250 ms when k % 5 == 0 (5 slow); request 5 (`off`)
  errs when k is 1, 4 or 9 (3 errors).
The 1h windows hold minutes -59..0, so 50 minutes with traffic, 500 requests,
250 of them on GET /cart.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from flags import changes, impact
from flags.models import ChangeSource, FlagChange
from slo import minutes as slo_minutes
from slo.models import SLO
from telemetry import flag_events, flag_store, ingest
from tests.flags.factories import evaluation_event, span_row, with_events

pytestmark = pytest.mark.django_db
FLAG = "new-checkout"


def minute_rows(minute, *, k=None):
    rows = []
    for j in range(10):
        at = minute + timedelta(seconds=6 * j)
        variant = "on" if k is not None and j == 0 else "off"
        error = (variant == "on" and k % 2 == 0) or (j == 5 and k in (1, 4, 9))
        slow = variant == "on" and k % 5 == 0
        route = "GET /cart" if j % 2 == 0 else "POST /checkout"
        row = span_row(service="shop", version="7", start=at, route=route, error=error,
                       duration_ms=250 if slow else 20)  # fmt: skip
        rows.append(with_events(row, [evaluation_event(FLAG, at, variant=variant)]))
    return rows


@pytest.fixture
def now():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(seconds=30)


@pytest.fixture
def change(now):
    base = now.replace(second=0)
    change_at = base - timedelta(minutes=30)
    rows = []
    for offset in [*range(-70, -65), *range(-55, -5)]:
        minute = base + timedelta(minutes=offset)
        k = offset + 30 if offset >= -30 else None
        rows += minute_rows(minute, k=k)
        if offset in (-50, -40):  # the errors before the change
            rows[-1] = with_events(
                span_row(service="shop", version="7", start=minute + timedelta(seconds=54),
                         route="POST /checkout", error=True),
                [evaluation_event(FLAG, minute + timedelta(seconds=54), variant="off")],
            )  # fmt: skip
    ingest.store_rows(rows)
    flag_store.store_evaluations(flag_events.from_span_rows(rows))
    flag_store.attribute_pending(now=timezone.now() + timedelta(seconds=1))
    created, _ = changes.record_change(
        {"flag": FLAG, "at": change_at, "services": ["shop"]}, source=ChangeSource.API
    )
    return created


def slo(now, **fields):
    objective = SLO.objects.create(service="shop", window="1h", **fields)
    slo_minutes.backfill(objective, now=now)
    return objective


def rows_by_variant(change, now, slo_name):
    rows = impact.budget_impact(change, now=now)
    return {row["variant"]: row for row in rows if row["slo"] == slo_name}


def test_each_cohort_is_charged_its_own_bad_requests(change, now):
    slo(now, name="shop-availability", objective=95)
    rows = rows_by_variant(change, now, "shop-availability")
    assert set(rows) == {"on", "off"}
    # Budget: 5% of 500 requests = 25 bad requests.
    assert rows["on"]["budget_total"] == pytest.approx(25)
    assert (rows["on"]["requests"], rows["on"]["bad"]) == (25, 13)
    assert rows["on"]["budget_consumed_pct"] == pytest.approx(52.0)
    assert (rows["off"]["requests"], rows["off"]["bad"]) == (225, 3)
    assert rows["off"]["budget_consumed_pct"] == pytest.approx(12.0)
    # The window's 18 bad requests (2 before the change): 72% used, as the budgets page says.
    assert rows["on"]["window_consumed_pct"] == pytest.approx(72.0)
    assert rows["on"]["since"] == change.at.isoformat()
    assert rows["on"]["unit"] == "events"


def test_a_latency_slo_on_a_route_prefix_counts_only_slow_requests_there(change, now):
    slo(now, name="cart-latency", objective=99, sli="latency", threshold_ms=200,
        route="GET /ca*")  # fmt: skip
    rows = rows_by_variant(change, now, "cart-latency")
    # Budget: 1% of the 250 GET /cart requests = 2.5; `on` was slow 5 times.
    assert rows["on"]["budget_total"] == pytest.approx(2.5)
    assert (rows["on"]["requests"], rows["on"]["bad"]) == (25, 5)
    assert rows["on"]["budget_consumed_pct"] == pytest.approx(200.0)
    # `off` served 4 of each minute's 5 GET /cart requests since the change, none slow.
    assert (rows["off"]["requests"], rows["off"]["bad"]) == (100, 0)
    assert rows["off"]["budget_consumed_pct"] == 0


def test_timeslice_minutes_are_shared_by_each_cohorts_bad_requests(change, now):
    slo(now, name="shop-minutes", objective=90, budgeting="timeslices", timeslice_target=95)
    rows = rows_by_variant(change, now, "shop-minutes")
    # A minute with any error is bad (9 of 10 < 95%). Budget: 10% of 50 minutes = 5.
    assert rows["on"]["unit"] == "minutes"
    assert rows["on"]["budget_total"] == pytest.approx(5)
    # Since the change: 15 bad minutes (k even, and 1 and 9) for 16 bad requests.
    assert rows["on"]["bad"] == pytest.approx(13 * 15 / 16, abs=1e-3)
    assert rows["on"]["budget_consumed_pct"] == pytest.approx(243.75)
    assert rows["off"]["budget_consumed_pct"] == pytest.approx(56.25)


def test_a_change_older_than_the_window_is_charged_from_the_windows_start(change, now):
    slo(now, name="shop-availability", objective=95)
    older = FlagChange.objects.create(flag=FLAG, services=["shop"], control="off",
                                      at=now - timedelta(minutes=90))  # fmt: skip
    rows = rows_by_variant(older, now, "shop-availability")
    # From minute -59: `off` served the 475 of the 500 requests that are not `on`'s,
    # 2 of them bad before the change and 3 after; `on` is charged as before.
    assert rows["off"]["since"] == (now.replace(second=0) - timedelta(minutes=59)).isoformat()
    assert (rows["off"]["requests"], rows["off"]["bad"]) == (475, 5)
    assert rows["off"]["budget_consumed_pct"] == pytest.approx(20.0)
    assert rows["on"]["budget_consumed_pct"] == pytest.approx(52.0)


def test_only_the_changes_services_and_request_slos_count(change, now):
    SLO.objects.create(name="other", service="elsewhere", objective=99, window="1h")
    slo(now, name="shop-client", objective=99, span_kind=3)  # client spans: no cohort
    assert impact.budget_impact(change, now=now) == []


def test_the_change_detail_shows_the_budget_each_variant_spent(change, now, client, read_token):
    from tests.helpers import bearer

    slo(now, name="shop-availability", objective=95)
    response = client.get(f"/api/v1/flags/changes/{change.pk}", headers=bearer(read_token))
    assert response.status_code == 200
    rows = {row["variant"]: row for row in response.json()["budget_impact"]}
    assert rows["on"]["service"] == "shop" and rows["on"]["slo"] == "shop-availability"
    assert rows["on"]["budget_consumed_pct"] == pytest.approx(52.0)
    assert rows["off"]["budget_consumed_pct"] == pytest.approx(12.0)
