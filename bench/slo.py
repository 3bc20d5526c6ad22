"""SLO benchmark: the three targets of issue 3, section 8.

Needs a PostgreSQL database of its own (it empties the rollup, SLO and span
tables it uses), from the repo root:

    createdb -h 127.0.0.1 -U postgres monoenv_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/monoenv_bench .venv/bin/python bench/slo.py

1. GET /api/v1/slos/{id} for a 30-day SLO backed by >= 50 million spans'
   worth of rollups (per-minute SLO counts and per-route rollups), through
   Django's test client with a real token: target under 50 ms.
   Then the status of 20 such SLOs, cold, as the overview needs them: one
   status() per SLO against one statuses() query for all (issue 9, item 1).
2. One evaluation pass over 500 SLOs with three days of per-minute counts
   each, some of them burning: target under 30 s.
3. The rollup of a 20,000 spans/s stream: spans are written straight into the
   partitioned span table with pending minutes marked as ingest marks them,
   then the rollup (with 10 SLOs hooked on those services) recomputes them.
   The CPU it spends, in this process and in its PostgreSQL backend, over the
   seconds of traffic gives the cores it needs: target under one.
"""

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

SPANS_PER_SECOND = 20_000
ROLLUP_MINUTES = 2
MINUTES_30D = 30 * 1440
EVENTS_PER_MINUTE = 1_200  # × 43,200 minutes = 51.8 million spans
ROUTES = 10


def setup_django():
    if not os.environ.get("DATABASE_URL"):
        sys.exit("Set DATABASE_URL to a database this benchmark may fill and empty.")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    call_command("migrate", verbosity=0)


def reset():
    from django.db import connection

    from telemetry import partitions

    partitions.drop_partitions_before(datetime.now(UTC) + timedelta(days=400))
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE notifications_delivery, slo_alert, slo_slominute, slo_slo, "
            "telemetry_rollupminute, telemetry_pendingminute"
        )


def execute(sql: str, params=None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def bench_status(now: datetime) -> None:
    from django.test import Client

    from slo.models import SLO
    from telemetry import histogram
    from telemetry.models import ApiToken

    slo = SLO.objects.create(name="big", service="big", objective="99.9", window="30d")
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES_30D - 1)
    t0 = time.perf_counter()
    # About 0.1% errors, with a burst in the last hour.
    execute(
        """
        INSERT INTO slo_slominute (slo_id, minute, good, total)
        SELECT %s, %s + g * interval '1 minute',
               %s - CASE WHEN g > %s - 60 THEN 30 ELSE (g %% 3) END, %s
        FROM generate_series(0, %s - 1) AS g
        """,
        [slo.pk, start, EVENTS_PER_MINUTE, MINUTES_30D, EVENTS_PER_MINUTE, MINUTES_30D],
    )
    per_route = EVENTS_PER_MINUTE // ROUTES
    buckets = [0] * histogram.BUCKET_COUNT
    buckets[20], buckets[25], buckets[30] = per_route - 20, 15, 5
    execute(
        """
        INSERT INTO telemetry_rollupminute
            (service, route, version, span_kind, minute, requests, errors, latency_histogram)
        SELECT 'big', '/r' || r, '1.0', 2, %s + g * interval '1 minute', %s, g %% 2, %s
        FROM generate_series(0, %s - 1) AS g, generate_series(1, %s) AS r
        """,
        [start, per_route, buckets, MINUTES_30D, ROUTES],
    )
    SLO.objects.filter(pk=slo.pk).update(backfilled_key=slo.selection_key)
    execute("VACUUM ANALYZE slo_slominute")
    execute("VACUUM ANALYZE slo_slohour")
    execute("VACUUM ANALYZE telemetry_rollupminute")
    spans = sum(SLO.objects.get(pk=slo.pk).minutes.values_list("total", flat=True))
    print(
        f"status: {MINUTES_30D:,} SLO minutes and {MINUTES_30D * ROUTES:,} route rollups "
        f"({spans:,} spans' worth) loaded in {time.perf_counter() - t0:.1f} s"
    )

    raw = ApiToken.issue(name="bench", scopes=["read"])[1]
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    timings = []
    for attempt in range(60):
        t0 = time.perf_counter()
        response = client.get(f"/api/v1/slos/{slo.pk}")
        elapsed = time.perf_counter() - t0
        assert response.status_code == 200, response.content
        if attempt >= 10:  # the first requests warm the caches
            timings.append(elapsed)
    body = response.json()
    timings.sort()
    print(
        f"GET /api/v1/slos/{{id}} (30d, {body['sli']['total']:,} events, "
        f"{len(body['budget_history'])} history points): "
        f"median {statistics.median(timings) * 1000:.1f} ms, "
        f"p95 {timings[int(len(timings) * 0.95)] * 1000:.1f} ms (target < 50 ms)"
    )


