"""The OTLP/HTTP server itself: gunicorn over uvicorn workers, run as the launcher runs it.

A real server process on the test database; slow and stalled clients are
real sockets. Nothing here times the server: each test waits for an answer
or for the server to close a connection, within generous bounds.
"""

import socket
import time

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from telemetry import spool
from telemetry.models import Span
from tests.helpers import bearer
from tests.reliability.harness import wait_for
from tests.telemetry.otlp_payloads import make_request, make_span
from tests.telemetry.servers import Server

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def post(server: Server, token: str, body: bytes, **kwargs) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/traces", data=body, headers={**PROTOBUF, **bearer(token)}, timeout=10,
        **kwargs,
    )  # fmt: skip


def test_it_stores_spans_and_serves_the_dashboard_on_the_same_port(start_server, ingest_token):
    server = start_server()

    response = post(
        server, ingest_token, make_request([make_span(name="served")]).SerializeToString()
    )

    assert response.status_code == 200, response.content
    assert Span.objects.get().name == "served"
    assert requests.get(f"{server.url}/login/", timeout=10).status_code == 200


def _closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection; return what it sent."""
    sock.settimeout(30)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_headers_that_stall_past_their_timeout_get_408_and_the_connection_closed(start_server):
    server = start_server(MONOENV_OTLP_HEADER_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n")

        assert _closed_by_server(sock).startswith(b"HTTP/1.1 408")

    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert _closed_by_server(silent) == b""


def test_a_body_that_stalls_past_its_timeout_gets_408(start_server, ingest_token):
    server = start_server(MONOENV_OTLP_BODY_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-protobuf"
            b"\r\nAuthorization: Bearer " + ingest_token.encode() + b"\r\nContent-Length: 100\r\n"
            b"\r\n" + b"\x0a"
        )

        assert _closed_by_server(sock).startswith(b"HTTP/1.1 408")
    assert not Span.objects.exists()


def test_healthy_exporters_are_answered_while_hundreds_of_clients_stall(start_server, ingest_token):
    server = start_server()
    stalled = []
    try:
        for number in range(300):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if number % 2:
                sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n")
            else:
                sock.sendall(
                    b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                    b"application/x-protobuf\r\nAuthorization: Bearer " + ingest_token.encode()
                    + b"\r\nContent-Length: 100000\r\n\r\n" + b"\x0a"
                )  # fmt: skip
            stalled.append(sock)

        for number in range(10):
            request = make_request([make_span(name=f"healthy {number}")])
            assert post(server, ingest_token, request.SerializeToString()).status_code == 200
    finally:
        for sock in stalled:
            sock.close()
    assert Span.objects.count() == 10


def test_a_grpc_client_on_this_port_is_told_the_fix(start_server, ingest_token):
    server = start_server()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.Export(make_request(), metadata=(("authorization", f"Bearer {ingest_token}"),),
                        timeout=10)  # fmt: skip

    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in failure.value.details()
    assert "port 4317" in failure.value.details()
    wait_for(
        lambda: (
            "A gRPC client at 127.0.0.1 called "
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export over HTTP/2"
            in server.log()
        ),
        timeout=10,
        what="the server's log line",
    )
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in server.log()


def test_a_plain_http2_client_gets_505_naming_the_fix(start_server):
    server = start_server()
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    stream = client.get_next_available_stream_id()
    client.send_headers(stream, [(":method", "POST"), (":path", "/v1/traces"),
                                 (":scheme", "http"), (":authority", "localhost")],
                        end_stream=True)  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(client.data_to_send())
        status, body, deadline = None, b"", time.monotonic() + 10
        while not body.endswith(b"\n") and time.monotonic() < deadline:
            for event in client.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data

    assert status == "505"
    assert b"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in body


def test_a_spool_left_by_an_earlier_run_is_replayed_when_the_server_starts(
    start_server, tmp_path
):
    # As a crashed or stopped stack leaves it: batches on disk, nobody sending.
    left_behind = spool.Spool(tmp_path / "data" / "spool", max_bytes=10**6)
    for name in ("first", "second"):
        request = make_request([make_span(name=name)], resource={"service.name": "left"})
        assert left_behind.put(request.SerializeToString())

    start_server()

    wait_for(lambda: Span.objects.filter(service="left").count() == 2, timeout=60,
             what="the replay on start")  # fmt: skip
    wait_for(lambda: not left_behind.pending(), timeout=30, what="an empty spool")
