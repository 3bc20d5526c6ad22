"""Small factories for span rows and per-minute SLO counts."""

import os
from datetime import datetime, timedelta

from slo.models import SLO, SLOMinute
from telemetry import ingest
from telemetry.otlp import SPAN_COLUMNS

SERVER = 2
CLIENT = 3


def span_row(
    start: datetime,
    *,
    service: str = "checkout",
    route: str = "/api/orders",
    version: str = "1.0.0",
    kind: int = SERVER,
    duration_us: int = 10_000,
    error: bool = False,
) -> tuple:
    """One span row in telemetry.otlp.SPAN_COLUMNS order."""
    values = {
        "trace_id": os.urandom(16),
        "span_id": os.urandom(8),
        "parent_span_id": None,
        "service": service,
        "service_version": version,
        "environment": "production",
        "name": f"GET {route}",
        "kind": kind,
        "start_time": start,
        "duration_us": duration_us,
        "status_code": 2 if error else 0,
        "status_message": "",
        "http_route": route,
        "http_status": 500 if error else 200,
        "http_method": "GET",
        "is_error": error,
        "exception_type": "",
        "attributes": "{}",
        "resource_attributes": "{}",
        "events": "[]",
    }
    return tuple(values[column] for column in SPAN_COLUMNS)


def store_spans(start: datetime, count: int, *, errors: int = 0, **fields) -> list[tuple]:
    """Store `count` spans spread over the minute of `start`, the first `errors` failing."""
    rows = [
        span_row(start + timedelta(microseconds=index), error=index < errors, **fields)
        for index in range(count)
    ]
    ingest.store_rows(rows)
    return rows


def make_slo(**fields) -> SLO:
    definition = {"name": "checkout-availability", "service": "checkout", "objective": "99.9"}
    definition.update(fields)
    slo = SLO()
    slo.set_definition(definition)
    slo.full_clean()
    slo.save()
    return slo


def add_minutes(slo: SLO, start: datetime, count: int, *, good: int, total: int) -> None:
    """Per-minute counts as the rollup would leave them, marked as backfilled."""
    SLOMinute.objects.bulk_create(
        SLOMinute(slo=slo, minute=start + timedelta(minutes=i), good=good, total=total)
        for i in range(count)
    )
    SLO.objects.filter(pk=slo.pk).update(backfilled_key=slo.selection_key)
    slo.backfilled_key = slo.selection_key


def counted_since(slo: SLO, at: datetime) -> None:
    """One good event at `at`: the SLO's counts start there (before its window, say).

    An SLO whose counts start inside its window is young, and its budget is
    projected over the whole window; tests of the plain arithmetic use this.
    """
    add_minutes(slo, at, 1, good=1, total=1)
