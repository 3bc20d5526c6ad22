"""The OTLP/HTTP port keeps an idle connection open between two exports.

The SDKs export every 5 s by default; gunicorn's own keep-alive (2 s) closed
the connection in between, so every export paid a new one. The server runs
as the launcher runs it (tests/telemetry/servers.py).
"""

import socket
import time

from telemetry.models import Span
from tests.telemetry.otlp_payloads import make_request, make_span


def _export_on(sock: socket.socket, token: str, name: str) -> bytes:
    body = make_request([make_span(name=name)]).SerializeToString()
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-protobuf\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    return sock.recv(65536)


def test_an_idle_connection_outlives_gunicorns_two_seconds(start_server, ingest_token):
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        assert _export_on(sock, ingest_token, "first").startswith(b"HTTP/1.1 200")

        time.sleep(3)  # past gunicorn's default keep-alive, well within ours

        assert _export_on(sock, ingest_token, "second").startswith(b"HTTP/1.1 200")
    assert sorted(Span.objects.values_list("name", flat=True)) == ["first", "second"]
