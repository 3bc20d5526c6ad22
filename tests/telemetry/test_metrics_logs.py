"""OTLP metrics and logs: accepted on HTTP and gRPC like traces, counted, not stored.

Stock SDKs (opentelemetry-distro) export both by default; a 404 or
UNIMPLEMENTED made them log an error every minute.
"""

import gzip
import json

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from telemetry import otlp_signals, receiver
from telemetry.models import Span
from telemetry.views import JSON, PROTOBUF
from tests.helpers import bearer


def metrics_request(points: int = 3) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    counter = scope.metrics.add(name="http.server.requests")
    for value in range(points):
        counter.sum.data_points.add(as_int=value)
    histogram = scope.metrics.add(name="http.server.duration")
    histogram.histogram.data_points.add(count=2, bucket_counts=[1, 1], explicit_bounds=[10.0])
    return request


def logs_request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value="shop"))
    resource_logs.scope_logs.add().log_records.extend(records or [LogRecord()])
    return request


@pytest.fixture
def post(client, ingest_token):
    def post(path, body, *, content_type=PROTOBUF, token=ingest_token, encoding=None):
        headers = {**bearer(token), "Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        return client.post(path, data=body, content_type=content_type, headers=headers)

    return post


def test_metrics_in_protobuf_are_answered_success_and_counted(post):
    before = receiver.unstored_counts().get("metric data points", 0)
    response = post("/v1/metrics", metrics_request(points=3).SerializeToString())

    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")
    # 3 sum points and 1 histogram point; counted unless the minute's log line took them.
    assert receiver.unstored_counts().get("metric data points", 0) in (0, before + 4)
    assert not Span.objects.exists()


def test_logs_in_gzipped_json_are_answered_success_in_json(post):
    document = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "1700000000000000000",
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "body": {"stringValue": "hello"},
                                "unknownField": 1,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    response = post(
        "/v1/logs", gzip.compress(json.dumps(document).encode()), content_type=JSON,
        encoding="gzip",
    )  # fmt: skip

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    assert response.json() == {}


def test_metrics_and_logs_need_an_ingest_token(post, read_token):
    response = post("/v1/logs", logs_request().SerializeToString(), token=read_token)
    assert response.status_code == 403
    assert status_pb2.Status.FromString(response.content).code == code_pb2.PERMISSION_DENIED
    response = post("/v1/metrics", metrics_request().SerializeToString(), token="me_nope")
    assert response.status_code == 401


def test_metrics_and_logs_refuse_bad_data_and_unknown_types(post):
    response = post("/v1/metrics", b"\xff\xff\xff")
    assert response.status_code == 400
    assert status_pb2.Status.FromString(response.content).code == code_pb2.INVALID_ARGUMENT
    assert post("/v1/logs", b"{}", content_type="text/plain").status_code == 415


def test_metrics_past_the_per_request_limit_get_413(post, settings):
    settings.MONOENV_MAX_SPANS_PER_REQUEST = 3

    response = post("/v1/metrics", metrics_request(points=3).SerializeToString())

    assert response.status_code == 413
    assert "4 metric data points in one request; the limit is 3" in (
        status_pb2.Status.FromString(response.content).message
    )


def test_metrics_over_the_body_cap_get_413(post, settings):
    settings.MONOENV_MAX_REQUEST_BYTES = 10

    assert post("/v1/logs", logs_request(*[LogRecord()] * 20).SerializeToString()).status_code == (
        413
    )


def test_grpc_accepts_metrics_and_logs_with_the_same_token_check(grpc_address, ingest_token):
    metadata = (("authorization", f"Bearer {ingest_token}"),)
    with grpc.insecure_channel(grpc_address) as channel:
        metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        logs = logs_service_pb2_grpc.LogsServiceStub(channel)

        assert metrics.Export(metrics_request(), metadata=metadata, timeout=10) == (
            ExportMetricsServiceResponse()
        )
        assert logs.Export(logs_request(), metadata=metadata, timeout=10) == (
            ExportLogsServiceResponse()
        )
        with pytest.raises(grpc.RpcError) as failure:
            logs.Export(logs_request(), metadata=(("authorization", "Bearer me_x"),), timeout=10)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _string(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def test_flag_evaluations_are_picked_out_by_event_name_old_and_new():
    new = LogRecord(event_name="feature_flag.evaluation")
    new.attributes.append(_string("feature_flag.key", "new-checkout"))
    older_sender = LogRecord()
    older_sender.attributes.extend(
        [_string("event.name", "feature_flag.evaluation"), _string("feature_flag.key", "a")]
    )
    old_name = LogRecord(event_name="feature_flag")
    other_event = LogRecord(event_name="browser.page_view")
    plain_log = LogRecord(body=AnyValue(string_value="feature_flag.evaluation"))

    request = logs_request(new, other_event, older_sender, plain_log, old_name)
    found = list(otlp_signals.flag_evaluations(request))

    assert [evaluation.record for evaluation in found] == [new, older_sender, old_name]
    assert found[0].resource_attributes == (_string("service.name", "shop"),)
