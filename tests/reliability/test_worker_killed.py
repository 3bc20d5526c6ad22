"""A Celery worker killed with -9 in the middle of a rollup.

The rollup claims pending minutes 500 at a time, each batch in its own
transaction, and recomputes them from the raw spans (delete, then insert), so
running it again is harmless. Killing the pool child mid-task: the task is
acknowledged late and rejected on worker loss, so the worker requeues it and
runs it again by itself. Killing the whole worker: the message waits for
Redis's visibility timeout, but the pending minutes are rows in PostgreSQL,
and the next rollup beat sends finds them. Either way every minute ends up
counted exactly once.
"""

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.reliability.harness import rollup_mismatches, send_task, wait_for

SERVICES = 20
MINUTES = 600
PREFIX = "killed-worker-"
SPAN_COLUMNS = (
    "trace_id, span_id, service, service_version, environment, name, kind, start_time, "
    "duration_us, status_code, status_message, http_route, http_status, http_method, is_error, "
    "exception_type, attributes, resource_attributes, events"
)


def _fill(conn) -> None:
    """Two spans in each of SERVICES × MINUTES minutes of yesterday, every minute pending."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS telemetry_span_p{day:%Y%m%d} PARTITION OF telemetry_span "
        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
    )
    conn.execute(
        f"""
        INSERT INTO telemetry_span ({SPAN_COLUMNS})
        SELECT decode(md5(s || '-' || m || '-' || k), 'hex'),
               substr(decode(md5(k || '-' || m || '-' || s), 'hex'), 1, 8),
               %(prefix)s || s, '1.0.0', 'test', 'GET /items', 2,
               %(day)s + m * interval '1 minute' + k * interval '20 seconds',
               1000 + 7 * k, 0, '', '/items', 200, 'GET', m %% 10 = 0 AND k = 0, '',
               '{{}}', '{{}}', '[]'
        FROM generate_series(1, %(services)s) s, generate_series(0, %(minutes)s - 1) m,
             generate_series(0, 1) k
        """,
        {"prefix": PREFIX, "day": day, "services": SERVICES, "minutes": MINUTES},
    )
    _mark_all_pending(conn)


def _mark_all_pending(conn) -> None:
    conn.execute(
        """
        INSERT INTO telemetry_pendingminute (service, minute)
        SELECT DISTINCT service, date_trunc('minute', start_time) FROM telemetry_span
        ON CONFLICT DO NOTHING
        """
    )


def _pending(conn) -> int:
    return conn.execute("SELECT count(*) FROM telemetry_pendingminute").fetchone()[0]


def _kill_mid_task(conn, victim: int) -> int:
    """Kill -9 once the rollup has committed a batch and still has minutes left."""
    total = _pending(conn)
    left = wait_for(
        lambda: (n := _pending(conn)) < total and n,
        timeout=30,
        what="the rollup to start",
        interval=0.02,
    )
    os.kill(victim, signal.SIGKILL)
    return left


def _services() -> list[str]:
    return [f"{PREFIX}{n}" for n in range(1, SERVICES + 1)]


@pytest.mark.slow(1)
def test_rollups_survive_a_worker_killed_mid_task(postgres, database, redis, stack):
    stack.broker_url = redis.url
    stack.start_worker(concurrency=1)
    with postgres.connect(database) as conn:
        _fill(conn)

        # The pool child dies; the worker requeues the task and runs it again.
        [child] = stack.worker_children("worker")
        send_task(redis.url, "telemetry.tasks.rollup_pending")
        left = _kill_mid_task(conn, child.pid)
        time.sleep(0.5)
        assert 0 < left < SERVICES * MINUTES
        wait_for(
            lambda: _pending(conn) == 0,
            timeout=60,
            what=f"the requeued rollup\n{stack.log('worker')}",
        )
        assert "WorkerLostError" in stack.log("worker")
        assert rollup_mismatches(conn, _services()) == []

        # The whole worker dies; a new one and the next beat tick finish the job.
        _mark_all_pending(conn)
        worker, children = stack.procs["worker"], stack.worker_children("worker")
        send_task(redis.url, "telemetry.tasks.rollup_pending")
        _kill_mid_task(conn, worker.pid)
        for child in children:
            child.kill()
        worker.wait(timeout=10)
        stack.start_worker(concurrency=1)
        send_task(redis.url, "telemetry.tasks.rollup_pending")
        wait_for(
            lambda: _pending(conn) == 0, timeout=60, what=f"the next rollup\n{stack.log('worker')}"
        )
        assert rollup_mismatches(conn, _services()) == []
        rows = conn.execute("SELECT count(*) FROM telemetry_rollupminute").fetchone()[0]
        assert rows == SERVICES * MINUTES
