"""Oversized spans are trimmed as the OpenTelemetry attribute limits say, and kept.

Expectations are worked out by hand from the limits below: values cut to
max_attribute_value_bytes of UTF-8, attributes and events past their caps
dropped (the first ones in the order sent are kept), and the partial success
carries rejected_spans 0 with a message saying what was cut.
"""

import base64
from datetime import UTC, datetime, timedelta

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetry import otlp
from tests.telemetry.otlp_payloads import json_body, make_request, make_span, to_otlp_json

NOW = datetime.now(UTC)
LIMITS = otlp.Limits(
    oldest=NOW - timedelta(days=14),
    newest=NOW + timedelta(hours=1),
    retention_days=14,
    max_attribute_value_bytes=10,
    max_attributes=3,
    max_events=2,
)
COLUMN = {name: index for index, name in enumerate(otlp.SPAN_COLUMNS)}


def decode(request) -> otlp.DecodedBatch:
    return otlp.spans_to_rows(request, LIMITS)


def test_it_keeps_the_first_attributes_past_the_cap_and_counts_the_rest():
    attributes = {f"a{i}": i for i in range(5)}
    batch = decode(make_request([make_span(attributes=attributes)]))

    (row,) = batch.rows
    assert otlp.orjson.loads(row[COLUMN["attributes"]]) == {"a0": 0, "a1": 1, "a2": 2}
    assert batch.trimmed == {"attribute(s) dropped past 3": 2}


def test_it_keeps_the_first_events_and_still_names_the_exception_of_a_dropped_one():
    events = [("retry", {}), ("retry", {}), ("exception", {"exception.type": "Timeout"})]
    batch = decode(make_request([make_span(events=events)]))

    (row,) = batch.rows
    assert [event["name"] for event in otlp.orjson.loads(row[COLUMN["events"]])] == [
        "retry",
        "retry",
    ]
    assert row[COLUMN["exception_type"]] == "Timeout"
    assert batch.trimmed == {"event(s) dropped past 2": 1}


def test_it_cuts_strings_at_a_character_boundary_and_bytes_to_fit_as_base64():
    span = make_span(attributes={"text": "ab€€€€"})  # 2 + 4 × 3 = 14 bytes of UTF-8
    span.attributes.append(KeyValue(key="raw", value=AnyValue(bytes_value=bytes(range(12)))))
    batch = decode(make_request([span]))

    attributes = otlp.orjson.loads(batch.rows[0][COLUMN["attributes"]])
    # 10 bytes hold "ab" and two euro signs (8 bytes); a third would need 11.
    assert attributes["text"] == "ab€€"
    # base64 needs 4 characters per 3 bytes: 10 characters hold 6 bytes (8 characters).
    assert attributes["raw"] == base64.b64encode(bytes(range(6))).decode()
    assert batch.trimmed == {"value(s) truncated to 10 bytes": 2}


def test_trimming_alone_is_a_warning_with_no_rejected_span():
    batch = decode(make_request([make_span(attributes={"long": "x" * 11})]))

    response = batch.export_response()
    assert response.HasField("partial_success")
    assert response.partial_success.rejected_spans == 0
    assert response.partial_success.error_message == (
        "kept every accepted span but trimmed 1 value(s) truncated to 10 bytes"
    )


def test_an_untrimmed_batch_answers_plain_success():
    response = decode(make_request([make_span(attributes={"short": "x" * 10})])).export_response()

    assert not response.HasField("partial_success")


def test_rejections_and_trimming_are_reported_together():
    request = make_request(
        [make_span(attributes={"long": "x" * 11}), make_span(trace_id=bytes(16))]
    )
    response = decode(request).export_response()

    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message == (
        "rejected 1 span(s): 1 invalid trace_id (must be 16 non-zero bytes); "
        "kept every accepted span but trimmed 1 value(s) truncated to 10 bytes"
    )


def _json_spans_with_parents(*parents: str) -> bytes:
    spans = [make_span(name=f"span {index}") for index, _ in enumerate(parents)]
    document = to_otlp_json(make_request(spans))
    json_spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span, parent in zip(json_spans, parents, strict=True):
        span["parentSpanId"] = parent
    return json_body(document)


def test_json_parent_ids_an_invalid_one_rejects_its_span_all_zero_means_root():
    body = _json_spans_with_parents("eee19b7ec3c1b173", "not-hex!", "0000000000000000", "", "abc")
    batch = decode(otlp.decode_json(body))

    parents = {row[COLUMN["name"]]: row[COLUMN["parent_span_id"]] for row in batch.rows}
    assert parents == {
        "span 0": bytes.fromhex("eee19b7ec3c1b173"),
        "span 2": None,
        "span 3": None,
    }
    assert batch.rejections == {
        "invalid parent_span_id (must be empty or 8 bytes, 16 hex digits)": 2
    }


def test_protobuf_all_zero_parent_means_root_and_a_short_one_is_rejected():
    request = make_request(
        [make_span(name="root", parent_span_id=bytes(8)), make_span(parent_span_id=b"\x01" * 4)]
    )
    batch = decode(request)

    assert [(row[COLUMN["name"]], row[COLUMN["parent_span_id"]]) for row in batch.rows] == [
        ("root", None)
    ]
    assert batch.rejected == 1
