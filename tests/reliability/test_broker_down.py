"""The Celery broker down while spans arrive, then back.

Ingest never touches the broker: what a rollup must do is kept in PostgreSQL
(telemetry_pendingminute), so spans keep being stored and acknowledged with
the broker gone, and once it is back one rollup and one evaluation, as beat
sends every minute, bring rollups and SLO counts level with the raw spans.
"""

import time

import requests
from django.utils import timezone

from tests.reliability.harness import (
    assert_each_span_stored_once,
    manage,
    rollup_mismatches,
    send_task,
    wait_for,
)
from tests.telemetry.otlp_payloads import make_request, make_span

SERVICE = "broker-down-http"
PROBE_SERVICE = "broker-down-probe"
CREATE_SLO = f"""
from slo.models import SLO
SLO.objects.create(name="broker-down", service="{SERVICE}", objective=99, window="1d")
"""


def _post_one_span(stack, token) -> int:
    body = make_request([make_span(start=timezone.now())], resource={"service.name": PROBE_SERVICE})
    response = requests.post(
        f"http://127.0.0.1:{stack.http_port}/v1/traces",
        data=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


def test_ingest_carries_on_and_rollups_catch_up_when_the_broker_returns(
    postgres, database, redis, stack, load
):
    stack.broker_url = redis.url
    manage(stack.env(), "shell", "-c", CREATE_SLO)
    stack.start_web()
    stack.start_worker()
    worker_pid = stack.procs["worker"].pid
    load.start(
        protocol="http",
        endpoint=f"http://127.0.0.1:{stack.http_port}/v1/traces",
        token=postgres.token,
        service=SERVICE,
        rate=300,
        seconds=15,
        schedule_delay_ms=500,
    )
    time.sleep(2)

    redis.stop()
    answers = [_post_one_span(stack, postgres.token)]
    results = load.wait()
    answers.append(_post_one_span(stack, postgres.token))
    redis.start()

    # Ingest did not notice: every batch was taken at the first attempt.
    assert answers == [200, 200]
    assert all(not result["retries"] for result in results), results[0]["retries"]
    with postgres.connect(database) as conn:
        assert_each_span_stored_once(conn, results)
        assert conn.execute("SELECT count(*) FROM telemetry_pendingminute").fetchone()[0] > 0
        assert not conn.execute("SELECT count(*) FROM telemetry_rollupminute").fetchone()[0]

        # What beat sends every minute, now that the broker is back.
        send_task(redis.url, "telemetry.tasks.rollup_pending")
        wait_for(lambda: _pending(conn) == 0, timeout=30, what=f"rollups\n{stack.log('worker')}")
        send_task(redis.url, "slo.tasks.dispatch_evaluations")
        wait_for(lambda: _evaluated(conn), timeout=30, what=f"evaluation\n{stack.log('worker')}")

        assert rollup_mismatches(conn, [SERVICE, PROBE_SERVICE]) == []
        assert _slo_total(conn) == _raw_total(conn)
    # The same worker reconnected by itself.
    assert stack.procs["worker"].pid == worker_pid and stack.procs["worker"].poll() is None


def _pending(conn) -> int:
    return conn.execute("SELECT count(*) FROM telemetry_pendingminute").fetchone()[0]


def _evaluated(conn) -> bool:
    row = conn.execute("SELECT last_evaluated_at FROM slo_slo WHERE name = 'broker-down'")
    return row.fetchone()[0] is not None


def _slo_total(conn) -> int:
    return conn.execute("SELECT sum(total) FROM slo_slominute").fetchone()[0]


def _raw_total(conn) -> int:
    query = "SELECT count(*) FROM telemetry_span WHERE service = %s"
    return conn.execute(query, [SERVICE]).fetchone()[0]
