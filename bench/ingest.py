"""Ingest benchmark: OTLP/HTTP end to end against the in-process ceiling.

Run against the running stack (`make run`, or any deployment), from the repo
root, with the same DATABASE_URL / MONOENV_DATA_DIR as the stack:

    .venv/bin/python bench/ingest.py --clients 4 --seconds 30

Several client processes post 512-span protobuf batches to /v1/traces. The
spans stored end to end are counted in PostgreSQL afterwards. Then bare loops
decode the same kind of payloads and COPY them into the same table: the
ceiling no HTTP server can beat. There are as many loops as clients
(--ceiling-processes), so both sides have as many batches in flight. Last,
the ratio of the two.
"""

import argparse
import multiprocessing
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

ROUTES = [f"/api/v{n % 3}/items/{{id}}/part{n}" for n in range(20)]


def build_payloads(service: str, count: int, spans_per_batch: int, seed: int) -> list[bytes]:
    """Protobuf bodies like an SDK's: one resource, one scope, HTTP server spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    rng = random.Random(seed)
    template = ExportTraceServiceRequest()
    resource_spans = template.resource_spans.add()
    for key, value in (("service.name", service), ("service.version", "1.0.0"),
                       ("deployment.environment.name", "production")):  # fmt: skip
        resource_spans.resource.attributes.append(
            KeyValue(key=key, value=AnyValue(string_value=value))
        )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench"
    for _ in range(spans_per_batch):
        span = scope_spans.spans.add()
        route = rng.choice(ROUTES)
        span.name = f"GET {route}"
        span.kind = 2
        for key, value in (("http.route", route), ("http.request.method", "GET"),
                           ("url.scheme", "http"), ("server.address", "bench.local")):  # fmt: skip
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
        span.attributes.append(
            KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))
        )
    payloads = []
    for _ in range(count):
        now_ns = time.time_ns()
        for span in scope_spans.spans:
            span.trace_id = rng.randbytes(16)
            span.span_id = rng.randbytes(8)
            span.start_time_unix_nano = now_ns - rng.randrange(60_000_000_000)
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(
                1_000_000, 400_000_000
            )
        payloads.append(template.SerializeToString())
    return payloads


def client(args) -> tuple[int, int, list[float]]:
    url, token, payloads, deadline = args
    session = requests.Session()
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    sent, failures, latencies = 0, 0, []
    for body in payloads:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = session.post(url, data=body, headers=headers, timeout=60)
        latencies.append(time.perf_counter() - started)
        if response.status_code == 200:
            sent += 1
        else:
            failures += 1
    return sent, failures, latencies


def count_stored(service: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_span WHERE service = %s", [service])
        return cursor.fetchone()[0]


def run_end_to_end(args, token: str, service: str) -> float:
    # Enough distinct batches for 120 batches/s; a client stops at the deadline.
    per_client = int(args.seconds * 120 / args.clients) + 10
    print(f"building {per_client * args.clients} payloads of {args.batch} spans...", flush=True)
    payload_sets = [
        build_payloads(service, per_client, args.batch, seed) for seed in range(args.clients)
    ]
    deadline = time.monotonic() + args.seconds + 1
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        results = pool.map(client, [(args.url, token, p, deadline) for p in payload_sets])
    elapsed = time.perf_counter() - started
    stored = count_stored(service)
    batches = sum(r[0] for r in results)
    failures = sum(r[1] for r in results)
    latencies = sorted(lat for r in results for lat in r[2])
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    rate = stored / elapsed
    print(
        f"end to end: {stored} spans stored in {elapsed:.1f} s by {args.clients} clients "
        f"({batches} batches OK, {failures} failed, request p99 {p99 * 1000:.0f} ms)"
    )
    print(f"end-to-end rate: {rate:,.0f} spans/s")
    if stored != batches * args.batch:
        print(f"WARNING: acknowledged {batches * args.batch} spans but stored {stored}")
    return rate


def backend_cpu_seconds(cursor) -> float:
    """CPU seconds of the PostgreSQL backend serving this cursor (the server is local)."""
    import psutil

    cursor.execute("SELECT pg_backend_pid()")
    try:
        times = psutil.Process(cursor.fetchone()[0]).cpu_times()
    except psutil.Error:  # Another user's process, or not on this machine.
        return float("nan")
    return times.user + times.system


def ceiling_worker(args) -> tuple[float, float, float]:
    """Decode and COPY pre-built payloads in this process.

    Returns the seconds spent, and the CPU seconds of this process and of its
    PostgreSQL backend meanwhile.
    """
    from django.db import connection

    from telemetry import otlp
    from telemetry.ingest import current_limits, store_rows

    payloads = args
    connection.close()  # never share the parent's connection across fork
    with connection.cursor() as cursor:
        backend_before = backend_cpu_seconds(cursor)
    started, cpu_before = time.perf_counter(), time.process_time()
    for body in payloads:
        batch = otlp.spans_to_rows(otlp.decode_protobuf(body), current_limits())
        store_rows(batch.rows)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    with connection.cursor() as cursor:
        backend = backend_cpu_seconds(cursor) - backend_before
    return elapsed, cpu, backend


@dataclass(frozen=True)
class Ceiling:
    spans_per_second: float
    cpu_us_per_span: float  # the loops' and their PostgreSQL backends'


def run_ceiling(args, service: str) -> float:
    return measure_ceiling(args, service).spans_per_second


def measure_ceiling(args, service: str) -> Ceiling:
    """The same work with no HTTP in between, in --ceiling-processes loops: the ceiling.

    Also prints the CPU time per span, of the loops and of PostgreSQL's
    backends: on a loaded machine it moves far less than the rate does.
    """
    from django.db import connections

    processes = args.ceiling_processes
    payload_sets = [
        build_payloads(f"{service}-ceiling", args.ceiling_batches, args.batch, 1000 + n)
        for n in range(processes)
    ]
    connections.close_all()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(ceiling_worker, payload_sets)
    elapsed = time.perf_counter() - started
    spans = processes * args.ceiling_batches * args.batch
    rate = spans / elapsed
    cpu = sum(result[1] for result in results) / spans * 1e6
    database_cpu = sum(result[2] for result in results) / spans * 1e6
    print(
        f"in-process ceiling: {spans} spans decoded and COPYed in {elapsed:.1f} s "
        f"by {processes} processes"
    )
    print(f"ceiling rate: {rate:,.0f} spans/s")
    print(
        f"ceiling CPU per span: {cpu + database_cpu:.1f} us "
        f"(decode and COPY {cpu:.1f}, PostgreSQL {database_cpu:.1f})"
    )
    return Ceiling(rate, cpu + database_cpu)


def read_token(args) -> str:
    if args.token:
        return args.token
    from django.conf import settings

    return (Path(settings.MONOENV_DATA_DIR) / "ingest-token.txt").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--token", default=os.environ.get("MONOENV_TOKEN"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--ceiling-batches", type=int, default=200, help="per process")
    parser.add_argument("--ceiling-processes", type=int, help="default: --clients")
    args = parser.parse_args()
    args.ceiling_processes = args.ceiling_processes or args.clients

    import django

    django.setup()
    service = f"bench-{int(time.time())}"
    print(f"machine: {os.cpu_count()} cores; target {args.url}; service {service}")
    end_to_end = run_end_to_end(args, read_token(args), service)
    ceiling = run_ceiling(args, service)
    print(f"ratio end-to-end / ceiling: {end_to_end / ceiling:.2f}")


if __name__ == "__main__":
    main()
