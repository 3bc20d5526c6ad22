"""Well-formed OTLP with hostile content: both decoders agree, and the store takes it all.

tests/telemetry/test_decoder_fuzz.py feeds the decoders broken bytes; this
feeds them valid requests whose text, nesting and counts are hostile, through
the real receiver and into PostgreSQL.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from telemetry import otlp
from telemetry.models import Span as StoredSpan
from telemetry.views import PROTOBUF
from tests.helpers import bearer
from tests.telemetry.otlp_payloads import json_body, to_otlp_json, unix_nano

HOSTILE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\x00<>&'\"\n-"),
    max_size=30,
)
LEAVES = st.one_of(
    HOSTILE_TEXT.map(lambda text: AnyValue(string_value=text)),
    st.integers(-(2**63), 2**63 - 1).map(lambda number: AnyValue(int_value=number)),
    st.floats().map(lambda number: AnyValue(double_value=number)),
    st.booleans().map(lambda flag: AnyValue(bool_value=flag)),
    st.binary(max_size=20).map(lambda raw: AnyValue(bytes_value=raw)),
    st.just(AnyValue()),
)


def _array(values: list[AnyValue]) -> AnyValue:
    wrapped = AnyValue()
    wrapped.array_value.values.extend(values)
    return wrapped


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    wrapped = AnyValue()
    wrapped.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
    return wrapped


# Up to ~20 levels deep, past otlp.MAX_VALUE_DEPTH.
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3).map(_array)
        | st.lists(st.tuples(HOSTILE_TEXT, children), max_size=3).map(_kvlist)
    ),
    max_leaves=25,
)
ATTRIBUTES = st.lists(
    st.builds(KeyValue, key=HOSTILE_TEXT, value=VALUES), max_size=otlp.Limits.max_attributes + 2
)


@st.composite
def requests(draw):
    now = timezone.now()
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=draw(HOSTILE_TEXT)))
    )
    resource_spans.resource.attributes.extend(draw(st.lists(st.builds(
        KeyValue, key=HOSTILE_TEXT, value=VALUES), max_size=3)))  # fmt: skip
    spans = resource_spans.scope_spans.add().spans
    for _ in range(draw(st.integers(1, 4))):
        start = now - timedelta(seconds=draw(st.integers(0, 3600)))
        span = Span(
            trace_id=draw(st.binary(min_size=16, max_size=16)),
            span_id=draw(st.binary(min_size=8, max_size=8)),
            name=draw(HOSTILE_TEXT),
            kind=draw(st.integers(0, 5)),
            start_time_unix_nano=unix_nano(start),
            end_time_unix_nano=unix_nano(start) + draw(st.integers(0, 10**10)),
        )
        span.attributes.extend(draw(ATTRIBUTES))
        span.status.message = draw(HOSTILE_TEXT)
        span.status.code = draw(st.integers(0, 2))
        for _ in range(draw(st.integers(0, 2))):
            event = span.events.add(name=draw(HOSTILE_TEXT), time_unix_nano=1)
            event.attributes.extend(draw(st.lists(st.builds(
                KeyValue, key=HOSTILE_TEXT, value=VALUES), max_size=3)))  # fmt: skip
        spans.append(span)
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


@pytest.fixture
def token(make_token, settings):
    settings.MONOENV_TOKEN_RATE_LIMIT = 0
    return make_token("ingest")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def test_hostile_but_valid_requests_are_stored_or_rejected_by_name(client, token, request):
    # Whatever the JSON path decodes must be what the protobuf path decodes.
    from_json = otlp.decode_json(json_body(to_otlp_json(request)))
    assert MessageToDict(from_json) == MessageToDict(request)
    before = StoredSpan.objects.count()

    response = client.post(
        "/v1/traces",
        data=request.SerializeToString(),
        content_type=PROTOBUF,
        headers=bearer(token),
    )

    assert response.status_code == 200, response.content
    answer = ExportTraceServiceResponse.FromString(response.content)
    sent = len(request.resource_spans[0].scope_spans[0].spans)
    rejected = answer.partial_success.rejected_spans
    # Random ids may repeat inside one request; those are stored once.
    distinct = len(
        {(s.trace_id, s.span_id) for s in request.resource_spans[0].scope_spans[0].spans}
    )
    stored = StoredSpan.objects.count() - before
    assert stored <= sent - rejected
    assert stored >= min(distinct, sent) - rejected
    if rejected:
        assert answer.partial_success.error_message.startswith(f"rejected {rejected} span(s)")


def test_limits_cover_events_and_resource_and_event_attributes():
    now = timezone.now()
    limits = otlp.Limits(oldest=now - timedelta(days=1), newest=now + timedelta(hours=1),
                         retention_days=1, max_attribute_value_bytes=100, max_attributes=2,
                         max_events=3)  # fmt: skip

    def batch(*, events: int = 0, event_attributes: int = 0, resource_attributes: int = 1):
        resource_spans = ResourceSpans()
        resource_spans.resource.attributes.extend(
            KeyValue(key=f"r{i}", value=AnyValue(int_value=i)) for i in range(resource_attributes)
        )
        span = resource_spans.scope_spans.add().spans.add(
            trace_id=b"\x01" * 16, span_id=b"\x02" * 8,
            start_time_unix_nano=unix_nano(now), end_time_unix_nano=unix_nano(now),
        )  # fmt: skip
        for _ in range(events):
            span.events.add(name="e").attributes.extend(
                KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(event_attributes)
            )
        request = ExportTraceServiceRequest(resource_spans=[resource_spans])
        decoded = otlp.spans_to_rows(request, limits)
        # Over a limit, the span is trimmed and kept, never rejected.
        assert len(decoded.rows) == 1
        return decoded.trim_message()

    assert batch(events=3, event_attributes=2) == ""
    assert batch(events=4).endswith("1 event(s) dropped past 3")
    assert batch(events=1, event_attributes=3).endswith("1 attribute(s) dropped past 2")
    assert batch(resource_attributes=3).endswith("1 attribute(s) dropped past 2")
