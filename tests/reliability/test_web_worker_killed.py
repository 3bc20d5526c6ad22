"""Gunicorn workers killed with -9 while they hold a batch in flight.

A trigger makes each batch's transaction sleep, so the kill lands mid-request:
after the spans were copied, before the commit. PostgreSQL rolls the
transaction back when the connection dies, the exporter sees the connection
drop and sends the batch again, and gunicorn's master starts a new worker
that takes it. Every span is stored once.
"""

from tests.reliability.harness import assert_each_span_stored_once, wait_for

SLOW_BATCHES = """
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow_batch BEFORE INSERT ON telemetry_pendingminute
FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""
KILLS = 3


def _stored(conn) -> int:
    return conn.execute("SELECT count(*) FROM telemetry_span").fetchone()[0]


def _batch_in_flight(conn, database: str) -> bool:
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'"
    return conn.execute(query, [database]).fetchone()[0] > 0


def test_no_span_is_lost_when_a_web_worker_is_killed_mid_request(postgres, database, stack, load):
    with postgres.connect(database) as conn:
        conn.execute(SLOW_BATCHES)
    stack.start_web(workers=2)
    for number in range(2):
        load.start(
            protocol="http",
            endpoint=f"http://127.0.0.1:{stack.http_port}/v1/traces",
            token=postgres.token,
            service=f"web-killed-{number}",
            rate=300,
            seconds=20,
            schedule_delay_ms=200,
        )
    killed = []
    with postgres.connect(database) as conn:
        for _ in range(KILLS):
            # Let the exporters store more between kills, however slow the machine.
            stored = _stored(conn)
            wait_for(
                lambda before=stored: _stored(conn) > before, timeout=60, what="more spans stored"
            )
            wait_for(
                lambda: _batch_in_flight(conn, database),
                timeout=10,
                what="a batch in flight",
                interval=0.01,
            )
            for worker in stack.worker_children("web"):
                worker.kill()
                killed.append(worker.pid)
            # Wait for the master to replace them before killing the next ones.
            wait_for(
                lambda: len(stack.worker_children("web")) == 2,
                timeout=30,
                what="gunicorn to replace its workers",
            )

        results = load.wait()
        assert len(killed) == 2 * KILLS
        # Each kill cut off a batch before its commit; all spans are there all the
        # same, so the exporters (requests retries a dropped connection once by
        # itself, then the exporter backs off) sent those batches again.
        assert_each_span_stored_once(conn, results)
