"""PostgreSQL stopped for a minute, then for five, under real SDK exporters.

The exporters send over HTTP and gRPC at 300 spans/s with the SDK's default
queue and schedule. While the database is down, the receivers write each
batch to the durable spool and answer success, so the SDKs neither drop nor
retry; once it is back, the replayers store the spool by themselves. Every
span created is stored exactly once, and the rollups, recomputed, count each
span once.
"""

import time

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from bench.sdk_load import stored_counts
from tests.reliability.harness import (
    assert_each_span_stored_once,
    manage,
    rollup_mismatches,
    wait_for,
)
from tests.telemetry.otlp_payloads import make_request

RATE = 300
ROLLUP = "from telemetry import rollups; rollups.rollup_pending()"


def _probe_http(stack, token) -> int:
    return requests.post(
        f"http://127.0.0.1:{stack.http_port}/v1/traces",
        data=make_request(resource={"service.name": "probe"}).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"},
        timeout=10,
    ).status_code


def _probe_grpc(stack, token) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(
                make_request(resource={"service.name": "probe"}),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _spooled(stack) -> int:
    return len(list((stack.base / "data" / "spool").glob("*.otlp")))


@pytest.mark.parametrize(
    "outage_seconds",
    # Past the suite's 300 s timeout: the outage, then the exporters' flush and the replay.
    [pytest.param(60, marks=[pytest.mark.timeout(600), pytest.mark.slow(2)]),
     pytest.param(300, marks=[pytest.mark.timeout(1200), pytest.mark.slow(6)])],
)  # fmt: skip
def test_no_span_is_lost_or_pushed_back_while_postgresql_is_down(
    postgres, database, stack, load, outage_seconds
):
    stack.start_web()
    stack.start_grpc()
    services = [f"pg-down-{protocol}" for protocol in ("http", "grpc")]
    for protocol, endpoint in (
        ("http", f"http://127.0.0.1:{stack.http_port}/v1/traces"),
        ("grpc", f"127.0.0.1:{stack.grpc_port}"),
    ):
        load.start(
            protocol=protocol,
            endpoint=endpoint,
            token=postgres.token,
            service=f"pg-down-{protocol}",
            rate=RATE,
            seconds=outage_seconds + 30,
        )
    with postgres.connect(database) as conn:
        wait_for(
            lambda: all(total for total, _ in stored_counts(conn, services).values()),
            timeout=60,
            what="both exporters' first batches",
        )

    postgres.stop()
    try:
        down_since = time.monotonic()
        probes = (_probe_http(stack, postgres.token), _probe_grpc(stack, postgres.token))
        wait_for(lambda: _spooled(stack) >= 2, timeout=30, what="batches in the spool")
        # The outage itself is the point here: it lasts its full length.
        time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_since)))
        spooled = _spooled(stack)
    finally:
        postgres.start()

    assert probes == (200, grpc.StatusCode.OK)
    results = load.wait(timeout=outage_seconds + 240)
    print(f"{spooled} batches spooled at the end of a {outage_seconds} s outage")
    for result in results:
        # The receivers never pushed back, so the exporters never retried.
        assert result["retries"] == [], result["retries"][:3]
    wait_for(lambda: _spooled(stack) == 0, timeout=180, what=f"the replay\n{stack.log('web')}")
    with postgres.connect(database) as conn:
        assert_each_span_stored_once(conn, results)
        assert stored_counts(conn, ["probe"])["probe"] == (2, 2)
        manage(stack.env(), "shell", "-c", ROLLUP)
        assert rollup_mismatches(conn, services) == []
