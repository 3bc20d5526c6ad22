import random
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from telemetry import ingest, partitions
from telemetry.otlp import SPAN_COLUMNS

SERVER, CLIENT = 2, 3


@pytest.fixture(autouse=True)
def _forget_partitions():
    # Each test's transaction rolls back the partitions it created.
    partitions.forget_partitions()
    yield
    partitions.forget_partitions()


@pytest.fixture
def t0() -> datetime:
    """A deploy time far enough back that every checkpoint has passed."""
    return (timezone.now() - timedelta(hours=3)).replace(second=0, microsecond=0)


def span_row(
    *,
    service: str,
    version: str,
    start: datetime,
    route: str = "GET /items",
    duration_ms: float = 20.0,
    error: bool = False,
    kind: int = SERVER,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent: bytes | None = None,
    exception_type: str = "",
    status_message: str = "",
    environment: str = "production",
    rng: random.Random | None = None,
) -> tuple:
    rng = rng or random
    values = {
        "trace_id": trace_id or rng.randbytes(16),
        "span_id": span_id or rng.randbytes(8),
        "parent_span_id": parent,
        "service": service,
        "service_version": version,
        "environment": environment,
        "name": route,
        "kind": kind,
        "start_time": start,
        "duration_us": int(duration_ms * 1000),
        "status_code": 2 if error else 0,
        "status_message": status_message,
        "http_route": route,
        "http_status": (500 if error else 200) if kind == SERVER else None,
        "http_method": "GET",
        "is_error": error,
        "exception_type": exception_type,
        "attributes": "{}",
        "resource_attributes": "{}",
        "events": "[]",
    }
    return tuple(values[column] for column in SPAN_COLUMNS)


def traffic(
    *,
    service: str,
    version: str,
    start: datetime,
    minutes: float,
    per_minute: int,
    error_rate: float = 0.0,
    median_ms: float = 40.0,
    routes: tuple[str, ...] = ("GET /items", "POST /orders"),
    slow_route: str | None = None,
    slowdown: float = 1.0,
    exception_type: str = "",
    seed: int = 1,
) -> list[tuple]:
    """Server spans at a steady rate: log-normal latency, random errors."""
    rng = random.Random(seed)
    count = int(minutes * per_minute)
    step = 60.0 / per_minute
    rows = []
    for index in range(count):
        route = routes[index % len(routes)]
        duration = median_ms * rng.lognormvariate(0, 0.4)
        if route == slow_route:
            duration *= slowdown
        error = rng.random() < error_rate
        rows.append(
            span_row(
                service=service,
                version=version,
                start=start + timedelta(seconds=index * step),
                route=route,
                duration_ms=duration,
                error=error,
                exception_type=exception_type if error else "",
                rng=rng,
            )
        )
    return rows


def store(*row_lists: list[tuple]) -> None:
    ingest.store_rows([row for rows in row_lists for row in rows])
