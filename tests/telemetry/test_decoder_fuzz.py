"""Hostile bodies: the OTLP decoders either decode or refuse, never crash."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry import otlp

NOW = datetime.now(UTC)
LIMITS = otlp.Limits(
    oldest=NOW - timedelta(days=14),
    newest=NOW + timedelta(hours=1),
    retention_days=14,
    max_attribute_value_bytes=1024,
    max_attributes=16,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_body() -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "fuzz"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /"
    span.start_time_unix_nano = int(NOW.timestamp() * 1e9)
    span.end_time_unix_nano = span.start_time_unix_nano + 1000
    nested = span.attributes.add()
    nested.key = "nested"
    nested.value.array_value.values.add().kvlist_value.values.add().key = "k"
    return request.SerializeToString()


def _decode_and_convert(decoder, body: bytes) -> None:
    try:
        request = decoder(body)
    except otlp.UndecodableRequest:
        return
    batch = otlp.spans_to_rows(request, LIMITS)
    assert len(batch.rows) + batch.rejected == sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


@FUZZ
@given(st.binary(max_size=2048))
def test_it_survives_arbitrary_protobuf_bytes(body):
    _decode_and_convert(otlp.decode_protobuf, body)


@FUZZ
@given(st.data())
def test_it_survives_mutated_valid_protobuf(data):
    body = bytearray(_valid_body())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    _decode_and_convert(otlp.decode_protobuf, bytes(body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "attributes",
             "key", "value", "stringValue", "intValue", "arrayValue", "kvlistValue", "values",
             "startTimeUnixNano", "endTimeUnixNano", "kind", "status", "code", "events"]
        ) | st.text(max_size=10),
        children,
        max_size=5,
    ),
    max_leaves=40,
)  # fmt: skip


@FUZZ
@given(json_values)
def test_it_survives_arbitrary_json_documents(document):
    _decode_and_convert(otlp.decode_json, json.dumps(document).encode())


@FUZZ
@given(st.binary(max_size=512))
def test_it_survives_arbitrary_json_bytes(body):
    _decode_and_convert(otlp.decode_json, body)


def test_it_refuses_json_nested_beyond_the_stack():
    body = b'{"resourceSpans":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(otlp.UndecodableRequest, match="nested too deeply"):
        otlp.decode_json(body)
