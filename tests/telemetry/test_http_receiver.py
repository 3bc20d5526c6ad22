"""POST /v1/traces with protobuf: encodings, size caps and every kind of bad input."""

import gzip
import tracemalloc
import zlib
from datetime import timedelta
from functools import cache

from django.utils import timezone
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from telemetry.models import PendingMinute, ServiceDay, Span
from telemetry.views import PROTOBUF
from tests.telemetry.otlp_payloads import make_request, make_span

MIB = 1024 * 1024


def export_response(response) -> ExportTraceServiceResponse:
    assert response["Content-Type"] == PROTOBUF
    return ExportTraceServiceResponse.FromString(response.content)


def rpc_status(response) -> status_pb2.Status:
    assert response["Content-Type"] == PROTOBUF
    return status_pb2.Status.FromString(response.content)


@cache
def gzip_bomb() -> bytes:
    """200 MiB of zeros, gzipped to about 200 KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(200)]
    return b"".join(parts) + compressor.flush()


def test_it_stores_a_batch_and_answers_success(post_traces):
    response = post_traces(make_request([make_span(name="a"), make_span(name="b")]))

    assert response.status_code == 200
    assert not export_response(response).HasField("partial_success")
    assert sorted(Span.objects.values_list("name", flat=True)) == ["a", "b"]


def test_it_stores_a_big_batch_in_a_fixed_number_of_queries(
    post_traces, django_assert_max_num_queries
):
    now = timezone.now()
    minutes = [now - timedelta(minutes=offset) for offset in range(3)]
    # Warm up: the partitions exist and the token's last use is fresh.
    post_traces(make_request([make_span(start=minute) for minute in minutes]))
    requests = [
        make_request(
            [make_span(start=minutes[index % 3]) for index in range(100)],
            resource={"service.name": service},
        )
        for service in ("cart", "search", "ads")
    ]
    # Concatenated protobuf messages merge: one request with three resources.
    body = b"".join(request.SerializeToString() for request in requests)

    # Authentication and its rate limit, two savepoints, the ingest timeouts,
    # the service-day and pending-minute upserts.
    with django_assert_max_num_queries(10):
        response = post_traces(body)

    assert response.status_code == 200
    assert Span.objects.count() == 303
    assert PendingMinute.objects.count() == 3 + 9


def test_it_answers_an_empty_request_with_success(post_traces):
    for body in (b"", make_request(spans=[])):
        response = post_traces(body)

        assert response.status_code == 200
        assert export_response(response) == ExportTraceServiceResponse()
    assert not Span.objects.exists()
    assert not ServiceDay.objects.exists()
    assert not PendingMinute.objects.exists()


def test_it_accepts_gzip(post_traces):
    body = gzip.compress(make_request().SerializeToString())

    assert post_traces(body, encoding="gzip").status_code == 200
    assert Span.objects.count() == 1


def test_it_accepts_zlib_wrapped_deflate(post_traces):
    body = zlib.compress(make_request().SerializeToString())

    assert post_traces(body, encoding="deflate").status_code == 200
    assert Span.objects.count() == 1


def test_it_accepts_raw_deflate(post_traces):
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = compressor.compress(make_request().SerializeToString()) + compressor.flush()

    assert post_traces(body, encoding="deflate").status_code == 200
    assert Span.objects.count() == 1


def test_it_rejects_truncated_gzip(post_traces):
    body = gzip.compress(make_request([make_span() for _ in range(20)]).SerializeToString())

    response = post_traces(body[: len(body) // 2], encoding="gzip")

    assert response.status_code == 400
    assert rpc_status(response).code == code_pb2.INVALID_ARGUMENT
    assert "gzip" in rpc_status(response).message
    assert not Span.objects.exists()


def test_it_rejects_gzip_that_is_not_gzip(post_traces):
    response = post_traces(make_request().SerializeToString(), encoding="gzip")

    assert response.status_code == 400
    assert rpc_status(response).code == code_pb2.INVALID_ARGUMENT


def test_it_rejects_gzip_bombs(post_traces, settings):
    settings.MONOENV_MAX_REQUEST_BYTES = MIB
    bomb = gzip_bomb()

    tracemalloc.start()
    try:
        response = post_traces(bomb, encoding="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert rpc_status(response).code == code_pb2.RESOURCE_EXHAUSTED
    # Inflating it all would take 200 MiB; stopping at the cap takes about one.
    assert peak < 8 * MIB


def test_it_rejects_plain_bodies_over_the_cap(post_traces, settings):
    settings.MONOENV_MAX_REQUEST_BYTES = 1000
    request = make_request([make_span(attributes={"note": "x" * 2000})])

    response = post_traces(request)

    assert response.status_code == 413
    assert not Span.objects.exists()


def test_it_accepts_a_body_exactly_at_the_cap(post_traces, settings):
    body = make_request().SerializeToString()
    settings.MONOENV_MAX_REQUEST_BYTES = len(body)

    assert post_traces(body).status_code == 200
    assert post_traces(gzip.compress(body), encoding="gzip").status_code == 200


def test_it_rejects_malformed_protobuf(post_traces):
    # Field 1, length-delimited, claiming 255 bytes that never come.
    response = post_traces(b"\x0a\xff\x01garbage")

    assert response.status_code == 400
    status = rpc_status(response)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert "protobuf" in status.message
    assert not Span.objects.exists()


def test_it_rejects_unknown_content_encodings(post_traces):
    response = post_traces(make_request(), encoding="br")

    assert response.status_code == 415
    assert "br" in rpc_status(response).message


def test_it_rejects_unknown_content_types(post_traces):
    response = post_traces(b"hello", content_type="text/plain")

    assert response.status_code == 415
    assert response["Content-Type"] == "application/json"
    assert not Span.objects.exists()


def test_it_allows_only_post(client, ingest_token):
    for method in (client.get, client.put, client.delete):
        response = method("/v1/traces")

        assert response.status_code == 405
        assert response["Allow"] == "POST"


def test_it_rejects_spans_with_bad_ids_and_keeps_the_rest(post_traces):
    request = make_request(
        [
            make_span(name="kept"),
            make_span(trace_id=b"\x01" * 15),
            make_span(trace_id=bytes(16)),
            make_span(span_id=b"\x01" * 9),
            make_span(span_id=bytes(8)),
            make_span(parent_span_id=b"\x01" * 4),
        ]
    )

    response = post_traces(request)

    assert response.status_code == 200
    partial = export_response(response).partial_success
    assert partial.rejected_spans == 5
    assert "2 invalid trace_id (must be 16 non-zero bytes)" in partial.error_message
    assert "2 invalid span_id (must be 8 non-zero bytes)" in partial.error_message
    assert "1 invalid parent_span_id" in partial.error_message
    assert list(Span.objects.values_list("name", flat=True)) == ["kept"]


def test_it_rejects_spans_too_old_or_too_far_ahead(post_traces, settings):
    settings.MONOENV_RETENTION_DAYS = 14
    settings.MONOENV_MAX_FUTURE_SECONDS = 3600
    now = timezone.now()
    request = make_request(
        [
            make_span(name="kept", start=now - timedelta(days=13)),
            make_span(start=now - timedelta(days=15)),
            make_span(start=now + timedelta(hours=2)),
            make_span(name="slightly ahead", start=now + timedelta(minutes=30)),
        ]
    )

    response = post_traces(request)

    partial = export_response(response).partial_success
    assert partial.rejected_spans == 2
    assert "older than the 14-day retention" in partial.error_message
    assert "more than 3600 s in the future" in partial.error_message
    assert sorted(Span.objects.values_list("name", flat=True)) == ["kept", "slightly ahead"]


def test_it_rejects_spans_ending_before_they_start(post_traces):
    response = post_traces(make_request([make_span(duration=timedelta(seconds=-1))]))

    assert export_response(response).partial_success.rejected_spans == 1
    assert "end time before start time" in export_response(response).partial_success.error_message


def test_it_truncates_a_huge_attribute_and_keeps_the_span(post_traces, settings):
    settings.MONOENV_MAX_ATTRIBUTE_VALUE_BYTES = 1000
    request = make_request(
        [
            make_span(name="fits", attributes={"db.statement": "é" * 500}),
            make_span(name="cut", attributes={"http.request.body": "x" * 1001}),
            make_span(name="cut between characters", attributes={"db.statement": "é" * 501}),
        ]
    )

    response = post_traces(request)

    partial = export_response(response).partial_success
    # A warning, as the OTLP specification allows: nothing was rejected.
    assert partial.rejected_spans == 0
    assert "trimmed 2 value(s) truncated to 1000 bytes" in partial.error_message
    spans = {span.name: span.attributes for span in Span.objects.all()}
    assert spans["fits"]["db.statement"] == "é" * 500
    assert spans["cut"]["http.request.body"] == "x" * 1000
    # "é" is two bytes in UTF-8: 1000 bytes hold 500 of them, never half of one.
    assert spans["cut between characters"]["db.statement"] == "é" * 500


def test_it_truncates_huge_values_nested_in_arrays_events_and_resources(post_traces, settings):
    settings.MONOENV_MAX_ATTRIBUTE_VALUE_BYTES = 1000
    huge = "x" * 1001
    request = make_request(
        [
            make_span(name="array", attributes={"tags": ["small", huge]}),
            make_span(
                name="event",
                events=[("exception", {"exception.type": "E", "exception.stacktrace": huge})],
            ),
        ]
    )
    response = post_traces(request)

    partial = export_response(response).partial_success
    assert partial.rejected_spans == 0
    assert "2 value(s) truncated to 1000 bytes" in partial.error_message
    spans = {span.name: span for span in Span.objects.all()}
    assert spans["array"].attributes["tags"] == ["small", "x" * 1000]
    event = spans["event"].events[0]
    assert event["attributes"]["exception.stacktrace"] == "x" * 1000
    assert spans["event"].exception_type == "E"

    response = post_traces(
        make_request([make_span(name="resource")], resource={"service.name": huge})
    )
    partial = export_response(response).partial_success
    assert partial.rejected_spans == 0
    assert Span.objects.get(name="resource").service == "x" * 1000


def test_it_names_spans_without_a_service_unknown_service(post_traces):
    request = make_request([make_span()], resource={"host.name": "box-1"})

    assert post_traces(request).status_code == 200

    span = Span.objects.get()
    assert span.service == "unknown_service"
    assert span.resource_attributes == {"host.name": "box-1"}
    assert ServiceDay.objects.get().service == "unknown_service"


def test_it_prefers_the_current_environment_attribute_to_the_old_one(post_traces):
    resource = {
        "service.name": "cart",
        "service.version": "2.3.0",
        "deployment.environment": "old-name",
        "deployment.environment.name": "production",
    }

    post_traces(make_request([make_span()], resource=resource))

    span = Span.objects.get()
    assert (span.service, span.service_version, span.environment) == (
        "cart",
        "2.3.0",
        "production",
    )
    assert span.resource_attributes == resource


def test_it_stores_nul_characters_safely(post_traces):
    span = make_span(
        name="GET /a\x00b",
        attributes={"key\x00": "value\x00", "list": ["x\x00"], "map": {"k\x00": "v\x00"}},
        status_code=2,
        status_message="boom\x00",
        events=[("exception\x00", {"exception.type": "Bad\x00Error"})],
    )
    request = make_request([span], resource={"service.name": "shop\x00"})

    response = post_traces(request)

    assert response.status_code == 200
    assert not export_response(response).HasField("partial_success")
    stored = Span.objects.get()
    assert stored.service == "shop\ufffd"
    assert stored.name == "GET /a\ufffdb"
    assert stored.http_route == "GET /a\ufffdb"
    assert stored.status_message == "boom\ufffd"
    assert stored.attributes == {
        "key\ufffd": "value\ufffd",
        "list": ["x\ufffd"],
        "map": {"k\ufffd": "v\ufffd"},
    }
    assert stored.events[0]["name"] == "exception\ufffd"


def test_it_keeps_microseconds_and_durations(post_traces):
    start = timezone.now().replace(microsecond=654_321) - timedelta(seconds=5)

    post_traces(make_request([make_span(start=start, duration=timedelta(microseconds=1234))]))

    span = Span.objects.get()
    assert span.start_time == start
    assert span.duration_us == 1234


def test_it_reads_typed_attributes(post_traces):
    attributes = {
        "text": "x",
        "count": 2**40,
        "ratio": 0.25,
        "flag": False,
        "tags": ["a", 1, True],
        "nested": {"inner": {"deep": 1}},
        "raw": b"\x00\x01",
        "not a number": float("nan"),
    }

    post_traces(make_request([make_span(attributes=attributes)]))

    assert Span.objects.get().attributes == {
        **attributes,
        "raw": "AAE=",
        "not a number": "nan",
    }


def test_it_decides_errors_by_status_kind_and_http_status(post_traces):
    cases = {
        "status error": dict(kind=1, status_code=2),
        "server 500": dict(kind=2, attributes={"http.response.status_code": 500}),
        "server 500 as text": dict(kind=2, attributes={"http.status_code": "500"}),
        "server 404": dict(kind=2, attributes={"http.response.status_code": 404}),
        "server 200 but error": dict(
            kind=2, status_code=2, attributes={"http.response.status_code": 200}
        ),
        "client 503": dict(kind=3, attributes={"http.response.status_code": 503}),
        "server ok status 500": dict(
            kind=2, status_code=1, attributes={"http.response.status_code": 500}
        ),
    }
    post_traces(make_request([make_span(name=name, **fields) for name, fields in cases.items()]))

    errors = dict(Span.objects.values_list("name", "is_error"))
    assert errors == {
        "status error": True,
        "server 500": True,
        "server 500 as text": True,
        "server 404": False,
        "server 200 but error": True,
        "client 503": False,
        # An explicit Ok is final: the trace API spec asks analysis tools to suppress errors.
        "server ok status 500": False,
    }
