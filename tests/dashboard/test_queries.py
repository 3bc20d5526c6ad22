"""The figures behind the pages, and how many queries the busiest pages make.

Page functions take `now`, so expectations are worked out by hand from the
factories' traffic: checkout 1.0.0 sends 10 requests a minute over
[-90, -30) minutes, 2.0.0 10 a minute over [-30, +1), payments 5 a minute over
[-90, +1); and one cross-service trace five minutes ago (one checkout and one
payments server span). Ranges end at the last bucket that ended two minutes ago.
"""

from datetime import datetime, timedelta

import pytest
from django.urls import reverse

from dashboard import figures, pages
from deployments.models import Suspect
from slo.models import SLO, Alert, SLOMinute
from telemetry.models import CoarseRollup, Span
from tests.dashboard.factories import span_row, store, traffic

MIN = timedelta(minutes=1)


def _minute(world):
    return world.now.replace(second=0, microsecond=0)


def test_service_figures_count_complete_minutes_over_the_time_served(world):
    data = pages.service_page("checkout", figures.RANGES["1h"], now=world.now)
    end = _minute(world) - 2 * MIN
    start = end - timedelta(hours=1)
    # 1.0.0 over [-62, -30): 320, 2.0.0 over [-30, -2): 280, and the trace's root span.
    assert data["summary"]["requests"] == 320 + 280 + 1
    assert data["summary"]["rate"] == round(601 / 3600, 4)
    versions = {row["version"]: row for row in data["versions"]}
    # 1.0.0 last served at the trace, five minutes ago: its rate counts until then.
    served = (world.now - 5 * MIN - start).total_seconds()
    assert versions["1.0.0"]["requests"] == 321
    assert versions["1.0.0"]["rate"] == round(321 / served, 4)
    # 2.0.0 started at -30: 280 requests over 28 minutes is 10 a minute.
    assert versions["2.0.0"]["rate"] == round(280 / (28 * 60), 4)
    assert versions["2.0.0"]["error_pct"] == 25.0
    assert versions["2.0.0"]["deploy"]["verdict"] == "fail"
    assert [deploy["version"] for deploy in data["deploys"]] == ["2.0.0"]


def test_no_chart_point_is_an_unfinished_bucket(world):
    for name in ("15m", "1h", "6h", "24h"):
        time_range = figures.RANGES[name]
        series = pages.service_page("checkout", time_range, now=world.now)["series"]
        last = series["points"][-1]
        last_start = datetime.fromisoformat(last["t"])
        assert last_start + time_range.step <= world.now - figures.SETTLE, name
        assert series["end"] == figures.complete_until(world.now, time_range.step).isoformat()


def test_a_young_service_is_rated_from_its_first_span(world):
    # 60 requests a minute, starting four minutes before now.
    start = _minute(world) - 4 * MIN
    store(traffic(start, 5, per_minute=60, service="fresh"))
    row = pages.overview(now=world.now, window="1h")
    fresh = next(service for service in row["services"] if service["service"] == "fresh")
    # The overview's hour holds fresh's complete minutes [-4, -2): 1 request/s.
    assert fresh["rate"] == 1.0
    page = pages.service_page("fresh", figures.RANGES["15m"], now=world.now)
    # Complete minutes [-4, -2): 120 requests over the 120 s it served, not over 15 minutes.
    assert page["summary"]["requests"] == 120
    assert page["summary"]["rate"] == 1.0
    # The chart starts where the data starts, and the page says the service is young.
    assert page["series"]["start"] == start.isoformat()
    assert page["serving_since"] == start.isoformat()
    older = pages.service_page("checkout", figures.RANGES["1h"], now=world.now)
    assert older["serving_since"] is None


def test_the_overview_shows_what_serves_now_and_sorts_the_paging_service_first(world):
    store([span_row(world.now - 20 * MIN, version="0.9.0")])
    data = pages.overview(now=world.now, window="1h")
    services = [row["service"] for row in data["services"]]
    assert services[0] == "checkout"
    checkout = data["services"][0]
    # deployments' rule: what served within two minutes of the service's last span.
    # 1.0.0's last span (a call in the trace) is five minutes old, 0.9.0's twenty.
    assert checkout["serving"] == ["2.0.0"]
    assert checkout["serving_deploy"]["verdict"] == "fail"
    assert checkout["silent_since"] is None
    payments = next(row for row in data["services"] if row["service"] == "payments")
    # payments serves 5 a minute over the hour of complete minutes [-62, -2), plus
    # the trace's span five minutes ago.
    expected = 5 * 60 + 1
    assert payments["requests"] == expected
    # The sparkline's per-second rates (rounded to 4 places) add up to the same minutes.
    assert sum(point or 0 for point in payments["spark"]) * 60 == pytest.approx(expected, abs=0.2)
    assert {banner["level"] for banner in data["banners"]} == {"bad"}
    assert len(data["banners"]) == 2  # the SLO's page alert and the failed deploy


