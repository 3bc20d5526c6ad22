"""The read API under /api/v1/: traces, services and the OpenAPI schema."""

from datetime import datetime, timedelta

from django.utils import timezone

from tests.telemetry.otlp_payloads import make_request, make_span, new_span_id, new_trace_id


def test_it_returns_a_trace_in_start_order(post_traces, api_get):
    trace_id, root_id = new_trace_id(), new_span_id()
    start = timezone.now().replace(microsecond=500_001) - timedelta(seconds=10)
    request = make_request(
        [
            make_span(
                name="SELECT orders",
                trace_id=trace_id,
                parent_span_id=root_id,
                kind=3,
                start=start + timedelta(microseconds=300),
                duration=timedelta(microseconds=120),
            ),
            make_span(
                name="GET /orders",
                trace_id=trace_id,
                span_id=root_id,
                start=start,
                duration=timedelta(milliseconds=2),
                attributes={"http.route": "/orders", "http.response.status_code": 200},
            ),
            make_span(name="other trace"),
        ],
        resource={"service.name": "orders", "service.version": "9"},
    )
    post_traces(request)

    response = api_get(f"traces/{trace_id.hex()}")

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == trace_id.hex()
    assert [span["name"] for span in body["spans"]] == ["GET /orders", "SELECT orders"]
    root, query = body["spans"]
    assert root["span_id"] == root_id.hex()
    assert root["parent_span_id"] is None
    assert query["parent_span_id"] == root_id.hex()
    assert datetime.fromisoformat(root["start_time"]) == start
    assert datetime.fromisoformat(query["start_time"]) == start + timedelta(microseconds=300)
    assert root["duration_ms"] == 2.0
    assert query["duration_ms"] == 0.12
    assert root["http_status"] == 200
    assert (root["service"], root["version"]) == ("orders", "9")


def test_it_answers_404_for_unknown_and_malformed_trace_ids(api_get, db):
    assert api_get(f"traces/{new_trace_id().hex()}").status_code == 404
    assert api_get("traces/not-hex").status_code == 404


def test_it_lists_services_with_counts_and_last_seen(post_traces, api_get):
    now = timezone.now()
    post_traces(
        make_request(
            [make_span(start=now - timedelta(days=2)), make_span(start=now - timedelta(hours=1))],
            resource={"service.name": "payments", "service.version": "1"},
        )
    )
    post_traces(
        make_request(
            [make_span(start=now)], resource={"service.name": "payments", "service.version": "2"}
        )
    )
    post_traces(make_request([make_span(start=now)], resource={"service.name": "accounts"}))

    response = api_get("services")

    assert response.status_code == 200
    services = response.json()
    assert [(service["name"], service["span_count"]) for service in services] == [
        ("accounts", 1),
        ("payments", 3),
    ]
    for service in services:
        # Whole milliseconds are enough for a listing.
        last_seen = datetime.fromisoformat(service["last_seen"])
        assert abs(last_seen - now) < timedelta(milliseconds=1)


def test_it_lists_no_services_before_any_span(api_get, db):
    response = api_get("services")

    assert response.status_code == 200
    assert response.json() == []


def test_it_publishes_an_openapi_schema(client, db):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Monoenv API"
    assert {"/api/v1/traces/{trace_id}", "/api/v1/services"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]
