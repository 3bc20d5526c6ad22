"""One trace recorded by the real OpenTelemetry SDK, for the exporter tests.

Its spans cover the column rules: the route from http.route or the span name,
current and old HTTP attribute names, and each is_error case.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry.models import Span
from tests.telemetry.otlp_payloads import EPOCH

ROOT_NAME = "GET /orders/{id}"
ROOT_ATTRIBUTES = {
    "http.route": "/orders/{id}",
    "http.request.method": "GET",
    "http.response.status_code": 200,
    "order.items": 3,
    "cart.total": 12.5,
    "cache.hit": True,
    "tags": ("a", "b"),
}
# A sub-millisecond offset shows the store keeps microseconds.
START_OFFSET_NANOS = 123_456_789
ROOT_DURATION_NANOS = 1_500_250

# What each span's extracted columns must be, by span name.
EXPECTED_COLUMNS = {
    ROOT_NAME: {
        "kind": 2,
        "http_route": "/orders/{id}",
        "http_status": 200,
        "http_method": "GET",
        "is_error": False,
        "exception_type": "",
    },
    # Status ERROR is an error whatever the kind; the route falls back to the name.
    "charge card": {
        "kind": 1,
        "http_route": "charge card",
        "http_status": None,
        "http_method": "",
        "is_error": True,
        "exception_type": "ValueError",
    },
    # Old attribute names; a server's 5xx is its own failure even with status unset.
    "POST /legacy": {
        "kind": 2,
        "http_route": "POST /legacy",
        "http_status": 503,
        "http_method": "POST",
        "is_error": True,
        "exception_type": "",
    },
    # A 4xx is the caller's mistake, not the server's.
    "GET /orders/{id}/items": {
        "kind": 2,
        "http_route": "/orders/{id}/items",
        "http_status": 404,
        "http_method": "GET",
        "is_error": False,
        "exception_type": "",
    },
    # A client's 5xx with status unset is the callee's failure, not this span's.
    "GET payments": {
        "kind": 3,
        "http_route": "GET payments",
        "http_status": 502,
        "http_method": "GET",
        "is_error": False,
        "exception_type": "",
    },
}


@dataclass(frozen=True)
class RecordedTrace:
    spans: tuple[ReadableSpan, ...]
    start_nanos: int

    @property
    def trace_id(self) -> bytes:
        return self.spans[0].context.trace_id.to_bytes(16, "big")

    @property
    def trace_id_hex(self) -> str:
        return self.trace_id.hex()

    def span_id(self, name: str) -> bytes:
        span = next(span for span in self.spans if span.name == name)
        return span.context.span_id.to_bytes(8, "big")

    @property
    def start_time(self):
        return EPOCH + timedelta(microseconds=self.start_nanos // 1000)


def record_checkout_trace(resource_attributes: dict) -> RecordedTrace:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource_attributes))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.telemetry")
    start = (time.time_ns() // 10**9 - 1) * 10**9 + START_OFFSET_NANOS

    root = tracer.start_span(
        ROOT_NAME, kind=SpanKind.SERVER, attributes=ROOT_ATTRIBUTES, start_time=start
    )
    inside_root = trace.set_span_in_context(root)

    def child(name, kind, attributes=None):
        return tracer.start_span(
            name, context=inside_root, kind=kind, attributes=attributes, start_time=start + 1000
        )

    charge = child("charge card", SpanKind.INTERNAL)
    charge.record_exception(ValueError("card declined"))
    charge.set_status(Status(StatusCode.ERROR, "card declined"))
    charge.end(end_time=start + 2_000_000)
    child("POST /legacy", SpanKind.SERVER, {"http.method": "POST", "http.status_code": 503}).end()
    child(
        "GET /orders/{id}/items",
        SpanKind.SERVER,
        {
            "http.route": "/orders/{id}/items",
            "http.request.method": "GET",
            "http.response.status_code": 404,
        },
    ).end()
    child(
        "GET payments",
        SpanKind.CLIENT,
        {"http.request.method": "GET", "http.response.status_code": 502},
    ).end()
    root.end(end_time=start + ROOT_DURATION_NANOS)
    provider.shutdown()
    return RecordedTrace(spans=memory.get_finished_spans(), start_nanos=start)


def expected_rows(recorded: RecordedTrace, *, service: str, version: str, environment: str):
    """The stored columns each span must have, by span name."""
    root_id = recorded.span_id(ROOT_NAME)
    return {
        name: {
            **columns,
            "service": service,
            "service_version": version,
            "environment": environment,
            "parent_span_id": None if name == ROOT_NAME else root_id,
        }
        for name, columns in EXPECTED_COLUMNS.items()
    }


def stored_rows(trace_id: bytes) -> dict[str, dict]:
    compared = ("service", "service_version", "environment", *EXPECTED_COLUMNS[ROOT_NAME])
    rows = {}
    for span in Span.objects.filter(trace_id=trace_id):
        row = {column: getattr(span, column) for column in compared}
        row["parent_span_id"] = bytes(span.parent_span_id) if span.parent_span_id else None
        rows[span.name] = row
    return rows
