import random
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse

from deployments import jobs, route_watch
from deployments.models import Deployment, RouteShift, Suspect
from notifications.models import Delivery, WebhookTarget
from telemetry import rollups
from tests.deployments.conftest import CLIENT, span_row, store, traffic
from tests.helpers import bearer

pytestmark = pytest.mark.django_db


def checkout_trace(start, *, payments: str, failing: bool, rng) -> list[tuple]:
    """frontend POST /checkout → its client span → payments POST /charge."""
    trace_id = rng.randbytes(16)
    root, call, charge = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    common = {"trace_id": trace_id, "rng": rng}
    return [
        span_row(service="frontend", version="v1", start=start, route="POST /checkout",
                 duration_ms=80, error=failing, span_id=root, **common),
        span_row(service="frontend", version="v1", start=start, route="POST /charge",
                 duration_ms=60, error=failing, kind=CLIENT, span_id=call, parent=root,
                 **common),
        span_row(service="payments", version=payments, start=start, route="POST /charge",
                 duration_ms=55, error=failing, span_id=charge, parent=call, **common),
    ]  # fmt: skip


def checkout_traffic(start, end, *, failing_from=None, failing_until=None, seed=7):
    """A checkout every 3 s; payments v5 from `failing_from` fails one in five."""
    rng = random.Random(seed)
    rows = []
    for second in range(0, int((end - start).total_seconds()), 3):
        moment = start + timedelta(seconds=second)
        broken = failing_from is not None and failing_from <= moment
        broken = broken and (failing_until is None or moment < failing_until)
        payments = "v5" if failing_from is not None and moment >= failing_from else "v4"
        rows += checkout_trace(moment, payments=payments, failing=broken and rng.random() < 0.2,
                               rng=rng)  # fmt: skip
    store(rows)
    rollups.rollup_pending()


def watch_at(t0, minutes: int) -> dict:
    """Run the watch so that its recent window ends `minutes` after t0."""
    return route_watch.watch(now=t0 + timedelta(minutes=minutes, seconds=30))


@pytest.fixture
def payments_broke_checkout(t0):
    """payments deployed v5 at t0 and fails; frontend did not deploy."""
    checkout_traffic(t0 - timedelta(minutes=60), t0 + timedelta(minutes=10), failing_from=t0)
    Deployment.objects.create(service="search", version="v9", started_at=t0 - timedelta(minutes=10))
    return Deployment.objects.create(
        service="payments", version="v5", previous_version="v4", started_at=t0
    )


def test_a_shift_under_a_downstream_deploy_opens_with_that_deploy_first(
    t0, payments_broke_checkout
):
    assert watch_at(t0, 10) == {"opened": 1, "resolved": 0}
    # payments regressed too, but its own deploy's analysis owns that.
    shift = RouteShift.objects.get()
    assert (shift.service, shift.route) == ("frontend", "POST /checkout")
    assert shift.metric == "error_rate"
    assert shift.resolved_at is None and shift.detected_at == t0 + timedelta(minutes=10, seconds=30)
    assert (shift.baseline_n, shift.current_n, shift.baseline_value) == (1200, 200, 0.0)
    assert shift.current_value > 0.1 and shift.adjusted_p_value < 0.01
    assert (shift.window_start, shift.window_end) == (t0, t0 + timedelta(minutes=10))
    ranked = list(shift.suspects.values_list("suspect__service", flat=True))
    assert ranked == ["payments", "search"]
    top = shift.suspects.first()
    assert top.suspect_id == payments_broke_checkout.pk
    assert "in child spans served by payments, which deployed v5" in top.evidence


def test_re_running_the_watch_does_not_duplicate_a_shift(t0, payments_broke_checkout):
    watch_at(t0, 10)
    assert watch_at(t0, 10) == {"opened": 0, "resolved": 0}
    assert RouteShift.objects.count() == 1 and Suspect.objects.count() == 2
    shift = RouteShift.objects.get()
    assert shift.last_seen_at == t0 + timedelta(minutes=10, seconds=30)


def test_a_shift_resolves_when_the_route_recovers(t0, payments_broke_checkout):
    watch_at(t0, 10)
    checkout_traffic(t0 + timedelta(minutes=10), t0 + timedelta(minutes=20), seed=8)
    assert watch_at(t0, 20) == {"opened": 0, "resolved": 1}
    shift = RouteShift.objects.get()
    assert shift.resolved_at == t0 + timedelta(minutes=20, seconds=30)
    assert (shift.current_value, shift.current_n) == (0.0, 200)


def test_a_lasting_shift_stays_open_after_the_baseline_hour(t0):
    checkout_traffic(t0 - timedelta(minutes=60), t0 + timedelta(minutes=80), failing_from=t0)
    Deployment.objects.create(service="payments", version="v5", started_at=t0)
    watch_at(t0, 10)
    # The watch's own baseline is now all regressed; the shift's is not.
    assert watch_at(t0, 80) == {"opened": 0, "resolved": 0}
    assert RouteShift.objects.open().count() == 1


def test_a_route_whose_own_service_deployed_opens_no_shift(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=60, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=10, per_minute=60, seed=2,
                error_rate=0.1),
    )  # fmt: skip
    rollups.rollup_pending()
    own = Deployment.objects.create(service="shop", version="v2", started_at=t0)
    assert watch_at(t0, 10) == {"opened": 0, "resolved": 0}
    assert not RouteShift.objects.exists()
    own.delete()
    assert watch_at(t0, 10)["opened"] == 2  # both routes' error rates, once nothing explains it


