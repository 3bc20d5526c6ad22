"""Small factories for the dashboard tests: spans, rollups, an SLO, deploys."""

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from deployments.models import Deployment, Finding, Suspect, VerdictRecord
from slo import minutes as slo_minutes
from slo.models import SLO, Alert
from telemetry import ingest, rollups
from telemetry.otlp import SPAN_COLUMNS

SERVER, CLIENT = 2, 3
XSS = "<script>alert(1)</script>"


def span_row(
    start: datetime,
    *,
    service: str = "checkout",
    version: str = "1.0.0",
    name: str | None = None,
    route: str = "/api/orders",
    kind: int = SERVER,
    duration_us: int = 20_000,
    error: bool = False,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent: bytes | None = None,
    exception_type: str = "",
    attributes: dict | None = None,
    events: list | None = None,
    environment: str = "production",
) -> tuple:
    """One span row in telemetry.otlp.SPAN_COLUMNS order."""
    values = {
        "trace_id": trace_id or os.urandom(16),
        "span_id": span_id or os.urandom(8),
        "parent_span_id": parent,
        "service": service,
        "service_version": version,
        "environment": environment,
        "name": name or f"GET {route}",
        "kind": kind,
        "start_time": start,
        "duration_us": duration_us,
        "status_code": 2 if error else 0,
        "status_message": "boom" if error else "",
        "http_route": route,
        "http_status": 500 if error else 200,
        "http_method": "GET",
        "is_error": error,
        "exception_type": exception_type,
        "attributes": json.dumps(attributes or {}),
        "resource_attributes": json.dumps({"service.name": service}),
        "events": json.dumps(events or []),
    }
    return tuple(values[column] for column in SPAN_COLUMNS)


def traffic(
    start: datetime, minutes: int, *, per_minute: int, errors_every: int = 0, **fields
) -> list[tuple]:
    """Steady traffic: per_minute spans each minute, every errors_every-th one failing."""
    rows = []
    for minute in range(minutes):
        for index in range(per_minute):
            number = minute * per_minute + index
            error = bool(errors_every) and number % errors_every == 0
            at = start + timedelta(minutes=minute, seconds=index * 60 / per_minute)
            rows.append(span_row(at, error=error, duration_us=10_000 + 1_000 * index, **fields))
    return rows


def store(rows: list[tuple]) -> None:
    ingest.store_rows(rows)
    rollups.rollup_pending()


@dataclass
class World:
    now: datetime
    trace_id: str
    slo: SLO
    alert: Alert
    failed_deploy: Deployment
    passed_deploy: Deployment


def build_world(now: datetime) -> World:
    """Two services with an hour of traffic, a cross-service trace with a hostile
    span name, an SLO with a firing page alert, and a failed and a passed deploy."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=90)
    deployed_at = start + timedelta(minutes=60)
    slo = SLO.objects.create(name="checkout-availability", service="checkout", objective=99.5)
    rows = traffic(start, 60, per_minute=10, errors_every=50, service="checkout")
    rows += traffic(deployed_at, 31, per_minute=10, errors_every=4, service="checkout",
                    version="2.0.0", exception_type="KeyError")  # fmt: skip
    rows += traffic(start, 91, per_minute=5, service="payments", route="/charge")
    trace_id, root_id, call_id = os.urandom(16), os.urandom(8), os.urandom(8)
    at = now - timedelta(minutes=5)
    rows += [
        span_row(at, name=XSS, route="/api/<b>orders</b>", trace_id=trace_id, span_id=root_id,
                 duration_us=50_000, attributes={"user.note": "<img src=x onerror=alert(2)>"},
                 events=[{"name": "cache <miss>", "time_unix_nano": int(at.timestamp() * 1e9),
                          "attributes": {"key": "<i>k</i>"}}]),
        span_row(at + timedelta(milliseconds=5), name="POST /charge", kind=CLIENT,
                 trace_id=trace_id, span_id=call_id, parent=root_id, duration_us=30_000),
        span_row(at + timedelta(milliseconds=6), service="payments", route="/charge",
                 trace_id=trace_id, parent=call_id, duration_us=28_000, error=True,
                 exception_type="CardDeclined"),
    ]  # fmt: skip
    store(rows)
    slo_minutes.backfill(slo, now=now)
    alert = Alert.objects.create(
        slo=slo, severity="page", long_window=timedelta(hours=1),
        short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=20.0,
        short_burn_rate=40.0, budget_consumed_pct=3.0, fired_at=now - timedelta(minutes=20),
        last_evaluated_at=now,
    )  # fmt: skip
    passed = Deployment.objects.create(
        service="payments", version="1.0.0", started_at=start, finished_at=start,
        verdict="pass", verdict_reason="No regression found.",
    )  # fmt: skip
    failed = Deployment.objects.create(
        service="checkout", version="2.0.0", previous_version="1.0.0", started_at=deployed_at,
        finished_at=deployed_at, first_span_at=deployed_at, verdict="fail",
        verdict_reason=f"Error rate rose from 2% to 25% on {XSS}.", deployer="ada",
    )  # fmt: skip
    record = VerdictRecord.objects.create(
        deployment=failed, checkpoint=15, verdict="fail", reason=failed.verdict_reason,
        baseline_kind="before", window_start=deployed_at,
        window_end=deployed_at + timedelta(minutes=15),
        baseline_requests=600, candidate_requests=150,
    )  # fmt: skip
    Finding.objects.create(
        deployment=failed, verdict_record=record, metric="error_rate", route="",
        baseline_value=0.02,
        candidate_value=0.25, baseline_n=600, candidate_n=150, effect_size=0.23, p_value=1e-9,
        adjusted_p_value=1e-8, threshold="+0.5 pp and ×1.5", significant=True, direction="up",
    )  # fmt: skip
    Finding.objects.create(
        deployment=failed, verdict_record=record, metric="new_error_type", route="",
        baseline_value=0,
        candidate_value=40, baseline_n=600, candidate_n=150, threshold="at least 5 occurrences",
        significant=True, direction="up", detail="KeyError",
    )  # fmt: skip
    Suspect.objects.create(deployment=failed, suspect=passed, rank=1, score=0.4, evidence=XSS)
    return World(now, trace_id.hex(), slo, alert, failed, passed)