MANY_SLOS = 20


def bench_many_statuses(now: datetime) -> None:
    from slo import status
    from slo.models import SLO

    slos = SLO.objects.bulk_create(
        SLO(name=f"many{i}", service=f"many{i % 5}", objective="99.9",
            window="30d" if i % 2 else "month")
        for i in range(MANY_SLOS)
    )  # fmt: skip
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES_30D - 1)
    execute(
        """
        INSERT INTO slo_slominute (slo_id, minute, good, total)
        SELECT slo.id, %s + g * interval '1 minute', 600 - (g %% 3), 600
        FROM slo_slo AS slo, generate_series(0, %s - 1) AS g WHERE slo.name LIKE 'many%%'
        """,
        [start, MINUTES_30D],
    )
    execute("VACUUM ANALYZE slo_slominute")
    execute("VACUUM ANALYZE slo_slohour")
    slos = list(SLO.objects.filter(name__startswith="many"))
    for label, read in (
        ("one status() per SLO", lambda: [status.status(s, now=now, history=False) for s in slos]),
        ("one statuses() for all", lambda: status.statuses(slos, now=now)),
    ):
        timings = []
        for _ in range(12):
            t0 = time.perf_counter()
            read()
            timings.append(time.perf_counter() - t0)
        timings = sorted(timings[2:])
        print(
            f"status of {MANY_SLOS} SLOs with 30 days of minutes (no cache), {label}: "
            f"median {statistics.median(timings) * 1000:.1f} ms, "
            f"max {timings[-1] * 1000:.1f} ms"
        )


def bench_evaluation(now: datetime) -> None:
    from slo import evaluation
    from slo.models import SLO

    slos = SLO.objects.bulk_create(
        SLO(name=f"svc{i // 10}-slo{i % 10}", service=f"svc{i // 10}", objective="99.9",
            window="30d" if i % 2 else "28d")
        for i in range(500)
    )  # fmt: skip
    for slo in slos:
        slo.backfilled_key = slo.selection_key
    SLO.objects.bulk_update(slos, ["backfilled_key"])
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=3 * 1440 - 1)
    t0 = time.perf_counter()
    # Every tenth SLO burns 2% errors in its last hour, enough to page.
    execute(
        """
        INSERT INTO slo_slominute (slo_id, minute, good, total)
        SELECT slo.id, %s + g * interval '1 minute',
               CASE WHEN slo.id %% 10 = 0 AND g >= 3 * 1440 - 60 THEN 980 ELSE 1000 END, 1000
        FROM slo_slo AS slo, generate_series(0, 3 * 1440 - 1) AS g
        WHERE slo.name LIKE 'svc%%'
        """,
        [start],
    )
    execute("VACUUM ANALYZE slo_slominute")
    execute("VACUUM ANALYZE slo_slohour")
    print(f"evaluation: 500 SLOs × 4,320 minutes loaded in {time.perf_counter() - t0:.1f} s")
    for label in ("first pass (alerts fire)", "second pass (steady)"):
        t0 = time.perf_counter()
        report = evaluation.evaluate_all(now=now, slo_ids=[slo.pk for slo in slos])
        elapsed = time.perf_counter() - t0
        now += timedelta(minutes=1)
        print(
            f"evaluation pass over {report.evaluated} SLOs, {label}: {elapsed:.2f} s, "
            f"{len(report.fired)} alerts fired (target < 30 s)"
        )


