"""OTLP/JSON on POST /v1/traces, which differs from protobuf's JSON mapping."""

import copy
import time

from telemetry.models import Span
from telemetry.views import JSON
from tests.telemetry.otlp_payloads import json_body, make_request, make_span, to_otlp_json

# examples/trace.json from the opentelemetry-proto repository, as published.
PROTO_REPOSITORY_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
            },
            "scopeSpans": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [
                            {
                                "key": "my.scope.attribute",
                                "value": {"stringValue": "some scope attribute"},
                            }
                        ],
                    },
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}}
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}
EXAMPLE_TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")


def example_span(document: dict) -> dict:
    return document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]


def second_span(document: dict) -> dict:
    return document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]


def test_it_stores_the_proto_repository_example(post_traces):
    document = copy.deepcopy(PROTO_REPOSITORY_EXAMPLE)
    # The example's spans are from December 2018, long out of retention; moving
    # them to now, one second long as published, keeps the rest of it intact.
    now = time.time_ns()
    example_span(document).update(
        startTimeUnixNano=str(now), endTimeUnixNano=str(now + 1_000_000_000)
    )

    response = post_traces(json_body(document), content_type=JSON)

    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response.json() == {}
    span = Span.objects.get()
    # Read as hex, whatever the case: base64 would have made 24 bytes of these 32 digits.
    assert bytes(span.trace_id) == EXAMPLE_TRACE_ID
    assert bytes(span.span_id) == bytes.fromhex("eee19b7ec3c1b174")
    assert bytes(span.parent_span_id) == bytes.fromhex("eee19b7ec3c1b173")
    assert span.service == "my.service"
    assert span.name == "I'm a server span"
    assert span.kind == 2
    assert span.duration_us == 1_000_000
    assert span.attributes == {"my.span.attr": "some value"}


def test_it_rejects_the_unmodified_example_as_too_old(post_traces, settings):
    settings.MONOENV_RETENTION_DAYS = 14
    response = post_traces(json_body(PROTO_REPOSITORY_EXAMPLE), content_type=JSON)

    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "older than the 14-day retention" in partial["errorMessage"]
    assert not Span.objects.exists()


def test_it_reads_int64_as_strings_and_as_numbers(post_traces):
    start = time.time_ns()
    as_string = make_span(name="as string", start=start)
    as_number = make_span(name="as number", start=start)
    document = to_otlp_json(make_request([as_string, as_number]))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["startTimeUnixNano"] = start
    spans[1]["endTimeUnixNano"] = start + 2_000_000
    spans[1]["attributes"] = [{"key": "retries", "value": {"intValue": 3}}]
    spans[0]["attributes"] = [{"key": "retries", "value": {"intValue": "4"}}]

    response = post_traces(json_body(document), content_type=JSON)

    assert response.status_code == 200
    stored = {span.name: span for span in Span.objects.all()}
    assert stored["as number"].duration_us == 2000
    assert stored["as number"].start_time == stored["as string"].start_time
    assert stored["as number"].attributes == {"retries": 3}
    assert stored["as string"].attributes == {"retries": 4}


def test_it_reads_enums_as_integers(post_traces):
    span = make_span(kind=3, status_code=2, status_message="upstream failed")
    document = to_otlp_json(make_request([span]))
    assert example_span(document)["kind"] == 3

    assert post_traces(json_body(document), content_type=JSON).status_code == 200

    stored = Span.objects.get()
    assert (stored.kind, stored.status_code, stored.is_error) == (3, 2, True)
    assert stored.status_message == "upstream failed"


def test_it_ignores_unknown_fields(post_traces):
    document = to_otlp_json(make_request([make_span(name="known")]))
    document["futureTopLevel"] = {"anything": [1, 2]}
    document["resourceSpans"][0]["futureField"] = "x"
    example_span(document)["futureSpanField"] = {"nested": True}

    response = post_traces(json_body(document), content_type=JSON)

    assert response.status_code == 200
    assert Span.objects.get().name == "known"


def test_it_accepts_a_charset_parameter(post_traces):
    body = json_body(to_otlp_json(make_request()))

    response = post_traces(body, content_type="application/json; charset=utf-8")

    assert response.status_code == 200
    assert Span.objects.count() == 1


def test_it_answers_partial_success_in_json(post_traces):
    document = to_otlp_json(make_request([make_span(name="kept"), make_span()]))
    second_span(document)["traceId"] = "00000000000000000000000000000000"

    response = post_traces(json_body(document), content_type=JSON)

    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "rejected 1 span(s): 1 invalid trace_id (must be 16 non-zero bytes)",
        }
    }
    assert Span.objects.get().name == "kept"


def test_it_rejects_ids_that_are_not_hex(post_traces):
    document = to_otlp_json(make_request([make_span(name="kept"), make_span()]))
    # Valid base64 of 16 bytes, as protobuf's own JSON mapping would write it.
    second_span(document)["traceId"] = "W47/95gDgQPSabYzgT/GDA=="

    response = post_traces(json_body(document), content_type=JSON)

    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "invalid trace_id" in response.json()["partialSuccess"]["errorMessage"]
    assert Span.objects.get().name == "kept"


def test_it_refuses_json_that_is_not_utf8(post_traces):
    body = json_body(to_otlp_json(make_request([make_span(name="caf\u00e9")])))
    body = body.replace(b"caf\\u00e9", "caf\u00e9".encode("latin-1"))

    response = post_traces(body, content_type=JSON)

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert "UTF-8" in response.json()["message"]
    assert not Span.objects.exists()


def test_it_refuses_malformed_json(post_traces):
    for body in (b'{"resourceSpans": [', b"[]", b'{"resourceSpans": 5}'):
        response = post_traces(body, content_type=JSON)

        assert response.status_code == 400, body
        assert response.json()["code"] == 3
