"""The real OpenTelemetry SDK exporting over OTLP/HTTP to a live server."""

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from telemetry.models import Span
from tests.telemetry.sdk_traces import (
    ROOT_ATTRIBUTES,
    ROOT_DURATION_NANOS,
    ROOT_NAME,
    expected_rows,
    record_checkout_trace,
    stored_rows,
)


def export_over_http(live_server, token, spans, compression=None) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        compression=compression,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("compression", "environment_key"),
    [
        (None, "deployment.environment.name"),
        (Compression.Gzip, "deployment.environment"),
        (Compression.Deflate, "deployment.environment.name"),
    ],
    ids=["plain", "gzip-old-environment-key", "deflate"],
)
def test_it_stores_spans_the_sdk_exports(live_server, ingest_token, compression, environment_key):
    recorded = record_checkout_trace(
        {"service.name": "checkout", "service.version": "1.4.2", environment_key: "production"}
    )

    result = export_over_http(live_server, ingest_token, recorded.spans, compression)

    assert result == SpanExportResult.SUCCESS
    expected = expected_rows(
        recorded, service="checkout", version="1.4.2", environment="production"
    )
    assert stored_rows(recorded.trace_id) == expected


def test_it_keeps_times_attributes_and_events(live_server, ingest_token):
    recorded = record_checkout_trace({"service.name": "checkout"})

    assert export_over_http(live_server, ingest_token, recorded.spans) == SpanExportResult.SUCCESS

    root = Span.objects.get(trace_id=recorded.trace_id, name=ROOT_NAME)
    assert root.start_time == recorded.start_time
    assert root.start_time.microsecond == 123_456
    assert root.duration_us == ROOT_DURATION_NANOS // 1000
    assert root.attributes == {**ROOT_ATTRIBUTES, "tags": ["a", "b"]}
    assert root.resource_attributes["service.name"] == "checkout"
    assert root.resource_attributes["telemetry.sdk.language"] == "python"
    charge = Span.objects.get(trace_id=recorded.trace_id, name="charge card")
    assert charge.status_message == "card declined"
    assert charge.duration_us == (2_000_000 - 1000) // 1000
    [exception] = charge.events
    assert exception["name"] == "exception"
    assert exception["attributes"]["exception.message"] == "card declined"


def test_the_api_returns_the_exported_trace(live_server, ingest_token, api_get):
    recorded = record_checkout_trace({"service.name": "checkout", "service.version": "2.0"})
    assert export_over_http(live_server, ingest_token, recorded.spans) == SpanExportResult.SUCCESS

    response = api_get(f"traces/{recorded.trace_id_hex.upper()}")

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == recorded.trace_id_hex
    spans = {span["name"]: span for span in body["spans"]}
    assert set(spans) == {span.name for span in recorded.spans}
    root = spans[ROOT_NAME]
    assert body["spans"][0] == root, "spans come in start order"
    assert root["span_id"] == recorded.span_id(ROOT_NAME).hex()
    assert root["parent_span_id"] is None
    assert root["service"] == "checkout"
    assert root["version"] == "2.0"
    assert root["duration_ms"] == pytest.approx(1.5)
    assert root["http_route"] == "/orders/{id}"
    assert root["attributes"]["order.items"] == 3
    assert spans["charge card"]["parent_span_id"] == recorded.span_id(ROOT_NAME).hex()
    assert spans["charge card"]["is_error"] is True
    assert spans["charge card"]["exception_type"] == "ValueError"
    started = recorded.start_time
    assert root["start_time"].startswith(started.strftime("%Y-%m-%dT%H:%M:%S.123456"))
