"""The figures behind the pages, and how many queries the busiest pages make."""

from django.urls import reverse

from telemetry.models import CoarseRollup


def test_overview_counts_the_last_hour_and_sorts_the_paging_service_first(viewer_client, world):
    data = viewer_client.get(reverse("dashboard:overview-json")).json()
    services = [row["service"] for row in data["services"]]
    assert services[0] == "checkout"
    payments = next(row for row in data["services"] if row["service"] == "payments")
    assert payments["requests"] >= 5 * 55
    assert payments["p95_ms"] is not None
    assert {banner["level"] for banner in data["banners"]} == {"bad"}
    assert len(data["banners"]) == 2  # the page alert and the failed deploy


def test_five_minute_and_hourly_rollups_add_up_to_the_minutes(world):
    five = sum(CoarseRollup.objects.filter(resolution=300).values_list("requests", flat=True))
    hours = sum(CoarseRollup.objects.filter(resolution=3600).values_list("requests", flat=True))
    # 600 + 310 checkout, 455 payments, and the trace's two server spans.
    assert five == hours == 600 + 310 + 455 + 2


def test_service_page_breaks_down_by_route_and_version(viewer_client, world):
    url = reverse("dashboard:service-json", args=["checkout"]) + "?range=6h"
    data = viewer_client.get(url).json()
    versions = {row["version"]: row for row in data["versions"]}
    assert versions["2.0.0"]["error_pct"] > 20
    assert versions["1.0.0"]["error_pct"] < 5
    assert versions["2.0.0"]["deploy"]["verdict"] == "fail"
    assert data["routes"][0]["route"] == "/api/orders"
    assert data["summary"]["requests"] == 600 + 310 + 1
    assert [deploy["version"] for deploy in data["deploys"]] == ["2.0.0"]


def test_trace_search_filters_by_service_error_and_duration(viewer_client, world):
    url = reverse("dashboard:traces-json")
    errors = viewer_client.get(url, {"service": "payments", "errors": "only"}).json()["traces"]
    assert [row["trace_id"] for row in errors] == [world.trace_id]
    slow = viewer_client.get(url, {"min_ms": "45"}).json()["traces"]
    assert [row["trace_id"] for row in slow] == [world.trace_id]
    assert slow[0]["span_count"] == 3 and slow[0]["service_count"] == 2


def test_a_trace_id_search_opens_the_trace(viewer_client, world):
    response = viewer_client.get(reverse("dashboard:traces"), {"trace_id": world.trace_id})
    assert response["Location"] == reverse("dashboard:trace", args=[world.trace_id])


def test_budgets_put_the_paging_slo_first(viewer_client, world):
    data = viewer_client.get(reverse("dashboard:budgets-json")).json()
    assert data["slos"][0]["alerts"][0]["severity"] == "page"


def test_deploy_page_links_new_errors_to_example_traces(viewer_client, world):
    url = reverse("dashboard:deploy-json", args=[world.failed_deploy.pk])
    data = viewer_client.get(url).json()
    assert data["new_errors"][0]["error_type"] == "KeyError"
    assert len(data["new_errors"][0]["traces"]) == 3
    assert data["findings"][0]["baseline"] == 2.0 and data["findings"][0]["unit"] == "%"
    assert data["suspects"][0]["service"] == "payments"
    assert {row["version"] for row in data["charts"]["error_rate"]} == {"1.0.0", "2.0.0"}


def test_busiest_pages_make_a_bounded_number_of_queries(
    viewer_client, world, django_assert_max_num_queries
):
    pages = {
        reverse("dashboard:overview"): 12,
        reverse("dashboard:service", args=["checkout"]) + "?range=30d": 12,
        reverse("dashboard:budgets"): 8,
        reverse("dashboard:slo", args=[world.slo.pk]): 12,
        reverse("dashboard:deploys"): 8,
        reverse("dashboard:deploy", args=[world.failed_deploy.pk]): 16,
        reverse("dashboard:traces"): 8,
    }
    for url, most in pages.items():
        with django_assert_max_num_queries(most):
            assert viewer_client.get(url).status_code == 200


def test_assets_are_served_from_the_package_with_long_cache(viewer_client):
    response = viewer_client.get(reverse("dashboard:asset", args=["plotly.min.js"]))
    assert response.status_code == 200
    assert "immutable" in response["Cache-Control"]
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()
    assert viewer_client.get("/assets/..%2Fsettings.py").status_code == 404
