"""PostgreSQL stopped in the middle of ingest, then started again.

The real SDK exporters keep sending over HTTP and gRPC while the database is
down for several seconds; the receivers answer 503 with Retry-After and
UNAVAILABLE with RetryInfo, the exporters wait as told and retry, and the web
and gRPC processes reconnect by themselves. Afterwards every span created is
stored exactly once.
"""

import time

import grpc
import requests
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.reliability.harness import assert_each_span_stored_once
from tests.telemetry.otlp_payloads import make_request

OUTAGE_SECONDS = 5
RETRY_AFTER = "2"


def _probe_http(stack, token) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{stack.http_port}/v1/traces",
        data=make_request().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _probe_grpc(stack, token) -> grpc.RpcError:
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(
                make_request(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
            )
        except grpc.RpcError as error:
            return error
    raise AssertionError("gRPC accepted a batch while PostgreSQL was down")


def test_no_span_is_lost_when_postgresql_restarts(postgres, database, stack, load):
    stack.start_web()
    stack.start_grpc()
    for protocol, endpoint in (
        ("http", f"http://127.0.0.1:{stack.http_port}/v1/traces"),
        ("grpc", f"127.0.0.1:{stack.grpc_port}"),
    ):
        load.start(
            protocol=protocol,
            endpoint=endpoint,
            token=postgres.token,
            service=f"pg-restart-{protocol}",
            rate=300,
            seconds=20,
            schedule_delay_ms=500,
        )
    time.sleep(6)

    postgres.stop()
    try:
        down_since = time.monotonic()
        http_answer = _probe_http(stack, postgres.token)
        grpc_answer = _probe_grpc(stack, postgres.token)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
    finally:
        postgres.start()

    assert http_answer.status_code == 503, http_answer.text
    assert http_answer.headers["Retry-After"] == RETRY_AFTER
    assert grpc_answer.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(grpc_answer.trailing_metadata())
    retry_info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry_info.retry_delay.seconds == int(RETRY_AFTER)

    results = load.wait()
    # The exporters logged each retry with the delay the server asked for.
    for result in results:
        assert any(f"retrying in {RETRY_AFTER}.00s" in line for line in result["retries"]), result[
            "retries"
        ]
    # Both servers took spans again without being restarted.
    assert _probe_http(stack, postgres.token).status_code == 200
    with postgres.connect(database) as conn:
        assert_each_span_stored_once(conn, results)
