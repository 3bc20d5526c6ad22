"""Flag evaluations through ingest: span events on /v1/traces, log records on /v1/logs.

Each evaluation is stored once (retries and replays double nothing), and is
attributed to its request span whichever arrives first. Expectations are
written out by hand from the requests each test builds.
"""

import base64
import gzip
import json
import threading
from datetime import timedelta

import grpc
import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from telemetry import flag_store, ingest, receiver
from telemetry.models import Attribution
from telemetry.views import JSON, PROTOBUF
from tests.helpers import bearer
from tests.telemetry.otlp_payloads import unix_nano

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SERVER = bytes.fromhex("eee19b7ec3c1b174")
CHILD = bytes.fromhex("eee19b7ec3c1b175")
OTHER_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def attribute(key, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def traces(at, *, event=None, on=SERVER, spans=(SERVER, CHILD), service="shop"):
    """A request: SERVER span POST /checkout (120 ms) and its INTERNAL child; one event."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(attribute("service.name", service))
    scope = resource_spans.scope_spans.add()
    start = unix_nano(at)
    for span_id in spans:
        is_server = span_id == SERVER
        span = scope.spans.add(
            trace_id=TRACE, span_id=span_id, parent_span_id=b"" if is_server else SERVER,
            name="POST /checkout" if is_server else "pricing", kind=2 if is_server else 1,
            start_time_unix_nano=start, end_time_unix_nano=start + 120_000_000,
        )  # fmt: skip
        if is_server:
            span.attributes.append(attribute("http.route", "/checkout"))
        if event is not None and span_id == on:
            name, attributes = event
            added = span.events.add(name=name, time_unix_nano=start + 1_000_000)
            added.attributes.extend(attribute(k, v) for k, v in attributes.items())
    return request


def log_record(at, attributes, *, event_name="feature_flag.evaluation", span_id=CHILD,
               trace_id=TRACE, body=None) -> LogRecord:  # fmt: skip
    record = LogRecord(time_unix_nano=unix_nano(at), trace_id=trace_id, span_id=span_id)
    if event_name:
        record.event_name = event_name
    record.attributes.extend(attribute(k, v) for k, v in attributes.items())
    if body is not None:
        record.body.CopyFrom(body)
    return record


def logs(*records, service="shop") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(attribute("service.name", service))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def otlp_json(message) -> bytes:
    """OTLP/JSON as the JS exporters write it: hex ids, camelCase keys."""
    document = json_format.MessageToDict(message)
    for resource_logs in document.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(document).encode()


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture
def post(client, ingest_token):
    def post(path, body, *, content_type=PROTOBUF, encoding=None, token=ingest_token):
        if not isinstance(body, bytes):
            body = body.SerializeToString()
        headers = {**bearer(token), "Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        return client.post(path, data=body, content_type=content_type, headers=headers)

    return post


@pytest.fixture
def lock_table(transactional_db, settings):
    """lock_table(name) holds a lock ingest needs on that table, as a stalled database would."""
    settings.MONOENV_INGEST_DB_TIMEOUT_SECONDS = 1
    release, holders = threading.Event(), []
    # Django's own parameters: on the embedded default the host is in OPTIONS.
    params = connection.get_connection_params()

    def hold(table, locked):
        with psycopg.connect(
            dbname=params["dbname"], user=params.get("user"), host=params.get("host"),
            port=params.get("port"), password=params.get("password"),
        ) as other:  # fmt: skip
            other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)

    def lock(table):
        locked = threading.Event()
        holders.append(threading.Thread(target=hold, args=(table, locked)))
        holders[-1].start()
        assert locked.wait(30)
        return release

    yield lock
    release.set()
    for holder in holders:
        holder.join()


def evaluations():
    """Every stored evaluation, in either form, by time."""
    now = timezone.now()
    return flag_store.evaluations_in(now - timedelta(days=30), now + timedelta(days=1))


def assert_attributed_to_the_server_span(row, cohort):
    assert row.attribution == Attribution.REQUEST
    assert bytes(row.request_span_id) == SERVER
    assert (row.route, row.request_duration_us, row.cohort) == ("/checkout", 120_000, cohort)


CURRENT = {"feature_flag.key": "new-checkout", "feature_flag.result.variant": "on",
           "feature_flag.provider.name": "flagd"}  # fmt: skip


# Transactional: the receivers commit; the fixture also drops the span partitions after.
@pytest.mark.usefixtures("transactional_db")
class TestSpanEvents:
    def test_an_event_on_the_server_span_is_stored_and_attributed_with_its_spans(self, post, now):
        response = post("/v1/traces", traces(now, event=("feature_flag.evaluation", CURRENT)))
        assert response.status_code == 200
        [row] = evaluations()
        assert_attributed_to_the_server_span(row, "on")
        assert (row.flag, row.variant, row.provider, row.carrier) == (
            "new-checkout", "on", "flagd", "span_event",
        )  # fmt: skip
        assert row.at == now + timedelta(milliseconds=1)

    def test_a_retried_export_stores_its_evaluations_once(self, post, now):
        body = traces(now, event=("feature_flag.evaluation", CURRENT), on=CHILD)
        for _ in range(3):
            assert post("/v1/traces", body).status_code == 200
        [row] = evaluations()
        assert_attributed_to_the_server_span(row, "on")

    def test_a_retry_with_new_spans_stores_only_the_new_evaluations(self, now):
        # Half stored already: ingest's skip-duplicates path returns the jsonb decoded.
        first = otlp_rows(traces(now, spans=(SERVER,)))
        ingest.store_rows(first)
        both = otlp_rows(traces(now, event=("feature_flag.evaluation", CURRENT), on=CHILD))
        assert ingest.store_rows(both) == 1
        assert ingest.store_rows(both) == 0
        # Its request span came in the first batch: found in the database.
        assert flag_store.attribute_pending(now=timezone.now())["attributed"] == 1
        [row] = evaluations()
        assert_attributed_to_the_server_span(row, "on")

    def test_an_event_on_a_span_before_its_request_span_is_attributed_when_that_comes(
        self, post, now
    ):
        event = ("feature_flag.evaluation", CURRENT)
        assert (
            post("/v1/traces", traces(now, event=event, on=CHILD, spans=(CHILD,))).status_code
            == 200
        )
        assert flag_store.attribute_pending(now=timezone.now()) == {
            "attributed": 0, "no_request": 0, "waiting": 1, "unresolved": 0,
        }  # fmt: skip
        assert post("/v1/traces", traces(now, spans=(SERVER,))).status_code == 200
        later = timezone.now() + flag_store.RETRY_AFTER
        assert flag_store.attribute_pending(now=later)["attributed"] == 1
        assert_attributed_to_the_server_span(evaluations()[0], "on")

    @pytest.mark.parametrize(
        ("name", "attributes", "expected"),
        [
            # Old event name and every deprecated attribute name.
            ("feature_flag", {"feature_flag.key": "f", "feature_flag.variant": "blue",
                              "feature_flag.provider_name": "old-sdk",
                              "feature_flag.evaluation.reason": "SPLIT"},
             {"cohort": "blue", "variant": "blue", "provider": "old-sdk", "reason": "split"}),
            # Current names: value only (the Python hook JSON-encodes it), set, version, context.
            ("feature_flag.evaluation", {"feature_flag.key": "f",
                                         "feature_flag.result.value": '"green"',
                                         "feature_flag.result.reason": "targeting_match",
                                         "feature_flag.context.id": "user-7",
                                         "feature_flag.set.id": "proj-1",
                                         "feature_flag.version": "v12"},
             {"cohort": "green", "variant": "", "value": "green", "reason": "targeting_match",
              "context_id": "user-7", "set_id": "proj-1", "flag_version": "v12"}),
            # An error is its own cohort, whatever value was served.
            ("feature_flag.evaluation", {"feature_flag.key": "f",
                                         "error.type": "provider_not_ready",
                                         "feature_flag.result.value": "false"},
             {"cohort": "error:provider_not_ready", "error_type": "provider_not_ready"}),
            # Both spellings: the current one wins.
            ("feature_flag.evaluation", {"feature_flag.key": "f",
                                         "feature_flag.result.variant": "new",
                                         "feature_flag.variant": "old",
                                         "feature_flag.provider.name": "new-p",
                                         "feature_flag.provider_name": "old-p"},
             {"cohort": "new", "variant": "new", "provider": "new-p"}),
        ],
    )  # fmt: skip
    def test_every_attribute_name_variant_arrives_stored(
        self, post, now, name, attributes, expected
    ):
        assert post("/v1/traces", traces(now, event=(name, attributes))).status_code == 200
        [row] = evaluations()
        assert {field: getattr(row, field) for field in expected} == expected
        assert_attributed_to_the_server_span(row, expected["cohort"])

    def test_a_nul_spelled_in_a_json_value_is_replaced_not_fatal(self, post, now):
        attributes = {"feature_flag.key": "f", "feature_flag.result.value": '"a\\u0000b"'}
        event = ("feature_flag", attributes)
        assert post("/v1/traces", traces(now, event=event)).status_code == 200
        assert post("/v1/logs", logs(log_record(now, attributes))).status_code == 200
        assert [row.value for row in evaluations()] == ["a\ufffdb", "a\ufffdb"]
        window = {"start": now - timedelta(minutes=1), "end": now + timedelta(minutes=1)}
        assert flag_store.cohort_counts("f", **window) == {"a\ufffdb": 2}

    def test_a_flag_read_counts_only_that_flag_of_a_span_that_evaluated_two(self, post, now):
        request = traces(now, event=("feature_flag.evaluation", {
            "feature_flag.key": "new-checkout", "feature_flag.result.variant": "on"}))
        server = request.resource_spans[0].scope_spans[0].spans[0]
        second = server.events.add(name="feature_flag.evaluation",
                                   time_unix_nano=unix_nano(now) + 2_000_000)
        second.attributes.extend([attribute("feature_flag.key", "dark-mode"),
                                  attribute("feature_flag.result.variant", "blue")])  # fmt: skip
        assert post("/v1/traces", request).status_code == 200

        window = {"start": now - timedelta(minutes=1), "end": now + timedelta(minutes=1)}
        assert flag_store.cohort_counts("new-checkout", **window) == {"on": 1}
        assert flag_store.cohort_counts("dark-mode", **window) == {"blue": 1}
        assert sorted(e.flag for e in flag_store.evaluations_in(**window, flag="dark-mode")) == [
            "dark-mode"
        ]

    def test_other_events_store_no_evaluation(self, post, now):
        event = ("exception", {"exception.type": "Boom", "feature_flag.key": "f"})
        assert post("/v1/traces", traces(now, event=event)).status_code == 200
        assert evaluations() == []


def otlp_rows(request):
    from telemetry import otlp

    return otlp.spans_to_rows(request, ingest.current_limits()).rows


# Transactional: the receivers commit; the fixture also drops the span partitions after.
@pytest.mark.usefixtures("transactional_db")
class TestLogs:
    @pytest.mark.parametrize(
        ("content_type", "encoding"),
        [(PROTOBUF, None), (JSON, None), (PROTOBUF, "gzip"), (JSON, "gzip")],
    )
    def test_a_log_after_its_spans_is_attributed_at_once(self, post, now, content_type, encoding):
        assert post("/v1/traces", traces(now)).status_code == 200
        request = logs(log_record(now, CURRENT))
        body = otlp_json(request) if content_type == JSON else request.SerializeToString()
        if encoding:
            body = gzip.compress(body)
        response = post("/v1/logs", body, content_type=content_type, encoding=encoding)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == content_type
        [row] = evaluations()
        assert row.carrier == "log"
        assert_attributed_to_the_server_span(row, "on")

    def test_a_log_before_its_spans_is_attributed_when_they_come(self, post, now):
        assert post("/v1/logs", logs(log_record(now, CURRENT))).status_code == 200
        [row] = evaluations()
        assert row.attribution == Attribution.PENDING
        assert post("/v1/traces", traces(now)).status_code == 200
        assert flag_store.attribute_pending(now=timezone.now())["attributed"] == 1
        assert_attributed_to_the_server_span(evaluations()[0], "on")

    def test_a_retried_logs_export_stores_each_evaluation_once(self, post, now):
        request = logs(log_record(now, CURRENT), log_record(now + timedelta(seconds=1), CURRENT))
        for _ in range(3):
            assert post("/v1/logs", request).status_code == 200
        assert len(evaluations()) == 2

    def test_the_old_event_name_attribute_and_body_value_are_read(self, post, now):
        body = AnyValue()
        body.kvlist_value.values.append(attribute("value", "blue"))
        record = log_record(now, {"event.name": "feature_flag", "feature_flag.key": "f"},
                            event_name="", body=body)  # fmt: skip
        assert post("/v1/logs", logs(record)).status_code == 200
        [row] = evaluations()
        assert (row.flag, row.cohort, row.value) == ("f", "blue", "blue")

    def test_other_records_are_accepted_counted_and_not_stored(self, post, now):
        before = receiver.unstored_counts().get("log records", 0)
        plain = log_record(now, {"feature_flag.key": "f"}, event_name="")
        exception = log_record(now, {"exception.type": "FLAG_NOT_FOUND"}, event_name="exception")
        response = post("/v1/logs", logs(plain, exception, log_record(now, CURRENT)))
        assert response.status_code == 200
        assert (
            ExportLogsServiceResponse.FromString(
                response.content
            ).partial_success.rejected_log_records
            == 0
        )
        assert len(evaluations()) == 1
        # The periodic log line may have taken the count meanwhile.
        assert receiver.unstored_counts().get("log records", 0) in (0, before + 2)

    def test_an_evaluation_without_trace_context_has_no_request(self, post, now):
        record = log_record(now, CURRENT, trace_id=b"", span_id=b"")
        assert post("/v1/logs", logs(record)).status_code == 200
        [row] = evaluations()
        assert row.attribution == Attribution.NO_REQUEST

    def test_evaluations_outside_the_retention_are_refused_by_partial_success(
        self, post, now, settings
    ):
        old = now - timedelta(days=settings.MONOENV_RETENTION_DAYS + 1)
        response = post("/v1/logs", logs(log_record(old, CURRENT), log_record(now, CURRENT)))
        assert response.status_code == 200
        partial = ExportLogsServiceResponse.FromString(response.content).partial_success
        assert partial.rejected_log_records == 1
        assert "older than" in partial.error_message
        assert len(evaluations()) == 1

    def test_the_token_and_limits_are_those_of_traces(self, post, now, settings, read_token):
        assert post("/v1/logs", logs(log_record(now, CURRENT)), token=read_token).status_code == 403
        assert post("/v1/logs", b"\x0a\xff", content_type=PROTOBUF).status_code == 400
        settings.MONOENV_MAX_SPANS_PER_REQUEST = 1
        request = logs(log_record(now, CURRENT), log_record(now, CURRENT))
        assert post("/v1/logs", request).status_code == 413
        assert evaluations() == []

    def test_an_outage_spools_the_evaluations_and_the_replay_stores_them_once(
        self, post, now, lock_table
    ):
        release = lock_table("telemetry_flagevaluation")
        request = logs(log_record(now, CURRENT))
        assert post("/v1/logs", request).status_code == 200
        # Within the probe pause, the next batch goes straight to disk: the same again.
        assert post("/v1/logs", request).status_code == 200
        assert len(ingest.current_spool().pending()) == 2
        release.set()
        ingest._outage_until = 0.0
        assert ingest.replay_spool() == 2
        [row] = evaluations()
        assert (row.cohort, row.carrier) == ("on", "log")

    def test_a_spooled_traces_batch_stores_its_evaluations_at_replay(self, post, now, lock_table):
        release = lock_table("telemetry_pendingminute")
        event = ("feature_flag.evaluation", CURRENT)
        assert post("/v1/traces", traces(now, event=event)).status_code == 200
        assert len(ingest.current_spool().pending()) == 1
        release.set()
        ingest._outage_until = 0.0
        assert ingest.replay_spool() == 1
        [row] = evaluations()
        assert_attributed_to_the_server_span(row, "on")


@pytest.fixture
def logs_stub(grpc_address):
    with grpc.insecure_channel(grpc_address) as channel:
        yield logs_service_pb2_grpc.LogsServiceStub(channel)


class TestGrpcLogs:
    def test_logs_export_stores_evaluations_once_and_checks_the_token(
        self, logs_stub, ingest_token, read_token, now
    ):
        request = logs(log_record(now, CURRENT, trace_id=OTHER_TRACE))
        metadata = (("authorization", f"Bearer {ingest_token}"),)
        for _ in range(2):
            response = logs_stub.Export(request, metadata=metadata, timeout=10)
            assert response.partial_success.rejected_log_records == 0
        [row] = evaluations()
        assert (row.flag, row.cohort, row.carrier) == ("new-checkout", "on", "log")
        with pytest.raises(grpc.RpcError) as error:
            logs_stub.Export(request, metadata=(("authorization", f"Bearer {read_token}"),))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED

    def test_an_outage_answers_unavailable_when_the_spool_is_off(
        self, logs_stub, ingest_token, now, settings, lock_table
    ):
        settings.MONOENV_SPOOL_MAX_BYTES = 0
        lock_table("telemetry_flagevaluation")
        with pytest.raises(grpc.RpcError) as error:
            logs_stub.Export(
                logs(log_record(now, CURRENT)),
                metadata=(("authorization", f"Bearer {ingest_token}"),),
                timeout=10,
            )
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.usefixtures("transactional_db")
class TestBothForms:
    def test_reads_and_retention_see_batch_rows_and_single_rows_alike(self, post, now):
        # On the server span: stored with its batch. As a log of another trace: a row.
        assert (
            post("/v1/traces", traces(now, event=("feature_flag.evaluation", CURRENT))).status_code
            == 200
        )
        assert (
            post("/v1/logs", logs(log_record(now, CURRENT, trace_id=OTHER_TRACE))).status_code
            == 200
        )
        window = {"start": now - timedelta(minutes=1), "end": now + timedelta(minutes=1)}
        assert flag_store.cohort_counts("new-checkout", **window) == {"on": 2}
        [seen] = flag_store.flags_seen(**window)
        assert (seen.flag, seen.services, seen.cohorts) == ("new-checkout", ("shop",), {"on": 2})
        assert flag_store.services_of_flag("new-checkout", **window) == ["shop"]
        assert flag_store.flag_evaluated("new-checkout", since=now - timedelta(minutes=1))
        on = flag_store.CohortFilter(flag="new-checkout", service="shop", cohort="on", **window)
        # Only the span event has its request: the log's trace has no spans.
        assert flag_store.cohort_route_counts(on) == {"/checkout": (1, 0)}
        assert flag_store.prune_evaluations(now + timedelta(minutes=1)) == 2
        assert evaluations() == []
