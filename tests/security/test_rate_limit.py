"""A rate limit per token, shared by every process: HTTP 429 and gRPC RESOURCE_EXHAUSTED."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from django.db import connection
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from telemetry import ratelimit
from telemetry.grpc_server import build_server
from telemetry.models import ApiToken, RateBucket, Span
from telemetry.views import PROTOBUF
from tests.helpers import bearer, database_url
from tests.telemetry.otlp_payloads import make_request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def limited(settings):
    """One request a second after a burst of three."""
    settings.MONOENV_TOKEN_RATE_LIMIT = 1
    settings.MONOENV_TOKEN_RATE_BURST = 3


def post_traces(client, token: str):
    return client.post(
        "/v1/traces",
        data=make_request().SerializeToString(),
        content_type=PROTOBUF,
        headers=bearer(token),
    )


def test_the_api_answers_429_with_retry_after_past_the_burst(client, limited, make_token):
    token = make_token("read")
    statuses = [client.get("/api/v1/services", headers=bearer(token)).status_code for _ in range(3)]
    response = client.get("/api/v1/services", headers=bearer(token))

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert "rate limit" in response.json()["detail"]


def test_each_token_has_its_own_bucket(client, limited, make_token):
    greedy, other = make_token("read"), make_token("read")
    for _ in range(4):
        client.get("/api/v1/services", headers=bearer(greedy))

    assert client.get("/api/v1/services", headers=bearer(greedy)).status_code == 429
    assert client.get("/api/v1/services", headers=bearer(other)).status_code == 200


def test_the_otlp_receiver_answers_429_with_retry_after(client, limited, make_token):
    token = make_token("ingest")
    for _ in range(3):
        assert post_traces(client, token).status_code == 200

    response = post_traces(client, token)

    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert Span.objects.count() == 3


def test_a_refused_request_does_not_drain_the_bucket_further(client, limited, make_token):
    token = make_token("read")
    for _ in range(10):
        client.get("/api/v1/services", headers=bearer(token))
    # One second's refill, as if the client had waited its Retry-After.
    RateBucket.objects.update(updated_at=RateBucket.objects.get().updated_at - timedelta(seconds=1))

    assert client.get("/api/v1/services", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/services", headers=bearer(token)).status_code == 429


def test_zero_turns_the_limit_off(client, settings, make_token):
    settings.MONOENV_TOKEN_RATE_LIMIT = 0
    token = make_token("read")

    statuses = {client.get("/api/v1/services", headers=bearer(token)).status_code
                for _ in range(20)}  # fmt: skip

    assert statuses == {200}
    assert not RateBucket.objects.exists()


def test_the_bucket_refills_at_the_rate_up_to_the_burst(db):
    waits = [ratelimit.take("k", rate=2, burst=3) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(0.5, abs=0.01)
    # A minute idle refills it to the burst, not to 120 tokens.
    bucket = RateBucket.objects.get(key="k")
    bucket.updated_at -= timedelta(seconds=60)
    bucket.save()

    waits = [ratelimit.take("k", rate=2, burst=3) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] > 0
    assert ratelimit.retry_after_seconds(waits[3]) == 1


def test_the_limit_holds_across_processes(transactional_db, settings, client):
    # A refill every ten minutes: however slowly the other process exits on a
    # busy machine, the bucket it emptied is still empty when we ask.
    settings.MONOENV_TOKEN_RATE_LIMIT = 1 / 600
    settings.MONOENV_TOKEN_RATE_BURST = 3
    token, raw = ApiToken.issue(name="shared", scopes=["read"])
    url = database_url(connection)
    # Another process takes the whole burst from the shared bucket.
    key = f"token:{token.pk}"
    code = (
        "from telemetry.ratelimit import take\n"
        f"for _ in 'abc': take({key!r}, rate=1 / 600, burst=3)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        timeout=60,
    )

    assert client.get("/api/v1/services", headers=bearer(raw)).status_code == 429


@pytest.fixture
def grpc_stub(transactional_db, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    server, port = build_server("127.0.0.1:0", threads=2)
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield trace_service_pb2_grpc.TraceServiceStub(channel)
    server.stop(grace=None).wait()


def test_grpc_answers_resource_exhausted_with_retry_info(grpc_stub, limited):
    _, raw = ApiToken.issue(name="grpc", scopes=["ingest"])
    metadata = (("authorization", f"Bearer {raw}"),)
    for _ in range(3):
        grpc_stub.Export(make_request(), metadata=metadata, timeout=10)

    with pytest.raises(grpc.RpcError) as failure:
        grpc_stub.Export(make_request(), metadata=metadata, timeout=10)

    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(failure.value.trailing_metadata())
    retry_info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry_info.retry_delay.seconds == 1
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert Span.objects.count() == 3
