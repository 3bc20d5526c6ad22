"""Dashboard benchmark: server time of every page and JSON endpoint on a month of data.

Loads 30 days for 20 services with 20 routes each into the configured
database, under service names starting with "bench-dash-":
- telemetry's five-minute and hourly rollups for all 30 days, and
  telemetry's per-minute rollups for the last 24 hours (the minute rollups are
  only read for the last hour or two; older ones would not change a plan);
- per-minute SLO counts for 30 days, one SLO per service;
- ten deploys per service with verdicts and findings, a few firing alerts;
- raw spans for the last two hours, for the trace pages.

Then loads each page and endpoint 20 times through Django's test client,
logged in, and prints the p95. Everything it wrote is deleted at the end.

    DATABASE_URL=postgres://... .venv/bin/python bench/dashboard.py [--only NAME] [--keep]

--keep leaves the data for another run (which reuses it, with the same "now"),
--only measures the targets whose name contains NAME: for profiling one page.
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from deployments.models import Deployment, Finding, VerdictRecord  # noqa: E402
from slo.models import SLO, Alert  # noqa: E402
from telemetry import coarse_rollups, histogram, ingest  # noqa: E402
from telemetry.otlp import SPAN_COLUMNS  # noqa: E402

PREFIX = "bench-dash-"
SERVICES = [f"{PREFIX}{i:02d}" for i in range(20)]
ROUTES = [f"/api/r{i:02d}/{{id}}" for i in range(20)]
DAYS = 30
LOADS = 20
PAGE_BUDGET_MS = 300
JSON_BUDGET_MS = 150
USERNAME = "bench-dash-user"
rng = random.Random(5)


def _histogram(requests: int, median_us: int) -> tuple[list[int], list[int]]:
    """A plausible sparse latency histogram around a median."""
    center = histogram.bucket_index(median_us)
    weights = {center - 2: 1, center - 1: 4, center: 8, center + 1: 4, center + 2: 2, center + 6: 1}
    total = sum(weights.values())
    counts = {index: requests * weight // total for index, weight in weights.items()}
    counts[center] += requests - sum(counts.values())
    indexes = sorted(index for index, count in counts.items() if count)
    return indexes, [counts[index] for index in indexes]


def _copy(table: str, columns: list[str], rows) -> int:
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def _version_at(service_index: int, at, now) -> str:
    """Ten versions over the month, each service on its own schedule."""
    age_days = (now - at) / timedelta(days=1)
    return f"1.{max(0, 9 - int(age_days / 3 + service_index % 3 * 0.3))}.0"


def load(now) -> None:
    started = time.monotonic()
    hour_end = coarse_rollups.floor(now, 3600) + timedelta(hours=1)
    five_end = coarse_rollups.floor(now, 300) + timedelta(minutes=5)
    coarse_columns = [
        "service", "route", "version", "resolution", "start", "requests", "errors",
        "bucket_indexes", "bucket_counts",
    ]  # fmt: skip

    def coarse(resolution: int, end, steps: int):
        for service_index, service in enumerate(SERVICES):
            for step in range(steps):
                start = end - timedelta(seconds=resolution * (step + 1))
                version = _version_at(service_index, start, now)
                for route_index, route in enumerate(ROUTES):
                    requests = resolution // 60 * (5 + route_index)
                    errors = requests // 200
                    indexes, counts = _histogram(requests, 8_000 + 2_000 * route_index)
                    yield (service, route, version, resolution, start, requests, errors,
                           indexes, counts)  # fmt: skip

    rows = _copy("telemetry_coarserollup", coarse_columns, coarse(3600, hour_end, DAYS * 24))
    rows += _copy("telemetry_coarserollup", coarse_columns, coarse(300, five_end, DAYS * 288))
    print(f"  {rows:,} dashboard rollup rows", flush=True)

    def minutes():
        minute_end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for service_index, service in enumerate(SERVICES):
            for step in range(24 * 60):
                minute = minute_end - timedelta(minutes=step + 1)
                version = _version_at(service_index, minute, now)
                for route_index, route in enumerate(ROUTES):
                    requests = 5 + route_index
                    indexes, counts = _histogram(requests, 8_000 + 2_000 * route_index)
                    dense = histogram.empty()
                    for index, count in zip(indexes, counts, strict=True):
                        dense[index] = count
                    yield (service, route, version, 2, minute, requests, requests // 200, dense)

    rows = _copy(
        "telemetry_rollupminute",
        ["service", "route", "version", "span_kind", "minute", "requests", "errors",
         "latency_histogram"],
        minutes(),
    )  # fmt: skip
    print(f"  {rows:,} minute rollup rows", flush=True)
    _load_service_days(now)
    _load_slos(now)
    _load_deploys(now)
    _load_spans(now)
    print(f"  loaded in {time.monotonic() - started:.0f} s", flush=True)


def _load_service_days(now) -> None:
    def days():
        for service_index, service in enumerate(SERVICES):
            for day in range(DAYS + 1):
                start = now - timedelta(days=day)
                yield (service, _version_at(service_index, start, now), start.date(),
                       100_000, start - timedelta(hours=1), start)  # fmt: skip

    with connection.cursor() as cursor:
        for row in days():
            cursor.execute(
                "INSERT INTO telemetry_serviceday (service, service_version, day, span_count, "
                "first_seen, last_seen) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (service, service_version, day) DO UPDATE SET "
                "first_seen = LEAST(telemetry_serviceday.first_seen, EXCLUDED.first_seen), "
                "last_seen = GREATEST(telemetry_serviceday.last_seen, EXCLUDED.last_seen)",
                row,
            )


def _load_slos(now) -> None:
    slos = [
        SLO.objects.create(name=f"{service}-availability", service=service, objective=99.9)
        for service in SERVICES
    ]
    minute_end = now.replace(second=0, microsecond=0)

    def counts():
        for index, slo in enumerate(slos):
            for step in range(DAYS * 24 * 60):
                total = 200
                bad = 1 if (step + index) % 7 == 0 else 0
                if index < 2 and step < 90:
                    bad = 12  # two SLOs burning fast
                yield (slo.pk, minute_end - timedelta(minutes=step + 1), total - bad, total)

    rows = _copy("slo_slominute", ["slo_id", "minute", "good", "total"], counts())
    SLO.objects.filter(pk__in=[slo.pk for slo in slos]).update(
        backfilled_key="bench"
    )  # the counts above stand in for a backfill
    for slo in slos[:2]:
        Alert.objects.create(
            slo=slo, severity="page", long_window=timedelta(hours=1),
            short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=60.0,
            short_burn_rate=60.0, budget_consumed_pct=8.0, fired_at=now - timedelta(minutes=80),
            last_evaluated_at=now,
        )  # fmt: skip
    print(f"  {rows:,} SLO minute rows", flush=True)


def _load_deploys(now) -> None:
    for service_index, service in enumerate(SERVICES):
        for number in range(10):
            at = now - timedelta(days=3 * number + 0.1 * service_index + 0.01)
            verdict = "fail" if number == 0 and service_index % 5 == 0 else "pass"
            deploy = Deployment.objects.create(
                service=service, version=_version_at(service_index, at, now),
                previous_version=_version_at(service_index, at - timedelta(days=3), now),
                started_at=at, finished_at=at, first_span_at=at, verdict=verdict,
                verdict_reason="p95 latency rose 40% on /api/r03/{id}." if verdict == "fail"
                else "No regression found.",
            )  # fmt: skip
            record = VerdictRecord.objects.create(
                deployment=deploy, checkpoint=60, verdict=verdict, reason=deploy.verdict_reason,
                window_start=at, window_end=at + timedelta(hours=1),
                baseline_requests=50_000, candidate_requests=50_000,
            )  # fmt: skip
            Finding.objects.bulk_create(
                Finding(
                    deployment=deploy, verdict_record=record, metric=metric, route=route,
                    baseline_value=value, candidate_value=value * 1.05, baseline_n=2_500,
                    candidate_n=2_500, effect_size=0.05, p_value=0.2, threshold="x1.2",
                )  # fmt: skip
                for route in ["", *ROUTES[:10]]
                for metric, value in (("error_rate", 0.004), ("latency_p95", 40.0))
            )


def _load_spans(now) -> None:
    rows = []
    start = now - timedelta(hours=2)
    for service_index, service in enumerate(SERVICES):
        for route in ROUTES:
            for number in range(4):
                at = start + timedelta(seconds=rng.uniform(0, 7_000))
                trace_id, root = os.urandom(16), os.urandom(8)
                error = number == 0 and rng.random() < 0.2
                version = _version_at(service_index, at, now)
                for child in range(3):
                    values = {
                        "trace_id": trace_id, "span_id": root if child == 0 else os.urandom(8),
                        "parent_span_id": None if child == 0 else root, "service": service,
                        "service_version": version, "environment": "production",
                        "name": f"GET {route}" if child == 0 else f"SELECT orders {child}",
                        "kind": 2 if child == 0 else 3, "start_time": at, "duration_us":
                        rng.randint(5_000, 200_000) // (child + 1),
                        "status_code": 2 if error else 0,
                        "status_message": "", "http_route": route if child == 0 else "",
                        "http_status": 500 if error else 200, "http_method": "GET",
                        "is_error": error, "exception_type": "TimeoutError" if error else "",
                        "attributes": json.dumps({"db.system": "postgresql"}),
                        "resource_attributes": json.dumps({"service.name": service}),
                        "events": "[]",
                    }  # fmt: skip
                    rows.append(tuple(values[column] for column in SPAN_COLUMNS))
    ingest.store_rows(rows)
    print(f"  {len(rows):,} raw spans", flush=True)


def clean() -> None:
    like = PREFIX + "%"
    with connection.cursor() as cursor:
        for table in (
            "telemetry_span", "telemetry_serviceday", "telemetry_pendingminute",
            "telemetry_rollupminute", "telemetry_coarserollup",
        ):  # fmt: skip
            cursor.execute(f"DELETE FROM {table} WHERE service LIKE %s", [like])
    SLO.objects.filter(service__startswith=PREFIX).delete()
    Deployment.objects.filter(service__startswith=PREFIX).delete()
    User.objects.filter(username=USERNAME).delete()


def targets(now) -> list[tuple[str, str, int]]:
    service = SERVICES[0]
    slo = SLO.objects.get(name=f"{service}-availability")
    deploy = Deployment.objects.filter(service=service).order_by("-started_at").first()
    trace_id = (
        connection.cursor().execute(
            "SELECT encode(trace_id, 'hex') FROM telemetry_span WHERE service = %s "
            "AND start_time > %s LIMIT 1",
            [service, now - timedelta(hours=3)],
        ).fetchone()[0]
    )
    pages = [
        ("overview", reverse("dashboard:overview")),
        ("budgets", reverse("dashboard:budgets")),
        ("deploys (7d)", reverse("dashboard:deploys")),
        ("deploys (30d)", reverse("dashboard:deploys") + "?period=30d"),
        ("slo", reverse("dashboard:slo", args=[slo.pk])),
        ("deploy", reverse("dashboard:deploy", args=[deploy.pk])),
        ("traces (1h)", reverse("dashboard:traces")),
        ("traces (page 2)", reverse("dashboard:traces") + "?offset=200&last=1h"),
        ("traces (service, errors)",
         reverse("dashboard:traces") + f"?service={service}&errors=only&last=24h"),
        ("trace", reverse("dashboard:trace", args=[trace_id])),
    ]  # fmt: skip
    service_url = reverse("dashboard:service", args=[service])
    service_json = reverse("dashboard:service-json", args=[service])
    for name in ("15m", "1h", "6h", "24h", "7d", "30d"):
        pages.append((f"service {name}", f"{service_url}?range={name}"))
    endpoints = [
        ("overview.json", reverse("dashboard:overview-json")),
        ("budgets.json", reverse("dashboard:budgets-json")),
        ("deploys.json (30d)", reverse("dashboard:deploys-json") + "?period=30d"),
        ("slo data.json", reverse("dashboard:slo-json", args=[slo.pk])),
        ("deploy data.json", reverse("dashboard:deploy-json", args=[deploy.pk])),
        ("traces search.json", reverse("dashboard:traces-json") + "?last=1h"),
        ("trace data.json", reverse("dashboard:trace-json", args=[trace_id])),
    ]
    for name in ("15m", "1h", "6h", "24h", "7d", "30d"):
        endpoints.append((f"service data.json {name}", f"{service_json}?range={name}"))
    return [(n, u, PAGE_BUDGET_MS) for n, u in pages] + [
        (n, u, JSON_BUDGET_MS) for n, u in endpoints
    ]


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile: the 19th of 20 sorted samples."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def measure(now, *, only: str = "") -> bool:
    cache.clear()
    User.objects.filter(username=USERNAME).delete()
    user = User.objects.create_user(USERNAME)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    ok = True
    print(f"\n{'what':<28} {'p95 ms':>8} {'median':>8} {'first':>8} {'budget':>7}  result")
    for name, url, budget in targets(now):
        if only not in name:
            continue
        samples = []
        for _ in range(LOADS):
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        worst = p95(samples)
        ok &= worst < budget
        print(
            f"{name:<28} {worst:>8.1f} {statistics.median(samples):>8.1f} {samples[0]:>8.1f} "
            f"{budget:>7}  "
            f"{'ok' if worst < budget else 'OVER'}",
            flush=True,
        )
    return ok


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="measure only the targets whose name has this")
    parser.add_argument(
        "--keep", action="store_true",
        help="leave the data loaded, and reuse data a previous --keep left (for profiling)",
    )  # fmt: skip
    return parser.parse_args()


def _loaded_at():
    """When a previous --keep run loaded its data, or None."""
    deploy = Deployment.objects.filter(service=SERVICES[0]).order_by("-started_at").first()
    return deploy.started_at + timedelta(days=0.01) if deploy else None


def main() -> int:
    arguments = _arguments()
    call_command("migrate", verbosity=0)
    now = _loaded_at() if arguments.keep else None
    if now is None:
        clean()
        now = timezone.now()
        print(f"Loading {DAYS} days for {len(SERVICES)} services x {len(ROUTES)} routes...")
    try:
        if not (arguments.keep and Deployment.objects.filter(service=SERVICES[0]).exists()):
            load(now)
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        ok = measure(now, only=arguments.only)
    finally:
        if not arguments.keep:
            clean()
    print("\nall within budget" if ok else "\nSOME OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
