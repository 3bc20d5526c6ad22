"""The OTLP/gRPC receivers' database connections between batches.

As on HTTP (test_http_server_connections.py): a server thread's connection
idle for a while is health-checked before use; one used just before is not,
since that check was a SELECT 1 round trip on every batch. These tests keep
the server threads' connections between calls and break them for real
(pg_terminate_backend), as a database restart does.
"""

import pytest
from django.db import connection

from telemetry import asgi, ingest
from telemetry.models import Span
from tests.telemetry.otlp_payloads import make_request, make_span
from tests.telemetry.test_grpc_receiver import authorization


def _other_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def _terminate(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])


@pytest.fixture
def kept_connections(trace_stub, monkeypatch):
    """The server threads keep their connections between calls, as in production."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)
    yield trace_stub
    # Else the test database could not be dropped.
    _terminate(_other_backends())


def _export(stub, token, name: str) -> None:
    request = make_request([make_span(name=name)])
    stub.Export(request, metadata=authorization(token), timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_connection_broken_while_idle_is_replaced_before_the_next_batch(
    kept_connections, ingest_token, monkeypatch
):
    monkeypatch.setattr(asgi, "HEALTH_CHECK_AFTER_IDLE_SECONDS", 0.0)
    _export(kept_connections, ingest_token, "before")
    server_backends = _other_backends()
    assert server_backends

    _terminate(server_backends)
    _export(kept_connections, ingest_token, "after")

    assert sorted(Span.objects.values_list("name", flat=True)) == ["after", "before"]
    assert not ingest.current_spool().pending()


@pytest.mark.django_db(transaction=True)
def test_a_batch_on_a_connection_used_just_before_is_spooled_when_it_broke(
    kept_connections, ingest_token, monkeypatch
):
    monkeypatch.setattr(asgi, "HEALTH_CHECK_AFTER_IDLE_SECONDS", 3600.0)
    _export(kept_connections, ingest_token, "before")

    _terminate(_other_backends())
    # No check ran: the store finds the connection broken, and the batch is
    # spooled, acknowledged rather than lost.
    _export(kept_connections, ingest_token, "after")

    assert list(Span.objects.values_list("name", flat=True)) == ["before"]
    assert len(ingest.current_spool().pending()) == 1
    # Django closed the broken connection: the next batch connects afresh.
    assert ingest.replay_spool() == 1
    assert sorted(Span.objects.values_list("name", flat=True)) == ["after", "before"]
