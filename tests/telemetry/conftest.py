from datetime import timedelta

import grpc
import pytest
from django.db import connection
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry import ingest, partitions
from telemetry.grpc_server import build_server
from telemetry.models import ApiToken
from telemetry.views import PROTOBUF


@pytest.fixture(autouse=True)
def _fresh_ingest_state(request, django_db_blocker):
    """Start each test with no cached partitions or ingest slots, and end it the same way.

    Transactional tests commit their spans, and their flush skips the unmanaged
    (partitioned) span table, so its partitions are dropped here.
    """
    partitions.forget_partitions()
    ingest._slots = None
    yield
    ingest._slots = None
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        with django_db_blocker.unblock():
            partitions.drop_partitions_before(timezone.now() + timedelta(days=400))
    partitions.forget_partitions()


@pytest.fixture
def make_token(db):
    """Issues a token with the given scopes and returns its raw value."""

    def make(*scopes: str, name: str = "test") -> str:
        return ApiToken.issue(name=name, scopes=list(scopes))[1]

    return make


@pytest.fixture
def ingest_token(make_token) -> str:
    return make_token("ingest", name="ingest")


@pytest.fixture
def read_token(make_token) -> str:
    return make_token("read", name="reader")


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


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
