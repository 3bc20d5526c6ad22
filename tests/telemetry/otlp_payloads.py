"""Small factories for OTLP trace requests, stamped with the current time."""

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
STATUS_ERROR = Status.StatusCode.STATUS_CODE_ERROR

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_trace_id() -> bytes:
    # A leading 0x01 keeps the random id from ever being all zeros.
    return b"\x01" + os.urandom(15)


def new_span_id() -> bytes:
    return b"\x01" + os.urandom(7)


def unix_nano(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def any_value(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        wrapped = AnyValue()
        wrapped.array_value.values.extend(any_value(item) for item in value)
        return wrapped
    if isinstance(value, dict):
        wrapped = AnyValue()
        wrapped.kvlist_value.values.extend(key_values(value))
        return wrapped
    return AnyValue(string_value=str(value))


def key_values(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def make_span(
    *,
    name: str = "GET /items/{id}",
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    kind: int = SERVER,
    start: datetime | int | None = None,
    duration: timedelta = timedelta(milliseconds=25),
    attributes: dict | None = None,
    status_code: int = 0,
    status_message: str = "",
    events: list[tuple[str, dict]] = (),
) -> Span:
    """A span starting now (or at start: a datetime or Unix nanoseconds)."""
    if start is None:
        start_nano = time.time_ns()
    elif isinstance(start, datetime):
        start_nano = unix_nano(start)
    else:
        start_nano = start
    span = Span(
        trace_id=new_trace_id() if trace_id is None else trace_id,
        span_id=new_span_id() if span_id is None else span_id,
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        start_time_unix_nano=start_nano,
        end_time_unix_nano=start_nano + duration // timedelta(microseconds=1) * 1000,
        status=Status(code=status_code, message=status_message),
    )
    span.attributes.extend(key_values(attributes or {}))
    for event_name, event_attributes in events:
        event = span.events.add(name=event_name, time_unix_nano=start_nano)
        event.attributes.extend(key_values(event_attributes))
    return span


def make_request(
    spans: list[Span] | None = None, *, resource: dict | None = None
) -> ExportTraceServiceRequest:
    """One resource with one scope holding the spans (one fresh span if none given)."""
    if resource is None:
        resource = {"service.name": "checkout"}
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(key_values(resource))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    scope_spans.spans.extend([make_span()] if spans is None else spans)
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


def to_otlp_json(request: ExportTraceServiceRequest) -> dict:
    """The request as OTLP/JSON: protobuf's JSON mapping, but hex ids and integer enums."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    _base64_ids_to_hex(document)
    return document


def json_body(document) -> bytes:
    return json.dumps(document).encode()


def _base64_ids_to_hex(node) -> None:
    if isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId"):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