def test_one_banner_per_slo_with_its_worst_tier_and_the_burn_now(world):
    Alert.objects.create(
        slo=world.slo, severity="ticket", long_window=timedelta(days=1),
        short_window=timedelta(hours=2), threshold=3, long_burn_rate=4.0, short_burn_rate=4.0,
        budget_consumed_pct=1.0, fired_at=world.now - 10 * MIN, last_evaluated_at=world.now,
    )  # fmt: skip
    banners = [b for b in pages.overview(now=world.now)["banners"] if "SLO" in b["text"]]
    assert len(banners) == 1
    state = pages.slo_page(world.slo, now=world.now)
    # The worst tier is the page; the banner carries its burn rate now, not at firing (20×).
    assert state["alert"]["severity"] == "page"
    assert f"burning {state['alert']['burn_rate']:.1f}×" in banners[0]["text"]
    assert state["alert"]["burn_rate"] != 20.0


def test_a_calming_alert_says_so_in_its_banner(world):
    # slo/evaluation.py keeps the alert open for five calm minutes after its burn drops.
    calm_since = world.now.replace(second=0, microsecond=0) - 2 * MIN
    Alert.objects.filter(pk=world.alert.pk).update(calm_since=calm_since)
    banners = [b for b in pages.overview(now=world.now)["banners"] if "SLO" in b["text"]]
    assert f"page alert calming since {calm_since:%H:%M} UTC: " in banners[0]["text"]
    assert "burning" not in banners[0]["text"]


def test_budget_figures_add_up_on_every_page(world):
    slo_page = pages.slo_page(world.slo, now=world.now)
    budgets = pages.budgets(now=world.now)["slos"][0]
    overview = pages.overview(now=world.now)["services"][0]["slo"]
    assert slo_page["budget_remaining_pct"] == budgets["budget_remaining_pct"]
    assert overview["budget_remaining_pct"] == budgets["budget_remaining_pct"]
    assert slo_page["budget_used_pct"] + slo_page["budget_remaining_pct"] == 100
    # The burndown ends at its last complete minute: the budget left, plus what the
    # minutes since then spent.
    chart_end = datetime.fromisoformat(slo_page["chart_end"])
    assert chart_end == _minute(world) - 2 * MIN
    spent_since = sum(
        m.total - m.good for m in SLOMinute.objects.filter(slo=world.slo, minute__gte=chart_end)
    )
    assert spent_since > 0  # errors every fourth request: the two figures really differ
    assert slo_page["history"][-1]["remaining_pct"] == pytest.approx(
        slo_page["budget_remaining_pct"] + 100 * spent_since / slo_page["budget_total"], abs=0.06
    )


def test_budgets_are_sorted_fastest_burn_first_with_the_suspect_linked(world):
    calm = SLO.objects.create(name="payments-availability", service="payments", objective=99.5)
    from slo import minutes as slo_minutes

    slo_minutes.backfill(calm, now=world.now)
    Suspect.objects.create(
        alert_id=world.alert.pk, suspect=world.failed_deploy, rank=1, score=0.9, evidence="onset"
    )
    rows = pages.budgets(now=world.now)["slos"]
    burns = [row["burn_rates"]["1h"] for row in rows]
    assert burns == sorted(burns, reverse=True)
    assert rows[0]["name"] == "checkout-availability"
    assert rows[0]["cause"]["version"] == "2.0.0"
    assert rows[0]["cause"]["url"] == reverse("dashboard:deploy", args=[world.failed_deploy.pk])
    assert rows[1]["cause"] is None  # nothing fires on payments, so nothing is blamed


def test_five_minute_and_hourly_rollups_add_up_to_the_minutes(world):
    five = sum(CoarseRollup.objects.filter(resolution=300).values_list("requests", flat=True))
    hours = sum(CoarseRollup.objects.filter(resolution=3600).values_list("requests", flat=True))
    # 600 + 310 checkout, 455 payments, and the trace's two server spans.
    assert five == hours == 600 + 310 + 455 + 2


def test_trace_search_filters_by_service_version_error_and_duration(viewer_client, world):
    url = reverse("dashboard:traces-json")
    errors = viewer_client.get(url, {"service": "payments", "errors": "only"}).json()["traces"]
    assert [row["trace_id"] for row in errors] == [world.trace_id]
    slow = viewer_client.get(url, {"min_ms": "45"}).json()["traces"]
    assert [row["trace_id"] for row in slow] == [world.trace_id]
    assert slow[0]["span_count"] == 3 and slow[0]["service_count"] == 2
    newer = viewer_client.get(url, {"service": "checkout", "version": "2.0.0"}).json()["traces"]
    assert newer and all(row["service"] == "checkout" for row in newer)