def _backend_cpu_seconds() -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_rollup(now: datetime) -> None:
    from slo.models import SLO
    from telemetry import partitions, rollups
    from telemetry.models import PendingMinute

    first = now.replace(second=0, microsecond=0) - timedelta(minutes=ROLLUP_MINUTES + 5)
    partitions.ensure_partitions({first.date(), (first + timedelta(minutes=10)).date()})
    spans = SPANS_PER_SECOND * 60 * ROLLUP_MINUTES
    t0 = time.perf_counter()
    # 5 services × 20 routes × 3 versions; durations spread over 0.1 ms–3 s; 1% errors.
    execute(
        """
        INSERT INTO telemetry_span
        SELECT decode(lpad(to_hex(g), 32, '0'), 'hex'), decode(lpad(to_hex(g), 16, '0'), 'hex'),
               NULL, 'rollup' || (g %% 5), (g %% 3)::text, 'production', 'GET /route' || (g %% 20),
               2, %s + (g * interval '1 microsecond' * (60000000.0 / %s)),
               (100 + (g * 7919) %% 30000) * (1 + (g %% 100)),
               CASE WHEN g %% 100 = 0 THEN 2 ELSE 0 END,
               '', '/route' || (g %% 20), 200, 'GET', g %% 100 = 0, '', '{}', '{}', '[]'
        FROM generate_series(1::bigint, %s) AS g
        """,
        [first, SPANS_PER_SECOND * 60, spans],
    )  # fmt: skip
    execute(
        """
        INSERT INTO telemetry_pendingminute (service, minute)
        SELECT DISTINCT service, date_trunc('minute', start_time) FROM telemetry_span
        WHERE service LIKE 'rollup%%'
        """
    )
    execute("ANALYZE telemetry_span")
    print(f"rollup: {spans:,} spans ({ROLLUP_MINUTES} min at {SPANS_PER_SECOND:,}/s) "
          f"written in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    for i in range(10):
        SLO.objects.create(
            name=f"rollup-slo{i}", service=f"rollup{i % 5}", objective="99",
            sli="latency" if i % 2 else "availability", threshold_ms=500 if i % 2 else None,
            route="/route1*" if i >= 5 else "", backfilled_key="x",
        )  # fmt: skip

    # Parallel workers' CPU would not show in this backend's /proc entry.
    execute("SET max_parallel_workers_per_gather = 0")
    pending = PendingMinute.objects.count()
    cpu0, backend0, t0 = time.process_time(), _backend_cpu_seconds(), time.perf_counter()
    recomputed = rollups.rollup_pending()
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - cpu0) + (_backend_cpu_seconds() - backend0)
    traffic_seconds = 60 * ROLLUP_MINUTES
    print(
        f"rollup of {recomputed} of {pending} pending service-minutes: {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU (Python + PostgreSQL backend) for {traffic_seconds} s of traffic"
    )
    print(
        f"rollup cores at {SPANS_PER_SECOND:,} spans/s: {cpu / traffic_seconds:.2f} "
        f"(each minute rolled up once), {2 * cpu / traffic_seconds:.2f} "
        f"(each minute rolled up twice, as when stragglers re-mark it) (target < 1)"
    )


def main():
    setup_django()
    reset()
    now = datetime.now(UTC)
    print(f"machine: {os.cpu_count()} cores; PostgreSQL on localhost")
    bench_status(now)
    reset()
    bench_many_statuses(now)
    reset()
    bench_evaluation(now)
    reset()
    bench_rollup(now)
    reset()


if __name__ == "__main__":
    main()
