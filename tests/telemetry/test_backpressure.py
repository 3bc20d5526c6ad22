"""When neither the store nor the spool can take a batch, clients are told to retry later.

Ingest is over capacity when every ingest slot stays busy past the queue wait;
these tests hold the only slot themselves, so the receiver genuinely cannot
store, with no mock in the way, and turn the spool off, as a full one is.
"""

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from telemetry import ingest
from telemetry.models import Span
from telemetry.views import JSON
from tests.telemetry.otlp_payloads import json_body, make_request, to_otlp_json


@pytest.fixture
def hold_only_slot(settings):
    """Holds the only ingest slot while the returned context is open."""
    settings.MONOENV_INGEST_CONCURRENCY = 1
    settings.MONOENV_INGEST_QUEUE_SECONDS = 0
    settings.MONOENV_RETRY_AFTER_SECONDS = 7
    settings.MONOENV_SPOOL_MAX_BYTES = 0
    ingest._slots = ingest._IngestSlots()
    return ingest._slots


def test_it_answers_503_with_retry_after(post_traces, hold_only_slot):
    with hold_only_slot:
        response = post_traces(make_request())

    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.UNAVAILABLE
    assert not Span.objects.exists()


def test_it_answers_503_in_json_to_json_requests(post_traces, hold_only_slot):
    with hold_only_slot:
        response = post_traces(json_body(to_otlp_json(make_request())), content_type=JSON)

    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert response["Content-Type"] == JSON
    assert response.json()["code"] == code_pb2.UNAVAILABLE


def test_it_stores_again_once_the_slot_is_free(post_traces, hold_only_slot):
    with hold_only_slot:
        assert post_traces(make_request()).status_code == 503

    assert post_traces(make_request()).status_code == 200
    assert Span.objects.count() == 1


def test_grpc_answers_unavailable_with_retry_info(trace_stub, ingest_token, hold_only_slot):
    metadata = (("authorization", f"Bearer {ingest_token}"),)

    with hold_only_slot, pytest.raises(grpc.RpcError) as failure:
        trace_stub.Export(make_request(), metadata=metadata, timeout=10)

    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(failure.value.trailing_metadata())
    retry_info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry_info.retry_delay.seconds == 7
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == code_pb2.UNAVAILABLE
    unpacked = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(unpacked)
    assert unpacked == retry_info
    assert not Span.objects.exists()
    response = trace_stub.Export(make_request(), metadata=metadata, timeout=10)
    assert not response.HasField("partial_success")
    assert Span.objects.count() == 1