def test_a_stable_route_opens_nothing(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=60, seed=1, error_rate=0.01),
        traffic(service="shop", version="v1", start=t0, minutes=10, per_minute=60, seed=2,
                error_rate=0.01),
    )  # fmt: skip
    rollups.rollup_pending()
    assert watch_at(t0, 10) == {"opened": 0, "resolved": 0}
    assert not RouteShift.objects.exists()


def test_the_periodic_job_runs_the_watch_every_few_minutes(t0, payments_broke_checkout):
    cache.delete(route_watch.DUE_CACHE_KEY)
    now = t0 + timedelta(minutes=10, seconds=30)
    assert jobs.run_periodic(now=now).route_shifts == 1
    assert jobs.run_periodic(now=now).route_shifts == 0
    assert RouteShift.objects.count() == 1


def test_the_api_lists_shifts_with_their_suspects(t0, payments_broke_checkout, client, read_token):
    watch_at(t0, 10)
    shift = RouteShift.objects.get()
    response = client.get("/api/v1/shifts?service=frontend&open=true", headers=bearer(read_token))
    [listed] = response.json()
    assert listed["id"] == shift.pk and listed["open"] is True
    assert listed["metric"] == "error_rate" and listed["route"] == "POST /checkout"
    # search is not below frontend: no evidence, so listed only when all are asked for.
    assert [s["deployment"]["service"] for s in listed["suspects"]] == ["payments"]
    assert listed["suspects_total"] == 2
    every = client.get("/api/v1/shifts?service=frontend&all=1", headers=bearer(read_token))
    assert [s["deployment"]["service"] for s in every.json()[0]["suspects"]] == [
        "payments",
        "search",
    ]
    closed = client.get("/api/v1/shifts?open=false", headers=bearer(read_token))
    assert closed.json() == []
    detail = client.get(f"/api/v1/shifts/{shift.pk}", headers=bearer(read_token))
    assert detail.status_code == 200 and detail.json()["suspects"][0]["rank"] == 1
    assert client.get("/api/v1/shifts").status_code == 401


def test_open_shifts_show_as_banners_on_the_overview(
    t0, payments_broke_checkout, client, django_user_model
):
    watch_at(t0, 10)
    client.force_login(django_user_model.objects.create_user("viewer", password="long-password"))
    banners = client.get(reverse("dashboard:overview-json")).json()["banners"]
    [banner] = [banner for banner in banners if "no deploy of frontend" in banner["text"]]
    assert banner["text"].startswith("frontend POST /checkout: error rate rose from 0.00% to ")
    assert banner["url"] == reverse("dashboard:service", args=["frontend"])


def test_the_watch_spends_so_little_per_look_that_false_shifts_stay_under_one_a_month(settings):
    # By hand: a look every 5 minutes is 30 x 24 x 60 / 5 = 8640 looks in 30 days.
    # With at most alpha per look, the expected false shifts of a stationary
    # service are at most 8640 x alpha (the union bound); under one needs
    # alpha < 1/8640 = 1.16e-4.
    alpha = route_watch.look_alpha(every_minutes=5, confidence=0.99)
    assert alpha * 8640 <= 0.5
    assert route_watch._rules().fail_alpha == pytest.approx(alpha)


def test_a_rise_significant_at_one_look_but_not_over_a_month_opens_no_shift(t0):
    # Every 20th request fails for an hour, then every 10th for 10 minutes:
    # 30 of 300 against 90 of 1800, x2 and +5 pp, so practical. Fisher's
    # one-sided p is 9.5e-4 (scipy), 1.9e-3 after Holm over the route's two
    # metrics: below 0.01, far above the watch's 5.8e-5 per look.
    rng = random.Random(3)
    rows = []
    for index in range(70 * 30):
        moment = t0 - timedelta(minutes=60) + timedelta(seconds=2 * index)
        every = 10 if index >= 60 * 30 else 20
        rows.append(span_row(service="shop", version="v1", start=moment, route="GET /items",
                             error=index % every == 0, rng=rng))  # fmt: skip
    store(rows)
    rollups.rollup_pending()
    assert watch_at(t0, 10)["opened"] == 0


def test_a_new_shift_is_one_queued_ticket_naming_the_route_and_its_top_suspect(
    t0, payments_broke_checkout
):
    json_target = WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    WebhookTarget.objects.create(
        name="pages-only", url="http://127.0.0.1:9/pages", severities=["page"]
    )
    watch_at(t0, 10)
    watch_at(t0, 10)  # a second look at the same shift sends nothing more
    [delivery] = Delivery.objects.all()
    assert (delivery.target_id, delivery.event) == (json_target.pk, "route_shift")
    shift = RouteShift.objects.get()
    assert delivery.subject == f"deployments.routeshift:{shift.pk}"
    summary = delivery.payload["summary"]
    assert summary.startswith("[ROUTE SHIFT] frontend POST /checkout: error rate rose from 0.00%")
    assert "Top suspect: payments v5." in summary
    assert delivery.payload["shift"]["route"] == "POST /checkout"
    assert delivery.payload["url"] == shift.link()