def test_trace_search_pages_past_fifty_without_skipping_a_trace(viewer_client, world):
    url = reverse("dashboard:traces-json")
    query = {"service": "payments", "start": (world.now - timedelta(hours=24)).isoformat(),
             "end": world.now.isoformat()}  # fmt: skip
    seen, offset = [], 0
    while offset is not None:
        page = viewer_client.get(url, {**query, "offset": offset}).json()
        seen += [row["trace_id"] for row in page["traces"]]
        offset = page["next_offset"]
    stored = Span.objects.filter(service="payments", start_time__lt=world.now)
    assert len(seen) == len(set(seen)) == stored.values("trace_id").distinct().count() > 400


def test_a_trace_id_search_opens_the_trace(viewer_client, world):
    response = viewer_client.get(reverse("dashboard:traces"), {"trace_id": world.trace_id})
    assert response["Location"] == reverse("dashboard:trace", args=[world.trace_id])


def test_deploy_page_tells_the_verdict_and_links_findings_to_traces(world):
    data = pages.deploy_page(world.failed_deploy, now=world.now)
    assert data["headline"][0].startswith("Errors on the whole service rose from 2.00 % to 25.00 %")
    # 23 pp of the 150 new requests: about 34 more failed.
    assert "about 34 more of 150 requests failed" in data["headline"][0]
    assert "version=2.0.0" in data["findings"][0]["traces_url"]
    assert "errors=only" in data["findings"][0]["traces_url"]
    assert data["new_errors"][0]["error_type"] == "KeyError"
    assert len(data["new_errors"][0]["traces"]) == 3
    assert data["suspects"][0]["service"] == "payments"
    assert {row["version"] for row in data["charts"]["error_rate"]} == {"1.0.0", "2.0.0"}


def test_deploy_charts_read_the_deploys_environment_only(world):
    store(traffic(world.failed_deploy.deployed_at, 20, per_minute=30, service="checkout",
                  version="2.0.0", errors_every=1, environment="staging"))  # fmt: skip
    chart = pages.deploy_page(world.failed_deploy, now=world.now)["charts"]
    new = next(series for series in chart["error_rate"] if series["is_new"])
    # Production's 2.0.0 fails one request in four; staging's all-failing ones stay out.
    assert {point["error_pct"] for point in new["points"]} <= {20.0, 30.0}
    assert max(point["requests"] for point in new["points"]) == 10


def test_busiest_pages_make_a_bounded_number_of_queries(
    viewer_client, world, django_assert_max_num_queries
):
    pages_most = {
        reverse("dashboard:overview"): 14,
        reverse("dashboard:service", args=["checkout"]) + "?range=30d": 12,
        reverse("dashboard:budgets"): 8,
        reverse("dashboard:slo", args=[world.slo.pk]): 12,
        reverse("dashboard:deploys"): 8,
        reverse("dashboard:deploy", args=[world.failed_deploy.pk]): 20,
        reverse("dashboard:traces"): 8,
    }
    for url, most in pages_most.items():
        with django_assert_max_num_queries(most):
            assert viewer_client.get(url).status_code == 200


def test_overview_and_budgets_query_counts_do_not_grow_with_the_slos(
    viewer_client, world, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(url):
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(url).status_code == 200
        return len(captured)

    urls = [reverse("dashboard:overview"), reverse("dashboard:budgets")]
    before = [count(url) for url in urls]
    for index in range(5):
        SLO.objects.create(name=f"extra-{index}", service="payments", objective=99)
    assert [count(url) for url in urls] == before


def test_assets_are_served_from_the_package_with_long_cache(viewer_client):
    response = viewer_client.get(reverse("dashboard:asset", args=["plotly.min.js"]))
    assert response.status_code == 200
    assert "immutable" in response["Cache-Control"]
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()
    assert viewer_client.get("/assets/..%2Fsettings.py").status_code == 404


def test_demo_services_are_labelled_as_demo_wherever_they_appear(viewer_client, world):
    store(traffic(_minute(world) - 30 * MIN, 30, per_minute=6, service="demo-shop"))
    SLO.objects.create(name="demo-shop-availability", service="demo-shop", objective=99)
    overview = pages.overview(now=world.now)["services"]
    assert {row["service"]: row["demo"] for row in overview} == {
        "checkout": False, "payments": False, "demo-shop": True,
    }  # fmt: skip
    budgets = {row["service"]: row["demo"] for row in pages.budgets(now=world.now)["slos"]}
    assert budgets == {"checkout": False, "demo-shop": True}
    assert pages.service_page("demo-shop", figures.RANGES["1h"], now=world.now)["demo"] is True
    url = reverse("dashboard:traces-json")
    found = viewer_client.get(url, {"service": "demo-shop"}).json()["traces"]
    assert found and all(row["demo"] for row in found)
    # The pickers that list services say which are the demo's.
    picker = viewer_client.get(reverse("dashboard:traces")).content.decode()
    assert '<option value="demo-shop">demo-shop (demo)</option>' in picker
    assert '<option value="checkout">checkout</option>' in picker
