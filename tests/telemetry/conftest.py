import grpc
import pytest
from django.db import connection
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry.grpc_server import build_server
from telemetry.views import PROTOBUF
from tests.helpers import bearer
from tests.telemetry.servers import Server


@pytest.fixture
def post_traces(client, ingest_token):
    """POST /v1/traces with the ingest token; takes a request message or raw bytes."""

    def post(body, *, content_type=PROTOBUF, encoding=None, token=ingest_token):
        if isinstance(body, ExportTraceServiceRequest):
            body = body.SerializeToString()
        # Also as a header: the test client drops content_type when the body is empty.
        headers = {**bearer(token), "Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        return client.post("/v1/traces", data=body, content_type=content_type, headers=headers)

    return post


@pytest.fixture
def api_get(client, read_token):
    """GET under /api/v1/ with the read token."""

    def get(path, *, token=read_token):
        return client.get(f"/api/v1/{path}", headers=bearer(token))

    return get


@pytest.fixture
def start_grpc_server(transactional_db, monkeypatch):
    """Starts OTLP/gRPC receivers on free local ports; returns their addresses."""
    # The server's worker threads hold their own database connections; closing
    # them after each call lets the test database be dropped at the end.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    servers = []

    def start() -> str:
        server, port = build_server("127.0.0.1:0", threads=4)
        servers.append(server)
        server.start()
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None).wait()


@pytest.fixture
def grpc_address(start_grpc_server) -> str:
    return start_grpc_server()


@pytest.fixture
def trace_stub(grpc_address):
    with grpc.insecure_channel(grpc_address) as channel:
        yield trace_service_pb2_grpc.TraceServiceStub(channel)


@pytest.fixture
def start_server(transactional_db, tmp_path):
    servers = []

    def start(**env: str) -> Server:
        servers.append(Server(tmp_path, **env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
