"""The OTLP/HTTP application's database connections between requests.

Each request runs in a thread of the application's pool, with that thread's
own Django connection. A connection idle for a while is health-checked
before use, as Django checks each WSGI request's; one used just before is
not, since that check was a round trip on every batch. These tests break the
connection for real (pg_terminate_backend) and see which of the two happens.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, connections

from telemetry import asgi


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _close_connections() -> None:
    connections.close_all()


@pytest.fixture
def one_thread():
    """One pool thread, as a request's, whose connection is closed afterwards."""
    pool = ThreadPoolExecutor(max_workers=1)
    yield lambda function: pool.submit(asgi.with_fresh_connections, function).result()
    pool.submit(_close_connections).result()
    pool.shutdown()


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
        assert cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_broke_while_idle_is_replaced_before_use(one_thread, monkeypatch):
    monkeypatch.setattr(asgi, "HEALTH_CHECK_AFTER_IDLE_SECONDS", 0.0)
    first = one_thread(_backend_pid)

    _terminate(first)

    assert one_thread(_backend_pid) != first


@pytest.mark.django_db(transaction=True)
def test_a_connection_used_just_before_is_not_checked_again(one_thread, monkeypatch):
    monkeypatch.setattr(asgi, "HEALTH_CHECK_AFTER_IDLE_SECONDS", 3600.0)
    first = one_thread(_backend_pid)

    _terminate(first)

    # No check ran: the request itself finds the connection broken. On the
    # ingest path that is a StoreUnavailable, and the batch is spooled.
    with pytest.raises(DatabaseError):
        one_thread(_backend_pid)
    # Django closed it on the error, so the next request connects afresh.
    assert one_thread(_backend_pid) != first
