"""One load process: the real OpenTelemetry SDK exporting paced spans.

Used by bench/soak.py and the tests in tests/reliability/. Each process runs
one TracerProvider whose BatchSpanProcessor feeds an OTLPSpanExporter (HTTP or
gRPC) wrapped in CountingExporter, creates spans at --rate per second (0: as
fast as it can) for --seconds, shuts the provider down (which flushes), and
prints one JSON line: spans created, exported (export() returned SUCCESS),
failed, dropped by the SDK's full queue, each export() call's latency, and the
retry warnings the exporter logged.

    python -m bench.sdk_load --protocol http --endpoint http://127.0.0.1:4318/v1/traces \\
        --token TOKEN --service soak-http-0 --rate 2000 --seconds 60
"""

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

ROOT = Path(__file__).resolve().parents[1]
ROUTES = [f"/api/items/{{id}}/part{n}" for n in range(20)]
# The SDK's defaults; the soak uses them, a fault test may raise the queue so
# that a long outage shows up as retries rather than spans dropped client-side.
QUEUE_SIZE = 2048
BATCH_SIZE = 512
SCHEDULE_DELAY_MS = 5000


class CountingExporter(SpanExporter):
    """Counts what the real exporter reports, and times each export() call."""

    def __init__(self, exporter: SpanExporter):
        self.exporter = exporter
        self.exported = 0
        self.failed = 0
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        started = time.perf_counter()
        result = self.exporter.export(spans)
        elapsed = time.perf_counter() - started
        with self._lock:
            self.latencies.append(elapsed)
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class RetryLog(logging.Handler):
    """Keeps the exporters' warnings: each retry says what the server answered."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 1000:
            self.messages.append(record.getMessage()[:300])


def build_exporter(protocol: str, endpoint: str, token: str, timeout: float) -> SpanExporter:
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=endpoint,
        insecure=True,
        headers=(("authorization", f"Bearer {token}"),),
        timeout=timeout,
    )


def make_span(tracer, rng: random.Random) -> None:
    route = rng.choice(ROUTES)
    failed = rng.random() < 0.01
    span = tracer.start_span(
        f"GET {route}",
        kind=SpanKind.SERVER,
        attributes={
            "http.route": route,
            "http.request.method": "GET",
            "http.response.status_code": 500 if failed else 200,
            "url.scheme": "http",
        },
    )
    if failed:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def run(args) -> dict:
    retries = RetryLog()
    logging.getLogger("opentelemetry").addHandler(retries)
    counting = CountingExporter(
        build_exporter(args.protocol, args.endpoint, args.token, args.timeout)
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": args.service, "service.version": "1.0.0"})
    )
    processor = BatchSpanProcessor(
        counting,
        max_queue_size=args.queue_size,
        max_export_batch_size=BATCH_SIZE,
        schedule_delay_millis=args.schedule_delay_ms,
        export_timeout_millis=int(args.timeout * 1000 * 7),
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench.sdk_load")
    rng = random.Random(args.service)
    created = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < args.seconds:
        due = int(elapsed * args.rate) if args.rate else created + 200
        while created < due:
            make_span(tracer, rng)
            created += 1
        if args.rate:
            time.sleep(0.005)
    created_for = time.monotonic() - started
    provider.shutdown()
    return {
        "service": args.service,
        "protocol": args.protocol,
        "created": created,
        "created_for": created_for,
        "exported": counting.exported,
        "failed": counting.failed,
        "dropped": created - counting.exported - counting.failed,
        "latencies": counting.latencies,
        "retries": retries.messages,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["http", "grpc"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--rate", type=float, default=0, help="spans/s; 0: as fast as it can")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=10, help="the exporter's, in seconds")
    parser.add_argument("--queue-size", type=int, default=QUEUE_SIZE)
    parser.add_argument("--schedule-delay-ms", type=int, default=SCHEDULE_DELAY_MS)
    args = parser.parse_args(argv)
    result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")


@dataclass
class Load:
    """Load processes running this module and, once they end, what they report."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)

    def start(self, *, protocol: str, endpoint: str, token: str, service: str, **options) -> None:
        cmd = [sys.executable, "-m", "bench.sdk_load", "--protocol", protocol,
               "--endpoint", endpoint, "--token", token, "--service", service]  # fmt: skip
        for option, value in options.items():
            cmd += [f"--{option.replace('_', '-')}", str(value)]
        # Files, not pipes: nobody reads a pipe until the end, and a full one blocks.
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
        proc.output = (out, err)
        self.procs.append(proc)

    def wait(self, timeout: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
            out, err = proc.output
            out.seek(0), err.seek(0)
            if proc.returncode != 0:
                raise RuntimeError(f"load process failed:\n{err.read()[-3000:]}")
            self.results.append(json.loads(out.read().strip().splitlines()[-1]))
        return self.results

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def stored_counts(conn, services: list[str]) -> dict[str, tuple[int, int]]:
    """Per service: rows, and distinct (trace_id, span_id), in a psycopg connection."""
    rows = conn.execute(
        """
        SELECT service, count(*), count(DISTINCT (trace_id, span_id))
        FROM telemetry_span WHERE service = ANY(%s) GROUP BY service
        """,
        [services],
    ).fetchall()
    counts = {service: (0, 0) for service in services}
    counts.update({service: (total, distinct) for service, total, distinct in rows})
    return counts


if __name__ == "__main__":
    main()
